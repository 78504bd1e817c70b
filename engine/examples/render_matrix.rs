//! Prints, as JSON lines, every command the renderer can produce for the real engines:
//! each engine x vendor x quantization x TP/PP (or DP x EP) x single/multi-node x rank it
//! accepts.
//!
//! `engine/conformance/run` feeds these to the pinned engines' own argument parsers, so the
//! list comes from the renderer itself rather than from a restatement of its flags. A
//! combination `validate` refuses is skipped: the operator cannot emit it either.
//!
//! Run: `cargo run -q -p deepseek-engine --example render_matrix`; with `--pins` it prints
//! the pinned engine versions (`name=version` lines) instead, for the conformance script.

use deepseek_engine::images::pins;
use deepseek_engine::pd::router_command;
use deepseek_engine::{
    render, CommandLine, Disaggregation, Engine, ExpertLayout, KvTransfer, LaunchConfig, PdRole,
    Role, RouterConfig,
};
use serde_json::json;

const QUANTIZATIONS: [&str; 12] = [
    "bf16",
    "fp16",
    "fp8",
    "int8",
    "int4-awq",
    "int4-gptq",
    "gguf-q8_0",
    "gguf-q4_k_m",
    "gguf-iq1_s",
    "nvfp4",
    "mxfp4",
    "w4a8",
];

/// A leader address as the controller writes it (the leader pod's DNS name).
const LEADER: &str = "r1--a1b2c3-0-0.r1--ranks.team-a.svc";
/// What the launcher substitutes for `$(DSO_POD_IP)`.
const POD_IP: &str = "10.0.0.9";
/// The memfabric config store a controller names for the `ascend` transfer.
const ASCEND_STORE: &str = "10.0.0.7:8999";

/// (nodes, gpus per node, pipeline stages): one GPU, one node, the catalog's multi-node
/// shapes with and without pipeline parallelism.
const SHAPES: [(u32, u32, u32); 6] = [
    (1, 1, 1),
    (1, 8, 1),
    (1, 8, 2),
    (2, 8, 1),
    (2, 8, 2),
    (4, 8, 1),
];

fn main() {
    if std::env::args().any(|a| a == "--pins") {
        for (name, version) in [
            ("vllm", pins::VLLM),
            ("torch", pins::TORCH),
            ("vllm-rocm", pins::VLLM_ROCM),
            ("sglang", pins::SGLANG),
            ("vllm-ascend", pins::VLLM_ASCEND),
            ("vllm-ascend-vllm", pins::VLLM_ASCEND_VLLM),
            ("llama-cpp-python", pins::LLAMA_CPP_PYTHON),
            ("sglang-router", pins::SGLANG_ROUTER),
        ] {
            println!("{name}={version}");
        }
        return;
    }
    let engines = [
        Engine::Vllm,
        Engine::Sglang,
        Engine::VllmAscend,
        Engine::Llamacpp,
    ];
    for engine in engines {
        for vendor in ["nvidia", "amd", "ascend", "cpu"] {
            for quant in QUANTIZATIONS {
                for (nodes, gpn, pp) in shapes(engine) {
                    for (revision, remote_code) in [(None, false), (Some("4f7c9e1"), true)] {
                        for model in models(engine) {
                            let cfg = LaunchConfig {
                                revision: revision.map(String::from),
                                tensor_parallel: (nodes * gpn / pp).max(1),
                                pipeline_parallel: pp,
                                trust_remote_code: remote_code,
                                // What the operator sets for vLLM on CPU (the planned KV cache).
                                kv_cache_memory_bytes: (engine == Engine::Vllm && vendor == "cpu")
                                    .then_some(3 << 30),
                                ..LaunchConfig::new(
                                    engine,
                                    vendor,
                                    model,
                                    "deepseek-r1",
                                    quant,
                                    nodes,
                                    gpn,
                                )
                            };
                            for rank in 0..nodes {
                                emit(&cfg, rank);
                            }
                        }
                    }
                }
            }
        }
    }
    disaggregated(&engines);
    expert_parallel(&engines);
    routers();
}

/// The router's command for each engine it can front (others are refused by
/// `router_command` and so never emitted).
fn routers() {
    for engine in [
        Engine::Sglang,
        Engine::Vllm,
        Engine::VllmAscend,
        Engine::Sim,
    ] {
        let cfg = RouterConfig {
            namespace: "team-a".into(),
            prefill_selector: vec![
                "deepseek-operator.dev/model=r1".into(),
                "deepseek-operator.dev/pd-role=prefill".into(),
                "deepseek-operator.dev/role=leader".into(),
            ],
            decode_selector: vec![
                "deepseek-operator.dev/model=r1".into(),
                "deepseek-operator.dev/pd-role=decode".into(),
                "deepseek-operator.dev/role=leader".into(),
            ],
            engine,
        };
        let Ok(cmd) = router_command(&cfg) else {
            continue;
        };
        let line = json!({
            "engine": "router",
            "fronts": engine,
            "step": "serve",
            "program": cmd.program,
            "argv": cmd.args,
            "env": cmd.env,
            "shell": cmd.to_shell(),
        });
        println!("{line}");
    }
}

