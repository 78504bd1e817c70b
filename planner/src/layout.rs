//! Parallel layouts: which tensor x pipeline splits are valid for a model and how
//! they land on nodes. Fill a node with TP before crossing nodes with PP.

/// One TP x PP layout placed on nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    pub nodes: u32,
    /// Accelerators used on each node.
    pub gpus_per_node: u32,
}

impl Layout {
    pub fn gpus(&self) -> u64 {
        u64::from(self.tensor_parallel) * u64::from(self.pipeline_parallel)
    }
}

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
        nodes,
        gpus_per_node: per_node,
    })
}

/// Automatic layouts in preference order (fewest accelerators, then fewest nodes,
/// then least PP): one node with each valid TP, then PP across nodes with the
/// largest TP that fits a node.
pub fn auto_layouts(
    attention_heads: u32,
    kv_heads: Option<u32>,
    layers: u32,
    gpus_per_node: u32,
    max_nodes: Option<u32>,
) -> Vec<Layout> {
    let tps = tp_candidates(attention_heads, kv_heads, gpus_per_node);
    let mut out: Vec<Layout> = tps
        .iter()
        .filter_map(|&tp| place(tp, 1, gpus_per_node).ok())
        .collect();
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
