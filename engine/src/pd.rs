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
//!   and on prefill `--disaggregation-bootstrap-port`. On Ascend NPUs the transfer is
//!   `ascend` (Huawei's memfabric transfer engine, SGLang's `TransferBackend.ASCEND`), which
//!   finds its peers through a config store named by `ASCEND_MF_STORE_URL`; Mooncake there
//!   is its Ascend transport (`ENABLE_ASCEND_TRANSFER_WITH_MOONCAKE`, peer-to-peer handshake,
//!   no store). Both read from the pinned SGLang 0.5.23 (`disaggregation/ascend/
//!   transfer_engine.py`, `distributed/device_communicators/mooncake_transfer_engine.py`).
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
/// A port for the memfabric config store of the `ascend` transfer, where the controller
/// runs one (any free port works; both roles must name the same `host:port`).
pub const ASCEND_STORE_PORT: u16 = 8999;
/// Environment variable SGLang's `ascend` transfer reads the config store's URL from.
pub const ASCEND_STORE_ENV: &str = "ASCEND_MF_STORE_URL";
/// Environment switch that makes SGLang's Mooncake transfer use its Ascend transport.
pub const ASCEND_MOONCAKE_ENV: &str = "ENABLE_ASCEND_TRANSFER_WITH_MOONCAKE";

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
    /// Huawei memfabric between Ascend NPUs: SGLang's `ascend` transfer backend, the one
    /// SGLang's Ascend PD recipes use. Needs a config store (`Disaggregation::ascend_store`).
    Ascend,
}

impl KvTransfer {
    pub fn as_str(self) -> &'static str {
        match self {
            KvTransfer::Mooncake => "mooncake",
            KvTransfer::Nixl => "nixl",
            KvTransfer::Ascend => "ascend",
        }
    }

    /// The transfer a group gets when the manifest names none: `ascend` for SGLang (and
    /// the sim standing in for it) on Ascend NPUs, Mooncake elsewhere. vllm-ascend's only
    /// connector is Mooncake's (`MooncakeConnectorV1`), so it keeps Mooncake.
    pub fn default_for(engine: Engine, vendor: &str) -> KvTransfer {
        match (engine, vendor) {
            (Engine::VllmAscend, _) => KvTransfer::Mooncake,
            (_, "ascend") => KvTransfer::Ascend,
            _ => KvTransfer::Mooncake,
        }
    }
}

/// A group's part in a disaggregated deployment (`LaunchConfig::disaggregation`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Disaggregation {
    pub role: PdRole,
    #[serde(default)]
    pub transfer: KvTransfer,
    /// `host:port` of the memfabric config store every prefill and decode group of the
    /// model shares; required by (and only allowed with) `transfer: ascend`. Rendered as
    /// `ASCEND_MF_STORE_URL=tcp://<it>` on every rank. SGLang's A3 recipes point it at the
    /// first prefill node (sgl-project/sglang, `docs/platforms/ascend/
    /// ascend_npu_deepseek_example.md`); `python3 -m memfabric_hybrid.launch_ascend_mf_store`
    /// runs a store alone (memfabric-hybrid 1.3.0, reading `MF_CONFIG_STORE_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ascend_store: Option<String>,
}

impl Disaggregation {
    /// A role with the engine's per-vendor default transfer ([`KvTransfer::default_for`])
    /// and no store address (set `ascend_store` when that default is `ascend`).
    pub fn new(role: PdRole, engine: Engine, vendor: &str) -> Self {
        Disaggregation {
            role,
            transfer: KvTransfer::default_for(engine, vendor),
            ascend_store: None,
        }
    }
}

fn refuse(reason: impl Into<String>) -> Result<(), RenderError> {
    Err(RenderError::InvalidField {
        field: "disaggregation",
        reason: reason.into(),
    })
}

