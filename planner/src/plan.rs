//! `plan()`: the one entry point the CLI and the controller call. It resolves the
//! engine, applies defaults, searches layouts and explains what it did or why
//! nothing fits. Pure: no I/O, no catalog lookups.

use deepseek_engine::Engine;
use serde::Serialize;

use crate::layout::{self, Layout};
use crate::memory::{self, MemoryBreakdown, MemoryInput};
use crate::{support, Accelerator, Attention, ModelArch, Quantization, Vendor};

/// Context length planned for when the request is silent (capped at the model's
/// max position embeddings).
pub const DEFAULT_MAX_MODEL_LEN: u32 = 8192;
/// Concurrent full-length sequences planned for when the request is silent.
pub const DEFAULT_CONCURRENCY: u32 = 1;
/// vLLM's default share of device memory.
pub const DEFAULT_GPU_MEMORY_UTILIZATION: f64 = 0.9;

/// What to size. Defaults when a field is `None`: engine by vendor and
/// quantization; layout chosen by the planner (fewest accelerators, then fewest
/// nodes); `max_model_len` 8192 capped at the model's max position embeddings;
/// `concurrency` 1; `gpu_memory_utilization` 0.9; memory from the catalog
/// (`memory_override_gib` is required for `cpu`: the node's RAM).
#[derive(Clone, Debug)]
pub struct PlanRequest<'a> {
    pub model: &'a ModelArch,
    pub quantization: Quantization,
    pub accelerator: &'a Accelerator,
    /// Accelerators per node in the target pool.
    pub gpus_per_node: u32,
    /// Nodes available per replica; `None` = unlimited.
    pub max_nodes: Option<u32>,
    /// `None` = auto (by vendor and quantization).
    pub engine: Option<Engine>,
    pub tensor_parallel: Option<u32>,
    pub pipeline_parallel: Option<u32>,
    pub max_model_len: Option<u32>,
    pub concurrency: Option<u32>,
    pub gpu_memory_utilization: Option<f64>,
    /// Device memory in GiB instead of the catalog's, e.g. a CPU node's RAM.
    pub memory_override_gib: Option<f64>,
}

impl<'a> PlanRequest<'a> {
    /// A request with every option left to the planner, `gpus_per_node` from the
    /// accelerator's typical node.
    pub fn new(
        model: &'a ModelArch,
        quantization: Quantization,
        accelerator: &'a Accelerator,
    ) -> Self {
        PlanRequest {
            model,
            quantization,
            accelerator,
            gpus_per_node: accelerator.typical_per_node,
            max_nodes: None,
            engine: None,
            tensor_parallel: None,
            pipeline_parallel: None,
            max_model_len: None,
            concurrency: None,
            gpu_memory_utilization: None,
            memory_override_gib: None,
        }
    }
}

/// A feasible deployment of one replica.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub model: String,
    pub hf_repo: String,
    pub quantization: Quantization,
    /// Accelerator catalog id.
    pub accelerator: String,
    pub vendor: Vendor,
    pub engine: Engine,
    pub gpus_per_replica: u32,
    pub nodes_per_replica: u32,
    /// Accelerators used on each node of the replica.
    pub gpus_per_node: u32,
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    /// `TP8xPP2` style summary.
    pub layout: String,
    pub max_model_len: u32,
    pub concurrency: u32,
    /// Sequences of `max_model_len` tokens the leftover KV memory holds.
    pub max_concurrency: u32,
    pub gpu_memory_utilization: f64,
    pub memory: MemoryBreakdown,
    /// Defaults applied and caveats, one sentence each.
    pub notes: Vec<String>,
}

/// What a deployment that does not fit would need.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Requirement {
    pub gpus: u32,
    pub nodes: u32,
    pub gpus_per_node: u32,
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    /// Device memory each accelerator needs in that layout (before utilization).
    #[serde(rename = "minMemoryPerGpuGiB")]
    pub min_memory_per_gpu_gib: f64,
}

/// Why no plan was produced. `Display` is one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("unknown model '{id}' (see plan --list-models)")]
    UnknownModel { id: String },
    #[error("unknown accelerator '{id}' (see plan --list-accelerators)")]
    UnknownAccelerator { id: String },
    #[error("unsupported: {reason}; {suggestion}")]
    Unsupported { reason: String, suggestion: String },
    #[error("does not fit: {message}")]
    DoesNotFit {
        needed: Requirement,
        message: String,
    },
    #[error("invalid override: {0}")]
    InvalidOverride(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Validated request values, defaults applied.
struct Resolved<'a> {
    req: &'a PlanRequest<'a>,
    engine: Engine,
    gpus_per_node: u32,
    max_model_len: u32,
    concurrency: u32,
    util: f64,
    device_gib: f64,
}

