//! Table tests of DP attention x expert parallelism, redundant experts, MTP and the FP8 KV
//! cache (engine/src/expert.rs): the exact commands of the wide-EP recipes, per rank, and
//! the combinations refused. The pinned engines' parsers check the same commands in
//! `engine/conformance/run`.

use deepseek_engine::expert::DP_RPC_PORT;
use deepseek_engine::{
    render, validate, CommandLine, Disaggregation, Engine, ExpertLayout, KvTransfer, LaunchConfig,
    PdRole, RenderError,
};

const LEADER: &str = "r1-0.r1-ranks.team-a.svc";

/// DeepSeek-R1 FP8 on `nodes` x `gpn` accelerators as `dp` DP-attention groups of `tp`.
fn wide_ep(engine: Engine, vendor: &str, nodes: u32, gpn: u32, dp: u32, tp: u32) -> LaunchConfig {
    let model = "deepseek-ai/DeepSeek-R1";
    LaunchConfig {
        tensor_parallel: tp,
        expert: Some(ExpertLayout {
            data_parallel: dp,
            expert_parallel: dp * tp,
            redundant_experts: 0,
        }),
        ..LaunchConfig::new(engine, vendor, model, "deepseek-r1", "fp8", nodes, gpn)
    }
}

fn with_mtp_and_fp8_kv(mut c: LaunchConfig) -> LaunchConfig {
    c.speculative_mtp = true;
    c.kv_cache_dtype = Some("fp8".into());
    c
}