/// Refuses engines without a KV handoff and transfers the vendor's hardware cannot use.
pub(crate) fn validate(
    engine: Engine,
    vendor: &str,
    d: &Disaggregation,
) -> Result<(), RenderError> {
    let ascend = vendor == "ascend";
    match (engine, d.transfer) {
        (Engine::Llamacpp, _) => {
            return refuse("llama.cpp cannot hand a KV cache to another server; serve it aggregated")
        }
        (Engine::VllmAscend, KvTransfer::Nixl | KvTransfer::Ascend) => {
            return refuse(format!(
                "vllm-ascend transfers KV with Mooncake (MooncakeConnectorV1), not {}; use transfer mooncake, or engine sglang for the ascend transfer",
                d.transfer.as_str()
            ))
        }
        (Engine::Sim, _) => {}
        (_, KvTransfer::Nixl) if ascend => {
            return refuse("NIXL does not move KV between Ascend NPUs; use transfer ascend (the default there) or mooncake")
        }
        (_, KvTransfer::Ascend) if !ascend => {
            return refuse(format!(
                "the ascend transfer (memfabric) moves KV between Ascend NPUs only, not {vendor}; use transfer mooncake or nixl"
            ))
        }
        _ => {}
    }
    match (d.transfer, d.ascend_store.as_deref()) {
        (KvTransfer::Ascend, None) if engine != Engine::Sim => refuse(
            "transfer ascend needs ascendStore: the host:port of the memfabric config store shared by every prefill and decode group",
        ),
        (KvTransfer::Ascend, Some(s)) if s.trim().is_empty() || !s.contains(':') => {
            refuse(format!("ascendStore {s:?} is not host:port"))
        }
        (KvTransfer::Mooncake | KvTransfer::Nixl, Some(_)) => {
            refuse("ascendStore is only used by transfer ascend")
        }
        _ => Ok(()),
    }
}

/// SGLang's role flags, and on Ascend the environment its transfer reads.
pub(crate) fn sglang_flags(cmd: CommandLine, vendor: &str, d: &Disaggregation) -> CommandLine {
    let mut cmd = cmd
        .flag("--disaggregation-mode", d.role.as_str())
        .flag("--disaggregation-transfer-backend", d.transfer.as_str());
    if d.role == PdRole::Prefill {
        cmd = cmd.flag("--disaggregation-bootstrap-port", BOOTSTRAP_PORT);
    }
    match (d.transfer, d.ascend_store.as_deref()) {
        (KvTransfer::Ascend, Some(store)) => {
            cmd.with_env(ASCEND_STORE_ENV, format!("tcp://{store}"))
        }
        (KvTransfer::Mooncake, _) if vendor == "ascend" => cmd.with_env(ASCEND_MOONCAKE_ENV, "1"),
        _ => cmd,
    }
}

/// The memfabric config store of the `ascend` transfer, run alone (memfabric-hybrid's
/// `launch_ascend_mf_store` module, which reads its listen URL from
/// `MF_CONFIG_STORE_URL`), listening on every interface of its pod. Not verified on
/// Ascend hardware here: docs/engines.md says so.
pub fn ascend_store_command() -> CommandLine {
    CommandLine::new("python3")
        .arg("-m")
        .arg("memfabric_hybrid.launch_ascend_mf_store")
        .with_env(
            "MF_CONFIG_STORE_URL",
            format!("tcp://0.0.0.0:{ASCEND_STORE_PORT}"),
        )
}

/// vLLM's (and vllm-ascend's) `--kv-transfer-config` for a role.
pub(crate) fn vllm_kv_transfer_config(ascend: bool, d: &Disaggregation) -> String {
    let (connector, role) = match (ascend, d.transfer, d.role) {
        (true, _, PdRole::Prefill) => ("MooncakeConnectorV1", "kv_producer"),
        (true, _, PdRole::Decode) => ("MooncakeConnectorV1", "kv_consumer"),
        (false, KvTransfer::Nixl, _) => ("NixlConnector", "kv_both"),
        // `ascend` never reaches here: `validate` refuses it for the vLLM family.
        (false, KvTransfer::Mooncake | KvTransfer::Ascend, PdRole::Prefill) => {
            ("MooncakeConnector", "kv_producer")
        }
        (false, KvTransfer::Mooncake | KvTransfer::Ascend, PdRole::Decode) => {
            ("MooncakeConnector", "kv_consumer")
        }
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
        let instead = if cfg.engine == Engine::VllmAscend {
            "use engine sglang, which serves Ascend NPUs with the ascend KV transfer"
        } else {
            "use engine sglang"
        };
        return Err(RenderError::InvalidField {
            field: "disaggregation",
            reason: format!(
                "the pinned router speaks SGLang's prefill/decode protocol; {} has no router here ({instead})",
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
