//! `deepseek-operator plan` end to end: exit codes, one-line errors, JSON shape.

use std::process::{Command, Output};

fn plan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepseek-operator"))
        .arg("plan")
        .args(args)
        .output()
        .expect("run deepseek-operator")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let o = plan(&all);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("one JSON object")
}

fn fails(args: &[&str], needle: &str) {
    let o = plan(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn r1_fp8_on_h200_is_one_node_of_eight() {
    let v = json(&[
        "--model",
        "deepseek-r1",
        "--quantization",
        "fp8",
        "--accelerator",
        "h200",
    ]);
    assert_eq!(v["model"], "deepseek-r1");
    assert_eq!(v["quantization"], "fp8");
    assert_eq!(v["accelerator"], "h200");
    assert_eq!(v["engine"], "vllm");
    assert_eq!(v["gpusPerReplica"], 8);
    assert_eq!(v["nodesPerReplica"], 1);
    assert_eq!(v["tensorParallel"], 8);
    assert_eq!(v["pipelineParallel"], 1);
    assert!(v["maxConcurrency"].as_u64().is_some_and(|c| c >= 1));
    for key in [
        "weightsGiB",
        "kvCacheGiB",
        "overheadGiB",
        "perGpuGiB",
        "usablePerGpuGiB",
    ] {
        assert!(v["memory"][key].as_f64().is_some(), "memory.{key} in {v}");
    }
    assert!(v["memory"]["perGpuGiB"].as_f64() <= v["memory"]["usablePerGpuGiB"].as_f64());
}

#[test]
fn r1_fp8_on_h100_needs_two_nodes() {
    let v = json(&[
        "--model",
        "deepseek-r1",
        "--quantization",
        "fp8",
        "--accelerator",
        "h100-80gb",
    ]);
    assert_eq!(v["gpusPerReplica"], 16);
    assert_eq!(v["nodesPerReplica"], 2);
    assert_eq!(v["layout"], "TP8xPP2");
}

#[test]
fn table_output_and_rule_of_thumb() {
    let o = plan(&[
        "--model",
        "deepseek-r1-distill-qwen-1.5b",
        "--accelerator",
        "rtx-3060-12gb",
        "--rule-of-thumb",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("TP1 x PP1"), "{out}");
    assert!(
        out.contains("quantization defaulted to the model's native bf16"),
        "{out}"
    );
    assert!(out.contains("rule of thumb"), "{out}");
    let v = json(&[
        "--model",
        "deepseek-r1",
        "--accelerator",
        "h200",
        "--rule-of-thumb",
    ]);
    assert!(
        v["ruleOfThumbGB"]
            .as_f64()
            .is_some_and(|gb| (gb - 771.65).abs() < 0.1),
        "{v}"
    );
}

#[test]
fn lists_and_seed_comparison() {
    let o = plan(&["--list-models"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("deepseek-r1-distill-llama-70b"));
    let o = plan(&["--list-accelerators"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("huawei.com/Ascend910"));
    let o = plan(&["--list-models", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json list");
    let builtin = deepseek_planner::Catalog::builtin().models().len();
    assert_eq!(v.as_array().map(Vec::len), Some(builtin));
    let o = plan(&["--compare-seed", "--accelerator", "h100-80gb"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for size in ["1.5B", "7B", "32B", "67B", "671B"] {
        assert!(out.contains(size), "{out}");
    }
    assert!(out.contains("1543"), "{out}");
}

#[test]
fn cpu_needs_node_memory() {
    let v = json(&[
        "--model",
        "deepseek-r1",
        "--quantization",
        "gguf-iq1_s",
        "--accelerator",
        "cpu",
        "--memory-gib",
        "192",
    ]);
    assert_eq!(v["engine"], "llamacpp");
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--quantization",
            "gguf-iq1_s",
            "--accelerator",
            "cpu",
        ],
        "memory",
    );
}

#[test]
fn bad_input_exits_2_with_one_line() {
    fails(
        &["--model", "nope", "--accelerator", "h200"],
        "unknown model 'nope'",
    );
    fails(
        &["--model", "deepseek-r1", "--accelerator", "tpu"],
        "unknown accelerator 'tpu'",
    );
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--quantization",
            "int3",
        ],
        "unknown quantization",
    );
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--engine",
            "tgi",
        ],
        "unknown engine",
    );
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--output",
            "xml",
        ],
        "unknown output",
    );
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--quantization",
            "fp8",
            "--accelerator",
            "ascend-910b",
        ],
        "int8",
    );
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--quantization",
            "fp8",
            "--accelerator",
            "h100-80gb",
            "--max-nodes",
            "1",
        ],
        "16 x h100-80gb",
    );
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--tensor-parallel",
            "3",
        ],
        "attention heads",
    );
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--gpu-memory-utilization",
            "NaN",
        ],
        "utilization",
    );
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--gpus-per-node",
            "0",
        ],
        "gpus per node",
    );
    fails(&["--accelerator", "h200"], "--model");
    fails(&["--model", "deepseek-r1"], "--accelerator");
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--catalog-models",
            "/nonexistent.yaml",
        ],
        "cannot read",
    );
}