fn serve(c: &LaunchConfig, rank: u32) -> CommandLine {
    render(c, rank, LEADER)
        .expect("renders")
        .serve
        .expect("serve step")
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn refusal(c: &LaunchConfig) -> String {
    match validate(c) {
        Err(e @ RenderError::InvalidField { .. }) => e.to_string(),
        other => panic!("expected an InvalidField refusal, got {other:?}"),
    }
}

#[test]
fn sglang_r1_fp8_on_two_h200_nodes_dp16_ep16() {
    let c = wide_ep(Engine::Sglang, "nvidia", 2, 8, 16, 1);
    let base = "-m sglang.launch_server --model-path deepseek-ai/DeepSeek-R1 \
        --served-model-name deepseek-r1 --host 0.0.0.0 --port 8000 --tp 16 \
        --dist-init-addr r1-0.r1-ranks.team-a.svc:29500 --nnodes 2 --node-rank RANK \
        --enable-metrics --context-length 8192 --max-running-requests 64 \
        --mem-fraction-static 0.9 --quantization fp8 \
        --attn-dp-size 16 --ep-size 16 --moe-a2a-backend deepep";
    for rank in 0..2 {
        let cmd = serve(&c, rank);
        assert_eq!(cmd.program, "python3");
        assert_eq!(cmd.args, words(&base.replace("RANK", &rank.to_string())));
    }
    // MTP and an FP8 KV cache append their flags, the same on every rank.
    let spec = words(
        "--speculative-algorithm EAGLE --speculative-num-steps 3 --speculative-eagle-topk 1 \
         --speculative-num-draft-tokens 4 --kv-cache-dtype fp8_e4m3",
    );
    let c = with_mtp_and_fp8_kv(c);
    for rank in 0..2 {
        let cmd = serve(&c, rank);
        assert_eq!(cmd.args[cmd.args.len() - spec.len()..], spec[..]);
    }
}

#[test]
fn vllm_r1_fp8_on_two_h200_nodes_dp16_ep16() {
    let c = wide_ep(Engine::Vllm, "nvidia", 2, 8, 16, 1);
    let base = "serve deepseek-ai/DeepSeek-R1 --served-model-name deepseek-r1 --host 0.0.0.0 \
        --port 8000 --tensor-parallel-size 1 --pipeline-parallel-size 1 --max-model-len 8192 \
        --max-num-seqs 4 --gpu-memory-utilization 0.9 --quantization fp8 \
        --data-parallel-size-local 8";
    let leader = serve(&c, 0);
    let expected = format!(
        "{base} --data-parallel-address $(DSO_POD_IP) --data-parallel-rpc-port {DP_RPC_PORT} \
         --data-parallel-size 16 --enable-expert-parallel"
    );
    assert_eq!(leader.program, "vllm");
    assert_eq!(leader.args, words(&expected));
    assert_eq!(leader.env_value("VLLM_HOST_IP"), Some("$(DSO_POD_IP)"));
    let worker = serve(&c, 1);
    let expected = format!(
        "{base} --data-parallel-address {LEADER} --data-parallel-rpc-port {DP_RPC_PORT} \
         --headless --data-parallel-start-rank 8 --data-parallel-size 16 --enable-expert-parallel"
    );
    assert_eq!(worker.args, words(&expected));
    // Neither runs vLLM's TP/PP multi-node launch: DP carries the group across nodes.
    for cmd in [&leader, &worker] {
        assert!(!cmd.has_arg("--nnodes") && !cmd.has_arg("--master-addr"));
    }

    let c = with_mtp_and_fp8_kv(c);
    let tail = words(
        r#"--speculative-config {"method":"mtp","num_speculative_tokens":1} --kv-cache-dtype fp8"#,
    );
    for rank in 0..2 {
        let cmd = serve(&c, rank);
        assert_eq!(cmd.args[cmd.args.len() - tail.len()..], tail[..]);
    }
}

#[test]
fn running_sequences_are_the_replicas_on_sglang_and_per_dp_rank_on_vllm() {
    // 100 sequences over DP16: SGLang takes the total, each vLLM DP rank ceil(100 / 16).
    let mut c = wide_ep(Engine::Sglang, "nvidia", 2, 8, 16, 1);
    c.max_num_seqs = 100;
    assert_eq!(
        serve(&c, 0).flag_value("--max-running-requests"),
        Some("100")
    );
    c.engine = Engine::Vllm;
    assert_eq!(serve(&c, 1).flag_value("--max-num-seqs"), Some("7"));
    c.expert = None;
    c.tensor_parallel = 16;
    assert_eq!(serve(&c, 1).flag_value("--max-num-seqs"), Some("100"));
}

#[test]
fn hybrid_dp_groups_of_tp_ranks() {
    // DP4 x TP4 over 2 x 8: SGLang counts all 16 ranks in --tp, vLLM TP within a DP rank.
    let sglang = serve(&wide_ep(Engine::Sglang, "nvidia", 2, 8, 4, 4), 1);
    assert_eq!(sglang.flag_value("--tp"), Some("16"));
    assert_eq!(sglang.flag_value("--attn-dp-size"), Some("4"));
    assert_eq!(sglang.flag_value("--ep-size"), Some("16"));
    let vllm = wide_ep(Engine::Vllm, "nvidia", 2, 8, 4, 4);
    let worker = serve(&vllm, 1);
    assert_eq!(worker.flag_value("--tensor-parallel-size"), Some("4"));
    assert_eq!(worker.flag_value("--data-parallel-size"), Some("4"));
    assert_eq!(worker.flag_value("--data-parallel-size-local"), Some("2"));
    assert_eq!(worker.flag_value("--data-parallel-start-rank"), Some("2"));
    // One node: no per-node DP flags at all.
    let one = serve(&wide_ep(Engine::Vllm, "nvidia", 1, 8, 8, 1), 0);
    assert_eq!(one.flag_value("--data-parallel-size"), Some("8"));
    assert!(!one.has_arg("--data-parallel-size-local") && !one.has_arg("--headless"));
}

#[test]
fn tp_with_ep_and_no_dp_keeps_the_tp_launch() {
    // TP16 x EP16 across two nodes: no DP attention, vLLM's --nnodes launch as for TP x PP.
    let c = wide_ep(Engine::Vllm, "nvidia", 2, 8, 1, 16);
    let worker = serve(&c, 1);
    assert_eq!(worker.flag_value("--nnodes"), Some("2"));
    assert!(worker.has_arg("--headless") && worker.has_arg("--enable-expert-parallel"));
    assert!(!worker.has_arg("--data-parallel-size"));
    let sglang = serve(&wide_ep(Engine::Sglang, "nvidia", 2, 8, 1, 16), 0);
    assert_eq!(sglang.flag_value("--ep-size"), Some("16"));
    // No DP attention: SGLang's default dispatch, the one its docs give for TP + EP.
    assert!(!sglang.has_arg("--attn-dp-size") && !sglang.has_arg("--moe-a2a-backend"));
}

#[test]
fn redundant_experts_turn_on_each_engines_load_balancer() {
    let mut c = wide_ep(Engine::Sglang, "nvidia", 2, 8, 16, 1);
    c.expert = c.expert.map(|e| ExpertLayout {
        redundant_experts: 32,
        ..e
    });
    let sglang = serve(&c, 0);
    assert_eq!(sglang.flag_value("--ep-num-redundant-experts"), Some("32"));
    assert!(sglang.has_arg("--enable-eplb"));

    c.engine = Engine::Vllm;
    let vllm = serve(&c, 0);
    assert!(vllm.has_arg("--enable-eplb"));
    assert_eq!(
        vllm.flag_value("--eplb-config"),
        Some(r#"{"num_redundant_experts":32}"#)
    );

    // vllm-ascend: its own dynamic EPLB, which asserts the environment switch.
    let mut a = wide_ep(Engine::VllmAscend, "ascend", 2, 16, 8, 4);
    a.quantization = "int8".into();
    a.expert = c.expert;
    a.expert = a.expert.map(|e| ExpertLayout {
        data_parallel: 8,
        expert_parallel: 32,
        ..e
    });
    let ascend = serve(&a, 1);
    assert_eq!(
        ascend.flag_value("--additional-config"),
        Some(r#"{"eplb_config":{"dynamic_eplb":true,"num_redundant_experts":32}}"#)
    );
    assert_eq!(ascend.env_value("DYNAMIC_EPLB"), Some("true"));
    assert!(!ascend.has_arg("--enable-eplb"));
}

#[test]
fn vllm_ascend_dp_across_nodes_runs_without_ray() {
    let mut c = wide_ep(Engine::VllmAscend, "ascend", 2, 16, 8, 4);
    c.quantization = "int8".into();
    for rank in 0..2 {
        let steps = render(&c, rank, LEADER).expect("renders");
        assert!(steps.prepare.is_empty(), "no Ray head on rank {rank}");
        let cmd = steps.serve.expect("serve step");
        assert_eq!(cmd.program, "vllm");
        assert_eq!(cmd.flag_value("--data-parallel-size-local"), Some("4"));
        assert!(!cmd.has_arg("--distributed-executor-backend"));
        assert!(cmd.env_value("HCCL_IF_IP").is_some());
    }
    // TP/PP across nodes without DP still goes through Ray.
    let mut tp = c.clone();
    tp.expert = None;
    tp.tensor_parallel = 32;
    let steps = render(&tp, 0, LEADER).expect("renders");
    assert_eq!(steps.prepare.len(), 1);
}

#[test]
fn sglang_deepep_mode_follows_the_pd_role_and_stays_off_amd() {
    let mut c = wide_ep(Engine::Sglang, "nvidia", 2, 8, 16, 1);
    for (role, mode) in [(PdRole::Prefill, "normal"), (PdRole::Decode, "low_latency")] {
        c.disaggregation = Some(Disaggregation {
            role,
            transfer: KvTransfer::Mooncake,
            ascend_store: None,
        });
        assert_eq!(serve(&c, 0).flag_value("--deepep-mode"), Some(mode));
    }
    let amd = serve(&wide_ep(Engine::Sglang, "amd", 2, 8, 16, 1), 0);
    assert_eq!(amd.flag_value("--ep-size"), Some("16"));
    assert!(!amd.has_arg("--moe-a2a-backend") && !amd.has_arg("--deepep-mode"));
    // SGLang's Ascend DeepSeek recipes run DP attention on the NPU DeepEP too.
    let mut a3 = wide_ep(Engine::Sglang, "ascend", 2, 16, 32, 1);
    a3.quantization = "w4a8".into();
    let npu = serve(&a3, 1);
    assert_eq!(npu.flag_value("--tp"), Some("32"));
    assert_eq!(npu.flag_value("--attn-dp-size"), Some("32"));
    assert_eq!(npu.flag_value("--moe-a2a-backend"), Some("deepep"));
}

#[test]
fn the_sim_accepts_every_layout() {
    let c = with_mtp_and_fp8_kv(wide_ep(Engine::Sim, "nvidia", 2, 8, 16, 1));
    for rank in 0..2 {
        assert!(render(&c, rank, LEADER).is_ok());
    }
}

#[test]
fn refusals_say_why() {
    // llama.cpp has none of it.
    let mut l = wide_ep(Engine::Llamacpp, "cpu", 1, 0, 1, 1);
    l.quantization = "gguf-q4_k_m".into();
    l.expert = None;
    assert!(validate(&l).is_ok());
    l.speculative_mtp = true;
    l.kv_cache_dtype = Some("fp8".into());
    let why = refusal(&l);
    assert!(
        why.contains("llama.cpp has no MTP speculative decoding, an FP8 KV cache"),
        "{why}"
    );

    // Ascend A2/A3: no FP8 KV cache, whichever engine.
    let mut a = wide_ep(Engine::VllmAscend, "ascend", 1, 16, 16, 1);
    a.quantization = "int8".into();
    a.kv_cache_dtype = Some("fp8".into());
    assert!(refusal(&a).contains("vllm-ascend has no FP8 KV cache on Ascend"));
    a.engine = Engine::Sglang;
    assert!(refusal(&a).contains("sglang has no FP8 KV cache on Ascend"));

    let base = wide_ep(Engine::Sglang, "nvidia", 2, 8, 16, 1);
    let cases: Vec<(LaunchConfig, &str)> = vec![
        (
            LaunchConfig {
                kv_cache_dtype: Some("fp8_e5m2".into()),
                ..base.clone()
            },
            "not a KV cache type here",
        ),
        (
            LaunchConfig {
                tensor_parallel: 2,
                ..base.clone()
            },
            "dataParallel 16 x tensorParallel 2 = 32 ranks, but nodes 2 x gpusPerNode 8 = 16",
        ),
        (
            LaunchConfig {
                expert: Some(ExpertLayout {
                    data_parallel: 16,
                    expert_parallel: 8,
                    redundant_experts: 0,
                }),
                ..base.clone()
            },
            "expertParallel 8 must be every rank",
        ),
        (
            LaunchConfig {
                pipeline_parallel: 2,
                ..base.clone()
            },
            "without pipeline parallelism",
        ),
        (
            LaunchConfig {
                nodes: 1,
                gpus_per_node: 1,
                expert: Some(ExpertLayout {
                    data_parallel: 1,
                    expert_parallel: 1,
                    redundant_experts: 8,
                }),
                ..base.clone()
            },
            "none to balance",
        ),
        (
            LaunchConfig {
                expert: Some(ExpertLayout {
                    data_parallel: 0,
                    expert_parallel: 16,
                    redundant_experts: 0,
                }),
                ..base.clone()
            },
            "at least 1",
        ),
    ];
    for (c, reason) in cases {
        let why = refusal(&c);
        assert!(why.contains(reason), "{why:?} should say {reason:?}");
    }

    // vLLM's CPU platform has no EPLB.
    let mut cpu = wide_ep(Engine::Vllm, "cpu", 1, 8, 8, 1);
    cpu.quantization = "bf16".into();
    assert!(validate(&cpu).is_ok());
    cpu.expert = cpu.expert.map(|e| ExpertLayout {
        redundant_experts: 8,
        ..e
    });
    assert!(refusal(&cpu).contains("not on CPU"));

    // vLLM puts whole DP ranks on a node: DP3 x TP4 on 2 x 6 cannot; SGLang can.
    let mut odd = wide_ep(Engine::Vllm, "nvidia", 2, 6, 3, 4);
    assert!(refusal(&odd).contains("tensorParallel 4 does not divide gpusPerNode 6"));
    odd.engine = Engine::Sglang;
    assert!(validate(&odd).is_ok());
}

#[test]
fn json_is_unchanged_without_them_and_camel_case_with_them() {
    let mut c = wide_ep(Engine::Vllm, "nvidia", 1, 8, 8, 1);
    c.expert = None;
    c.tensor_parallel = 8;
    let plain = c.to_json();
    for key in ["expert", "speculativeMtp", "kvCacheDtype"] {
        assert!(!plain.contains(key), "{key} in {plain}");
    }
    let c = with_mtp_and_fp8_kv(wide_ep(Engine::Vllm, "nvidia", 2, 8, 16, 1));
    let json = c.to_json();
    assert!(json.contains(
        r#""expert":{"dataParallel":16,"expertParallel":16,"redundantExperts":0},"speculativeMtp":true,"kvCacheDtype":"fp8""#
    ), "{json}");
    assert_eq!(LaunchConfig::from_json(&json), Ok(c));
    // redundantExperts may be left out.
    let short = json.replace(r#","redundantExperts":0"#, "");
    assert!(LaunchConfig::from_json(&short).is_ok());
}
