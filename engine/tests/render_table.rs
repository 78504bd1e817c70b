//! Table tests of rendered command lines: each engine x vendor x single/multi-node.
//!
//! These pin the shape of each command; whether the pinned engines accept them is checked by
//! their own parsers in `engine/conformance/run` (docs/engines.md).

use deepseek_engine::{
    render, render_with, validate, CommandLine, Engine, LaunchConfig, RenderError, RenderOptions,
    SimProfile, DIST_INIT_PORT, RAY_PORT,
};

fn cfg(engine: Engine, vendor: &str, quant: &str, tp: u32, pp: u32, nodes: u32) -> LaunchConfig {
    let model = "deepseek-ai/DeepSeek-V3";
    LaunchConfig {
        tensor_parallel: tp,
        pipeline_parallel: pp,
        ..LaunchConfig::new(
            engine,
            vendor,
            model,
            "deepseek-v3",
            quant,
            nodes,
            tp * pp / nodes,
        )
    }
}

fn serve(c: &LaunchConfig, rank: u32) -> CommandLine {
    render(c, rank, "leader.group-0")
        .expect("renders")
        .serve
        .expect("serve step")
}

struct VllmCase {
    engine: Engine,
    vendor: &'static str,
    quant: &'static str,
    tp: u32,
    pp: u32,
    nodes: u32,
    quant_flag: Option<&'static str>,
    dtype: Option<&'static str>,
}

