//! Cluster-level operator configuration, read from a YAML file (the Helm chart mounts it
//! from a ConfigMap). It holds what a manifest should not have to repeat: node pools that
//! may scale from zero, default images, and where weights are cached.

use std::collections::BTreeMap;

use deepseek_engine::Engine;
use serde::{Deserialize, Serialize};

use crate::api::Vendor;

/// A node pool the cluster can provide even when none of its nodes exist yet
/// (cloud pools that scale from zero). The operator plans against it and creates pods;
/// the cluster autoscaler adds the nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredPool {
    pub name: String,
    /// Catalog accelerator id, e.g. `h100-80gb`.
    pub product: String,
    pub accelerators_per_node: u32,
    /// Most nodes the pool can grow to.
    #[serde(default = "default_max_nodes")]
    pub max_nodes: u32,
    /// Labels the pool's nodes carry; pods select on them.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<DeclaredTaint>,
    /// Namespaces whose models may use the pool; empty: every namespace. Models of other
    /// namespaces are never planned on it, so they never get its taints' tolerations, and
    /// their pods keep off its nodes where the pool's nodes can be told apart (a
    /// Karpenter NodePool's `karpenter.sh/nodepool` label); taint the pool's nodes so the
    /// scheduler keeps every other pod off too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The Karpenter NodePool this pool was read from (never from the configuration file):
    /// nodes labelled `karpenter.sh/nodepool=<it>` belong to this pool.
    #[serde(skip)]
    pub nodepool: Option<String>,
}

fn default_max_nodes() -> u32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DeclaredTaint {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    pub effect: String,
}

/// A weight cache on the nodes' disks, chosen by the administrator. Manifests pick one by
/// name; they can never name a host path themselves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeCache {
    pub name: String,
    /// Directory on every node. Each namespace gets its own subdirectory.
    pub host_path: String,
    /// One directory for every namespace. Saves disk and downloads, but a tenant can then
    /// plant files (such as a model's remote code) that another tenant's engine loads: set
    /// it only when every namespace trusts every other.
    #[serde(default)]
    pub shared_across_namespaces: bool,
}

/// CPU and memory requests of inference pods, overriding the built-in sizing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSizing {
    /// CPU cores requested per accelerator (default 4; at least 2 per pod).
    pub cpu_per_accelerator: Option<u32>,
    /// Host memory requested per pod, GiB, on accelerator nodes (default: 8 per
    /// accelerator, at least 16).
    #[serde(rename = "memoryGiB")]
    pub memory_gib: Option<u32>,
    /// Size of the `/dev/shm` memory volume, GiB (default 16).
    #[serde(rename = "shmGiB")]
    pub shm_gib: Option<u32>,
}

/// Everything configurable at the cluster level.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct OperatorConfig {
    pub declared_pools: Vec<DeclaredPool>,
    /// Image per `vendor/engine` key (e.g. `nvidia/vllm`), overriding the built-in defaults.
    pub images: BTreeMap<String, String>,
    /// Default node cache directory when a manifest names none (a per-namespace
    /// subdirectory of it is mounted).
    pub cache_host_path: Option<String>,
    /// Further node caches a manifest may choose by name (`spec.cache.name`).
    pub caches: Vec<NodeCache>,
    /// Prometheus server KEDA queries for `autoscaling.provider: keda`. Only the
    /// administrator sets it: a manifest must not point KEDA at an arbitrary address.
    pub prometheus_address: Option<String>,
    /// CPU, memory and `/dev/shm` sizing of inference pods.
    pub pod_sizing: PodSizing,
    /// Tag of the default runtime images (default: this operator's version). Models record
    /// the image they resolved, so changing it affects only new and changed models.
    pub runtime_image_tag: Option<String>,
    /// Group ids of the nodes' ROCm device files (`video`, `render`). When set, AMD pods
    /// run as a non-root user in these groups; otherwise as root, with every capability
    /// dropped, since the ids differ from host to host.
    pub amd_render_groups: Vec<i64>,
    /// Let pods that run as root (AMD without `amdRenderGroups`) mount a node cache (a
    /// writable host path). Off: such a model is refused with the reason, and must use a
    /// PersistentVolumeClaim (`cache.claimName`, `source.volume`) or wait for the groups
    /// to be configured. A root process writing a host directory can plant files that
    /// every later pod on the node (of any namespace sharing the cache) loads.
    pub allow_root_host_path_cache: bool,
    /// Honour a model's `autoscaling.deepseek-operator.dev/prometheus-query` annotation.
    /// Off: the operator's own query is used (and an Event says the annotation was
    /// ignored), since a tenant's query runs on the shared Prometheus and its result shows
    /// in the tenant's HPA status, so it could read other namespaces' series.
    pub allow_custom_prometheus_queries: bool,
    /// Catalog overrides (YAML files) for models and accelerators.
    pub catalog_models_file: Option<String>,
    pub catalog_accelerators_file: Option<String>,
    /// The NetworkPolicy the operator applies per model (desired/network_policy.rs).
    pub network_policy: NetworkPolicyConfig,
    /// Seconds a group's pod may sit on an unreachable node (`node.kubernetes.io/unreachable`
    /// taint, or Ready not True) before the group counts as lost and is recreated elsewhere.
    pub unreachable_node_timeout_seconds: Seconds<60>,
    /// Seconds a rank may stay NotReady while another rank of its group is Ready before
    /// the whole group is recreated.
    pub rank_not_ready_timeout_seconds: Seconds<120>,
    /// Seconds some ranks of a group may wait unschedulable while others already hold
    /// nodes (a node autoscaler provided part of the group) before the group is removed
    /// and created again, so a half group never holds accelerators forever.
    pub capacity_pending_timeout_seconds: Seconds<300>,
    /// Seconds to wait, after removing such a partly placed group, before creating it
    /// again; doubled per removal in a row (whole_groups.rs `retry_delay`). Longer than the
    /// NodePool's consolidation of an empty node, so the freed node goes first.
    pub capacity_retry_seconds: Seconds<300>,
    /// The drain bound: seconds in-flight requests get once a pod is stopped (the
    /// launcher's `DSO_DRAIN_SECONDS`); pods' `terminationGracePeriodSeconds` follows it.
    pub drain_seconds: Seconds<{ deepseek_engine::DEFAULT_DRAIN_SECONDS }>,
    /// How often a group whose rank restarted or failed is recreated (crash loops).
    pub crash_loop_backoff: CrashLoopBackoff,
    /// Where a model's helper pods run (its front, router and KV store).
    pub helper_pods: HelperPods,
}

