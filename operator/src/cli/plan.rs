//! `deepseek-operator plan`: the planner on the command line.
//!
//! Parses flags, loads the catalogs (embedded, optionally overridden from files),
//! calls `deepseek_planner::plan` and renders the result. Every failure comes back
//! as one line for `main` to print with exit code 2.

use clap::Args;
use deepseek_planner::{
    plan_disaggregated, report, Catalog, Engine, KvCacheDtype, LayoutObjective, ParallelOptions,
    Plan, PlanError, PlanRequest, Quantization, RoleOverrides,
};

#[derive(Args, Debug, Default)]
pub struct PlanArgs {
    /// Model catalog id, e.g. deepseek-r1 (see --list-models).
    #[arg(long)]
    pub model: Option<String>,
    /// Weight format: bf16, fp16, fp8, int8, int4-awq, int4-gptq, gguf-q8_0,
    /// gguf-q4_k_m, gguf-iq1_s, nvfp4, mxfp4, w4a8. Default: the model's native format.
    #[arg(long)]
    pub quantization: Option<String>,
    /// Accelerator catalog id, e.g. h100-80gb (see --list-accelerators).
    #[arg(long)]
    pub accelerator: Option<String>,
    /// Accelerators per node. Default: the accelerator's typical node.
    #[arg(long)]
    pub gpus_per_node: Option<u32>,
    /// Nodes available per replica. Default: unlimited.
    #[arg(long)]
    pub max_nodes: Option<u32>,
    /// vllm, sglang, vllm-ascend, llamacpp, sim or auto (default: by vendor).
    #[arg(long)]
    pub engine: Option<String>,
    #[arg(long)]
    pub tensor_parallel: Option<u32>,
    #[arg(long)]
    pub pipeline_parallel: Option<u32>,
    /// DP-attention groups; 2 or more plans DP attention with expert parallelism
    /// over all DP x TP ranks (--tensor-parallel is then the TP within a group).
    #[arg(long)]
    pub data_parallel: Option<u32>,
    /// Extra expert copies for load balancing on expert-parallel layouts. Default: 0.
    #[arg(long, default_value_t = 0)]
    pub redundant_experts: u32,
    /// Load the MTP layer for speculative decoding (DeepSeek V3 family).
    #[arg(long)]
    pub speculative_mtp: bool,
    /// KV cache element type: auto (16-bit) or fp8. Default: auto.
    #[arg(long, default_value = "auto")]
    pub kv_cache_dtype: String,
    /// How the layout is chosen: cheapest (fewest accelerators, TP x PP) or
    /// throughput (most decode tokens/s per accelerator at --concurrency, also
    /// trying DP attention x EP and hybrid layouts). Default: cheapest, for both roles
    /// of --mode disaggregated too (as the operator plans a manifest that names none).
    #[arg(long)]
    pub layout_objective: Option<String>,
    /// aggregated (one group type serves whole requests) or disaggregated (prefill and
    /// decode roles, each planned for its own load). Default: aggregated.
    #[arg(long, default_value = "aggregated")]
    pub mode: String,
    /// Disaggregated only: the decode role's accelerator. Default: --accelerator.
    #[arg(long)]
    pub decode_accelerator: Option<String>,
    /// Disaggregated only: prompts in flight on prefill. Default: concurrency / 4.
    #[arg(long)]
    pub prefill_concurrency: Option<u32>,
    /// Disaggregated only: the prefill role's TP (a manifest's prefill.parallelism.tensor).
    #[arg(long)]
    pub prefill_tensor_parallel: Option<u32>,
    /// Disaggregated only: the prefill role's DP-attention groups (prefill.parallelism.data).
    #[arg(long)]
    pub prefill_data_parallel: Option<u32>,
    /// Disaggregated only: the decode role's TP (decode.parallelism.tensor).
    #[arg(long)]
    pub decode_tensor_parallel: Option<u32>,
    /// Disaggregated only: the decode role's DP-attention groups (decode.parallelism.data).
    #[arg(long)]
    pub decode_data_parallel: Option<u32>,
    /// Context length to plan KV cache for. Default: 8192 (capped by the model).
    #[arg(long)]
    pub max_model_len: Option<u32>,
    /// Concurrent full-length sequences. Default: 1.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Share of device memory the engine takes. Default: 0.9.
    #[arg(long)]
    pub gpu_memory_utilization: Option<f64>,
    /// Device memory in GiB instead of the catalog's; required for cpu (node RAM).
    #[arg(long)]
    pub memory_gib: Option<f64>,
    /// YAML file of models replacing or extending the built-in catalog.
    #[arg(long)]
    pub catalog_models: Option<std::path::PathBuf>,
    /// YAML file of accelerators replacing or extending the built-in catalog.
    #[arg(long)]
    pub catalog_accelerators: Option<std::path::PathBuf>,
    /// table or json.
    #[arg(long, default_value = "table")]
    pub output: String,
    /// Also print the seed article's rule-of-thumb estimate.
    #[arg(long)]
    pub rule_of_thumb: bool,
    /// Print the seed article's table next to our plans on --accelerator.
    #[arg(long)]
    pub compare_seed: bool,
    /// List catalog models.
    #[arg(long)]
    pub list_models: bool,
    /// List catalog accelerators.
    #[arg(long)]
    pub list_accelerators: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

fn parse_output(s: &str) -> Result<Output, String> {
    match s.to_ascii_lowercase().as_str() {
        "table" => Ok(Output::Table),
        "json" => Ok(Output::Json),
        other => Err(format!("unknown output '{other}' (expected table or json)")),
    }
}

fn parse_engine(s: &str) -> Result<Option<Engine>, String> {
    Ok(Some(match s.to_ascii_lowercase().as_str() {
        "auto" => return Ok(None),
        "vllm" => Engine::Vllm,
        "sglang" => Engine::Sglang,
        "vllm-ascend" => Engine::VllmAscend,
        "llamacpp" | "llama.cpp" => Engine::Llamacpp,
        "sim" => Engine::Sim,
        other => {
            return Err(format!(
            "unknown engine '{other}' (expected auto, vllm, sglang, vllm-ascend, llamacpp or sim)"
        ))
        }
    }))
}

fn parse_kv_cache_dtype(s: &str) -> Result<KvCacheDtype, String> {
    match s.to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(KvCacheDtype::Auto),
        "fp8" => Ok(KvCacheDtype::Fp8),
        other => Err(format!(
            "unknown KV cache dtype '{other}' (expected auto or fp8)"
        )),
    }
}

