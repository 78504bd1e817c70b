//! Status of `DeepSeekModel`: what the operator decided and observed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeepSeekModelStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Planned, Scheduled, Available, Progressing, Degraded.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanStatus>,
    /// Replica groups that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Replica groups whose every pod is ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Replicas the operator is driving toward (spec, or the autoscaler's decision).
    #[serde(default)]
    pub desired_replicas: i32,
    /// Queued + running requests summed over leaders at the last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u32>,
    /// Label selector of the leader pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
    /// The phases of the last wake-up from zero by held requests (written by the
    /// autoscaler once the first held request is answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_from_zero: Option<ScaleFromZero>,
    /// What the pods run, resolved once per spec and pool: an operator upgrade reuses it,
    /// so it restarts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<ResolvedStatus>,
    /// A disaggregated model's roles and router, as their objects report them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<RolesStatus>,
}

/// When each phase of a wake-up from zero happened (RFC 3339). Phases from pod
/// conditions have whole seconds; `ranksJoined` of a one-node group is when the autoscaler
/// first saw its pod Running (within 0.5 s).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleFromZero {
    /// The first request held (by the front's clock).
    pub request_seen: String,
    pub scale_decision: String,
    /// The newest node the first group runs on was created, when that was after the
    /// request was seen (a node autoscaler made it for the wake-up); absent when the
    /// group found its nodes in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_created: Option<String>,
    /// Every pod of the first group bound to a node.
    pub pods_scheduled: String,
    /// Every rank of that group joined (the workers Ready).
    pub ranks_joined: String,
    /// Its leader Ready: the engine loaded and every rank serving.
    pub engine_ready: String,
    /// The first held request answered (by the front's clock).
    pub first_token: String,
}

/// The two roles of a disaggregated model and its router.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolesStatus {
    pub prefill: RoleStatus,
    pub decode: RoleStatus,
    /// Router pods ready to take requests.
    pub router_ready_replicas: i32,
}

/// One role, from its role model's status.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// The role model (`<model>-prefill` or `<model>-decode`).
    pub model: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub desired_replicas: i32,
    /// Accelerator, layout and size of one group of the role, once planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_per_replica: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Why the role is not available, in its role model's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The image, launch configuration and template hash resolved for the current spec.
/// Reused while `key` (spec generation, pool identity and the operator configuration
/// that reaches pods) is unchanged, whatever the operator's version.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedStatus {
    /// Digest of the inputs the resolution was made from.
    pub key: String,
    pub image: String,
    /// The launch configuration as JSON (the controller/launcher contract).
    pub launch_config: String,
    pub template_hash: String,
    /// Operator version that resolved it.
    pub operator_version: String,
}

/// What the planner decided, as shown to the user.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    pub vendor: String,
    pub product: String,
    /// Weight format served (the spec's, or the model's native one).
    pub quantization: String,
    /// Extended resource requested per pod, e.g. `nvidia.com/gpu`.
    pub resource_name: String,
    pub engine: String,
    pub gpus_per_replica: u32,
    pub nodes_per_replica: u32,
    pub gpus_per_node: u32,
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    /// `TPxPP`, for the printer column; the expert-parallel layout's name (`DP16xEP16`,
    /// `DP4xTP4xEP16`) when it has one.
    pub layout: String,
    /// DP-attention groups, on expert-parallel layouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_parallel: Option<u32>,
    /// Ranks the routed experts are spread over, on expert-parallel layouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert_parallel: Option<u32>,
    /// Why the planner chose this layout (when it chose by throughput).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout_reason: Option<String>,
    pub max_model_len: u32,
    pub max_concurrency: u32,
    /// Pool the replicas are placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    pub memory: MemoryStatus,
}

/// Per-accelerator memory, in GiB, as strings so the schema carries no floats the
/// server would reformat.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStatus {
    #[serde(rename = "weightsGiB")]
    pub weights_gib: String,
    #[serde(rename = "kvCacheGiB")]
    pub kv_cache_gib: String,
    #[serde(rename = "overheadGiB")]
    pub overhead_gib: String,
    #[serde(rename = "perGpuGiB")]
    pub per_gpu_gib: String,
    #[serde(rename = "usablePerGpuGiB")]
    pub usable_per_gpu_gib: String,
}
