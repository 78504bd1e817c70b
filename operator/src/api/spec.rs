//! Spec of `DeepSeekModel`: what the user asks for.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DeepSeekModelStatus;
pub use deepseek_planner::{KvCacheDtype, LayoutObjective, Quantization, Vendor};

/// A DeepSeek model served on accelerators, sized and placed by the operator.
// The lint mistakes repeated `type_ = "string"` inside the printcolumn list for duplicated
// attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "inference.deepseek-operator.dev",
    version = "v1alpha1",
    kind = "DeepSeekModel",
    namespaced,
    shortname = "dsm",
    status = "DeepSeekModelStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model"),
    printcolumn(
        name = "Quant",
        type_ = "string",
        json_path = ".status.plan.quantization"
    ),
    printcolumn(
        name = "Accel/Replica",
        type_ = "integer",
        json_path = ".status.plan.gpusPerReplica"
    ),
    printcolumn(name = "TPxPP", type_ = "string", json_path = ".status.plan.layout"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[kube(validation = Rule::new("self.metadata.name.matches('^[a-z]([a-z0-9]|-[a-z0-9])*$') && size(self.metadata.name) <= 40")
    .message("metadata.name must be a DNS-1035 label of at most 40 characters (lowercase letters, digits and single dashes, starting with a letter): it names the model's Services and pods, which add up to 23 characters to it"))]
#[kube(validation = Rule::new("!has(self.spec.serving) || !has(self.spec.serving.mode) || self.spec.serving.mode != 'disaggregated' || size(self.metadata.name) <= 32")
    .message("a disaggregated model's name is at most 32 characters: its role models are named <name>-prefill and <name>-decode"))]
#[x_kube(validation = Rule::new("self.model == 'custom' ? has(self.customModel) : !has(self.customModel)")
    .message("customModel is required when model is 'custom' and not allowed otherwise"))]
#[x_kube(validation = Rule::new("!has(self.quantization) || !self.quantization.startsWith('gguf-') || !has(self.accelerator) || !has(self.accelerator.vendor) || self.accelerator.vendor == 'cpu'")
    .message("GGUF quantizations are served by llama.cpp on CPU: set accelerator.vendor to cpu or choose another quantization"))]
#[x_kube(validation = Rule::new("(has(self.prefill) || has(self.decode)) ? (has(self.serving) && has(self.serving.mode) && self.serving.mode == 'disaggregated') : true")
    .message("prefill and decode are the roles of disaggregated serving: set serving.mode to disaggregated, or remove them"))]
#[x_kube(validation = Rule::new("has(self.serving) && has(self.serving.mode) && self.serving.mode == 'disaggregated' ? !has(self.replicas) && !has(self.autoscaling) && !has(self.parallelism) : true")
    .message("a disaggregated model is sized per role: move replicas, autoscaling and parallelism under prefill and decode"))]
#[x_kube(validation = Rule::new("(has(oldSelf.serving) && has(oldSelf.serving.mode) ? oldSelf.serving.mode : 'aggregated') == (has(self.serving) && has(self.serving.mode) ? self.serving.mode : 'aggregated')")
    .message("serving.mode cannot change: create a new model with the other mode, then delete this one"))]
#[serde(rename_all = "camelCase")]
pub struct DeepSeekModelSpec {
    /// Catalog id of the model (`deepseek-operator plan --list-models`), or `custom`
    /// together with `customModel`.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9.-]*$')").message("model must be a catalog id such as deepseek-r1, or custom"))]
    pub model: String,

    /// Architecture of a model that is not in the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_model: Option<CustomModel>,

    /// Weight format served; defaults to the model's native format (FP8 for V3/R1, BF16
    /// otherwise). GGUF variants are for CPU serving with llama.cpp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,

    /// Which accelerators to run on. Empty: the operator picks the smallest fit among
    /// the pools it finds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<AcceleratorSelector>,

    /// Inference engine. `auto` picks by vendor and quantization.
    #[serde(default)]
    pub engine: EngineChoice,

