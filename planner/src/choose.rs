//! Layout choice for `plan()`: the requested DP-attention layout, the cheapest
//! TP x PP layout, or the best per-GPU throughput among all layouts; and the
//! `DoesNotFit` error that says what would be needed when nothing fits.

use crate::expert_rule;
use crate::layout::{self, Layout};
use crate::memory::MemoryBreakdown;
use crate::plan::Resolved;
use crate::{Attention, LayoutObjective, PlanError, Vendor};

fn model_desc(r: &Resolved) -> String {
    format!("{} at {}", r.req.model.id, r.req.quantization)
}

pub(crate) fn choose_layout(r: &Resolved) -> Result<(Layout, MemoryBreakdown, String), PlanError> {
    let req = r.req;
    let model = req.model;
    let gpn = r.gpus_per_node;
    let check = |tp: u32| {
        layout::check_tp(model.attention_heads, r.kv_heads(), tp)
            .map_err(PlanError::InvalidOverride)
    };
    let within_nodes = |l: &Layout| req.max_nodes.is_none_or(|m| l.nodes <= m);
    let pp_cap = model.layers.clamp(1, layout::MAX_PIPELINE);

    if let Some(dp) = req.parallel.data_parallel.filter(|&d| d >= 2) {
        return chosen_ep(r, dp, &check, &within_nodes);
    }

    let candidates: Vec<Layout> = match (req.tensor_parallel, req.pipeline_parallel) {
        // llama.cpp serves a replica from one node's RAM.
        _ if req.accelerator.vendor == Vendor::Cpu => layout::place(1, 1, 1).into_iter().collect(),
        (None, None) => r.auto(req.max_nodes),
        (tp, pp) => {
            if let Some(pp) = pp {
                if pp == 0 || pp > model.layers {
                    return Err(PlanError::InvalidOverride(format!(
                        "pipeline parallel {pp} must be between 1 and the model's {} layers",
                        model.layers
                    )));
                }
            }
            if let Some(tp) = tp {
                check(tp)?;
            }
            let tps: Vec<u32> = match tp {
                Some(tp) => vec![tp],
                None => layout::tp_candidates(model.attention_heads, r.kv_heads(), u32::MAX),
            };
            let pps: Vec<u32> = match pp {
                Some(pp) => vec![pp],
                None => (1..=pp_cap).collect(),
            };
            let mut out = Vec::new();
            let mut last_err = None;
            for &t in &tps {
                for &p in &pps {
                    match layout::place(t, p, gpn) {
                        Ok(l) if within_nodes(&l) => out.push(l),
                        Ok(l) => {
                            last_err = Some(format!(
                                "TP{t}xPP{p} needs {} nodes of {gpn}, max nodes is {}",
                                l.nodes,
                                req.max_nodes.unwrap_or(0)
                            ))
                        }
                        Err(e) => last_err = Some(e),
                    }
                }
            }
            if out.is_empty() {
                return Err(PlanError::InvalidOverride(
                    last_err.unwrap_or_else(|| "no layout matches the overrides".into()),
                ));
            }
            out.sort_by_key(|l| (l.gpus(), l.nodes, l.pipeline_parallel));
            out
        }
    };

    let load = format!(
        "{} sequence(s) of {} tokens",
        r.concurrency, r.max_model_len
    );
    match req.parallel.objective {
        LayoutObjective::Cheapest => {
            for l in &candidates {
                let mem = r.memory(l);
                if mem.fits() {
                    let reason = format!(
                        "cheapest: {} is the fewest accelerators ({}) whose memory holds {} at {} with the KV cache for {load}",
                        l.name(),
                        l.gpus(),
                        model.id,
                        req.quantization
                    );
                    return Ok((*l, mem, reason));
                }
            }
            Err(does_not_fit(r, &candidates))
        }
        LayoutObjective::Throughput => {
            let mut all = candidates.clone();
            let overrides = req.tensor_parallel.is_some() || req.pipeline_parallel.is_some();
            if !overrides && r.ep_capable() {
                all.extend(layout::ep_layouts(
                    model.attention_heads,
                    r.kv_heads(),
                    gpn,
                    req.max_nodes,
                    r.expert_slots(),
                ));
            }
            // Only splits the engine loads: an EP that does not divide the experts
            // crashes every rank at load on SGLang and vllm-ascend.
            all.retain(|l| r.check_ep(l).is_ok());
            let mut ranked: Vec<(Layout, MemoryBreakdown, f64)> = all
                .iter()
                .filter_map(|l| {
                    let mem = r.memory(l);
                    mem.fits().then(|| (*l, mem, r.tokens_per_gpu_s(l)))
                })
                .collect();
            // Best per-GPU throughput first; ties go to fewer accelerators.
            ranked.sort_by(|a, b| {
                b.2.total_cmp(&a.2)
                    .then(a.0.gpus().cmp(&b.0.gpus()))
                    .then(a.0.nodes.cmp(&b.0.nodes))
            });
            let Some((best, mem, score)) = ranked.first().cloned() else {
                return Err(does_not_fit(r, &candidates));
            };
            let mut reason = format!(
                "throughput: {} has the most estimated decode tokens/s per accelerator at {load} ({})",
                best.name(),
                rate(score, req.accelerator.bandwidth_tbps)
            );
            if let Some((second, _, s2)) = ranked.get(1) {
                reason.push_str(&format!(
                    ", ahead of {} ({})",
                    second.name(),
                    rate(*s2, req.accelerator.bandwidth_tbps)
                ));
            }
            if best.is_expert_parallel() && model.attention == Attention::Mla {
                reason.push_str(
                    "; DP attention keeps one copy of each sequence's MLA cache instead of one per TP rank",
                );
            }
            Ok((best, mem, reason))
        }
    }
}

