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
    /// What the pods run, resolved once per spec and pool: an operator upgrade reuses it,
    /// so it restarts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<ResolvedStatus>,
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
    /// `TPxPP`, for the printer column.
    pub layout: String,
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
