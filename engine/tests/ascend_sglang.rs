//! SGLang on Ascend NPUs: the flags NPU serving needs, the formats it takes, and its
//! prefill/decode roles with the `ascend` (memfabric) and Mooncake transfers.
//!
//! Expectations come from the pinned SGLang 0.5.23 source (`--device npu`, the `ascend`
//! attention backend, `modelslim` among `QUANTIZATION_CHOICES`, `ascend` among the
//! transfer backends, `ASCEND_MF_STORE_URL` read by its ascend transfer engine) and from
//! SGLang's Ascend DeepSeek recipes (R1 W8A8/W4A8 on Atlas 800I A3, 16 dies per node).
//! Whether SGLang's parser accepts the commands is checked by `engine/conformance/run`.

use deepseek_engine::pd::{router_command, ASCEND_MOONCAKE_ENV, ASCEND_STORE_ENV, BOOTSTRAP_PORT};
use deepseek_engine::{
    render, validate, CommandLine, Disaggregation, Engine, KvTransfer, LaunchConfig, PdRole,
    RenderError, RouterConfig, DIST_INIT_PORT,
};

const STORE: &str = "10.1.0.4:8999";

fn a3(quant: &str, nodes: u32, d: Option<Disaggregation>) -> LaunchConfig {
    let model = "deepseek-ai/DeepSeek-R1-W8A8";
    LaunchConfig {
        gpu_memory_utilization: 0.8,
        disaggregation: d,
        ..LaunchConfig::new(Engine::Sglang, "ascend", model, "r1", quant, nodes, 16)
    }
}

fn serve(c: &LaunchConfig, rank: u32) -> CommandLine {
    render(c, rank, "r1-prefill-0-0.r1.team-a.svc")
        .expect("renders")
        .serve
        .expect("serve step")
}

fn role(role: PdRole, transfer: KvTransfer, store: Option<&str>) -> Option<Disaggregation> {
    Some(Disaggregation {
        role,
        transfer,
        ascend_store: store.map(String::from),
    })
}

