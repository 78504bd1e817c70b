//! Ascend (CANN/HCCL) environment for vllm-ascend pods.

use crate::env::POD_IP_PLACEHOLDER;
use crate::CommandLine;

/// Network interface HCCL/GLOO bind to inside the pod.
pub const DEFAULT_IFNAME: &str = "eth0";

/// Adds the HCCL/GLOO variables vllm-ascend's multi-node guide sets; harmless on one node.
pub fn with_hccl_env(cmd: CommandLine) -> CommandLine {
    cmd.with_env("HCCL_IF_IP", POD_IP_PLACEHOLDER)
        .with_env("GLOO_SOCKET_IFNAME", DEFAULT_IFNAME)
        .with_env("TP_SOCKET_IFNAME", DEFAULT_IFNAME)
        .with_env("HCCL_SOCKET_IFNAME", DEFAULT_IFNAME)
        .with_env("OMP_PROC_BIND", "false")
        .with_env("OMP_NUM_THREADS", "100")
        .with_env("PYTORCH_NPU_ALLOC_CONF", "expandable_segments:True")
}