#[test]
fn vllm_family_leader_commands() {
    let cases = [
        VllmCase {
            engine: Engine::Vllm,
            vendor: "nvidia",
            quant: "fp8",
            tp: 8,
            pp: 1,
            nodes: 1,
            quant_flag: Some("fp8"),
            dtype: None,
        },
        VllmCase {
            engine: Engine::Vllm,
            vendor: "nvidia",
            quant: "nvfp4",
            tp: 4,
            pp: 1,
            nodes: 1,
            quant_flag: Some("modelopt_fp4"),
            dtype: None,
        },
        VllmCase {
            engine: Engine::Vllm,
            vendor: "amd",
            quant: "mxfp4",
            tp: 8,
            pp: 1,
            nodes: 1,
            quant_flag: Some("quark"),
            dtype: None,
        },
        VllmCase {
            engine: Engine::VllmAscend,
            vendor: "ascend",
            quant: "w4a8",
            tp: 16,
            pp: 1,
            nodes: 1,
            quant_flag: Some("ascend"),
            dtype: None,
        },
        VllmCase {
            engine: Engine::Vllm,
            vendor: "nvidia",
            quant: "int4-awq",
            tp: 4,
            pp: 1,
            nodes: 1,
            quant_flag: None,
            dtype: None,
        },
        VllmCase {
            engine: Engine::Vllm,
            vendor: "nvidia",
            quant: "int4-gptq",
            tp: 2,
            pp: 1,
            nodes: 1,
            quant_flag: None,
            dtype: None,
        },
        VllmCase {
            engine: Engine::Vllm,
            vendor: "nvidia",
            quant: "int8",
            tp: 8,
            pp: 1,
            nodes: 1,
            quant_flag: None,
            dtype: None,
        },
        VllmCase {
            engine: Engine::Vllm,
            vendor: "nvidia",
            quant: "fp8",
            tp: 8,
            pp: 2,
            nodes: 2,
            quant_flag: Some("fp8"),
            dtype: None,
        },
        VllmCase {
            engine: Engine::Vllm,
            vendor: "amd",
            quant: "bf16",
            tp: 8,
            pp: 1,
            nodes: 1,
            quant_flag: None,
            dtype: Some("bfloat16"),
        },
        VllmCase {
            engine: Engine::Vllm,
            vendor: "amd",
            quant: "fp8",
            tp: 16,
            pp: 1,
            nodes: 2,
            quant_flag: Some("fp8"),
            dtype: None,
        },
        VllmCase {
            engine: Engine::VllmAscend,
            vendor: "ascend",
            quant: "int8",
            tp: 16,
            pp: 1,
            nodes: 1,
            quant_flag: Some("ascend"),
            dtype: None,
        },
        VllmCase {
            engine: Engine::VllmAscend,
            vendor: "ascend",
            quant: "bf16",
            tp: 16,
            pp: 2,
            nodes: 2,
            quant_flag: None,
            dtype: Some("bfloat16"),
        },
    ];
    for case in cases {
        let c = cfg(
            case.engine,
            case.vendor,
            case.quant,
            case.tp,
            case.pp,
            case.nodes,
        );
        let steps = render(&c, 0, "leader.group-0").expect("renders");
        let s = steps.serve.clone().expect("serve");
        let what = format!(
            "{:?}/{}/{} nodes={}",
            case.engine, case.vendor, case.quant, case.nodes
        );
        assert_eq!(s.program, "vllm", "{what}");
        assert_eq!(&s.args[..2], ["serve", "deepseek-ai/DeepSeek-V3"], "{what}");
        assert_eq!(
            s.flag_value("--served-model-name"),
            Some("deepseek-v3"),
            "{what}"
        );
        assert_eq!(s.flag_value("--host"), Some("0.0.0.0"), "{what}");
        assert_eq!(s.flag_value("--port"), Some("8000"), "{what}");
        assert_eq!(
            s.flag_value("--tensor-parallel-size"),
            Some(case.tp.to_string().as_str()),
            "{what}"
        );
        assert_eq!(
            s.flag_value("--pipeline-parallel-size"),
            Some(case.pp.to_string().as_str()),
            "{what}"
        );
        assert_eq!(s.flag_value("--max-model-len"), Some("8192"), "{what}");
        assert_eq!(s.flag_value("--max-num-seqs"), Some("64"), "{what}");
        assert_eq!(
            s.flag_value("--gpu-memory-utilization"),
            Some("0.9"),
            "{what}"
        );
        assert_eq!(s.flag_value("--quantization"), case.quant_flag, "{what}");
        assert_eq!(s.flag_value("--dtype"), case.dtype, "{what}");
        // Every catalog architecture is native to the engines: no repository code runs.
        assert!(!s.has_arg("--trust-remote-code"), "{what}");
        let ascend = case.engine == Engine::VllmAscend;
        assert_eq!(
            s.env_value("HCCL_IF_IP"),
            ascend.then_some("$(DSO_POD_IP)"),
            "{what}"
        );
        for var in [
            "GLOO_SOCKET_IFNAME",
            "TP_SOCKET_IFNAME",
            "HCCL_SOCKET_IFNAME",
        ] {
            assert_eq!(s.env_value(var), ascend.then_some("eth0"), "{what} {var}");
        }
        match (case.nodes > 1, ascend) {
            (true, true) => {
                assert_eq!(
                    s.flag_value("--distributed-executor-backend"),
                    Some("ray"),
                    "{what}"
                );
                assert_eq!(steps.prepare.len(), 1, "{what}");
                let head = &steps.prepare[0];
                assert_eq!(head.program, "ray");
                assert!(
                    head.has_arg("--head") && head.has_arg(&format!("--port={RAY_PORT}")),
                    "{what}"
                );
            }
            (true, false) => {
                // vLLM's own multi-node mode: no Ray head, the leader serves the API.
                assert!(steps.prepare.is_empty(), "{what}");
                assert_eq!(
                    s.flag_value("--distributed-executor-backend"),
                    Some("mp"),
                    "{what}"
                );
                let nodes = case.nodes.to_string();
                assert_eq!(s.flag_value("--nnodes"), Some(nodes.as_str()), "{what}");
                assert_eq!(s.flag_value("--node-rank"), Some("0"), "{what}");
                assert_eq!(s.flag_value("--master-addr"), Some("leader.group-0"));
                let port = DIST_INIT_PORT.to_string();
                assert_eq!(s.flag_value("--master-port"), Some(port.as_str()));
                assert!(!s.has_arg("--headless"), "{what}");
            }
            (false, _) => {
                assert!(steps.prepare.is_empty(), "{what}");
                assert_eq!(
                    s.flag_value("--distributed-executor-backend"),
                    None,
                    "{what}"
                );
                assert_eq!(s.flag_value("--nnodes"), None, "{what}");
            }
        }
    }
}