fn read_file(path: &Option<std::path::PathBuf>) -> Result<Option<String>, String> {
    path.as_ref()
        .map(|p| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        })
        .transpose()
}

fn one_line(s: impl std::fmt::Display) -> String {
    s.to_string().replace('\n', " ")
}

fn load_catalog(args: &PlanArgs) -> Result<Catalog, String> {
    let models = read_file(&args.catalog_models)?;
    let accs = read_file(&args.catalog_accelerators)?;
    if models.is_none() && accs.is_none() {
        return Ok(Catalog::builtin().clone());
    }
    Catalog::from_yaml(models.as_deref(), accs.as_deref()).map_err(one_line)
}

fn render_list<T: serde::Serialize>(
    items: &[T],
    output: Output,
    table: String,
) -> Result<String, String> {
    match output {
        Output::Table => Ok(table),
        Output::Json => serde_json::to_string_pretty(items)
            .map(|s| s + "\n")
            .map_err(|e| format!("cannot render JSON: {e}")),
    }
}

/// Runs `plan` with parsed arguments; returns the text to print or one error line.
pub fn run(args: &PlanArgs) -> Result<String, String> {
    let output = parse_output(&args.output)?;
    let catalog = load_catalog(args)?;
    if args.list_models {
        return render_list(catalog.models(), output, report::models_table(&catalog));
    }
    if args.list_accelerators {
        return render_list(
            catalog.accelerators(),
            output,
            report::accelerators_table(&catalog),
        );
    }

    let acc_id = args
        .accelerator
        .as_deref()
        .ok_or("--accelerator is required (see --list-accelerators)")?;
    let acc = catalog.accelerator(acc_id).ok_or_else(|| {
        PlanError::UnknownAccelerator {
            id: acc_id.to_string(),
        }
        .to_string()
    })?;

    if args.compare_seed {
        let rows =
            deepseek_planner::compare_seed(&catalog, acc_id, args.gpus_per_node, args.memory_gib)
                .map_err(one_line)?;
        return Ok(report::seed_table(&rows, acc));
    }

    let model_id = args
        .model
        .as_deref()
        .ok_or("--model is required (see --list-models)")?;
    let model = catalog.model(model_id).ok_or_else(|| {
        PlanError::UnknownModel {
            id: model_id.to_string(),
        }
        .to_string()
    })?;
    let mut notes = Vec::new();
    let quantization = match args.quantization.as_deref() {
        Some(q) => q.parse::<Quantization>()?,
        None => {
            notes.push(format!(
                "quantization defaulted to the model's native {}",
                model.native_dtype
            ));
            model.native_dtype
        }
    };
    let engine = match args.engine.as_deref() {
        Some(e) => parse_engine(e)?,
        None => None,
    };
    let gpus_per_node = match args.gpus_per_node {
        Some(g) => g,
        None => {
            notes.push(format!(
                "gpusPerNode defaulted to {} (typical {} node)",
                acc.typical_per_node, acc.id
            ));
            acc.typical_per_node
        }
    };
    let parallel = ParallelOptions {
        // The operator's default too (validate.rs): one default for both.
        objective: match args.layout_objective.as_deref() {
            None | Some("") => LayoutObjective::default(),
            Some(o) => o.parse::<LayoutObjective>()?,
        },
        data_parallel: args.data_parallel,
        redundant_experts: args.redundant_experts,
        speculative_mtp: args.speculative_mtp,
        kv_cache_dtype: parse_kv_cache_dtype(&args.kv_cache_dtype)?,
    };
    let req = PlanRequest {
        model,
        quantization,
        accelerator: acc,
        gpus_per_node,
        max_nodes: args.max_nodes,
        engine,
        tensor_parallel: args.tensor_parallel,
        pipeline_parallel: args.pipeline_parallel,
        max_model_len: args.max_model_len,
        concurrency: args.concurrency,
        gpu_memory_utilization: args.gpu_memory_utilization,
        memory_override_gib: args.memory_gib,
        parallel,
    };
    match args.mode.to_ascii_lowercase().as_str() {
        "" | "aggregated" => {}
        "disaggregated" => return run_disaggregated(args, &catalog, &req, notes, output),
        other => {
            return Err(format!(
                "unknown mode '{other}' (expected aggregated or disaggregated)"
            ))
        }
    }
    let role_flags = [
        args.prefill_concurrency,
        args.prefill_tensor_parallel,
        args.prefill_data_parallel,
        args.decode_tensor_parallel,
        args.decode_data_parallel,
    ];
    if args.decode_accelerator.is_some() || role_flags.iter().any(Option::is_some) {
        return Err(
            "--decode-accelerator and the --prefill-*/--decode-* flags need --mode disaggregated"
                .into(),
        );
    }
    let mut plan: Plan = deepseek_planner::plan(&req).map_err(one_line)?;
    notes.append(&mut plan.notes);
    plan.notes = notes;

    match output {
        Output::Json => {
            let mut value =
                serde_json::to_value(&plan).map_err(|e| format!("cannot render JSON: {e}"))?;
            if args.rule_of_thumb {
                if let Some(obj) = value.as_object_mut() {
                    let gb = deepseek_planner::rule_of_thumb(
                        model.total_params_b,
                        quantization.nominal_bits(),
                    );
                    obj.insert("ruleOfThumbGB".into(), serde_json::json!(gb));
                }
            }
            serde_json::to_string_pretty(&value)
                .map(|s| s + "\n")
                .map_err(|e| format!("cannot render JSON: {e}"))
        }
        Output::Table => {
            let mut out = report::plan_table(&plan, acc);
            if args.rule_of_thumb {
                out.push_str(&report::rule_of_thumb_line(model, quantization));
            }
            Ok(out)
        }
    }
}