/// A per-GPU rate for a reason string: absolute with a known bandwidth, relative
/// (per TB/s) without.
fn rate(score: f64, bandwidth: Option<f64>) -> String {
    if bandwidth.is_some_and(|b| b.is_finite() && b > 0.0) {
        format!("~{score:.0} tokens/s per accelerator")
    } else {
        format!("~{score:.0} tokens/s per accelerator per TB/s of bandwidth")
    }
}

/// The layout a `data_parallel >= 2` request asks for: DP attention groups of the
/// requested TP (default 1), EP over every rank.
fn chosen_ep(
    r: &Resolved,
    dp: u32,
    check: &dyn Fn(u32) -> Result<(), PlanError>,
    within_nodes: &dyn Fn(&Layout) -> bool,
) -> Result<(Layout, MemoryBreakdown, String), PlanError> {
    let req = r.req;
    if req.accelerator.vendor == Vendor::Cpu {
        return Err(PlanError::InvalidOverride(
            "cpu plans run one engine server (llama.cpp or vLLM) per replica: data parallel attention needs accelerators".into(),
        ));
    }
    if req.pipeline_parallel.is_some_and(|p| p != 1) {
        return Err(PlanError::InvalidOverride(
            "pipeline parallel cannot be combined with data parallel attention here".into(),
        ));
    }
    let tp = req.tensor_parallel.unwrap_or(1);
    check(tp)?;
    let l = layout::place_ep(tp, dp, r.gpus_per_node).map_err(PlanError::InvalidOverride)?;
    if !within_nodes(&l) {
        return Err(PlanError::InvalidOverride(format!(
            "{} needs {} nodes of {}, max nodes is {}",
            l.name(),
            l.nodes,
            r.gpus_per_node,
            req.max_nodes.unwrap_or(0)
        )));
    }
    if let Err(why) = r.check_ep(&l) {
        return Err(PlanError::InvalidOverride(format!(
            "{} spreads the experts over EP{}, but {why}; {}",
            l.name(),
            l.expert_parallel,
            nearest_valid(r, &l, within_nodes)
        )));
    }
    let mem = r.memory(&l);
    if !mem.fits() {
        return Err(does_not_fit(r, &[l]));
    }
    let reason = format!(
        "requested: {} ({} DP-attention groups of TP{}, experts over EP{})",
        l.name(),
        l.data_parallel,
        l.tensor_parallel,
        l.expert_parallel
    );
    Ok((l, mem, reason))
}