#[test]
fn vllm_workers_run_headless_engines_and_ascend_workers_join_ray() {
    let c = cfg(Engine::Vllm, "nvidia", "bf16", 16, 1, 2);
    let steps = render(&c, 1, "leader.group-0").expect("renders");
    assert!(steps.prepare.is_empty());
    let w = steps.serve.expect("worker runs vllm");
    assert_eq!(w.program, "vllm");
    assert!(w.has_arg("--headless"));
    assert_eq!(w.flag_value("--node-rank"), Some("1"));
    assert_eq!(w.flag_value("--nnodes"), Some("2"));
    assert_eq!(w.flag_value("--master-addr"), Some("leader.group-0"));
    assert_eq!(w.flag_value("--tensor-parallel-size"), Some("16"));
    assert_eq!(w.env_value("VLLM_HOST_IP"), Some("$(DSO_POD_IP)"));

    let c = cfg(Engine::VllmAscend, "ascend", "bf16", 16, 1, 2);
    let steps = render(&c, 1, "leader.group-0").expect("renders");
    assert!(steps.prepare.is_empty());
    let w = steps.serve.expect("worker runs ray");
    assert_eq!(w.program, "ray");
    assert!(w.has_arg(&format!("--address=leader.group-0:{RAY_PORT}")));
    assert!(w.has_arg("--block"));
    assert_eq!(w.env_value("HCCL_IF_IP"), Some("$(DSO_POD_IP)"));
}

#[test]
fn sglang_commands() {
    // (vendor, quant, tp, pp, nodes, rank)
    let cases = [
        ("nvidia", "fp8", 8, 1, 1, 0),
        ("nvidia", "fp8", 16, 1, 2, 0),
        ("nvidia", "fp8", 16, 1, 2, 1),
        ("amd", "bf16", 8, 2, 2, 1),
        ("amd", "int4-awq", 8, 1, 1, 0),
    ];
    for (vendor, quant, tp, pp, nodes, rank) in cases {
        let c = cfg(Engine::Sglang, vendor, quant, tp, pp, nodes);
        let s = serve(&c, rank);
        let what = format!("{vendor}/{quant} tp{tp} pp{pp} nodes{nodes} rank{rank}");
        assert_eq!(s.program, "python3");
        assert_eq!(&s.args[..2], ["-m", "sglang.launch_server"], "{what}");
        assert_eq!(
            s.flag_value("--model-path"),
            Some("deepseek-ai/DeepSeek-V3")
        );
        assert_eq!(s.flag_value("--port"), Some("8000"));
        assert_eq!(
            s.flag_value("--tp"),
            Some(tp.to_string().as_str()),
            "{what}"
        );
        assert_eq!(
            s.flag_value("--pp-size"),
            (pp > 1).then(|| pp.to_string()).as_deref(),
            "{what}"
        );
        assert!(s.has_arg("--enable-metrics") && !s.has_arg("--trust-remote-code"));
        assert_eq!(s.flag_value("--context-length"), Some("8192"));
        assert_eq!(s.flag_value("--mem-fraction-static"), Some("0.9"));
        if nodes > 1 {
            let addr = format!("leader.group-0:{DIST_INIT_PORT}");
            assert_eq!(
                s.flag_value("--dist-init-addr"),
                Some(addr.as_str()),
                "{what}"
            );
            assert_eq!(s.flag_value("--nnodes"), Some(nodes.to_string().as_str()));
            assert_eq!(s.flag_value("--node-rank"), Some(rank.to_string().as_str()));
        } else {
            assert_eq!(s.flag_value("--dist-init-addr"), None);
            assert_eq!(s.flag_value("--nnodes"), None);
        }
        let expected_q = (quant == "fp8").then_some("fp8");
        assert_eq!(s.flag_value("--quantization"), expected_q, "{what}");
    }
}

#[test]
fn llamacpp_commands() {
    let mut c = cfg(Engine::Llamacpp, "cpu", "gguf-q4_k_m", 1, 1, 1);
    c.max_model_len = 4096;
    c.max_num_seqs = 4;
    c.model = "unsloth/DeepSeek-R1-GGUF".into();
    let s = serve(&c, 0);
    assert_eq!(s.program, "llama-server");
    assert_eq!(s.flag_value("-hf"), Some("unsloth/DeepSeek-R1-GGUF:Q4_K_M"));
    assert_eq!(s.flag_value("-c"), Some("16384"));
    assert_eq!(s.flag_value("--parallel"), Some("4"));
    assert_eq!(s.flag_value("--alias"), Some("deepseek-v3"));
    assert_eq!(s.flag_value("--port"), Some("8000"));
    assert!(s.has_arg("--metrics"));
    c.model = "/models/r1-q8.gguf".into();
    c.quantization = "gguf-q8_0".into();
    assert_eq!(serve(&c, 0).flag_value("-m"), Some("/models/r1-q8.gguf"));
    // A plan for a large node allows more sequences than llama.cpp holds (256).
    c.max_num_seqs = 16684;
    c.max_model_len = 512;
    let s = serve(&c, 0);
    assert_eq!(s.flag_value("--parallel"), Some("256"));
    assert_eq!(s.flag_value("-c"), Some("131072"));
}