/// Both roles of a disaggregated deployment: JSON `{mode, prefill, decode, reason}` with
/// each role's full plan (layout and per-accelerator memory), or two tables.
fn run_disaggregated(
    args: &PlanArgs,
    catalog: &Catalog,
    req: &PlanRequest<'_>,
    notes: Vec<String>,
    output: Output,
) -> Result<String, String> {
    let decode_acc = match args.decode_accelerator.as_deref() {
        Some(id) => Some(
            catalog
                .accelerator(id)
                .ok_or_else(|| PlanError::UnknownAccelerator { id: id.to_string() }.to_string())?,
        ),
        None => None,
    };
    let prefill = RoleOverrides {
        concurrency: args.prefill_concurrency,
        tensor_parallel: args.prefill_tensor_parallel,
        data_parallel: args.prefill_data_parallel,
        ..RoleOverrides::default()
    };
    let decode = RoleOverrides {
        accelerator: decode_acc,
        tensor_parallel: args.decode_tensor_parallel,
        data_parallel: args.decode_data_parallel,
        ..RoleOverrides::default()
    };
    let mut both = plan_disaggregated(req, prefill, decode).map_err(one_line)?;
    for p in [&mut both.prefill, &mut both.decode] {
        let mut all = notes.clone();
        all.append(&mut p.notes);
        p.notes = all;
    }
    match output {
        Output::Json => {
            let value = serde_json::json!({
                "mode": "disaggregated",
                "prefill": both.prefill,
                "decode": both.decode,
                "reason": both.reason,
            });
            serde_json::to_string_pretty(&value)
                .map(|s| s + "\n")
                .map_err(|e| format!("cannot render JSON: {e}"))
        }
        Output::Table => {
            let mut out = String::new();
            for (role, p) in [("prefill", &both.prefill), ("decode", &both.decode)] {
                let acc = catalog
                    .accelerator(&p.accelerator)
                    .ok_or_else(|| format!("accelerator {} left the catalog", p.accelerator))?;
                out.push_str(&format!("== {role} ==\n"));
                out.push_str(&report::plan_table(p, acc));
                out.push('\n');
            }
            out.push_str(&format!("why            {}\n", both.reason));
            Ok(out)
        }
    }
}
