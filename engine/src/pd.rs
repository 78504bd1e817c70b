//! Prefill/decode disaggregation: each engine's flags for its role, and the router that
//! fronts both roles.
//!
//! A disaggregated model runs two kinds of groups. Prefill computes a prompt and hands
//! the sequence's KV cache to a decode group, which generates the tokens. The router
//! (`sglang-router`, pinned in `images::pins`) sends each request to one prefill and one
//! decode leader with a shared bootstrap room; the prefill side publishes the KV on its
//! bootstrap port and decode pulls it from there. The flags differ per engine:
//!
//! - SGLang: `--disaggregation-mode prefill|decode`, `--disaggregation-transfer-backend`,
//!   and on prefill `--disaggregation-bootstrap-port`.
//! - vLLM: `--kv-transfer-config` with the NIXL connector (`kv_both` on either side, as
//!   vLLM's P/D setup uses it) or the Mooncake connector (producer/consumer).
//! - vllm-ascend: `--kv-transfer-config` with its `MooncakeConnectorV1`.
//! - llama.cpp has no KV transfer: refused.
//! - the sim: `--pd-role` and `--bootstrap-port` (a simulated handoff over HTTP).

use serde::{Deserialize, Serialize};

use crate::{CommandLine, Engine, RenderError};

/// SGLang's default bootstrap port, used by every engine here for the KV handoff.
pub const BOOTSTRAP_PORT: u16 = 8998;
/// The router's OpenAI-compatible port (its Service targets it).
pub const ROUTER_PORT: u16 = 8000;
/// The router's Prometheus port.
pub const ROUTER_METRICS_PORT: u16 = 29000;
/// Pod annotation the router's service discovery reads a prefill pod's bootstrap port from.
pub const BOOTSTRAP_PORT_ANNOTATION: &str = "sglang.ai/bootstrap-port";

/// Which half of a disaggregated deployment a group serves.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum PdRole {
    Prefill,
    Decode,
}

impl PdRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PdRole::Prefill => "prefill",
            PdRole::Decode => "decode",
        }
    }
}

impl std::fmt::Display for PdRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How KV caches move from prefill to decode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum KvTransfer {
    /// Mooncake transfer engine (RDMA): SGLang's default, vllm-ascend's connector.
    #[default]
    Mooncake,
    /// NVIDIA NIXL (UCX): vLLM's reference P/D connector.
    Nixl,
}

impl KvTransfer {
    pub fn as_str(self) -> &'static str {
        match self {
            KvTransfer::Mooncake => "mooncake",
            KvTransfer::Nixl => "nixl",
        }
    }
}

/// A group's part in a disaggregated deployment (`LaunchConfig::disaggregation`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Disaggregation {
    pub role: PdRole,
    #[serde(default)]
    pub transfer: KvTransfer,
}

/// Refuses engines without a KV handoff.
pub(crate) fn validate(engine: Engine, d: &Disaggregation) -> Result<(), RenderError> {
    match (engine, d.transfer) {
        (Engine::Llamacpp, _) => Err(RenderError::InvalidField {
            field: "disaggregation",
            reason: "llama.cpp cannot hand a KV cache to another server; serve it aggregated"
                .into(),
        }),
        (Engine::VllmAscend, KvTransfer::Nixl) => Err(RenderError::InvalidField {
            field: "disaggregation",
            reason: "vllm-ascend transfers KV with Mooncake, not NIXL".into(),
        }),
        _ => Ok(()),
    }
}

/// SGLang's role flags.
pub(crate) fn sglang_flags(cmd: CommandLine, d: &Disaggregation) -> CommandLine {
    let cmd = cmd
        .flag("--disaggregation-mode", d.role.as_str())
        .flag("--disaggregation-transfer-backend", d.transfer.as_str());
    match d.role {
        PdRole::Prefill => cmd.flag("--disaggregation-bootstrap-port", BOOTSTRAP_PORT),
        PdRole::Decode => cmd,
    }
}

/// vLLM's (and vllm-ascend's) `--kv-transfer-config` for a role.
pub(crate) fn vllm_kv_transfer_config(ascend: bool, d: &Disaggregation) -> String {
    let (connector, role) = match (ascend, d.transfer, d.role) {
        (true, _, PdRole::Prefill) => ("MooncakeConnectorV1", "kv_producer"),
        (true, _, PdRole::Decode) => ("MooncakeConnectorV1", "kv_consumer"),
        (false, KvTransfer::Nixl, _) => ("NixlConnector", "kv_both"),
        (false, KvTransfer::Mooncake, PdRole::Prefill) => ("MooncakeConnector", "kv_producer"),
        (false, KvTransfer::Mooncake, PdRole::Decode) => ("MooncakeConnector", "kv_consumer"),
    };
    serde_json::json!({ "kv_connector": connector, "kv_role": role }).to_string()
}

/// What the router pod runs: where to find both roles' leaders.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouterConfig {
    /// Namespace whose pods the router discovers.
    pub namespace: String,
    /// Labels (`key=value`) of the prefill role's leader pods.
    pub prefill_selector: Vec<String>,
    /// Labels of the decode role's leader pods.
    pub decode_selector: Vec<String>,
    /// The engines behind it (SGLang or the sim: the router's bootstrap protocol).
    pub engine: Engine,
}

/// The router's command line: PD mode with Kubernetes service discovery (so scaling a
/// role never restarts the router), every port bound on all of the pod's interfaces
/// (a pod network namespace), metrics included.
///
/// Only SGLang (and the sim, which speaks its protocol) can be routed: the pinned router
/// injects SGLang's bootstrap fields, while vLLM's P/D needs a proxy that passes the
/// prefill response's `kv_transfer_params` to decode, which neither the pinned router
/// nor the pinned vLLM ships as a command.
pub fn router_command(cfg: &RouterConfig) -> Result<CommandLine, RenderError> {
    if !matches!(cfg.engine, Engine::Sglang | Engine::Sim) {
        return Err(RenderError::InvalidField {
            field: "disaggregation",
            reason: format!(
                "the pinned router speaks SGLang's prefill/decode protocol; {} has no router here (use engine sglang)",
                cfg.engine
            ),
        });
    }
    let mut cmd = CommandLine::new("sglang-router")
        .arg("launch")
        .arg("--pd-disaggregation")
        .flag("--host", "0.0.0.0")
        .flag("--port", ROUTER_PORT)
        .flag("--prometheus-host", "0.0.0.0")
        .flag("--prometheus-port", ROUTER_METRICS_PORT)
        .arg("--service-discovery")
        .flag("--service-discovery-namespace", &cfg.namespace)
        .flag("--service-discovery-port", crate::ENGINE_PORT)
        .arg("--prefill-selector");
    for s in &cfg.prefill_selector {
        cmd = cmd.arg(s);
    }
    cmd = cmd.arg("--decode-selector");
    for s in &cfg.decode_selector {
        cmd = cmd.arg(s);
    }
    Ok(cmd.flag("--backend", "sglang"))
}