#[test]
fn sim_binds_pod_ip_and_every_rank_links_to_the_leader() {
    let mut c = cfg(Engine::Sim, "nvidia", "fp8", 16, 1, 2);
    c.sim = Some(SimProfile {
        prefill_tokens_per_s: 1000.0,
        decode_tokens_per_s: 50.0,
        max_running: 8,
    });
    let opts = RenderOptions {
        engine_port: 18000,
        dist_port: 19500,
    };
    let s = render_with(&c, 0, "127.0.0.1", &opts)
        .expect("renders")
        .serve
        .expect("serve");
    assert_eq!(s.program, "deepseek-launcher");
    assert_eq!(s.args[0], "sim");
    assert_eq!(s.flag_value("--host"), Some("$(DSO_POD_IP)"));
    let bound = s.expand(&[("DSO_POD_IP", "127.1.0.7")]);
    assert_eq!(bound.flag_value("--host"), Some("127.1.0.7"));
    assert_eq!(s.flag_value("--port"), Some("18000"));
    assert_eq!(s.flag_value("--decode-tokens-per-s"), Some("50"));
    assert_eq!(s.flag_value("--max-running"), Some("8"));
    assert_eq!(s.flag_value("--nnodes"), Some("2"));
    assert_eq!(s.flag_value("--node-rank"), Some("0"));
    assert_eq!(
        bound.flag_value("--dist-init-addr"),
        Some("127.1.0.7:19500"),
        "the leader listens for its ranks on its own address"
    );
    let worker = render_with(&c, 1, "127.1.0.7", &opts).expect("renders");
    assert!(worker.prepare.is_empty());
    let w = worker
        .serve
        .expect("a sim worker holds its link to the leader");
    assert_eq!(w.flag_value("--node-rank"), Some("1"));
    assert_eq!(w.flag_value("--dist-init-addr"), Some("127.1.0.7:19500"));
    c.nodes = 1;
    c.tensor_parallel = 8;
    let single = serve(&c, 0);
    assert_eq!(single.flag_value("--nnodes"), None);
    assert_eq!(single.flag_value("--dist-init-addr"), None);
}

#[test]
fn extra_args_and_revision_pass_through() {
    let mut c = cfg(Engine::Vllm, "nvidia", "fp8", 8, 1, 1);
    c.revision = Some("abc123".into());
    c.extra_args = vec!["--enable-expert-parallel".into()];
    let s = serve(&c, 0);
    assert_eq!(s.flag_value("--revision"), Some("abc123"));
    assert_eq!(
        s.args.last().map(String::as_str),
        Some("--enable-expert-parallel")
    );
    assert!(s
        .to_shell()
        .starts_with("vllm serve deepseek-ai/DeepSeek-V3 "));
}

