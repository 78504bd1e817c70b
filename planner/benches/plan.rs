//! How long planning takes: one model against the whole accelerator catalog, and
//! against a simulated inventory of 10,000 nodes in 50 pools (one plan per pool,
//! as the controller does).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use deepseek_planner::{plan, Catalog, PlanRequest, Quantization, Vendor};

/// A pool: accelerator id, accelerators per node, nodes.
struct Pool {
    accelerator: usize,
    gpus_per_node: u32,
    nodes: u32,
}

/// 50 pools, 200 nodes each, cycling through the catalog's accelerators.
fn inventory(catalog: &Catalog) -> Vec<Pool> {
    let accs = catalog.accelerators();
    (0..50)
        .map(|i| {
            let a = i % accs.len();
            Pool {
                accelerator: a,
                gpus_per_node: accs[a].typical_per_node,
                nodes: 200,
            }
        })
        .collect()
}

fn quant_for(vendor: Vendor) -> Quantization {
    match vendor {
        Vendor::Cpu => Quantization::GgufIq1S,
        Vendor::Ascend => Quantization::Int8,
        Vendor::Nvidia | Vendor::Amd => Quantization::Fp8,
    }
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let r1 = catalog
        .model("deepseek-r1")
        .expect("deepseek-r1 in catalog");
    let distill = catalog
        .model("deepseek-r1-distill-llama-70b")
        .expect("distill in catalog");

    c.bench_function("plan r1 fp8 on h100 (one plan)", |b| {
        let acc = catalog.accelerator("h100-80gb").expect("h100");
        b.iter(|| plan(black_box(&PlanRequest::new(r1, Quantization::Fp8, acc))))
    });

    for model in [r1, distill] {
        c.bench_function(
            &format!("plan {} across the accelerator catalog", model.id),
            |b| {
                b.iter(|| {
                    let mut ok = 0u32;
                    for acc in catalog.accelerators() {
                        let mut req = PlanRequest::new(model, quant_for(acc.vendor), acc);
                        req.memory_override_gib = (acc.vendor == Vendor::Cpu).then_some(512.0);
                        ok += u32::from(plan(black_box(&req)).is_ok());
                    }
                    ok
                })
            },
        );
    }

    let pools = inventory(catalog);
    let nodes: u32 = pools.iter().map(|p| p.nodes).sum();
    assert_eq!(nodes, 10_000);
    c.bench_function("plan r1 against 10,000 nodes in 50 pools", |b| {
        b.iter(|| {
            let mut ok = 0u32;
            for pool in &pools {
                let acc = &catalog.accelerators()[pool.accelerator];
                let mut req = PlanRequest::new(r1, quant_for(acc.vendor), acc);
                req.gpus_per_node = pool.gpus_per_node;
                req.max_nodes = Some(pool.nodes);
                req.memory_override_gib = (acc.vendor == Vendor::Cpu).then_some(512.0);
                ok += u32::from(plan(black_box(&req)).is_ok());
            }
            ok
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
