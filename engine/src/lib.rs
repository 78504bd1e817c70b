//! Engine command lines and the controller <-> launcher contract.
//!
//! The operator renders these to show and pin what a pod will run; the launcher in the
//! pod renders the same thing from the same `LaunchConfig` and executes it. One module,
//! so the two can never disagree about engine flags. No Kubernetes client here.

use serde::{Deserialize, Serialize};

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