impl Resolved<'_> {
    fn input(&self, layout: &Layout) -> MemoryInput<'_> {
        MemoryInput {
            model: self.req.model,
            quantization: self.req.quantization,
            engine: self.engine,
            tensor_parallel: layout.tensor_parallel,
            pipeline_parallel: layout.pipeline_parallel,
            max_model_len: self.max_model_len,
            concurrency: self.concurrency,
            usable_per_gpu_gib: self.device_gib * self.util,
        }
    }

    fn memory(&self, layout: &Layout) -> MemoryBreakdown {
        memory::breakdown(&self.input(layout))
    }

    fn requirement(&self, layout: &Layout) -> Requirement {
        let mem = self.memory(layout);
        Requirement {
            gpus: u32::try_from(layout.gpus()).unwrap_or(u32::MAX),
            nodes: layout.nodes,
            gpus_per_node: layout.gpus_per_node,
            tensor_parallel: layout.tensor_parallel,
            pipeline_parallel: layout.pipeline_parallel,
            min_memory_per_gpu_gib: mem.per_gpu_gib / self.util,
        }
    }

    fn kv_heads(&self) -> Option<u32> {
        match self.req.model.attention {
            Attention::Gqa => Some(self.req.model.kv_heads),
            Attention::Mla => None,
        }
    }

    fn auto(&self, max_nodes: Option<u32>) -> Vec<Layout> {
        let m = self.req.model;
        layout::auto_layouts(
            m.attention_heads,
            self.kv_heads(),
            m.layers,
            self.gpus_per_node,
            max_nodes,
        )
    }
}

/// Sizes one replica of `req.model` on `req.accelerator`.
///
/// Memory per accelerator = weights (at the quantization, all experts, split over
/// TP x PP) + KV cache (`max_model_len x concurrency` tokens) + runtime overhead,
/// which must stay within device memory x `gpu_memory_utilization`. Among valid
/// layouts (TP divides the heads; a node is filled before PP crosses nodes) the one
/// with the fewest accelerators, then fewest nodes, wins.
pub fn plan(req: &PlanRequest) -> Result<Plan, PlanError> {
    let mut notes = Vec::new();
    let r = resolve(req, &mut notes)?;
    let (layout, mem) = choose_layout(&r)?;
    let max_concurrency = memory::max_concurrency(&r.input(&layout));
    let model = req.model;
    if model.attention == Attention::Mla && layout.tensor_parallel > 1 {
        notes.push(format!(
            "MLA KV cache is replicated on all {} TP ranks (only PP splits it)",
            layout.tensor_parallel
        ));
    }
    if let Some(moe) = &model.moe {
        notes.push(format!(
            "all {} routed experts are resident; {} active per token",
            moe.routed_experts, moe.experts_per_token
        ));
    }
    Ok(Plan {
        model: model.id.clone(),
        hf_repo: model.hf_repo.clone(),
        quantization: req.quantization,
        accelerator: req.accelerator.id.clone(),
        vendor: req.accelerator.vendor,
        engine: r.engine,
        gpus_per_replica: u32::try_from(layout.gpus()).unwrap_or(u32::MAX),
        nodes_per_replica: layout.nodes,
        gpus_per_node: layout.gpus_per_node,
        tensor_parallel: layout.tensor_parallel,
        pipeline_parallel: layout.pipeline_parallel,
        layout: format!(
            "TP{}xPP{}",
            layout.tensor_parallel, layout.pipeline_parallel
        ),
        max_model_len: r.max_model_len,
        concurrency: r.concurrency,
        max_concurrency,
        gpu_memory_utilization: r.util,
        memory: mem,
        notes,
    })
}