/// Placement of a model's helper pods (front, router, KV store: CPU only, no accelerator),
/// on top of their preference for nodes without accelerators (desired/affinity.rs
/// `general_nodes`): an administrator may pin them to a system pool, or onto nodes whose
/// pod network clients can reach.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct HelperPods {
    /// Labels a node must carry.
    pub node_selector: BTreeMap<String, String>,
    /// Taints tolerated (e.g. a system pool's).
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
}

/// The back-off of recreating a model's crash-looping groups (decide/crash_backoff.rs):
/// each recreation waits `baseSeconds`, doubled per recreation in a run (each less than a
/// window after the last), up to `capSeconds`, jittered down to half; and never more than
/// `maxRecreations` in any
/// `windowSeconds`, so a rank that fails at every start cannot flood the API server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct CrashLoopBackoff {
    pub max_recreations: u32,
    pub window_seconds: u64,
    pub base_seconds: u64,
    pub cap_seconds: u64,
}

impl Default for CrashLoopBackoff {
    fn default() -> Self {
        CrashLoopBackoff {
            max_recreations: 6,
            window_seconds: 600,
            base_seconds: 10,
            cap_seconds: 300,
        }
    }
}

/// A number of seconds whose default is `DEFAULT`, so a missing field and
/// `OperatorConfig::default()` agree.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(transparent)]
pub struct Seconds<const DEFAULT: u64>(pub u64);

impl<const DEFAULT: u64> Default for Seconds<DEFAULT> {
    fn default() -> Self {
        Seconds(DEFAULT)
    }
}

impl<const DEFAULT: u64> Seconds<DEFAULT> {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

/// Who may reach a model's pods. Ranks of one model always reach each other; the API and
/// launcher ports are open to the model's own namespace, the operator's namespace and the
/// namespaces selected here; nothing else reaches the pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicyConfig {
    /// Apply one NetworkPolicy per model (on by default); off deletes the operator's.
    pub enabled: bool,
    /// The operator's namespace (the chart sets it): its pods scrape the launchers.
    pub operator_namespace: Option<String>,
    /// More namespaces allowed to call the API and launcher ports, each a namespace label
    /// selector (`matchLabels`), e.g. `{kubernetes.io/metadata.name: gateway}`.
    pub allow_from_namespaces: Vec<BTreeMap<String, String>>,
}

impl Default for NetworkPolicyConfig {
    fn default() -> Self {
        NetworkPolicyConfig {
            enabled: true,
            operator_namespace: None,
            allow_from_namespaces: Vec::new(),
        }
    }
}

/// Name of the cache built from `cacheHostPath` (or the built-in directory).
pub const DEFAULT_CACHE_NAME: &str = "default";
/// Node directory for downloaded weights when the configuration names none.
pub const DEFAULT_CACHE_HOST_PATH: &str = "/var/lib/deepseek-operator/models";

impl OperatorConfig {
    /// The node cache called `name` (`None`: the default one).
    pub fn cache(&self, name: Option<&str>) -> Option<NodeCache> {
        match name {
            None | Some(DEFAULT_CACHE_NAME)
                if !self.caches.iter().any(|c| c.name == DEFAULT_CACHE_NAME) =>
            {
                Some(NodeCache {
                    name: DEFAULT_CACHE_NAME.into(),
                    host_path: self
                        .cache_host_path
                        .clone()
                        .unwrap_or_else(|| DEFAULT_CACHE_HOST_PATH.into()),
                    shared_across_namespaces: false,
                })
            }
            None => self
                .caches
                .iter()
                .find(|c| c.name == DEFAULT_CACHE_NAME)
                .cloned(),
            Some(n) => self.caches.iter().find(|c| c.name == n).cloned(),
        }
    }