    /// Container image of the inference pods; defaults to the runtime image for the
    /// chosen vendor and engine, resolved once and recorded in `status.resolved`, so an
    /// operator upgrade does not restart running models. `auto-upgrade` follows the
    /// operator's default image (and launch settings) on every operator upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Tensor/pipeline parallel overrides; the planner chooses when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<Parallelism>,

    /// Serving limits that size the KV cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<Serving>,

    /// Where the weights come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<WeightSource>,

    /// Where downloaded weights are cached on the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<WeightCache>,

    /// CPU and memory requests of each inference pod; sized from the plan when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<PodResources>,

    /// Desired replicas (groups of `nodesPerReplica` pods) when not autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Scale on request queue depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// How pod changes roll out across replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,

    /// The prefill role of a disaggregated model (`serving.mode: disaggregated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<RoleSpec>,

    /// The decode role of a disaggregated model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<RoleSpec>,
}

/// One role of a disaggregated model: its own groups, sized, placed and scaled apart
/// from the other role's. Fields left out are the model's.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("a role takes replicas or autoscaling, not both"))]
pub struct RoleSpec {
    /// Groups of this role when not autoscaling. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// Scale this role on its own load: prefill on waiting requests, decode on running
    /// ones (`autoscaling.metric` overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Accelerators of this role, e.g. prefill on H200 and decode on H20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<AcceleratorSelector>,
    /// Layout overrides of this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<Parallelism>,
    /// CPU and memory of this role's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<PodResources>,
}

/// Which accelerators a model may run on.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AcceleratorSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<Vendor>,
    /// Catalog id of the accelerator, e.g. `h100-80gb` (`plan --list-accelerators`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Extra node labels the pods must match, on top of the chosen pool's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Extra tolerations, on top of the chosen pool's taints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}

/// Engine choice; `auto` resolves by vendor and quantization.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum EngineChoice {
    #[default]
    Auto,
    Vllm,
    Sglang,
    VllmAscend,
    Llamacpp,
}

/// Parallel layout overrides.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Parallelism {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub tensor: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub pipeline: Option<u32>,
    /// DP-attention groups. 2 or more runs attention data-parallel (each group keeps only
    /// its own sequences' KV cache) with the routed experts spread over every rank
    /// (expert parallelism); `tensor` is then the TP inside each group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub data: Option<u32>,
    /// How the planner picks a layout it is not given: `cheapest` (fewest accelerators,
    /// TP x PP; the default) or `throughput` (most decode tokens/s per accelerator at
    /// `serving.concurrency`, also trying DP attention x EP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<LayoutObjective>,
    /// Extra expert copies for load balancing, on expert-parallel layouts. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1024))]
    pub redundant_experts: Option<u32>,
    /// Load the multi-token-prediction layer for speculative decoding (V3 family).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub speculative_mtp: bool,
}

/// Serving limits. They size the KV cache the planner reserves.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Serving {
    /// Longest sequence (prompt + output) in tokens. Default: 8192, capped at the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 256, max = 1048576))]
    pub max_model_len: Option<u32>,
    /// Sequences that must fit in the KV cache at `maxModelLen` at once. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub concurrency: Option<u32>,
    /// Fraction of each accelerator's memory the engine may take, in (0, 1]. Default 0.9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("gpuMemoryUtilization must be in (0, 1]"))]
    pub gpu_memory_utilization: Option<f64>,
    /// Extra engine arguments appended verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// KV cache element type: `auto` (16-bit, the default) or `fp8` (half the memory per
    /// token, where the engine supports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_dtype: Option<KvCacheDtype>,
    /// `aggregated` (default: every group prefills and decodes) or `disaggregated`
    /// (prefill and decode groups apart, behind a router). `prefill` and `decode` are set
    /// by the operator on the role models it creates for a disaggregated model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ServingMode>,
    /// How the KV cache goes from prefill to decode (disaggregated only). Default:
    /// `ascend` on Ascend, `mooncake` elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_transfer: Option<KvTransferChoice>,
}

/// Whether prefill and decode run in the same groups.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ServingMode {
    #[default]
    Aggregated,
    Disaggregated,
    /// The prefill role model of a disaggregated model (set by the operator).
    Prefill,
    /// The decode role model of a disaggregated model (set by the operator).
    Decode,
}

