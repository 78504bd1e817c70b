//! Table tests of the prefill/decode roles' flags per engine and of the router's command.
//! Whether the pinned engines and router accept them is checked by their own parsers in
//! `engine/conformance/run`.

use deepseek_engine::pd::{router_command, BOOTSTRAP_PORT};
use deepseek_engine::{
    render, validate, CommandLine, Disaggregation, Engine, KvTransfer, LaunchConfig, PdRole,
    RenderError, RouterConfig,
};

fn cfg(engine: Engine, vendor: &str, quant: &str, d: Option<Disaggregation>) -> LaunchConfig {
    LaunchConfig {
        disaggregation: d,
        ..LaunchConfig::new(engine, vendor, "deepseek-ai/DeepSeek-R1", "r1", quant, 1, 8)
    }
}

fn serve(c: &LaunchConfig) -> CommandLine {
    render(c, 0, "leader")
        .expect("renders")
        .serve
        .expect("serve")
}

fn role(role: PdRole, transfer: KvTransfer) -> Option<Disaggregation> {
    Some(Disaggregation {
        role,
        transfer,
        ascend_store: None,
    })
}

#[test]
fn sglang_roles_carry_mode_backend_and_the_prefill_bootstrap_port() {
    let p = serve(&cfg(
        Engine::Sglang,
        "nvidia",
        "fp8",
        role(PdRole::Prefill, KvTransfer::Mooncake),
    ));
    assert_eq!(p.flag_value("--disaggregation-mode"), Some("prefill"));
    assert_eq!(
        p.flag_value("--disaggregation-transfer-backend"),
        Some("mooncake")
    );
    assert_eq!(
        p.flag_value("--disaggregation-bootstrap-port"),
        Some(BOOTSTRAP_PORT.to_string().as_str())
    );
    let d = serve(&cfg(
        Engine::Sglang,
        "amd",
        "fp8",
        role(PdRole::Decode, KvTransfer::Nixl),
    ));
    assert_eq!(d.flag_value("--disaggregation-mode"), Some("decode"));
    assert_eq!(
        d.flag_value("--disaggregation-transfer-backend"),
        Some("nixl")
    );
    assert_eq!(d.flag_value("--disaggregation-bootstrap-port"), None);
}

#[test]
fn vllm_family_roles_carry_a_kv_transfer_config() {
    // (engine, vendor, quantization, role, transfer, connector, kv_role)
    let table = [
        (
            Engine::Vllm,
            "nvidia",
            "fp8",
            PdRole::Prefill,
            KvTransfer::Nixl,
            "NixlConnector",
            "kv_both",
        ),
        (
            Engine::Vllm,
            "nvidia",
            "fp8",
            PdRole::Decode,
            KvTransfer::Nixl,
            "NixlConnector",
            "kv_both",
        ),
        (
            Engine::Vllm,
            "amd",
            "fp8",
            PdRole::Prefill,
            KvTransfer::Mooncake,
            "MooncakeConnector",
            "kv_producer",
        ),
        (
            Engine::Vllm,
            "amd",
            "fp8",
            PdRole::Decode,
            KvTransfer::Mooncake,
            "MooncakeConnector",
            "kv_consumer",
        ),
        (
            Engine::VllmAscend,
            "ascend",
            "int8",
            PdRole::Prefill,
            KvTransfer::Mooncake,
            "MooncakeConnectorV1",
            "kv_producer",
        ),
        (
            Engine::VllmAscend,
            "ascend",
            "w4a8",
            PdRole::Decode,
            KvTransfer::Mooncake,
            "MooncakeConnectorV1",
            "kv_consumer",
        ),
    ];
    for (engine, vendor, quant, r, t, connector, kv_role) in table {
        let s = serve(&cfg(engine, vendor, quant, role(r, t)));
        let raw = s
            .flag_value("--kv-transfer-config")
            .expect("kv transfer config");
        let v: serde_json::Value = serde_json::from_str(raw).expect("JSON");
        assert_eq!(v["kv_connector"], connector, "{engine} {vendor} {r}");
        assert_eq!(v["kv_role"], kv_role, "{engine} {vendor} {r}");
    }
}

#[test]
fn aggregated_commands_are_unchanged_and_omit_the_field_from_json() {
    let c = cfg(Engine::Sglang, "nvidia", "fp8", None);
    assert!(!serve(&c).to_shell().contains("disaggregation"));
    // Pods of aggregated models keep their launch config JSON (and so their hash).
    assert!(!c.to_json().contains("disaggregation"));
    let back = LaunchConfig::from_json(&c.to_json()).expect("round trip");
    assert_eq!(back, c);
}

#[test]
fn engines_without_a_kv_handoff_are_refused() {
    let mut cpu = cfg(
        Engine::Llamacpp,
        "cpu",
        "gguf-q4_k_m",
        role(PdRole::Prefill, KvTransfer::Mooncake),
    );
    cpu.gpus_per_node = 0;
    assert!(matches!(
        validate(&cpu),
        Err(RenderError::InvalidField {
            field: "disaggregation",
            ..
        })
    ));
    let nixl_on_ascend = cfg(
        Engine::VllmAscend,
        "ascend",
        "int8",
        role(PdRole::Decode, KvTransfer::Nixl),
    );
    assert!(matches!(
        validate(&nixl_on_ascend),
        Err(RenderError::InvalidField {
            field: "disaggregation",
            ..
        })
    ));
}

#[test]
fn the_router_discovers_both_roles_and_fronts_only_what_speaks_its_protocol() {
    let rc = |engine| RouterConfig {
        namespace: "team-a".into(),
        prefill_selector: vec!["m=r1".into(), "role=prefill".into()],
        decode_selector: vec!["m=r1".into(), "role=decode".into()],
        engine,
    };
    let cmd = router_command(&rc(Engine::Sglang)).expect("sglang is routed");
    assert_eq!(cmd.program, "sglang-router");
    assert_eq!(cmd.args[..2], ["launch", "--pd-disaggregation"]);
    assert_eq!(
        cmd.flag_value("--service-discovery-namespace"),
        Some("team-a")
    );
    let shell = cmd.to_shell();
    assert!(
        shell.contains("--prefill-selector m=r1 role=prefill --decode-selector m=r1 role=decode"),
        "{shell}"
    );
    assert!(router_command(&rc(Engine::Sim)).is_ok());
    for engine in [Engine::Vllm, Engine::VllmAscend, Engine::Llamacpp] {
        assert!(
            matches!(
                router_command(&rc(engine)),
                Err(RenderError::InvalidField { .. })
            ),
            "{engine} must be refused"
        );
    }
}