fn resolve<'a>(
    req: &'a PlanRequest<'a>,
    notes: &mut Vec<String>,
) -> Result<Resolved<'a>, PlanError> {
    let model = req.model;
    let acc = req.accelerator;
    model.validate().map_err(PlanError::InvalidInput)?;
    acc.validate().map_err(PlanError::InvalidInput)?;
    if req.gpus_per_node == 0 {
        return Err(PlanError::InvalidInput(
            "gpus per node must be at least 1".into(),
        ));
    }
    if req.max_nodes == Some(0) {
        return Err(PlanError::InvalidInput(
            "max nodes must be at least 1".into(),
        ));
    }
    let engine = support::resolve_engine(acc, req.quantization, req.engine, notes)?;

    let util = match req.gpu_memory_utilization {
        None => {
            notes.push(format!(
                "gpuMemoryUtilization defaulted to {DEFAULT_GPU_MEMORY_UTILIZATION}"
            ));
            DEFAULT_GPU_MEMORY_UTILIZATION
        }
        Some(u) if u.is_finite() && u > 0.0 && u <= 1.0 => u,
        Some(u) => {
            return Err(PlanError::InvalidOverride(format!(
                "gpu memory utilization {u} must be in (0, 1]"
            )))
        }
    };

    let max_pos = model.max_position_embeddings;
    let max_model_len = match req.max_model_len {
        None => {
            let len = DEFAULT_MAX_MODEL_LEN.min(max_pos);
            if len < DEFAULT_MAX_MODEL_LEN {
                notes.push(format!(
                    "maxModelLen defaulted to {len} (the model's max position embeddings)"
                ));
            } else {
                notes.push(format!("maxModelLen defaulted to {len}"));
            }
            len
        }
        Some(0) => {
            return Err(PlanError::InvalidOverride(
                "max model len must be at least 1".into(),
            ))
        }
        Some(len) if len > max_pos => {
            return Err(PlanError::InvalidOverride(format!(
                "max model len {len} exceeds {}'s max position embeddings {max_pos}",
                model.id
            )))
        }
        Some(len) => len,
    };

    let concurrency = match req.concurrency {
        None => {
            notes.push(format!(
                "concurrency defaulted to {DEFAULT_CONCURRENCY} sequence of maxModelLen tokens"
            ));
            DEFAULT_CONCURRENCY
        }
        Some(0) => {
            return Err(PlanError::InvalidOverride(
                "concurrency must be at least 1".into(),
            ))
        }
        Some(c) => c,
    };

    let device_gib = match req.memory_override_gib {
        Some(m) if m.is_finite() && m > 0.0 => m,
        Some(m) => {
            return Err(PlanError::InvalidInput(format!(
                "memory override {m} GiB must be a positive number"
            )))
        }
        None if acc.vendor == Vendor::Cpu || acc.memory_mib == 0 => {
            return Err(PlanError::InvalidInput(format!(
                "accelerator {} needs the node's memory in GiB (memory override)",
                acc.id
            )))
        }
        None => acc.memory_gib(),
    };

    let mut gpus_per_node = req.gpus_per_node;
    if acc.vendor == Vendor::Cpu {
        if gpus_per_node != 1
            || req.tensor_parallel.unwrap_or(1) != 1
            || req.pipeline_parallel.unwrap_or(1) != 1
        {
            if req.tensor_parallel.unwrap_or(1) != 1 || req.pipeline_parallel.unwrap_or(1) != 1 {
                return Err(PlanError::InvalidOverride(
                    "cpu plans run one llama.cpp server per replica: tensor and pipeline parallel must be 1".into(),
                ));
            }
            notes.push("cpu: one llama.cpp server per node, gpusPerNode taken as 1".into());
        }
        gpus_per_node = 1;
    }

    Ok(Resolved {
        req,
        engine,
        gpus_per_node,
        max_model_len,
        concurrency,
        util,
        device_gib,
    })
}

fn model_desc(r: &Resolved) -> String {
    format!("{} at {}", r.req.model.id, r.req.quantization)
}

fn choose_layout(r: &Resolved) -> Result<(Layout, MemoryBreakdown), PlanError> {
    let req = r.req;
    let model = req.model;
    let gpn = r.gpus_per_node;
    let check = |tp: u32| {
        layout::check_tp(model.attention_heads, r.kv_heads(), tp)
            .map_err(PlanError::InvalidOverride)
    };
    let within_nodes = |l: &Layout| req.max_nodes.is_none_or(|m| l.nodes <= m);
    let pp_cap = model.layers.clamp(1, layout::MAX_PIPELINE);

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

    for l in &candidates {
        let mem = r.memory(l);
        if mem.fits() {
            return Ok((*l, mem));
        }
    }
    Err(does_not_fit(r, &candidates))
}

fn does_not_fit(r: &Resolved, tried: &[Layout]) -> PlanError {
    let req = r.req;
    let acc = &req.accelerator.id;
    let desc = model_desc(r);
    let usable = r.device_gib * r.util;
    let overrides = req.tensor_parallel.is_some() || req.pipeline_parallel.is_some();

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
            "{desc} needs {per_gpu:.1} GiB per accelerator even as TP{}xPP{} ({} x {acc} on {} node(s)), but {acc} has {usable:.1} GiB usable; use accelerators with >= {:.0} GiB, a smaller quantization, or a shorter maxModelLen/concurrency",
            needed.tensor_parallel,
            needed.pipeline_parallel,
            needed.gpus,
            needed.nodes,
            needed.min_memory_per_gpu_gib.ceil(),
        )
    };
    PlanError::DoesNotFit { needed, message }
}
