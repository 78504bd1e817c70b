//! Parallel layouts: which splits are valid for a model and how they land on nodes.
//!
//! Two families: TP x PP (fill a node with TP before crossing nodes with PP), and
//! DP attention x EP (each of `data_parallel` attention groups of `tensor_parallel`
//! ranks serves its own sequences; the routed experts are spread over every rank of
//! the replica, so EP = DP x TP). `tensor_parallel` 1 is wide EP; above 1 the hybrid.

/// One layout placed on nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// TP of the whole model (TP x PP), or of attention within one DP group.
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    /// DP-attention groups; 1 for TP x PP.
    pub data_parallel: u32,
    /// Ranks the routed experts are spread over; 1 = experts split by TP like any weight.
    pub expert_parallel: u32,
    pub nodes: u32,
    /// Accelerators used on each node.
    pub gpus_per_node: u32,
}

impl Layout {
    pub fn gpus(&self) -> u64 {
        u64::from(self.tensor_parallel)
            * u64::from(self.pipeline_parallel)
            * u64::from(self.data_parallel.max(1))
    }

    /// Whether attention runs data-parallel with experts spread by EP.
    pub fn is_expert_parallel(&self) -> bool {
        self.expert_parallel > 1
    }

    /// `TP8xPP2`, `DP16xEP16` (wide EP) or `DP4xTP4xEP16` (hybrid).
    pub fn name(&self) -> String {
        if !self.is_expert_parallel() {
            format!("TP{}xPP{}", self.tensor_parallel, self.pipeline_parallel)
        } else if self.tensor_parallel == 1 {
            format!("DP{}xEP{}", self.data_parallel, self.expert_parallel)
        } else {
            format!(
                "DP{}xTP{}xEP{}",
                self.data_parallel, self.tensor_parallel, self.expert_parallel
            )
        }
    }

    /// `tp-pp`, `dp-ep` or `hybrid`.
    pub fn kind(&self) -> &'static str {
        if !self.is_expert_parallel() {
            "tp-pp"
        } else if self.tensor_parallel == 1 {
            "dp-ep"
        } else {
            "hybrid"
        }
    }
}

/// Most nodes the planner spreads one EP replica over on its own (16 nodes of 8 is
/// 128 ranks, past the published decode deployments of 72 to 96 ranks).
pub const MAX_EP_NODES: u32 = 16;

/// Highest PP the planner tries on its own (each stage keeps at least one layer).
pub const MAX_PIPELINE: u32 = 256;

/// Why `tp` cannot split this model, if it cannot: TP must divide the attention
/// heads, and for GQA either divide the KV heads or be a multiple of them.
pub fn check_tp(attention_heads: u32, kv_heads: Option<u32>, tp: u32) -> Result<(), String> {
    if tp == 0 {
        return Err("tensor parallel size must be at least 1".into());
    }
    if !attention_heads.is_multiple_of(tp) {
        return Err(format!(
            "tensor parallel {tp} does not divide the model's {attention_heads} attention heads"
        ));
    }
    if let Some(kv) = kv_heads {
        if kv > 0 && kv % tp != 0 && !tp.is_multiple_of(kv) {
            return Err(format!(
                "tensor parallel {tp} neither divides nor is a multiple of the model's {kv} KV heads"
            ));
        }
    }
    Ok(())
}

/// Valid TP sizes up to `max`, ascending.
pub fn tp_candidates(attention_heads: u32, kv_heads: Option<u32>, max: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut i: u32 = 1;
    while u64::from(i) * u64::from(i) <= u64::from(attention_heads) {
        if attention_heads.is_multiple_of(i) {
            out.push(i);
            out.push(attention_heads / i);
        }
        i += 1;
    }
    out.sort_unstable();
    out.dedup();
    out.retain(|&tp| tp <= max && check_tp(attention_heads, kv_heads, tp).is_ok());
    out
}

/// Places TP x PP on nodes of `gpus_per_node`: stages pack into a node while they
/// fit; TP larger than a node must span whole nodes.
pub fn place(tp: u32, pp: u32, gpus_per_node: u32) -> Result<Layout, String> {
    if tp == 0 || pp == 0 || gpus_per_node == 0 {
        return Err(
            "tensor parallel, pipeline parallel and GPUs per node must be at least 1".into(),
        );
    }
    // A replica is counted in u32 accelerators everywhere (plans, the CRD, pods).
    u32::try_from(u64::from(tp) * u64::from(pp))
        .map_err(|_| format!("TP{tp} x PP{pp} is more accelerators than can be counted"))?;
    let (nodes, per_node) = if tp <= gpus_per_node {
        let stages_per_node = gpus_per_node / tp;
        if pp <= stages_per_node {
            (1u64, u64::from(tp) * u64::from(pp))
        } else if !pp.is_multiple_of(stages_per_node) {
            return Err(format!(
                "pipeline parallel {pp} with tensor parallel {tp} does not fill whole nodes of {gpus_per_node}"
            ));
        } else {
            (
                u64::from(pp / stages_per_node),
                u64::from(tp) * u64::from(stages_per_node),
            )
        }
    } else {
        if !tp.is_multiple_of(gpus_per_node) {
            return Err(format!(
                "tensor parallel {tp} spans nodes of {gpus_per_node} but is not a multiple of it"
            ));
        }
        (
            u64::from(tp / gpus_per_node) * u64::from(pp),
            u64::from(gpus_per_node),
        )
    };
    let nodes = u32::try_from(nodes).map_err(|_| "layout needs too many nodes".to_string())?;
    let per_node = u32::try_from(per_node).map_err(|_| "layout is too large".to_string())?;
    Ok(Layout {
        tensor_parallel: tp,
        pipeline_parallel: pp,
        data_parallel: 1,
        expert_parallel: 1,
        nodes,
        gpus_per_node: per_node,
    })
}