#[test]
fn catalog_files_extend_the_builtin_ones() {
    let dir = std::env::temp_dir().join(format!("cli-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let accs = dir.join("accs.yaml");
    std::fs::write(
        &accs,
        "accelerators:\n  - {id: big-gpu, vendor: nvidia, display_name: Big, memory_mib: 1048576, fp8: true, typical_per_node: 4, resource: nvidia.com/gpu}\n",
    )
    .expect("write");
    let path = accs.to_string_lossy().into_owned();
    let v = json(&[
        "--model",
        "deepseek-r1",
        "--accelerator",
        "big-gpu",
        "--catalog-accelerators",
        &path,
    ]);
    assert_eq!(v["gpusPerReplica"], 1);
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "accelerators: [ {id: \n").expect("write");
    let bad_path = bad.to_string_lossy().into_owned();
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--catalog-accelerators",
            &bad_path,
        ],
        "cannot parse",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn throughput_objective_shows_dp_attention_and_ep_in_json() {
    let v = json(&[
        "--model",
        "deepseek-r1",
        "--accelerator",
        "h200",
        "--concurrency",
        "1024",
        "--layout-objective",
        "throughput",
    ]);
    assert_eq!(v["objective"], "throughput");
    assert_eq!(v["parallelism"], "dp-ep", "{v}");
    let dp = v["dataParallel"].as_u64().unwrap_or(0);
    let ep = v["expertParallel"].as_u64().unwrap_or(0);
    assert!(dp >= 8 && ep == dp, "{v}");
    let per_rank = v["expertsPerRank"].as_u64().unwrap_or(0);
    assert!(per_rank * ep >= 256, "{v}");
    assert!(v["layoutReason"]
        .as_str()
        .is_some_and(|r| r.starts_with("throughput:")));
    for key in [
        "denseWeightsGiB",
        "expertWeightsGiB",
        "kvCacheGiB",
        "overheadGiB",
    ] {
        assert!(v["memory"][key].as_f64().is_some(), "memory.{key} in {v}");
    }
    assert!(v["memory"]["perGpuGiB"].as_f64() <= v["memory"]["usablePerGpuGiB"].as_f64());
}

#[test]
fn cheapest_objective_is_the_default_and_says_why() {
    let v = json(&["--model", "deepseek-r1", "--accelerator", "h200"]);
    assert_eq!(v["objective"], "cheapest");
    assert_eq!(v["layout"], "TP8xPP1");
    assert_eq!(v["parallelism"], "tp-pp");
    assert_eq!(v["dataParallel"], 1);
    assert!(v["layoutReason"]
        .as_str()
        .is_some_and(|r| r.starts_with("cheapest:")));
}

#[test]
fn data_parallel_override_prints_ep_in_the_table() {
    let o = plan(&[
        "--model",
        "deepseek-r1",
        "--accelerator",
        "h200",
        "--data-parallel",
        "16",
        "--redundant-experts",
        "16",
        "--speculative-mtp",
        "--kv-cache-dtype",
        "fp8",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("DP16 x EP16"), "{out}");
    assert!(out.contains("17 per rank x EP16 (16 redundant)"), "{out}");
    assert!(out.contains("fp8; MTP layer loaded"), "{out}");
    assert!(out.contains("layout reason  requested: DP16xEP16"), "{out}");
}

#[test]
fn bad_parallel_flags_fail_in_one_line() {
    let base = ["--model", "deepseek-r1", "--accelerator", "h200"];
    let with = |extra: &[&'static str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    fails(
        &with(&["--layout-objective", "fastest"]),
        "unknown layout objective",
    );
    fails(
        &with(&["--kv-cache-dtype", "int4"]),
        "unknown KV cache dtype",
    );
    fails(
        &[
            "--model",
            "deepseek-r1-distill-llama-8b",
            "--accelerator",
            "h100-80gb",
            "--data-parallel",
            "4",
        ],
        "needs an MoE model",
    );
}

#[test]
fn disaggregated_mode_plans_both_roles_with_their_memory() {
    let v = json(&[
        "--model",
        "deepseek-r1",
        "--accelerator",
        "h200-141gb",
        "--mode",
        "disaggregated",
        "--concurrency",
        "64",
    ]);
    assert_eq!(v["mode"], "disaggregated");
    for role in ["prefill", "decode"] {
        let p = &v[role];
        assert_eq!(p["accelerator"], "h200", "{role}");
        // The operator's default for a role model that names no objective.
        assert_eq!(p["objective"], "cheapest", "{role}");
        let m = &p["memory"];
        let parts = [
            "denseWeightsGiB",
            "expertWeightsGiB",
            "kvCacheGiB",
            "overheadGiB",
        ];
        let sum: f64 = parts.iter().map(|k| m[*k].as_f64().expect(k)).sum();
        let per_gpu = m["perGpuGiB"].as_f64().expect("perGpuGiB");
        assert!((sum - per_gpu).abs() < 0.01, "{role}: {sum} vs {per_gpu}");
        assert!(
            per_gpu <= m["usablePerGpuGiB"].as_f64().expect("usable"),
            "{role}"
        );
    }
    // Decode holds every running sequence; prefill only the prompts in flight.
    assert_eq!(v["decode"]["concurrency"], 64);
    assert_eq!(v["prefill"]["concurrency"], 16);
    assert!(v["reason"].as_str().is_some_and(|r| r.contains("prefill")));
    let v = json(&[
        "--model",
        "deepseek-r1",
        "--accelerator",
        "h200",
        "--mode",
        "disaggregated",
        "--concurrency",
        "64",
        "--layout-objective",
        "throughput",
        "--decode-data-parallel",
        "16",
    ]);
    assert_eq!(v["prefill"]["objective"], "throughput");
    assert_eq!(v["decode"]["layout"], "DP16xEP16", "{v}");
}

#[test]
fn disaggregated_decode_may_run_on_another_accelerator() {
    let v = json(&[
        "--model",
        "deepseek-r1",
        "--accelerator",
        "h200",
        "--decode-accelerator",
        "h20",
        "--mode",
        "disaggregated",
    ]);
    assert_eq!(v["prefill"]["accelerator"], "h200");
    assert_eq!(v["decode"]["accelerator"], "h20");
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--mode",
            "split",
        ],
        "unknown mode 'split'",
    );
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--decode-accelerator",
            "h20",
        ],
        "need --mode disaggregated",
    );
    fails(
        &[
            "--model",
            "deepseek-r1",
            "--accelerator",
            "h200",
            "--mode",
            "disaggregated",
            "--decode-accelerator",
            "l4",
            "--max-nodes",
            "1",
        ],
        "decode role:",
    );
}
