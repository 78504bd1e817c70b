//! Building the desired child objects from a validated model and its placement.
//!
//! Pure: plain data in, Kubernetes objects out, so every vendor and layout is tested
//! from fixtures without an API server. The reconciler only applies what this returns.

pub mod affinity;
pub mod disaggregated;
pub mod front;
pub mod hash;
pub mod helper_pod;
pub mod keda;
pub mod labels;
pub mod network_policy;
pub mod pods;
pub mod preview;
pub mod services;
pub mod workload;

use std::collections::BTreeMap;

use deepseek_engine::LaunchConfig;
use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Serialize;

use crate::api::{ResolvedStatus, SecretKeyRef};
use crate::inventory::Pool;

/// Where the engine reads weights from.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    /// Node affinity terms (ORed) that pin pods to the planned product.
    pub product_terms: Vec<affinity::ProductTerm>,
    pub nodes_per_group: u32,
    /// The group's ranks must share one NVLink domain (`nvidia.com/gpu.clique`): the
    /// accelerator's NVLink domain spans nodes (GB200/GB300 NVL72) and the plan's
    /// tensor parallelism crosses them.
    pub same_nvlink_domain: bool,
    pub accelerators_per_pod: u32,
    pub launch: LaunchConfig,
    pub template_hash: String,
    pub extra_node_selector: BTreeMap<String, String>,
    /// Every toleration of the pods: accelerator taints, a declared pool's, the manifest's.
    pub tolerations: Vec<Toleration>,
    pub hf_token: Option<SecretKeyRef>,
    pub weights: WeightsVolume,
    pub size: PodSize,
    /// AMD without configured device groups: root, every capability still dropped.
    pub run_as_root: bool,
    pub supplemental_groups: Vec<i64>,
    /// The drain bound (operator configuration `drainSeconds`): the launcher's
    /// `DSO_DRAIN_SECONDS` and, from it, the pods' termination grace period.
    pub drain_seconds: u64,
    /// What `status.resolved` records for this workload.
    pub resolved: ResolvedStatus,
}

/// Requests of each inference pod, as Kubernetes quantities.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PodSize {
    pub cpu: String,
    pub memory: String,
    /// Size limit of the `/dev/shm` memory volume.
    pub shm: String,
}

/// Separator between a model's name and a child's suffix. Model names cannot contain it
/// (admission refuses `--`), so no child of one model can be named like another model's
/// child: `foo--ranks` is foo's, and a model called `foo-ranks` has `foo-ranks--ranks`.
pub const CHILD_SEPARATOR: &str = "--";
/// Longest model name admitted: leaves room for the longest suffix within 63 characters.
pub const MAX_MODEL_NAME: usize = 40;

/// The one way every child object is named: `<model>--<suffix>`, or the model's own name
/// for an empty suffix. Names stay DNS labels (<= 63 chars): a model admitted before the
/// length rule existed is cut and given a digest, so two long names never collide.
pub fn dns_name(base: &str, suffix: &str) -> String {
    let full = if suffix.is_empty() {
        base.to_string()
    } else {
        format!("{base}{CHILD_SEPARATOR}{suffix}")
    };
    if full.len() <= 63 {
        return full;
    }
    let digest = hash::short_digest(&full);
    let keep = 63usize.saturating_sub(suffix.len() + digest.len() + 1 + CHILD_SEPARATOR.len());
    let cut: String = base.chars().take(keep).collect();
    let cut = cut.trim_end_matches('-');
    if suffix.is_empty() {
        format!("{cut}-{digest}")
    } else {
        format!("{cut}-{digest}{CHILD_SEPARATOR}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_stay_short_and_distinct() {
        assert_eq!(dns_name("r1", "ranks"), "r1--ranks");
        let long_a = "a".repeat(70);
        let long_b = format!("{}b", "a".repeat(69));
        let a = dns_name(&long_a, "ranks");
        let b = dns_name(&long_b, "ranks");
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.ends_with("--ranks"));
    }

    /// Every suffix a child can have: the two Services and the pods of the largest
    /// group in the highest slot.
    fn suffixes() -> Vec<String> {
        vec![
            String::new(),
            "ranks".into(),
            format!("{}-{}-{}", "f".repeat(10), 9999, 999),
        ]
    }

    proptest::proptest! {
        /// Admitted names (DNS-1035, no `--`, at most 40 characters) give every child a
        /// full, uncut name within 63 characters, and no two (model, suffix) pairs share
        /// a name.
        #[test]
        fn admitted_names_never_collide_or_get_cut(
            a in "[a-z]([a-z0-9]|-[a-z0-9]){0,19}",
            b in "[a-z]([a-z0-9]|-[a-z0-9]){0,19}",
        ) {
            proptest::prop_assume!(a != b && a.len() <= MAX_MODEL_NAME && b.len() <= MAX_MODEL_NAME);
            for sa in suffixes() {
                let na = dns_name(&a, &sa);
                proptest::prop_assert!(na.len() <= 63, "{na}");
                proptest::prop_assert!(na.starts_with(&a), "cut: {na}");
                for sb in suffixes() {
                    proptest::prop_assert_ne!(&na, &dns_name(&b, &sb));
                }
            }
        }
    }

    #[test]
    fn the_names_that_used_to_collide_do_not() {
        // `foo`'s headless Service and the API Service of a model called `foo-ranks`.
        assert_ne!(dns_name("foo", "ranks"), dns_name("foo-ranks", ""));
        let longest = "a".repeat(MAX_MODEL_NAME);
        let pod = dns_name(&longest, &format!("{}-{}-{}", "f".repeat(10), 9999, 999));
        assert!(pod.len() <= 63 && pod.starts_with(&longest), "{pod}");
    }
}
