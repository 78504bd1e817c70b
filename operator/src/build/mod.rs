//! Building the desired child objects from a validated model and its placement.
//!
//! Pure: plain data in, Kubernetes objects out, so every vendor and layout is tested
//! from fixtures without an API server. The reconciler only applies what this returns.

pub mod desired;
pub mod hash;
pub mod keda;
pub mod labels;
pub mod network_policy;
pub mod pods;
pub mod services;
pub mod workload;

use std::collections::BTreeMap;

use deepseek_engine::LaunchConfig;
use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::api::SecretKeyRef;
use crate::inventory::Pool;

/// Where the engine reads weights from.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightsVolume {
    /// Download cache on the node.
    HostPath(String),
    /// Download cache on a shared claim.
    Claim(String),
    /// Weights already in a claim, at a path inside it.
    Existing { claim: String, path: String },
}

/// Everything the builders need, derived once per reconcile.
#[derive(Clone, Debug)]
pub struct Workload {
    pub model_name: String,
    pub namespace: String,
    pub owner: OwnerReference,
    pub image: String,
    pub pool: Pool,
    pub nodes_per_group: u32,
    pub accelerators_per_pod: u32,
    pub launch: LaunchConfig,
    pub template_hash: String,
    pub extra_node_selector: BTreeMap<String, String>,
    pub extra_tolerations: Vec<Toleration>,
    pub hf_token: Option<SecretKeyRef>,
    pub weights: WeightsVolume,
    /// Memory to request per pod when serving on CPU, GiB.
    pub cpu_memory_gib: Option<u32>,
}

/// Kubernetes object names are DNS labels (<= 63 chars); long model names are cut and
/// given a digest so two long names never collide.
pub fn dns_name(base: &str, suffix: &str) -> String {
    let full = if suffix.is_empty() {
        base.to_string()
    } else {
        format!("{base}-{suffix}")
    };
    if full.len() <= 63 {
        return full;
    }
    let digest = hash::short_digest(&full);
    let keep = 63 - suffix.len() - digest.len() - 2;
    let cut: String = base.chars().take(keep).collect();
    let cut = cut.trim_end_matches('-');
    if suffix.is_empty() {
        format!("{cut}-{digest}")
    } else {
        format!("{cut}-{digest}-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_stay_short_and_distinct() {
        assert_eq!(dns_name("r1", "ranks"), "r1-ranks");
        let long_a = "a".repeat(70);
        let long_b = format!("{}b", "a".repeat(69));
        let a = dns_name(&long_a, "ranks");
        let b = dns_name(&long_b, "ranks");
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.ends_with("-ranks"));
    }
}
