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

/// Everything configurable at the cluster level.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct OperatorConfig {
    pub declared_pools: Vec<DeclaredPool>,
    /// Image per `vendor/engine` key (e.g. `nvidia/vllm`), overriding the built-in defaults.
    pub images: BTreeMap<String, String>,
    /// Default weight cache on nodes when a manifest names none.
    pub cache_host_path: Option<String>,
    /// Catalog overrides (YAML files) for models and accelerators.
    pub catalog_models_file: Option<String>,
    pub catalog_accelerators_file: Option<String>,
    /// Seconds a group's pod may sit on an unreachable node (`node.kubernetes.io/unreachable`
    /// taint, or Ready not True) before the group counts as lost and is recreated elsewhere.
    pub unreachable_node_timeout_seconds: Seconds<60>,
    /// Seconds a rank may stay NotReady while another rank of its group is Ready before
    /// the whole group is recreated.
    pub rank_not_ready_timeout_seconds: Seconds<120>,
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

impl OperatorConfig {
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        serde_yaml::from_str(text).map_err(|e| format!("invalid operator config: {e}"))
    }

    /// The image for a vendor and engine: configured, else the runtime image default.
    pub fn image_for(&self, vendor: Vendor, engine: Engine) -> String {
        let key = format!("{}/{}", vendor.as_str(), engine.as_str());
        self.images
            .get(&key)
            .or_else(|| self.images.get(vendor.as_str()))
            .cloned()
            .unwrap_or_else(|| deepseek_engine::images::default_image(vendor.as_str(), engine))
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
}