    pub fn from_yaml(text: &str) -> Result<Self, String> {
        serde_yaml::from_str(text).map_err(|e| format!("invalid operator config: {e}"))
    }

    /// The router's image of a disaggregated model: `images.router`, else the default
    /// router image (runtime-image/Dockerfile.router) at the runtime image tag.
    pub fn router_image(&self) -> String {
        self.images.get("router").cloned().unwrap_or_else(|| {
            let tag = self
                .runtime_image_tag
                .as_deref()
                .unwrap_or(deepseek_engine::images::TAG);
            format!("{}/router:{tag}", deepseek_engine::images::REGISTRY)
        })
    }

    /// The image for a vendor and engine: configured, else the runtime image default.
    pub fn image_for(&self, vendor: Vendor, engine: Engine) -> String {
        let key = format!("{}/{}", vendor.as_str(), engine.as_str());
        self.images
            .get(&key)
            .or_else(|| self.images.get(vendor.as_str()))
            .cloned()
            .unwrap_or_else(|| {
                let tag = self
                    .runtime_image_tag
                    .as_deref()
                    .unwrap_or(deepseek_engine::images::TAG);
                deepseek_engine::images::default_image_tagged(vendor.as_str(), engine, tag)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_declared_pools_and_images() {
        let cfg = OperatorConfig::from_yaml(
            r#"
declaredPools:
  - name: gke-h100
    product: h100-80gb
    acceleratorsPerNode: 8
    maxNodes: 4
    nodeSelector: {cloud.google.com/gke-accelerator: nvidia-h100-80gb}
    taints: [{key: nvidia.com/gpu, value: present, effect: NoSchedule}]
images:
  nvidia/vllm: example.com/vllm:1
"#,
        )
        .expect("valid config");
        assert_eq!(cfg.declared_pools[0].max_nodes, 4);
        assert_eq!(
            cfg.image_for(Vendor::Nvidia, Engine::Vllm),
            "example.com/vllm:1"
        );
        assert!(OperatorConfig::from_yaml("declaredPools: 3").is_err());
        assert_eq!(cfg.unreachable_node_timeout_seconds.0, 60);
        assert_eq!(
            OperatorConfig::default().rank_not_ready_timeout_seconds.0,
            120
        );
        let timeouts =
            OperatorConfig::from_yaml("unreachableNodeTimeoutSeconds: 5").expect("valid config");
        assert_eq!(timeouts.unreachable_node_timeout_seconds.0, 5);
    }

    #[test]
    fn crash_loop_backoff_defaults_to_six_in_ten_minutes_and_is_configurable() {
        let d = OperatorConfig::default().crash_loop_backoff;
        assert_eq!((d.max_recreations, d.window_seconds), (6, 600));
        let cfg =
            OperatorConfig::from_yaml("crashLoopBackoff: {maxRecreations: 2, capSeconds: 60}")
                .expect("valid config");
        let b = cfg.crash_loop_backoff;
        assert_eq!(
            (b.max_recreations, b.window_seconds, b.cap_seconds),
            (2, 600, 60)
        );
    }

    #[test]
    fn network_policy_is_on_unless_switched_off() {
        let cfg = OperatorConfig::from_yaml("images: {}").expect("valid config");
        assert!(cfg.network_policy.enabled);
        let cfg = OperatorConfig::from_yaml(
            "networkPolicy: {enabled: false, operatorNamespace: ops, allowFromNamespaces: [{team: a}]}",
        )
        .expect("valid config");
        assert!(!cfg.network_policy.enabled);
        assert_eq!(
            cfg.network_policy.operator_namespace.as_deref(),
            Some("ops")
        );
        assert_eq!(cfg.network_policy.allow_from_namespaces[0]["team"], "a");
    }

    #[test]
    fn caches_resolve_by_name_with_a_default() {
        let cfg = OperatorConfig::from_yaml(
            "cacheHostPath: /data/w\ncaches: [{name: nvme, hostPath: /nvme/w, sharedAcrossNamespaces: true}]",
        )
        .expect("valid config");
        let d = cfg.cache(None).expect("default cache");
        assert_eq!(
            (d.name.as_str(), d.host_path.as_str()),
            ("default", "/data/w")
        );
        assert!(!d.shared_across_namespaces);
        assert!(
            cfg.cache(Some("nvme"))
                .expect("nvme")
                .shared_across_namespaces
        );
        assert!(cfg.cache(Some("etc")).is_none());
        let empty = OperatorConfig::default();
        assert_eq!(
            empty.cache(Some("default")).map(|c| c.host_path),
            Some(DEFAULT_CACHE_HOST_PATH.to_string())
        );
    }
}
