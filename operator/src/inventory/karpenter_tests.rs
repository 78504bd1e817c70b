//! NodePools written the way the cloud topology and the examples write them.

use super::*;
use crate::inventory::{pools_from_nodes, Pool};
use k8s_openapi::api::core::v1::Node;

fn object(yaml: &str) -> DynamicObject {
    serde_yaml::from_str(yaml).expect("NodePool parses")
}

fn pool(yaml: &str) -> Result<DeclaredPool, Skipped> {
    pool_from_object(&object(yaml), Catalog::builtin())
}

const H100: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: h100}
spec:
  template:
    metadata:
      labels: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
    spec:
      nodeClassRef: {group: karpenter.kwok.sh, kind: KWOKNodeClass, name: default}
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [p5.48xlarge]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand, spot]}
      taints:
        - {key: nvidia.com/gpu, value: present, effect: NoSchedule}
  limits: {nvidia.com/gpu: "32", cpu: "1000"}
"#;

#[test]
fn a_gfd_labelled_nodepool_is_a_pool_with_its_limit_as_ceiling() {
    let p = pool(H100).expect("pool");
    assert_eq!(p.name, "karpenter-h100");
    assert_eq!(p.product, "h100-80gb");
    assert_eq!(p.accelerators_per_node, 8, "from the instance type");
    assert_eq!(p.max_nodes, 4, "32 GPUs / 8 per node");
    assert_eq!(p.nodepool.as_deref(), Some("h100"));
    assert_eq!(p.taints.len(), 1);
    assert_eq!(
        p.node_selector.get(NODEPOOL_LABEL).map(String::as_str),
        Some("h100")
    );
    assert_eq!(
        p.node_selector
            .get("node.kubernetes.io/instance-type")
            .map(String::as_str),
        Some("p5.48xlarge"),
        "a requirement pinning one value is a label the nodes will carry"
    );
    assert!(
        !p.node_selector.contains_key("karpenter.sh/capacity-type"),
        "a requirement allowing two values is not"
    );
}

#[test]
fn the_product_can_come_from_allowed_instance_types_alone() {
    let yaml = r#"
metadata: {name: eks-gpu}
spec:
  template:
    spec:
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [g6.xlarge, g6.12xlarge]}
  limits: {nodes: 3}
"#;
    let p = pool(yaml).expect("pool");
    assert_eq!(p.product, "l4");
    assert_eq!(p.accelerators_per_node, 4, "the largest allowed shape");
    assert_eq!(p.max_nodes, 3, "the nodes limit");
}

#[test]
fn mixed_products_counts_and_annotations() {
    let mixed = r#"
metadata: {name: any-gpu}
spec:
  template:
    spec:
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [p5.48xlarge, p5e.48xlarge]}
"#;
    let e = pool(mixed).expect_err("two products");
    assert!(
        e.reason.contains("h100-80gb") && e.reason.contains("h200"),
        "{}",
        e.reason
    );

    let ascend = r#"
metadata:
  name: ascend
  annotations: {inference.deepseek-operator.dev/accelerators-per-node: "8"}
spec:
  template:
    metadata:
      labels: {accelerator: huawei-Ascend910, node.kubernetes.io/npu.chip.name: 910B3}
    spec:
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [some-npu-flavour]}
"#;
    let p = pool(ascend).expect("pool");
    assert_eq!(
        (p.product.as_str(), p.accelerators_per_node),
        ("ascend-910b", 8)
    );
    assert_eq!(p.max_nodes, UNLIMITED_NODES, "no limits");

    let unknown = ascend.replace(
        "  annotations: {inference.deepseek-operator.dev/accelerators-per-node: \"8\"}\n",
        "",
    );
    let e = pool(&unknown).expect_err("count unknown");
    assert!(e.reason.contains(PER_NODE_ANNOTATION), "{}", e.reason);

    let cpu = "metadata: {name: cpu}\nspec: {template: {spec: {requirements: []}}}\n";
    assert!(pool(cpu).is_err(), "a CPU NodePool is no accelerator pool");

    let too_small = H100.replace("nvidia.com/gpu: \"32\"", "nvidia.com/gpu: \"4\"");
    let e = pool(&too_small).expect_err("limit below one node");
    assert!(e.reason.contains("no whole node"), "{}", e.reason);
}

