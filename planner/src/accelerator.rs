//! Accelerators: capacity, Kubernetes resource name, and the node labels that
//! identify them, so a node's labels can be turned into a catalog entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Quantization, Vendor};

/// One node-label test. Matches when `key` equals one of `values` or starts with
/// one of `prefixes`, and every label in `requires` has the given value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabelMatcher {
    pub key: String,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub requires: BTreeMap<String, String>,
}

impl LabelMatcher {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_by(&|k| labels.get(k).map(String::as_str))
    }

    /// `matches` over any label lookup (the operator keeps node labels interned).
    pub fn matches_by<'a>(&self, label: &dyn Fn(&str) -> Option<&'a str>) -> bool {
        let Some(value) = label(&self.key) else {
            return false;
        };
        let hit = self.values.iter().any(|v| v == value)
            || self.prefixes.iter().any(|p| value.starts_with(p.as_str()));
        hit && self
            .requires
            .iter()
            .all(|(k, v)| label(k).is_some_and(|have| have == v))
    }
}

/// One accelerator model (per device as Kubernetes counts it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Accelerator {
    /// Catalog id, e.g. `h100-80gb`.
    pub id: String,
    /// Other names a manifest or the CLI may use for it (e.g. `h200-141gb`).
    #[serde(default)]
    pub aliases: Vec<String>,
    pub vendor: Vendor,
    pub display_name: String,
    /// Memory the device reports, in MiB (0 for `cpu`: RAM comes from the request).
    pub memory_mib: u64,
    #[serde(default)]
    pub bandwidth_tbps: Option<f64>,
    /// Dense BF16 TFLOPS.
    #[serde(default)]
    pub bf16_tflops: Option<f64>,
    /// Hardware FP8 (W8A8).
    #[serde(default)]
    pub fp8: bool,
    /// 4-bit float formats the tensor cores run natively (`nvfp4`, `mxfp4`).
    #[serde(default)]
    pub fp4: Vec<Quantization>,
    /// Accelerators in one NVLink domain when it spans nodes (GB200/GB300 NVL72: 72
    /// GPUs over 18 nodes of 4). Tensor parallelism may span nodes only inside one
    /// domain; `None` means the node is the domain.
    #[serde(default)]
    pub nvlink_domain: Option<u32>,
    /// Accelerators per node when the caller does not say.
    pub typical_per_node: u32,
    /// Kubernetes extended resource, e.g. `nvidia.com/gpu`; `None` for CPU.
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub node_labels: Vec<LabelMatcher>,
    #[serde(default)]
    pub notes: Option<String>,
}

impl Accelerator {
    /// Device memory in GiB.
    pub fn memory_gib(&self) -> f64 {
        self.memory_mib as f64 / 1024.0
    }

    /// Whether a node with these labels carries this accelerator.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_labels.iter().any(|m| m.matches(labels))
    }

    /// `matches_labels` over any label lookup.
    pub fn matches_labels_by<'a>(&self, label: &dyn Fn(&str) -> Option<&'a str>) -> bool {
        self.node_labels.iter().any(|m| m.matches_by(label))
    }

    pub fn validate(&self) -> Result<(), String> {
        let id = &self.id;
        if self.vendor != Vendor::Cpu && self.memory_mib == 0 {
            return Err(format!("accelerator {id}: memory_mib must be positive"));
        }
        if let Some(q) = self.fp4.iter().find(|q| !q.is_fp4()) {
            return Err(format!(
                "accelerator {id}: fp4 lists {q}, which is not a 4-bit float format"
            ));
        }
        if let Some(domain) = self.nvlink_domain {
            if domain < self.typical_per_node || !domain.is_multiple_of(self.typical_per_node) {
                return Err(format!(
                    "accelerator {id}: nvlink_domain {domain} must be a whole number of nodes of {}",
                    self.typical_per_node
                ));
            }
        }
        if self.typical_per_node == 0 {
            return Err(format!(
                "accelerator {id}: typical_per_node must be at least 1"
            ));
        }
        Ok(())
    }
}