/// KV-cache transfer backend between prefill and decode.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum KvTransferChoice {
    /// Mooncake (RDMA): the default on NVIDIA and AMD.
    Mooncake,
    /// NVIDIA NIXL (UCX).
    Nixl,
    /// SGLang's Ascend transfer (memfabric), through a config store the operator runs:
    /// the default on Ascend.
    Ascend,
}

/// Architecture numbers of a model outside the catalog.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.attention != 'mla' || (has(self.kvLoraRank) && has(self.qkRopeHeadDim))")
    .message("MLA models need kvLoraRank and qkRopeHeadDim"))]
#[x_kube(validation = Rule::new("self.attention == 'mla' || (has(self.kvHeads) && has(self.headDim))")
    .message("GQA/MHA models need kvHeads and headDim"))]
#[x_kube(validation = Rule::new("!has(self.activeParametersBillions) || self.activeParametersBillions <= self.parametersBillions")
    .message("activeParametersBillions cannot exceed parametersBillions"))]
pub struct CustomModel {
    /// Hugging Face repository id, e.g. `my-org/my-deepseek-finetune`.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$')").message("huggingFaceRepo must look like owner/name"))]
    pub hugging_face_repo: String,
    pub attention: AttentionKind,
    /// Total parameters (all experts), in billions.
    #[x_kube(validation = Rule::new("self > 0.0").message("parametersBillions must be positive"))]
    pub parameters_billions: f64,
    /// Parameters active per token (MoE), in billions; defaults to all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_parameters_billions: Option<f64>,
    #[schemars(range(min = 1, max = 1000))]
    pub layers: u32,
    #[schemars(range(min = 1))]
    pub hidden_size: u32,
    #[schemars(range(min = 1, max = 1024))]
    pub attention_heads: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_lora_rank: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qk_rope_head_dim: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<u32>,
    #[schemars(range(min = 256))]
    pub max_position_embeddings: u32,
    /// Run Python code from the model's repository (`--trust-remote-code`); only for
    /// architectures the engine does not implement. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trust_remote_code: bool,
}

/// How the KV cache is laid out.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// Multi-head latent attention (DeepSeek V2/V3): one compressed latent per token.
    Mla,
    /// Grouped-query or multi-head attention: K and V per KV head.
    Gqa,
}

/// Where the weights come from: Hugging Face (default, the catalog's repo) or a volume.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.huggingFace) && has(self.volume))").message("source takes huggingFace or volume, not both"))]
pub struct WeightSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugging_face: Option<HuggingFaceSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeSource>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HuggingFaceSource {
    /// Repository id; defaults to the catalog model's (or the quantized variant's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Secret holding the Hugging Face token; mounted into pods, never copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    /// Key in the Secret; default `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Weights already present in a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSource {
    pub claim_name: String,
    /// Path of the model inside the volume.
    pub path: String,
}

/// Where downloaded weights are cached: one of the node caches the administrator
/// configured (by name), or a PersistentVolumeClaim in the model's namespace. A manifest
/// can never name a host path: that would let anyone who may create a model mount any
/// directory of any node.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.claimName) && has(self.name))").message("cache takes name or claimName, not both"))]
#[x_kube(validation = Rule::new("!has(self.hostPath)").message("cache.hostPath was removed: host paths come only from the operator configuration (Helm value config.caches); set cache.name to one of the administrator's caches, or cache.claimName to a PersistentVolumeClaim in this namespace"))]
pub struct WeightCache {
    /// Name of a node cache from the operator configuration (`caches`). Default: the
    /// configuration's default cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// PersistentVolumeClaim in the model's namespace to cache weights on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// Removed: refused by the API server and by the operator. Kept in the schema only so
    /// that old manifests get a clear error instead of being silently pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
}

/// CPU and memory each inference pod requests, overriding the plan's sizing.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodResources {
    /// CPU request, a Kubernetes quantity such as `16` or `8000m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+([.][0-9]+)?m?$')").message("resources.cpu must be a CPU quantity such as 16 or 8000m"))]
    pub cpu: Option<String>,
    /// Memory request, a Kubernetes quantity such as `256Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(Ki|Mi|Gi|Ti)?$')").message("resources.memory must be a quantity such as 256Gi"))]
    pub memory: Option<String>,
}

