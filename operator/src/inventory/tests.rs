//! Pool grouping from fixture nodes labelled the way real clusters label them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use super::*;
use crate::config::OperatorConfig;
use deepseek_planner::Catalog;

fn fixture() -> Vec<Node> {
    serde_yaml::from_str(include_str!("../../tests/fixtures/nodes-mixed.yaml"))
        .expect("fixture parses")
}

fn pools(cfg: &OperatorConfig) -> Vec<Pool> {
    let nodes = fixture();
    let refs: Vec<&Node> = nodes.iter().collect();
    pools_from_nodes(&refs, Catalog::builtin(), &cfg.declared_pools)
}

#[test]
fn groups_nodes_by_product_count_and_taints() {
    let p = pools(&OperatorConfig::default());
    let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(p.len(), 6, "{names:?}");
    let h100 = p
        .iter()
        .find(|p| p.accelerator == "h100-80gb")
        .expect("h100 pool");
    // Cordoned and NotReady nodes are not capacity.
    assert_eq!(&*h100.nodes, ["h100-a", "h100-b"]);
    assert_eq!(h100.per_node, 8);
    assert_eq!(h100.resource_name, "nvidia.com/gpu");
    assert_eq!(
        h100.selector
            .get("nvidia.com/gpu.product")
            .map(String::as_str),
        Some("NVIDIA-H100-80GB-HBM3")
    );
    assert!(!h100.selector.contains_key("kubernetes.io/hostname"));
    assert_eq!(h100.taints.len(), 1);

    let h200 = p
        .iter()
        .find(|p| p.accelerator == "h200")
        .expect("GKE-labelled h200 pool");
    assert_eq!(
        h200.selector
            .get("cloud.google.com/gke-accelerator")
            .map(String::as_str),
        Some("nvidia-h200-141gb")
    );
    let amd = p
        .iter()
        .find(|p| p.accelerator == "mi300x")
        .expect("mi300x pool");
    assert_eq!(amd.resource_name, "amd.com/gpu");
    assert!(p
        .iter()
        .any(|p| p.accelerator == "ascend-910b" && p.resource_name == "huawei.com/Ascend910"));
    let cpu = p.iter().find(|p| p.accelerator == "cpu").expect("cpu pool");
    assert_eq!(cpu.node_memory_gib, Some(512.0));
    assert!(cpu.resource_name.is_empty());
}

#[test]
fn declared_pools_are_appended_and_fingerprint_tracks_change() {
    let cfg = OperatorConfig::from_yaml(
        "declaredPools: [{name: gke-h100-spot, product: h100-80gb, acceleratorsPerNode: 8, maxNodes: 3, nodeSelector: {cloud.google.com/gke-accelerator: nvidia-h100-80gb}}]",
    )
    .expect("config");
    let with = pools(&cfg);
    let without = pools(&OperatorConfig::default());
    let declared = with.iter().find(|p| p.declared).expect("declared pool");
    assert_eq!(declared.max_nodes, 3);
    assert!(declared.nodes.is_empty());
    assert_ne!(fingerprint(&with), fingerprint(&without));
    assert_eq!(
        fingerprint(&without),
        fingerprint(&pools(&OperatorConfig::default()))
    );
}

#[test]
fn memory_quantities_parse() {
    assert_eq!(memory_gib("512Gi"), Some(512.0));
    assert_eq!(memory_gib("1024Mi"), Some(1.0));
    assert_eq!(memory_gib("bogus"), None);
    assert!(memory_gib("64G").is_some_and(|g| (g - 59.6).abs() < 0.1));
}

#[test]
fn a_node_selector_narrows_a_pool_to_the_nodes_it_names() {
    let p = pools(&OperatorConfig::default());
    let h100 = p
        .iter()
        .find(|p| p.accelerator == "h100-80gb")
        .expect("h100 pool");
    let sel = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    // A label every node has: the whole pool.
    let all = h100
        .narrowed(&sel("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"))
        .expect("whole pool");
    assert_eq!(all, h100.clone());
    // One node's own label: that node alone, with its labels now common.
    let one = h100
        .narrowed(&sel("kubernetes.io/hostname", "h100-b"))
        .expect("one node");
    assert_eq!(
        (one.nodes.to_vec(), one.max_nodes),
        (vec!["h100-b".to_string()], 1)
    );
    assert_eq!(
        one.common_labels
            .get("kubernetes.io/hostname")
            .map(String::as_str),
        Some("h100-b")
    );
    assert_eq!(one.member_labels.len(), 1);
    assert!(one.member_labels[0].is_empty());
    assert_eq!(
        (one.name.as_str(), &one.selector),
        (h100.name.as_str(), &h100.selector)
    );
    // Nobody's label: no pool.
    assert!(h100.narrowed(&sel("node-pool", "elsewhere")).is_none());
    // Member labels exist for every node and hold no common label.
    assert_eq!(h100.member_labels.len(), h100.nodes.len());
    for m in h100.member_labels.iter() {
        assert!(m.iter().all(|(k, _)| !h100.common_labels.contains_key(k)));
    }
}
