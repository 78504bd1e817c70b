//! Ascend (CANN/HCCL) environment for vllm-ascend and SGLang pods.

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

/// SGLang on NPUs: HCCL and GLOO bound to the pod's interface (SGLang's multi-node Ascend
/// recipes set both), the NPU allocator's expandable segments and 32 streams per device
/// (set by every SGLang Ascend DeepSeek recipe). vllm-ascend's OMP settings are its own.
pub fn with_sglang_env(cmd: CommandLine) -> CommandLine {
    cmd.with_env("HCCL_IF_IP", POD_IP_PLACEHOLDER)
        .with_env("HCCL_SOCKET_IFNAME", DEFAULT_IFNAME)
        .with_env("GLOO_SOCKET_IFNAME", DEFAULT_IFNAME)
        .with_env("PYTORCH_NPU_ALLOC_CONF", "expandable_segments:True")
        .with_env("STREAMS_PER_DEVICE", "32")
}