fn refused(c: &LaunchConfig) -> String {
    match validate(c) {
        Err(RenderError::InvalidField { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn npu_serving_flags_and_environment() {
    let c = a3("int8", 1, None);
    let s = serve(&c, 0);
    assert_eq!(s.program, "python3");
    assert_eq!(s.flag_value("--device"), Some("npu"));
    assert_eq!(s.flag_value("--attention-backend"), Some("ascend"));
    assert_eq!(s.flag_value("--tp"), Some("16"));
    assert_eq!(s.flag_value("--quantization"), Some("modelslim"));
    assert_eq!(s.flag_value("--dtype"), Some("bfloat16"));
    assert_eq!(
        s.env_value("PYTORCH_NPU_ALLOC_CONF"),
        Some("expandable_segments:True")
    );
    assert_eq!(s.env_value("STREAMS_PER_DEVICE"), Some("32"));
    assert_eq!(s.env_value("HCCL_IF_IP"), Some("$(DSO_POD_IP)"));
    assert_eq!(s.env_value("HCCL_SOCKET_IFNAME"), Some("eth0"));
    // GPU pods keep their command: no NPU flags or HCCL environment.
    let mut gpu = a3("fp8", 1, None);
    gpu.vendor = "nvidia".into();
    gpu.tensor_parallel = 8;
    gpu.gpus_per_node = 8;
    let g = serve(&gpu, 0);
    assert_eq!(g.flag_value("--device"), None);
    assert!(g.env.is_empty(), "{:?}", g.env);
}

#[test]
fn two_a3_nodes_use_the_same_distributed_flags_as_gpus() {
    let c = a3("w4a8", 2, None);
    for rank in 0..2 {
        let s = serve(&c, rank);
        assert_eq!(s.flag_value("--tp"), Some("32"));
        assert_eq!(s.flag_value("--nnodes"), Some("2"));
        assert_eq!(s.flag_value("--node-rank"), Some(rank.to_string().as_str()));
        assert_eq!(
            s.flag_value("--dist-init-addr"),
            Some(format!("r1-prefill-0-0.r1.team-a.svc:{DIST_INIT_PORT}").as_str())
        );
        assert_eq!(s.flag_value("--quantization"), Some("modelslim"));
    }
}

#[test]
fn formats_sglang_serves_on_npus_and_the_ones_it_does_not() {
    // (quantization, --quantization, --dtype): ModelSlim forced, AWQ/GPTQ detected.
    let served = [
        ("int8", Some("modelslim"), Some("bfloat16")),
        ("w4a8", Some("modelslim"), Some("bfloat16")),
        ("bf16", None, Some("bfloat16")),
        ("fp16", None, Some("float16")),
        ("int4-awq", None, None),
        ("int4-gptq", None, None),
    ];
    for (quant, method, dtype) in served {
        let s = serve(&a3(quant, 1, None), 0);
        assert_eq!(s.flag_value("--quantization"), method, "{quant}");
        assert_eq!(s.flag_value("--dtype"), dtype, "{quant}");
    }
    for quant in ["fp8", "nvfp4", "mxfp4", "gguf-q4_k_m"] {
        assert!(
            matches!(
                validate(&a3(quant, 1, None)),
                Err(RenderError::QuantizationUnsupported { .. })
            ),
            "{quant} must be refused on ascend"
        );
    }
}

#[test]
fn prefill_and_decode_with_the_ascend_transfer_share_one_store() {
    let p = serve(
        &a3(
            "int8",
            1,
            role(PdRole::Prefill, KvTransfer::Ascend, Some(STORE)),
        ),
        0,
    );
    assert_eq!(p.flag_value("--disaggregation-mode"), Some("prefill"));
    assert_eq!(
        p.flag_value("--disaggregation-transfer-backend"),
        Some("ascend")
    );
    assert_eq!(
        p.flag_value("--disaggregation-bootstrap-port"),
        Some(BOOTSTRAP_PORT.to_string().as_str())
    );
    let d = a3(
        "int8",
        2,
        role(PdRole::Decode, KvTransfer::Ascend, Some(STORE)),
    );
    for rank in 0..2 {
        let s = serve(&d, rank);
        assert_eq!(s.flag_value("--disaggregation-mode"), Some("decode"));
        assert_eq!(s.flag_value("--disaggregation-bootstrap-port"), None);
        // Every rank registers its KV with the store, not only the leader.
        assert_eq!(s.env_value(ASCEND_STORE_ENV), Some("tcp://10.1.0.4:8999"));
    }
    assert_eq!(p.env_value(ASCEND_STORE_ENV), Some("tcp://10.1.0.4:8999"));
    assert_eq!(p.env_value(ASCEND_MOONCAKE_ENV), None);
}

#[test]
fn mooncake_on_npus_switches_to_its_ascend_transport() {
    let s = serve(
        &a3("w4a8", 1, role(PdRole::Decode, KvTransfer::Mooncake, None)),
        0,
    );
    assert_eq!(
        s.flag_value("--disaggregation-transfer-backend"),
        Some("mooncake")
    );
    assert_eq!(s.env_value(ASCEND_MOONCAKE_ENV), Some("1"));
    assert_eq!(s.env_value(ASCEND_STORE_ENV), None);
}

#[test]
fn transfers_the_hardware_cannot_use_are_refused() {
    let no_store = refused(&a3(
        "int8",
        1,
        role(PdRole::Prefill, KvTransfer::Ascend, None),
    ));
    assert!(no_store.contains("ascendStore"), "{no_store}");
    let not_an_address = refused(&a3(
        "int8",
        1,
        role(PdRole::Prefill, KvTransfer::Ascend, Some("store")),
    ));
    assert!(not_an_address.contains("host:port"), "{not_an_address}");
    let nixl = refused(&a3("int8", 1, role(PdRole::Decode, KvTransfer::Nixl, None)));
    assert!(nixl.contains("transfer ascend"), "{nixl}");
    let stray_store = refused(&a3(
        "int8",
        1,
        role(PdRole::Decode, KvTransfer::Mooncake, Some(STORE)),
    ));
    assert!(
        stray_store.contains("only used by transfer ascend"),
        "{stray_store}"
    );

    let mut gpu = a3(
        "fp8",
        1,
        role(PdRole::Prefill, KvTransfer::Ascend, Some(STORE)),
    );
    gpu.vendor = "nvidia".into();
    gpu.tensor_parallel = 8;
    gpu.gpus_per_node = 8;
    let memfabric_on_gpu = refused(&gpu);
    assert!(memfabric_on_gpu.contains("mooncake"), "{memfabric_on_gpu}");

    let mut vllm_ascend = a3(
        "int8",
        1,
        role(PdRole::Prefill, KvTransfer::Ascend, Some(STORE)),
    );
    vllm_ascend.engine = Engine::VllmAscend;
    let connector = refused(&vllm_ascend);
    assert!(connector.contains("engine sglang"), "{connector}");
}

#[test]
fn each_vendor_has_a_default_transfer_the_validator_accepts() {
    // (engine, vendor, default)
    let table = [
        (Engine::Sglang, "ascend", KvTransfer::Ascend),
        (Engine::Sim, "ascend", KvTransfer::Ascend),
        (Engine::VllmAscend, "ascend", KvTransfer::Mooncake),
        (Engine::Sglang, "nvidia", KvTransfer::Mooncake),
        (Engine::Sglang, "amd", KvTransfer::Mooncake),
        (Engine::Vllm, "nvidia", KvTransfer::Mooncake),
    ];
    for (engine, vendor, want) in table {
        assert_eq!(
            KvTransfer::default_for(engine, vendor),
            want,
            "{engine} {vendor}"
        );
        let mut d = Disaggregation::new(PdRole::Prefill, engine, vendor);
        assert_eq!(d.transfer, want);
        if want == KvTransfer::Ascend {
            d.ascend_store = Some(STORE.into());
        }
        let mut c = a3(if vendor == "ascend" { "int8" } else { "fp8" }, 1, Some(d));
        c.engine = engine;
        c.vendor = vendor.into();
        if vendor != "ascend" {
            c.tensor_parallel = 8;
            c.gpus_per_node = 8;
        }
        validate(&c).unwrap_or_else(|e| panic!("{engine} {vendor}: {e}"));
    }
}

#[test]
fn the_store_travels_in_the_launch_config_json_only_when_set() {
    let with = a3(
        "int8",
        1,
        role(PdRole::Decode, KvTransfer::Ascend, Some(STORE)),
    );
    let json = with.to_json();
    assert!(
        json.contains(r#""transfer":"ascend","ascendStore":"10.1.0.4:8999""#),
        "{json}"
    );
    assert_eq!(LaunchConfig::from_json(&json).expect("round trip"), with);
    let without = a3("int8", 1, role(PdRole::Decode, KvTransfer::Mooncake, None));
    assert!(!without.to_json().contains("ascendStore"));
}

#[test]
fn the_router_points_vllm_ascend_to_sglang() {
    let cfg = RouterConfig {
        namespace: "team-a".into(),
        prefill_selector: vec!["role=prefill".into()],
        decode_selector: vec!["role=decode".into()],
        engine: Engine::VllmAscend,
    };
    match router_command(&cfg) {
        Err(RenderError::InvalidField { reason, .. }) => {
            assert!(reason.contains("use engine sglang"), "{reason}");
            assert!(reason.contains("Ascend"), "{reason}");
        }
        other => panic!("vllm-ascend must not be routed: {other:?}"),
    }
    let sglang = RouterConfig {
        engine: Engine::Sglang,
        ..cfg
    };
    assert!(router_command(&sglang).is_ok());
}
