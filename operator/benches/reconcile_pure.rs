//! The pure half of a reconcile at scale: grouping 10,000 Nodes in 50 pools, and the whole
//! path from a manifest to its desired pods (validate, pools, placement across every pool,
//! build). Reconcile runs this on every model change, so it must stay far below the API
//! round trips around it.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use deepseek_e2e::fixtures::ready_node;
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::config::OperatorConfig;
use deepseek_operator::desired::preview::desired;
use deepseek_operator::inventory::{pools_from_facts, pools_from_nodes, NodeFacts};
use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::Node;
use serde_json::json;

/// 50 pools of 200 nodes, cycling through the identifiable accelerators of the catalog;
/// each pool dedicated to a team by its own taint, so the 50 stay distinct.
fn nodes(catalog: &Catalog) -> Vec<Node> {
    let accs: Vec<_> = catalog
        .accelerators()
        .iter()
        .filter(|a| a.resource.is_some() && a.node_labels.iter().any(|m| !m.values.is_empty()))
        .collect();
    let mut out = Vec::with_capacity(10_000);
    for pool in 0..50 {
        let a = accs[pool % accs.len()];
        let Some(m) = a.node_labels.iter().find(|m| !m.values.is_empty()) else {
            continue;
        };
        let resource = a.resource.clone().unwrap_or_default();
        for i in 0..200 {
            let mut labels: BTreeMap<String, String> = m.requires.clone();
            labels.insert(m.key.clone(), m.values[0].clone());
            let taints = json!([
                {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                {"key": "dedicated", "value": format!("team-{pool}"), "effect": "NoSchedule"},
            ]);
            let allocatable = json!({resource.clone(): a.typical_per_node.to_string(), "cpu": "192", "memory": "2Ti"});
            out.push(ready_node(
                &format!("pool{pool}-{i}"),
                json!(labels),
                taints,
                allocatable,
            ));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let nodes = nodes(catalog);
    let refs: Vec<&Node> = nodes.iter().collect();
    let config = OperatorConfig::default();
    let pools = pools_from_nodes(&refs, catalog, &[]);
    eprintln!("{} nodes in {} pools", refs.len(), pools.len());

    // What the node watch runs: the cache already holds NodeFacts.
    let facts: Vec<NodeFacts> = nodes.iter().map(NodeFacts::from).collect();
    let fact_refs: Vec<&NodeFacts> = facts.iter().collect();
    c.bench_function("pools_from_facts/10000 nodes in 50 pools", |b| {
        b.iter(|| black_box(pools_from_facts(black_box(&fact_refs), catalog, &[])))
    });
    // What the CLI and `desired` run on Node objects: conversion included.
    c.bench_function("pools_from_nodes/10000 nodes in 50 pools", |b| {
        b.iter(|| black_box(pools_from_nodes(black_box(&refs), catalog, &[])))
    });

    for (label, yaml) in [
        ("r1 fp8, any pool", "apiVersion: inference.deepseek-operator.dev/v1alpha1\nkind: DeepSeekModel\nmetadata: {name: r1, namespace: bench, uid: u}\nspec: {model: deepseek-r1, quantization: fp8, replicas: 4}\n"),
        ("1.5b distill, any nvidia pool", "apiVersion: inference.deepseek-operator.dev/v1alpha1\nkind: DeepSeekModel\nmetadata: {name: small, namespace: bench, uid: u}\nspec: {model: deepseek-r1-distill-qwen-1.5b, accelerator: {vendor: nvidia}, replicas: 4}\n"),
    ] {
        let model: DeepSeekModel = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        c.bench_function(&format!("desired/{label}/10000 nodes"), |b| {
            b.iter(|| black_box(desired(black_box(&model), &refs, &config, catalog).is_ok()))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
