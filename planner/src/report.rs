//! Text renderings of plans and catalogs for the CLI: aligned tables for people,
//! JSON for scripts. Kept here so the CLI stays a thin argument parser.

use std::fmt::Write as _;

use crate::{
    memory, rule_of_thumb, Accelerator, Catalog, ModelArch, Plan, PlanError, SeedComparison,
};

/// Left-aligns columns; the first row is the header.
pub fn columns(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; width];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One plan as a labelled block.
/// `TP8 x PP2 = ...` for TP x PP; `DP16 x EP16 (DP attention, TP1 per group) = ...`
/// for expert-parallel layouts.
fn layout_line(plan: &Plan) -> String {
    let head = if plan.expert_parallel > 1 {
        format!(
            "DP{} x EP{} (DP attention, TP{} per group, {})",
            plan.data_parallel, plan.expert_parallel, plan.tensor_parallel, plan.parallelism
        )
    } else {
        format!("TP{} x PP{}", plan.tensor_parallel, plan.pipeline_parallel)
    };
    format!(
        "{head} = {} accelerator(s) on {} node(s), {} per node",
        plan.gpus_per_replica, plan.nodes_per_replica, plan.gpus_per_node
    )
}

pub fn plan_table(plan: &Plan, acc: &Accelerator) -> String {
    let m = &plan.memory;
    let rows = vec![
        vec!["model".into(), format!("{} ({})", plan.model, plan.hf_repo)],
        vec!["quantization".into(), plan.quantization.to_string()],
        vec![
            "accelerator".into(),
            format!(
                "{} ({}, {:.1} GiB)",
                plan.accelerator,
                acc.display_name,
                m.usable_per_gpu_gib / plan.gpu_memory_utilization
            ),
        ],
        vec!["engine".into(), plan.engine.to_string()],
        vec!["layout".into(), layout_line(plan)],
        vec![
            "layout reason".into(),
            format!("{} (objective {})", plan.layout_reason, plan.objective),
        ],
        vec!["max model len".into(), plan.max_model_len.to_string()],
        vec![
            "concurrency".into(),
            format!(
                "{} (KV room for {} sequences of {} tokens)",
                plan.concurrency, plan.max_concurrency, plan.max_model_len
            ),
        ],
        vec![
            "memory/accel".into(),
            format!(
                "weights {:.1} (dense {:.1} + experts {:.1}) + KV {:.2} + overhead {:.1} = {:.1} GiB of {:.1} GiB usable ({} x {:.1} GiB)",
                m.weights_gib,
                m.dense_weights_gib,
                m.expert_weights_gib,
                m.kv_cache_gib,
                m.overhead_gib,
                m.per_gpu_gib,
                m.usable_per_gpu_gib,
                plan.gpu_memory_utilization,
                m.usable_per_gpu_gib / plan.gpu_memory_utilization
            ),
        ],
        vec![
            "model totals".into(),
            format!(
                "weights {:.1} GiB; KV {} bytes/token",
                m.total_weights_gib, m.kv_bytes_per_token
            ),
        ],
    ];
    let mut rows = rows;
    if let Some(per) = plan.experts_per_rank {
        rows.push(vec![
            "experts".into(),
            format!(
                "{per} per rank x EP{} ({} redundant)",
                plan.expert_parallel, plan.redundant_experts
            ),
        ]);
    }
    rows.push(vec![
        "kv cache".into(),
        format!(
            "{}{}",
            plan.kv_cache_dtype.as_str(),
            if plan.speculative_mtp {
                "; MTP layer loaded for speculative decoding"
            } else {
                ""
            }
        ),
    ]);
    if let Some(t) = plan.est_decode_tokens_per_gpu_s {
        rows.push(vec![
            "est. decode".into(),
            format!(
                "~{t:.0} tokens/s per accelerator at concurrency {} (memory-bandwidth bound estimate)",
                plan.concurrency
            ),
        ]);
    }
    let mut out = columns(&rows);
    if !plan.notes.is_empty() {
        out.push_str("notes:\n");
        for n in &plan.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}

/// One plan as pretty JSON (camelCase fields), newline-terminated.
pub fn plan_json(plan: &Plan) -> Result<String, String> {
    serde_json::to_string_pretty(plan)
        .map(|s| s + "\n")
        .map_err(|e| format!("cannot render plan as JSON: {e}"))
}

/// The seed's rule of thumb for a model at a quantization, one line.
pub fn rule_of_thumb_line(model: &ModelArch, quant: crate::Quantization) -> String {
    let bits = quant.nominal_bits();
    format!(
        "rule of thumb (seed): {:.1}B params x {} bits / 8 x {} = {:.1} GB; planner weights alone: {:.1} GB\n",
        model.total_params_b,
        bits,
        rule_of_thumb::RULE_OF_THUMB_FACTOR,
        crate::rule_of_thumb(model.total_params_b, bits),
        memory::weight_bytes(model, quant) / 1e9
    )
}

/// The model catalog as a table.
pub fn models_table(catalog: &Catalog) -> String {
    let mut rows = vec![vec![
        "ID".into(),
        "HF REPO".into(),
        "ATTN".into(),
        "PARAMS".into(),
        "ACTIVE".into(),
        "LAYERS".into(),
        "NATIVE".into(),
        "MAX POS".into(),
        "KV B/TOKEN".into(),
    ]];
    for m in catalog.models() {
        rows.push(vec![
            m.id.clone(),
            m.hf_repo.clone(),
            m.attention.as_str().into(),
            format!("{}B", m.total_params_b),
            format!("{}B", m.active_params_b),
            m.layers.to_string(),
            m.native_dtype.to_string(),
            m.max_position_embeddings.to_string(),
            (memory::kv_bytes_per_token(m) as u64).to_string(),
        ]);
    }
    columns(&rows)
}

/// The accelerator catalog as a table.
pub fn accelerators_table(catalog: &Catalog) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v}"));
    let mut rows = vec![vec![
        "ID".into(),
        "VENDOR".into(),
        "NAME".into(),
        "MEMORY".into(),
        "TB/S".into(),
        "BF16 TFLOPS".into(),
        "FP8".into(),
        "PER NODE".into(),
        "RESOURCE".into(),
    ]];
    for a in catalog.accelerators() {
        rows.push(vec![
            a.id.clone(),
            a.vendor.to_string(),
            a.display_name.clone(),
            if a.memory_mib == 0 {
                "node RAM".into()
            } else {
                format!("{:.1} GiB", a.memory_gib())
            },
            opt(a.bandwidth_tbps),
            opt(a.bf16_tflops),
            if a.fp8 { "yes".into() } else { "no".into() },
            a.typical_per_node.to_string(),
            a.resource.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    columns(&rows)
}

fn plan_cell(p: &Result<Plan, PlanError>) -> String {
    match p {
        Ok(p) => format!("{} x {} ({})", p.gpus_per_replica, p.accelerator, p.layout),
        Err(PlanError::DoesNotFit { needed, .. }) => {
            format!("no fit (needs {} on {} nodes)", needed.gpus, needed.nodes)
        }
        Err(PlanError::Unsupported { .. }) => "unsupported".into(),
        Err(_) => "n/a".into(),
    }
}

/// The seed's table next to the rule of thumb and our plans.
pub fn seed_table(rows: &[SeedComparison], acc: &Accelerator) -> String {
    let gb = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    let mut table = vec![vec![
        "SIZE".into(),
        "MODEL".into(),
        "SEED 16/4-BIT GB".into(),
        "RULE x1.15 GB".into(),
        "OUR WEIGHTS GB".into(),
        "OUR PLAN 16-BIT".into(),
        "OUR PLAN 4-BIT".into(),
        "SEED SETUP".into(),
    ]];
    for r in rows {
        table.push(vec![
            r.row.label.into(),
            r.row.model.into(),
            format!("{:.0} / {:.0}", r.row.seed_fp16_gb, r.row.seed_4bit_gb),
            format!("{:.1} / {:.1}", r.rule_fp16_gb, r.rule_4bit_gb),
            format!("{} / {}", gb(r.weights_16bit_gb), gb(r.weights_4bit_gb)),
            plan_cell(&r.plan_16bit),
            plan_cell(&r.plan_4bit),
            r.row.seed_setup.into(),
        ]);
    }
    let mut out = format!(
        "seed table vs planner on {} ({}); plans at maxModelLen 8192, concurrency 1\n",
        acc.id, acc.display_name
    );
    out.push_str(&columns(&table));
    out
}