/// Queue-depth autoscaling.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must be <= maxReplicas"))]
pub struct Autoscaling {
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Queued + running requests one replica should carry.
    #[serde(default = "default_target_queue_depth")]
    #[schemars(range(min = 1, max = 100000))]
    pub target_queue_depth: u32,
    /// `builtin` (the operator scales) or `keda` (the operator emits a ScaledObject).
    #[serde(default)]
    pub provider: AutoscalingProvider,
    /// Seconds between metric reads. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub interval_seconds: Option<u32>,
    /// Seconds the queue must stay low before scaling down. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_stabilization_seconds: Option<u32>,
    /// Most groups added in one step. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_scale_up_step: Option<u32>,
    /// Create groups that do not fit the current nodes, so a cluster autoscaler adds nodes.
    #[serde(default)]
    pub allow_node_provisioning: bool,
    /// What counts as load: `queue` (waiting + running requests; the default), `waiting`
    /// (the prefill role's default) or `running` (the decode role's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<ScaleMetric>,
    /// Hold requests while no replica is ready (a front per model, `<model>--front`).
    /// On by default when `minReplicas` is 0 (docs/autoscaling.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_requests: Option<HoldRequests>,
}

/// The front that holds requests of a model at zero replicas: a Deployment of two
/// `deepseek-launcher front` pods and a Service, `<model>--front`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HoldRequests {
    /// Default: true when `minReplicas` is 0, else false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Requests held at once while no replica is ready; more get 503. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub queue_size: Option<u32>,
    /// Seconds one request may wait for a ready replica before a 503. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub max_wait_seconds: Option<u32>,
}

/// Default bounds of the front's hold queue.
pub const DEFAULT_HOLD_QUEUE_SIZE: u32 = 100;
pub const DEFAULT_HOLD_MAX_WAIT_SECONDS: u32 = 600;

/// The front's settings when holding is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holding {
    pub queue_size: u32,
    pub max_wait_seconds: u32,
}

impl Autoscaling {
    /// Whether this model gets a front, and its bounds: on when asked, or by default
    /// when the model may scale to zero.
    pub fn holding(&self) -> Option<Holding> {
        let h = self.hold_requests.clone().unwrap_or_default();
        h.enabled
            .unwrap_or(self.min_replicas == 0)
            .then(|| Holding {
                queue_size: h.queue_size.unwrap_or(DEFAULT_HOLD_QUEUE_SIZE),
                max_wait_seconds: h.max_wait_seconds.unwrap_or(DEFAULT_HOLD_MAX_WAIT_SECONDS),
            })
    }
}

/// The requests the autoscaler counts against `targetQueueDepth`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ScaleMetric {
    Queue,
    Waiting,
    Running,
}

fn default_min_replicas() -> i32 {
    1
}
fn default_target_queue_depth() -> u32 {
    8
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoscalingProvider {
    #[default]
    Builtin,
    Keda,
}

/// Group-by-group rollout limits.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Groups that may be down at once during a rollout. Default 0 when the pool has room
    /// for a surge group, else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_unavailable: Option<u32>,
    /// Extra groups created ahead of removing old ones. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_surge: Option<u32>,
}

impl DeepSeekModelSpec {
    /// How this model serves: aggregated unless set.
    pub fn serving_mode(&self) -> ServingMode {
        self.serving
            .as_ref()
            .and_then(|s| s.mode)
            .unwrap_or_default()
    }

    /// What the autoscaler counts: the manifest's choice, else the role's own load (a
    /// prefill group is busy while prompts wait; a decode group while sequences run).
    pub fn scale_metric(&self) -> ScaleMetric {
        let chosen = self.autoscaling.as_ref().and_then(|a| a.metric);
        chosen.unwrap_or(match self.serving_mode() {
            ServingMode::Prefill => ScaleMetric::Waiting,
            ServingMode::Decode => ScaleMetric::Running,
            ServingMode::Aggregated | ServingMode::Disaggregated => ScaleMetric::Queue,
        })
    }
}
