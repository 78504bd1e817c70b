//! Engine command lines and the controller <-> launcher contract.
//!
//! The operator renders these to show and pin what a pod will run; the launcher in the
//! pod renders the same thing from the same `LaunchConfig` and executes it. One crate,
//! so the two can never disagree about engine flags. No Kubernetes client here.
//!
//! Engine versions are pinned in [`images::pins`] (vLLM 0.32.0, AMD's vLLM 0.23.0, SGLang
//! 0.5.23, vllm-ascend 0.23.0, llama.cpp from llama-cpp-python 0.3.36); the runtime images
//! are built on them. `engine/conformance/run` feeds every command this crate can render to
//! those engines' own argument parsers (docs/engines.md).

use serde::{Deserialize, Serialize};

mod ascend;
mod command;
mod config;
pub mod expert;
pub mod images;
pub mod lifecycle;
mod llamacpp;
pub mod metrics;
mod order;
pub mod pd;
mod quantization;
mod ray;
mod render;
mod sglang;
pub mod sim;
mod vllm;

pub use command::{CommandLine, LaunchSteps};
pub use config::{LaunchConfig, RenderError, Role, SimProfile};
pub use expert::ExpertLayout;
pub use lifecycle::{
    termination_grace_period_seconds, DEFAULT_DRAIN_SECONDS, DRAIN_COMMAND, DRAIN_PATH, JOIN_PATH,
    LIVENESS_ENGINE_TIMEOUT_MS, LIVENESS_PATH, LIVENESS_PROBE_TIMEOUT_SECONDS, RANK_HEALTH_PATH,
    READINESS_PATH, READINESS_PROBE_TIMEOUT_SECONDS, RENDEZVOUS_PATH, STOP_MARGIN_SECONDS,
    TERMINATION_GRACE_PERIOD_SECONDS,
};
pub use order::Stage;
pub use pd::{Disaggregation, KvTransfer, PdRole, RouterConfig};
pub use quantization::Quantization;
pub use render::{render, render_with, validate, RenderOptions};

/// The engine's OpenAI-compatible HTTP port (the Service targets it).
pub const ENGINE_PORT: u16 = 8000;
/// The launcher's public port: `/metrics` (normalised), `/healthz`, `/readyz`. Opened
/// by the model's NetworkPolicy to the namespaces allowed to call the model.
pub const LAUNCHER_PORT: u16 = 8080;
/// The launcher's group port: the rendezvous, `/rankz` and `/drain`, each refused
/// without the group token ([`env::GROUP_TOKEN`]). Opened by the NetworkPolicy only to
/// the model's own pods.
pub const GROUP_PORT: u16 = 8081;
/// Ray head port (vllm-ascend multi-node; vLLM on NVIDIA/AMD no longer uses Ray).
pub const RAY_PORT: u16 = 6379;
/// The leader's distributed-init port: SGLang `--dist-init-addr`, vLLM `--master-port`
/// (and the sim's group connection).
pub const DIST_INIT_PORT: u16 = 29500;

/// Environment variables the controller sets on launcher containers.
pub mod env {
    /// JSON of [`crate::LaunchConfig`].
    pub const LAUNCH_CONFIG: &str = "DSO_LAUNCH_CONFIG";
    /// Rank of this pod in its replica group (0 = leader).
    pub const RANK: &str = "DSO_RANK";
    /// Address (DNS name or IP) of the group's leader pod.
    pub const LEADER_ADDRESS: &str = "DSO_LEADER_ADDRESS";
    /// This pod's IP (downward API `status.podIP`).
    pub const POD_IP: &str = "DSO_POD_IP";
    /// Path of a file holding a Hugging Face token (mounted Secret).
    pub const HF_TOKEN_FILE: &str = "DSO_HF_TOKEN_FILE";
    /// Drain bound in seconds ([`crate::DEFAULT_DRAIN_SECONDS`] when unset).
    pub const DRAIN_SECONDS: &str = "DSO_DRAIN_SECONDS";
    /// The group token: every call to a launcher's group port carries it as a bearer
    /// token. The operator derives it per group; a multi-node launcher refuses to start
    /// without it.
    pub const GROUP_TOKEN: &str = "DSO_GROUP_TOKEN";
    /// Placeholder in rendered command lines for this pod's IP; the launcher (or
    /// Kubernetes, for container args) substitutes it.
    pub const POD_IP_PLACEHOLDER: &str = "$(DSO_POD_IP)";
}

/// Inference engines the operator drives (`Sim` is the GPU-free test double).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    Vllm,
    Sglang,
    VllmAscend,
    Llamacpp,
    Sim,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Vllm => "vllm",
            Engine::Sglang => "sglang",
            Engine::VllmAscend => "vllm-ascend",
            Engine::Llamacpp => "llamacpp",
            Engine::Sim => "sim",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