#[test]
fn validation_rejects_contradictions() {
    let mut bad_par = cfg(Engine::Vllm, "nvidia", "fp8", 8, 1, 1);
    bad_par.gpus_per_node = 4;
    assert!(matches!(
        validate(&bad_par),
        Err(RenderError::Parallelism { .. })
    ));

    let mut multi_cpu = cfg(Engine::Llamacpp, "cpu", "gguf-q8_0", 1, 1, 2);
    multi_cpu.gpus_per_node = 0;
    assert!(matches!(
        validate(&multi_cpu),
        Err(RenderError::SingleNodeOnly { .. })
    ));

    let ascend_on_nvidia = cfg(Engine::VllmAscend, "nvidia", "bf16", 8, 1, 1);
    assert!(matches!(
        validate(&ascend_on_nvidia),
        Err(RenderError::EngineVendor { .. })
    ));

    let vllm_on_ascend = cfg(Engine::Vllm, "ascend", "bf16", 8, 1, 1);
    assert!(matches!(
        validate(&vllm_on_ascend),
        Err(RenderError::EngineVendor { .. })
    ));

    let awq_on_amd = cfg(Engine::Vllm, "amd", "int4-awq", 8, 1, 1);
    assert!(matches!(
        validate(&awq_on_amd),
        Err(RenderError::QuantizationUnsupported { .. })
    ));

    let fp8_on_ascend = cfg(Engine::VllmAscend, "ascend", "fp8", 8, 1, 1);
    assert!(matches!(
        validate(&fp8_on_ascend),
        Err(RenderError::QuantizationUnsupported { .. })
    ));

    // 4-bit float and W4A8 checkpoints go only where an engine has their kernels.
    for (engine, vendor, quant) in [
        (Engine::Vllm, "amd", "nvfp4"),
        (Engine::Sglang, "amd", "nvfp4"),
        (Engine::Vllm, "nvidia", "mxfp4"),
        (Engine::Vllm, "nvidia", "w4a8"),
        (Engine::Sglang, "nvidia", "w4a8"),
        (Engine::VllmAscend, "ascend", "nvfp4"),
        (Engine::VllmAscend, "ascend", "mxfp4"),
    ] {
        assert!(
            matches!(
                validate(&cfg(engine, vendor, quant, 8, 1, 1)),
                Err(RenderError::QuantizationUnsupported { .. })
            ),
            "{engine} on {vendor} must refuse {quant}"
        );
    }

    let unknown_q = cfg(Engine::Vllm, "nvidia", "int3", 8, 1, 1);
    assert!(matches!(
        validate(&unknown_q),
        Err(RenderError::UnknownQuantization(_))
    ));

    let unknown_vendor = cfg(Engine::Vllm, "intel", "bf16", 8, 1, 1);
    assert!(matches!(
        validate(&unknown_vendor),
        Err(RenderError::UnknownVendor(_))
    ));

    let ok = cfg(Engine::Vllm, "nvidia", "fp8", 8, 1, 1);
    assert!(matches!(
        render(&ok, 1, "x"),
        Err(RenderError::RankOutOfRange { .. })
    ));
    let msg = validate(&bad_par)
        .map_err(|e| e.to_string())
        .err()
        .unwrap_or_default();
    assert!(msg.contains("8") && msg.contains("4"), "{msg}");
}

#[test]
fn launch_config_json_is_camel_case_and_round_trips() {
    let mut c = cfg(Engine::VllmAscend, "ascend", "int8", 16, 1, 1);
    c.sim = Some(SimProfile::default());
    let json = c.to_json();
    assert!(json.contains("\"servedModelName\"") && json.contains("\"vllm-ascend\""));
    assert!(json.contains("\"prefillTokensPerS\""));
    assert_eq!(LaunchConfig::from_json(&json), Ok(c));
    assert!(matches!(
        LaunchConfig::from_json("{"),
        Err(RenderError::InvalidJson(_))
    ));
}

#[test]
fn remote_code_only_when_the_model_needs_it() {
    for engine in [Engine::Vllm, Engine::Sglang] {
        let mut c = cfg(engine, "nvidia", "bf16", 8, 1, 1);
        assert!(!serve(&c, 0).has_arg("--trust-remote-code"), "{engine:?}");
        c.trust_remote_code = true;
        assert!(serve(&c, 0).has_arg("--trust-remote-code"), "{engine:?}");
    }
}

#[test]
fn vllm_on_cpu_takes_the_planned_kv_cache_not_a_share_of_the_host() {
    let mut c = cfg(Engine::Vllm, "cpu", "bf16", 1, 1, 1);
    let plain = serve(&c, 0);
    assert_eq!(plain.flag_value("--kv-cache-memory-bytes"), None);
    c.kv_cache_memory_bytes = Some(3 << 30);
    let cmd = serve(&c, 0);
    assert_eq!(cmd.program, "vllm");
    assert_eq!(
        cmd.flag_value("--kv-cache-memory-bytes"),
        Some("3221225472")
    );
    assert_eq!(cmd.flag_value("--dtype"), Some("bfloat16"));
    // Absent from the JSON when unset: GPU launch configs (and their hashes) are unchanged.
    assert!(!cfg(Engine::Vllm, "nvidia", "fp8", 8, 1, 1)
        .to_json()
        .contains("kvCacheMemoryBytes"));
    let json = c.to_json();
    assert!(json.contains("\"kvCacheMemoryBytes\":3221225472"), "{json}");
    assert_eq!(LaunchConfig::from_json(&json).expect("round trip"), c);
}