/// The requested EP layout's nearest neighbours the engine accepts: the closest data
/// parallel sizes below and above with the same TP that fill whole nodes, and the
/// redundant experts that would make the requested size divide the expert slots.
fn nearest_valid(r: &Resolved, asked: &Layout, within_nodes: &dyn Fn(&Layout) -> bool) -> String {
    let tp = asked.tensor_parallel;
    let dp = asked.data_parallel;
    let routed = r.routed_experts();
    let redundant = r.req.parallel.redundant_experts;
    // Past the expert slots every rank would hold less than one expert.
    let slots = routed.saturating_add(redundant);
    let top = (slots / tp.max(1)).max(2);
    let valid = |d: u32| {
        layout::place_ep(tp, d, r.gpus_per_node)
            .ok()
            .filter(|l| within_nodes(l) && r.check_ep(l).is_ok())
    };
    // Bounded by the slots: a request of billions of ranks must not be walked down.
    let below = (2..dp.min(top.saturating_add(1))).rev().find_map(valid);
    let above = (dp.saturating_add(1)..=top).find_map(valid);
    let show = |l: &Layout| {
        format!(
            "data parallel {} ({}, {} node(s))",
            l.data_parallel,
            l.name(),
            l.nodes
        )
    };
    let sizes: Vec<String> = below.iter().chain(above.iter()).map(show).collect();
    let mut out = if sizes.is_empty() {
        format!("no DP size with TP{tp} both fills these nodes and divides the experts")
    } else {
        format!("nearest valid: {}", sizes.join(" or "))
    };
    // At most as many copies as the routed experts: the engines' balancers replicate
    // each expert at most a few times.
    if let Some(extra) =
        expert_rule::redundant_for(routed, redundant, asked.expert_parallel, routed)
    {
        if extra != redundant {
            out.push_str(&format!(
                ", or {extra} redundant experts ({} slots = EP{} x {})",
                u64::from(routed) + u64::from(extra),
                asked.expert_parallel,
                (u64::from(routed) + u64::from(extra)) / u64::from(asked.expert_parallel)
            ));
        }
    }
    if r.engine == crate::Engine::Vllm && redundant > 0 {
        out.push_str(
            ", or no redundant experts (vLLM splits experts unevenly without its load balancer)",
        );
    }
    out
}

fn does_not_fit(r: &Resolved, tried: &[Layout]) -> PlanError {
    let req = r.req;
    let acc = &req.accelerator.id;
    let desc = model_desc(r);
    let usable = r.device_gib * r.util;
    let overrides = req.tensor_parallel.is_some()
        || req.pipeline_parallel.is_some()
        || req.parallel.data_parallel.is_some_and(|d| d >= 2);

    // Would it fit with more nodes?
    if !overrides && req.max_nodes.is_some() {
        if let Some(l) = r.auto(None).into_iter().find(|l| r.memory(l).fits()) {
            let needed = r.requirement(&l);
            let mut message = format!(
                "{desc} needs {} x {acc} on {} node(s) of {} (TP{}xPP{}, {:.1} GiB each); max nodes is {}",
                needed.gpus,
                needed.nodes,
                needed.gpus_per_node,
                needed.tensor_parallel,
                needed.pipeline_parallel,
                needed.min_memory_per_gpu_gib * r.util,
                req.max_nodes.unwrap_or(0),
            );
            if let Some(big) = tried.last() {
                let alt = r.requirement(big);
                message.push_str(&format!(
                    ", or {} accelerators with >= {:.0} GiB each",
                    alt.gpus,
                    alt.min_memory_per_gpu_gib.ceil()
                ));
            }
            return PlanError::DoesNotFit { needed, message };
        }
    }

    // Nothing fits: report the largest layout tried.
    let largest = tried
        .iter()
        .max_by_key(|l| (l.gpus(), l.nodes))
        .copied()
        .or_else(|| layout::place(1, 1, r.gpus_per_node).ok());
    let Some(l) = largest else {
        return PlanError::InvalidInput(format!("no layout is possible for {desc}"));
    };
    let needed = r.requirement(&l);
    let per_gpu = needed.min_memory_per_gpu_gib * r.util;
    let message = if req.accelerator.vendor == Vendor::Cpu {
        format!(
            "{desc} needs {per_gpu:.1} GiB of node memory ({:.0} GiB RAM at {:.2} utilization); {usable:.1} GiB usable",
            needed.min_memory_per_gpu_gib.ceil(),
            r.util
        )
    } else {
        format!(
            "{desc} needs {per_gpu:.1} GiB per accelerator even as {} ({} x {acc} on {} node(s)), but {acc} has {usable:.1} GiB usable; use accelerators with >= {:.0} GiB, a smaller quantization, or a shorter maxModelLen/concurrency",
            l.name(),
            needed.gpus,
            needed.nodes,
            needed.min_memory_per_gpu_gib.ceil(),
        )
    };
    PlanError::DoesNotFit { needed, message }
}