/// Each role of a prefill/decode-disaggregated deployment, with each KV transfer, on the
/// single- and multi-node shapes and the formats the vendors' disaggregated recipes use.
fn disaggregated(engines: &[Engine]) {
    for &engine in engines {
        for vendor in ["nvidia", "amd", "ascend", "cpu"] {
            for quant in ["fp8", "bf16", "int8", "w4a8"] {
                for (nodes, gpn, pp) in pd_shapes(vendor) {
                    for role in [PdRole::Prefill, PdRole::Decode] {
                        for transfer in [KvTransfer::Mooncake, KvTransfer::Nixl, KvTransfer::Ascend]
                        {
                            let cfg = LaunchConfig {
                                tensor_parallel: nodes * gpn / pp,
                                pipeline_parallel: pp,
                                disaggregation: Some(Disaggregation {
                                    role,
                                    transfer,
                                    ascend_store: (transfer == KvTransfer::Ascend)
                                        .then(|| ASCEND_STORE.to_string()),
                                }),
                                ..r1(engine, vendor, quant, nodes, gpn)
                            };
                            for rank in 0..nodes {
                                emit(&cfg, rank);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// (nodes, gpus per node, DP, attention TP) of the planner's dp-ep and hybrid layouts: wide
/// EP on one node and across 2 and 4, hybrid DPxTP groups inside a node, Ascend A3's 16
/// dies per node, and TP x EP without DP across two nodes.
const EXPERT_SHAPES: [(u32, u32, u32, u32); 7] = [
    (1, 8, 8, 1),
    (1, 8, 2, 4),
    (2, 8, 16, 1),
    (2, 8, 4, 4),
    (4, 8, 32, 1),
    (2, 16, 8, 4),
    (2, 8, 1, 16),
];

/// DP attention x EP layouts, each with and without redundant experts, MTP, an FP8 KV
/// cache and a prefill/decode role (four variants that together cover every flag).
fn expert_parallel(engines: &[Engine]) {
    let variants = [
        (0, false, None, None),
        (32, true, Some("fp8"), None),
        (32, false, None, Some(PdRole::Prefill)),
        (0, true, Some("fp8"), Some(PdRole::Decode)),
    ];
    for &engine in engines {
        for vendor in ["nvidia", "amd", "ascend", "cpu"] {
            for quant in ["fp8", "bf16", "int8", "w4a8"] {
                for (nodes, gpn, dp, tp) in EXPERT_SHAPES {
                    for (redundant, mtp, kv, role) in variants {
                        let cfg = LaunchConfig {
                            tensor_parallel: tp,
                            disaggregation: role.map(|role| {
                                let mut d = Disaggregation::new(role, engine, vendor);
                                if d.transfer == KvTransfer::Ascend {
                                    d.ascend_store = Some(ASCEND_STORE.to_string());
                                }
                                d
                            }),
                            expert: Some(ExpertLayout {
                                data_parallel: dp,
                                expert_parallel: dp * tp,
                                redundant_experts: redundant,
                            }),
                            speculative_mtp: mtp,
                            kv_cache_dtype: kv.map(String::from),
                            ..r1(engine, vendor, quant, nodes, gpn)
                        };
                        for rank in 0..nodes {
                            emit(&cfg, rank);
                        }
                    }
                }
            }
        }
    }
}

/// DeepSeek-R1 on one group of `nodes` x `gpn` accelerators.
fn r1(engine: Engine, vendor: &str, quant: &str, nodes: u32, gpn: u32) -> LaunchConfig {
    LaunchConfig::new(
        engine,
        vendor,
        "deepseek-ai/DeepSeek-R1",
        "deepseek-r1",
        quant,
        nodes,
        gpn,
    )
}

/// The disaggregated shapes: 8-GPU nodes, and on Ascend also the A3's 16 dies per node
/// (one and two nodes, as SGLang's A3 recipes run prefill and decode).
fn pd_shapes(vendor: &str) -> Vec<(u32, u32, u32)> {
    let mut shapes = vec![(1, 8, 1), (2, 8, 1), (4, 8, 1)];
    if vendor == "ascend" {
        shapes.extend([(1, 16, 1), (2, 16, 1)]);
    }
    shapes
}

fn shapes(engine: Engine) -> Vec<(u32, u32, u32)> {
    if engine == Engine::Llamacpp {
        // CPU pods: no accelerators, one node.
        vec![(1, 0, 1)]
    } else {
        SHAPES.to_vec()
    }
}

/// llama.cpp renders a Hugging Face repo and a local file differently.
fn models(engine: Engine) -> &'static [&'static str] {
    if engine == Engine::Llamacpp {
        &[
            "unsloth/DeepSeek-R1-GGUF",
            "/models/DeepSeek-R1-Q4_K_M.gguf",
        ]
    } else {
        &["deepseek-ai/DeepSeek-R1"]
    }
}

fn emit(cfg: &LaunchConfig, rank: u32) {
    let Ok(steps) = render(cfg, rank, LEADER) else {
        return;
    };
    let role = Role::of_rank(rank);
    let vars = [("DSO_POD_IP", POD_IP)];
    let prepare = steps.prepare.iter().map(|c| ("prepare", c));
    for (step, cmd) in prepare.chain(steps.serve.iter().map(|c| ("serve", c))) {
        let cmd: CommandLine = cmd.expand(&vars);
        let line = json!({
            "engine": cfg.engine,
            "vendor": cfg.vendor,
            "quantization": cfg.quantization,
            "tp": cfg.tensor_parallel,
            "pp": cfg.pipeline_parallel,
            "nodes": cfg.nodes,
            "rank": rank,
            "role": role,
            "step": step,
            "program": cmd.program,
            "argv": cmd.args,
            "env": cmd.env,
            "shell": cmd.to_shell(),
        });
        println!("{line}");
    }
}