#[test]
fn nodepool_nodes_join_the_nodepool_pool_not_a_live_one() {
    let declared = vec![pool(H100).expect("pool")];
    let node = |name: &str, np: &str| -> Node {
        serde_yaml::from_str(&format!(
            r#"
metadata:
  name: {name}
  labels: {{nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3, karpenter.sh/nodepool: {np}}}
spec:
  taints: [{{key: nvidia.com/gpu, value: present, effect: NoSchedule}}]
status:
  allocatable: {{nvidia.com/gpu: "8", memory: 2Ti}}
  conditions: [{{type: Ready, status: "True"}}]
"#
        ))
        .expect("node")
    };
    let nodes = [node("a", "h100"), node("b", "h100"), node("c", "other")];
    let refs: Vec<&Node> = nodes.iter().collect();
    let pools = pools_from_nodes(&refs, Catalog::builtin(), &declared);
    let np = pools
        .iter()
        .find(|p| p.nodepool.as_deref() == Some("h100"))
        .expect("NodePool pool");
    assert!(np.declared);
    assert_eq!(&*np.nodes, ["a", "b"]);
    assert_eq!(np.max_nodes, 4);
    // A node of a NodePool the operator does not read is an ordinary live node.
    let live: Vec<&Pool> = pools.iter().filter(|p| !p.declared).collect();
    assert_eq!(live.len(), 1);
    assert_eq!(&*live[0].nodes, ["c"]);
    assert!(np
        .describe(Catalog::builtin())
        .contains("Karpenter NodePool h100"));
}

#[test]
fn long_names_stay_valid_label_values() {
    let n = pool_name(&"x".repeat(80));
    assert!(n.len() <= 63 && n.starts_with(POOL_PREFIX));
}

/// The cloud topology's NodePools (e2e/karpenter/nodepools.yaml) are the pools the e2e
/// suite plans against: every accelerator shape it sells, and the CPU pool is no pool.
#[test]
fn the_cloud_topology_nodepools_give_every_shape() {
    let text = include_str!("../../../e2e/karpenter/nodepools.yaml");
    let objs: Vec<DynamicObject> = serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("document parses"))
        .filter(|o: &DynamicObject| o.types.as_ref().is_some_and(|t| t.kind == "NodePool"))
        .collect();
    let (pools, skipped) = pools_from_objects(&objs, Catalog::builtin());
    let got: Vec<(&str, &str, u32, u32)> = pools
        .iter()
        .map(|p| {
            (
                p.nodepool.as_deref().unwrap_or_default(),
                p.product.as_str(),
                p.accelerators_per_node,
                p.max_nodes,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("ascend-910b", "ascend-910b", 8, 2),
            ("h100", "h100-80gb", 8, 4),
            ("h200", "h200", 8, 2),
            ("l4-x1", "l4", 1, 4),
            ("l4-x4", "l4", 4, 4),
            ("mi300x", "mi300x", 8, 2),
        ]
    );
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].nodepool, "cpu");
}

/// The NodePool examples for EKS-, GKE- and AKS-style labels are pools the operator reads.
#[test]
fn the_cloud_examples_are_pools() {
    let cases = [
        (
            include_str!("../../../examples/karpenter/eks-h100.yaml"),
            "h100-80gb",
            8,
            4,
        ),
        (
            include_str!("../../../examples/karpenter/gke-h100.yaml"),
            "h100-80gb",
            8,
            2,
        ),
        (
            include_str!("../../../examples/karpenter/aks-mi300x.yaml"),
            "mi300x",
            8,
            2,
        ),
    ];
    for (yaml, product, per_node, max_nodes) in cases {
        let p = pool(yaml).expect("example is a pool");
        assert_eq!(
            (p.product.as_str(), p.accelerators_per_node, p.max_nodes),
            (product, per_node, max_nodes),
            "{}",
            p.name
        );
    }
}

/// A model placed on a NodePool gets pods that select the NodePool, tolerate its taint and
/// opt out of Karpenter's voluntary disruption; the same model on live nodes does not.
#[test]
fn pods_on_a_nodepool_select_it_and_opt_out_of_disruption() {
    use crate::api::DeepSeekModel;
    use crate::config::OperatorConfig;
    use crate::desired::preview::desired;

    let model: DeepSeekModel =
        serde_yaml::from_str(include_str!("../../../examples/r1-fp8-h100-multinode.yaml"))
            .expect("example parses");
    let config = OperatorConfig {
        declared_pools: vec![pool(H100).expect("pool")],
        ..OperatorConfig::default()
    };
    let d = desired(&model, &[], &config, Catalog::builtin()).expect("desired");
    assert_eq!(d.pods.len(), 2, "one group of two ranks");
    for p in &d.pods {
        let ann = p.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(DO_NOT_DISRUPT).map(String::as_str), Some("true"));
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels
                .get("inference.deepseek-operator.dev/pool")
                .map(String::as_str),
            Some("karpenter-h100")
        );
        let spec = p.spec.clone().unwrap_or_default();
        let text = serde_json::to_string(&spec.affinity).expect("affinity");
        assert!(
            text.contains(NODEPOOL_LABEL) && text.contains("\"h100\""),
            "{text}"
        );
    }

    // Without the NodePool it is an ordinary declared pool: no Karpenter annotation.
    let mut plain = pool(H100).expect("pool");
    plain.nodepool = None;
    let config = OperatorConfig {
        declared_pools: vec![plain],
        ..OperatorConfig::default()
    };
    let d = desired(&model, &[], &config, Catalog::builtin()).expect("desired");
    assert!(d.pods.iter().all(|p| !p
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .contains_key(DO_NOT_DISRUPT)));
}