/// Places DP attention groups of `tp` ranks with EP over all `dp x tp` ranks: a
/// replica smaller than a node uses part of one node, a larger one whole nodes.
pub fn place_ep(tp: u32, dp: u32, gpus_per_node: u32) -> Result<Layout, String> {
    if tp == 0 || dp < 2 || gpus_per_node == 0 {
        return Err("DP attention needs at least 2 data-parallel groups of at least 1 rank".into());
    }
    let ranks = u64::from(tp) * u64::from(dp);
    let ranks = u32::try_from(ranks).map_err(|_| "layout is too large".to_string())?;
    if tp > gpus_per_node {
        return Err(format!(
            "attention tensor parallel {tp} is larger than a node of {gpus_per_node}"
        ));
    }
    let (nodes, per_node) = if ranks <= gpus_per_node {
        (1, ranks)
    } else if ranks.is_multiple_of(gpus_per_node) {
        (ranks / gpus_per_node, gpus_per_node)
    } else {
        return Err(format!(
            "DP{dp} x TP{tp} = {ranks} ranks do not fill whole nodes of {gpus_per_node}"
        ));
    };
    Ok(Layout {
        tensor_parallel: tp,
        pipeline_parallel: 1,
        data_parallel: dp,
        expert_parallel: ranks,
        nodes,
        gpus_per_node: per_node,
    })
}

/// DP-attention x EP layouts for an MoE model with `expert_slots` experts to place
/// (routed + redundant): part of one node (ranks dividing the node) or 2 to
/// `MAX_EP_NODES` (or `max_nodes`) whole nodes, each with every valid attention TP
/// within a node. EP never exceeds the expert slots, so every rank holds one.
pub fn ep_layouts(
    attention_heads: u32,
    kv_heads: Option<u32>,
    gpus_per_node: u32,
    max_nodes: Option<u32>,
    expert_slots: u32,
) -> Vec<Layout> {
    let mut sizes: Vec<u32> = (2..=gpus_per_node)
        .filter(|r| gpus_per_node.is_multiple_of(*r))
        .collect();
    let node_cap = max_nodes.unwrap_or(MAX_EP_NODES).min(MAX_EP_NODES);
    sizes.extend((2..=node_cap).filter_map(|n| n.checked_mul(gpus_per_node)));
    let tps = tp_candidates(attention_heads, kv_heads, gpus_per_node);
    let mut out = Vec::new();
    for ranks in sizes {
        if ranks > expert_slots {
            continue;
        }
        for &tp in &tps {
            if ranks.is_multiple_of(tp) && ranks / tp >= 2 {
                if let Ok(l) = place_ep(tp, ranks / tp, gpus_per_node) {
                    out.push(l);
                }
            }
        }
    }
    out.sort_by_key(|l| (l.gpus(), l.nodes, l.tensor_parallel));
    out
}

/// Automatic layouts in preference order (fewest accelerators, then fewest nodes,
/// then least PP): one node with each valid TP, then PP across nodes with the
/// largest TP that fits a node. Where an NVLink domain spans nodes (`nvlink_domain`
/// accelerators, e.g. GB200 NVL72), TP may also span whole nodes inside it: at equal
/// size that beats PP, which idles stages while others work.
pub fn auto_layouts(
    attention_heads: u32,
    kv_heads: Option<u32>,
    layers: u32,
    gpus_per_node: u32,
    max_nodes: Option<u32>,
    nvlink_domain: Option<u32>,
) -> Vec<Layout> {
    let tps = tp_candidates(attention_heads, kv_heads, gpus_per_node);
    let mut out: Vec<Layout> = tps
        .iter()
        .filter_map(|&tp| place(tp, 1, gpus_per_node).ok())
        .collect();
    if let Some(domain) = nvlink_domain.filter(|d| *d > gpus_per_node) {
        let wide = tp_candidates(attention_heads, kv_heads, domain);
        out.extend(
            wide.iter()
                .filter(|&&tp| tp > gpus_per_node && tp.is_multiple_of(gpus_per_node))
                .filter_map(|&tp| place(tp, 1, gpus_per_node).ok()),
        );
    }
    if let Some(&full) = tps.last() {
        let pp_cap = layers.clamp(1, MAX_PIPELINE);
        for pp in 2..=pp_cap {
            if let Ok(layout) = place(full, pp, gpus_per_node) {
                if max_nodes.is_some_and(|m| layout.nodes > m) {
                    break;
                }
                out.push(layout);
            }
        }
    }
    out.retain(|l| max_nodes.is_none_or(|m| l.nodes <= m));
    out.sort_by_key(|l| (l.gpus(), l.nodes, l.pipeline_parallel));
    out
}
