//! The product pin over the whole catalog: every pool the inventory can form is pinned to
//! its product by node labels only that product's nodes carry, or placement refuses it.

use std::collections::BTreeMap;

use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::Node;
use serde_json::json;

use super::*;
use crate::config::OperatorConfig;
use crate::inventory::pools_from_nodes;

fn node(name: &str, labels: &BTreeMap<String, String>, resource: &str) -> Node {
    let mut labels = serde_json::to_value(labels).unwrap_or_default();
    labels["kubernetes.io/hostname"] = json!(name);
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {
            "allocatable": {resource: "8", "cpu": "96", "memory": "1024Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }))
    .unwrap_or_else(|e| panic!("node {name}: {e}"))
}

/// Whether a node with `labels` satisfies one of the ORed `terms`.
fn satisfies(terms: &[ProductTerm], labels: &BTreeMap<String, String>) -> bool {
    terms.iter().any(|t| t.admits(&|k| labels.get(k).cloned()))
}

/// (product, its extended resource, label sets of nodes that carry it).
type Sample<'a> = (&'a str, &'a str, Vec<BTreeMap<String, String>>);

fn pools_of(nodes: &[Node], cfg: &OperatorConfig) -> Vec<Pool> {
    let refs: Vec<&Node> = nodes.iter().collect();
    pools_from_nodes(&refs, Catalog::builtin(), &cfg.declared_pools)
}

/// Issue 26: an Ascend 910B pool of 910B3 and 910B4 nodes (the catalog matches them by
/// prefix only) gave pods no node affinity at all, so they could land on a 910C node.
#[test]
fn a_pool_matched_by_prefix_is_pinned_to_its_nodes_values() {
    let chip = |v: &str| {
        BTreeMap::from([
            ("accelerator".to_string(), "huawei-Ascend910".to_string()),
            (
                "node.kubernetes.io/npu.chip.name".to_string(),
                v.to_string(),
            ),
        ])
    };
    let nodes = [
        node("b3", &chip("910B3"), "huawei.com/Ascend910"),
        node("b4", &chip("910B4"), "huawei.com/Ascend910"),
    ];
    let pools = pools_of(&nodes, &OperatorConfig::default());
    let pool = pools
        .iter()
        .find(|p| p.accelerator == "ascend-910b")
        .expect("one 910B pool of both nodes");
    assert_eq!(pool.nodes.len(), 2);
    let terms = product_terms(Catalog::builtin(), pool, "ascend-910b");
    assert!(satisfies(&terms, &chip("910B3")) && satisfies(&terms, &chip("910B4")));
    assert!(
        !satisfies(&terms, &chip("910C")),
        "a 910C node is excluded: {terms:?}"
    );
    assert!(pins_product(Catalog::builtin(), pool).is_ok());
}

/// Every product with an extended resource, through every one of its label matchers:
/// the pool its nodes form is pinned, its nodes satisfy the pin, and nodes of every other
/// product of the same resource do not. Products no label identifies are only pinned
/// through a declared pool's nodeSelector.
#[test]
fn every_catalog_product_is_pinned_or_refused() {
    let catalog = Catalog::builtin();
    // One node-label set per (product, matcher): an exact value, or two values that share
    // a prefix (a pool mixing them).
    let mut samples: Vec<Sample<'_>> = Vec::new();
    for a in catalog.accelerators() {
        let Some(resource) = a.resource.as_deref() else {
            continue;
        };
        for m in &a.node_labels {
            let values: Vec<String> = match (m.values.first(), m.prefixes.first()) {
                (_, Some(p)) => vec![format!("{p}x1"), format!("{p}x2")],
                (Some(v), None) => vec![v.clone()],
                (None, None) => continue,
            };
            let sets = values
                .into_iter()
                .map(|v| {
                    let mut l: BTreeMap<String, String> = m.requires.clone();
                    l.insert(m.key.clone(), v);
                    l
                })
                .collect();
            samples.push((a.id.as_str(), resource, sets));
        }
    }
    assert!(samples.len() > 40, "the table covers the catalog");
    for (product, resource, sets) in &samples {
        let nodes: Vec<Node> = sets
            .iter()
            .enumerate()
            .map(|(i, l)| node(&format!("n{i}"), l, resource))
            .collect();
        let pools = pools_of(&nodes, &OperatorConfig::default());
        let Some(pool) = pools.iter().find(|p| p.accelerator == *product) else {
            // Identified as another product: the catalog's own tests cover identification.
            continue;
        };
        let terms = product_terms(catalog, pool, product);
        assert!(pins_product(catalog, pool).is_ok(), "{product}: {sets:?}");
        for l in sets {
            assert!(satisfies(&terms, l), "{product}: {l:?} not in {terms:?}");
        }
        for (other, other_resource, other_sets) in &samples {
            if other == product || other_resource != resource {
                continue;
            }
            for l in other_sets {
                if catalog.identify(l).map(|a| a.id.as_str()) == Some(*other) {
                    assert!(
                        !satisfies(&terms, l),
                        "{product}'s pin {terms:?} admits a {other} node {l:?}"
                    );
                }
            }
        }
    }

    for a in catalog.accelerators() {
        let Some(resource) = a.resource.as_deref() else {
            continue;
        };
        let declared = |selector: &str| {
            OperatorConfig::from_yaml(&format!(
                "declaredPools: [{{name: d, product: {}, acceleratorsPerNode: 1, nodeSelector: {selector}}}]",
                a.id
            ))
            .expect("config")
        };
        let bare = pools_of(&[], &declared("{}"));
        let pinned = pools_of(&[], &declared("{pool: mine}"));
        assert!(pins_product(catalog, &pinned[0]).is_ok(), "{}", a.id);
        assert!(satisfies(
            &product_terms(catalog, &pinned[0], &a.id),
            &BTreeMap::from([("pool".to_string(), "mine".to_string())])
        ));
        let exact = a.node_labels.iter().any(|m| !m.values.is_empty());
        match pins_product(catalog, &bare[0]) {
            Ok(()) => assert!(exact, "{}: pinned by nothing", a.id),
            Err(why) => {
                assert!(!exact, "{}: {why}", a.id);
                assert!(
                    why.contains("nodeSelector") && why.contains(resource),
                    "{why}"
                );
            }
        }
    }
}

#[test]
fn products_without_a_discovery_label_are_refused_without_a_selector() {
    for product in ["jetson-orin", "ascend-910c-card"] {
        let cfg = OperatorConfig::from_yaml(&format!(
            "declaredPools: [{{name: d, product: {product}, acceleratorsPerNode: 1}}]"
        ))
        .expect("config");
        let pools = pools_of(&[], &cfg);
        let why = pins_product(Catalog::builtin(), &pools[0]).expect_err(product);
        assert!(why.contains(product), "{why}");
    }
}
