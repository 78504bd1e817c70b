//! Rack-scale NVLink: on GB200 NVL72 trays of 4 GPUs, a group whose tensor parallelism
//! crosses trays must land inside one NVLink domain (GPU feature discovery's
//! `nvidia.com/gpu.clique`), while groups on ordinary 8-GPU nodes keep only the
//! preferred one-zone rule.

use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::config::OperatorConfig;
use deepseek_operator::desired::affinity::NVLINK_CLIQUE_LABEL;
use deepseek_operator::desired::preview::{desired, Desired};
use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{Node, Pod};

fn gb200_tray(name: &str, clique: &str) -> String {
    format!(
        r#"- metadata:
    name: {name}
    labels: {{kubernetes.io/hostname: {name}, nvidia.com/gpu.product: NVIDIA-GB200, nvidia.com/gpu.count: "4", nvidia.com/gpu.clique: "{clique}"}}
  spec:
    taints: [{{key: nvidia.com/gpu, value: present, effect: NoSchedule}}]
  status:
    allocatable: {{nvidia.com/gpu: "4", cpu: "144", memory: 900Gi}}
    conditions: [{{type: Ready, status: "True"}}]
"#
    )
}

fn build(manifest: &str, nodes_yaml: &str) -> Desired {
    let nodes: Vec<Node> = serde_yaml::from_str(nodes_yaml).expect("nodes");
    let refs: Vec<&Node> = nodes.iter().collect();
    let mut m: DeepSeekModel = serde_yaml::from_str(manifest).expect("manifest");
    m.metadata.namespace = Some("demo".into());
    m.metadata.uid = Some("uid-1".into());
    match desired(&m, &refs, &OperatorConfig::default(), Catalog::builtin()) {
        Ok(d) => d,
        Err((reason, msg)) => panic!("{reason}: {msg}"),
    }
}

fn required_pod_affinity_keys(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|terms| terms.iter().map(|t| t.topology_key.clone()).collect())
        .unwrap_or_default()
}

const R1_FP8: &str = r#"
apiVersion: inference.deepseek-operator.dev/v1alpha1
kind: DeepSeekModel
metadata:
  name: r1
spec:
  model: deepseek-r1
  quantization: fp8
  accelerator:
    product: PRODUCT
  replicas: 1
"#;

#[test]
fn tp_across_gb200_trays_requires_one_nvlink_domain() {
    let nodes: String = (0..4)
        .map(|i| gb200_tray(&format!("gb200-{i}"), "rack-a.0"))
        .collect();
    let d = build(&R1_FP8.replace("PRODUCT", "gb200"), &nodes);
    let plan = &d.placement.plan;
    assert_eq!(
        (
            plan.tensor_parallel,
            plan.pipeline_parallel,
            plan.nodes_per_replica
        ),
        (8, 1, 2),
        "TP spans two trays inside the NVLink domain"
    );
    assert_eq!(d.pods.len(), 2);
    for pod in &d.pods {
        assert_eq!(
            required_pod_affinity_keys(pod),
            vec![NVLINK_CLIQUE_LABEL.to_string()]
        );
    }
}

#[test]
fn groups_on_ordinary_nodes_need_no_nvlink_domain() {
    let nodes: Vec<Node> =
        serde_yaml::from_str(include_str!("fixtures/nodes-mixed.yaml")).expect("node fixture");
    let yaml = serde_yaml::to_string(&nodes).expect("nodes back to YAML");
    let d = build(&R1_FP8.replace("PRODUCT", "h100-80gb"), &yaml);
    assert_eq!(d.placement.plan.nodes_per_replica, 2);
    for pod in &d.pods {
        assert!(required_pod_affinity_keys(pod).is_empty());
    }
}
