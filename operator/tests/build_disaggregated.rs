//! The two disaggregated examples on the pure path: manifest -> role models -> pods, on
//! nodes of two pools per example (prefill's and decode's, told apart by a label as node
//! pools are). Each role's pods land only on its pool, carry their role's engine flags and
//! the label that lets the other role reach them, and prefill leaders announce their
//! bootstrap port to the router.

use std::path::Path;

use deepseek_engine::pd::BOOTSTRAP_PORT_ANNOTATION;
use deepseek_engine::PdRole;
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::config::OperatorConfig;
use deepseek_operator::desired::disaggregated::{role_model, DISAGGREGATED};
use deepseek_operator::desired::labels;
use deepseek_operator::desired::preview::{desired, Desired};
use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Deserialize;

fn example(file: &str) -> DeepSeekModel {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .count()
            <= 20,
        "{file}: the manifest is at most 20 lines"
    );
    let mut m: DeepSeekModel = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    m.metadata.namespace = Some("demo".into());
    m.metadata.uid = Some("uid-1".into());
    m
}

/// Two node groups per product (prefill's and decode's), as scripts/scan renders against.
fn nodes() -> Vec<Node> {
    serde_yaml::from_str(include_str!("fixtures/nodes-pd.yaml"))
        .unwrap_or_else(|e| panic!("node fixture: {e}"))
}

fn build(m: &DeepSeekModel, nodes: &[Node]) -> Desired {
    let refs: Vec<&Node> = nodes.iter().collect();
    desired(m, &refs, &OperatorConfig::default(), Catalog::builtin())
        .unwrap_or_else(|(reason, msg)| panic!("{reason}: {msg}"))
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn command(pod: &Pod) -> String {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::ENGINE_COMMAND))
        .cloned()
        .unwrap_or_default()
}

/// Builds both roles and checks what every disaggregated model must hold; returns the
/// pods of (prefill, decode).
fn roles(file: &str, nodes: &[Node], pools: [&str; 2]) -> (Vec<Pod>, Vec<Pod>) {
    let m = example(file);
    let mut out = Vec::new();
    for (role, pool) in [PdRole::Prefill, PdRole::Decode].into_iter().zip(pools) {
        let rm = role_model(&m, role).unwrap_or_else(|e| panic!("{e}"));
        let d = build(&rm, nodes);
        let first_group = label(&d.pods[0], labels::GROUP_ID).map(str::to_string);
        let pods: Vec<Pod> = d
            .pods
            .iter()
            .filter(|p| label(p, labels::GROUP_ID).map(str::to_string) == first_group)
            .cloned()
            .collect();
        assert!(!pods.is_empty(), "{file} {role}: one group");
        for p in &pods {
            let selector = p
                .spec
                .as_ref()
                .and_then(|s| s.node_selector.clone())
                .unwrap_or_default();
            assert_eq!(selector.get("node-pool").map(String::as_str), Some(pool));
            assert_eq!(label(p, DISAGGREGATED), m.metadata.name.as_deref());
            let cmd = command(p);
            assert!(
                cmd.contains(&format!("--disaggregation-mode {role}")),
                "{file} {role}: {cmd}"
            );
            // Clients ask for the model by its own name, whichever role answers.
            assert!(
                cmd.contains(&format!(
                    "--served-model-name {}",
                    m.metadata.name.clone().unwrap_or_default()
                )),
                "{cmd}"
            );
            let leader = label(p, labels::ROLE) == Some("leader");
            let announces = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(BOOTSTRAP_PORT_ANNOTATION));
            assert_eq!(
                announces,
                leader && role == PdRole::Prefill,
                "{file} {role}"
            );
        }
        out.push(pods);
    }
    let decode = out.pop().unwrap_or_default();
    let prefill = out.pop().unwrap_or_default();
    (prefill, decode)
}

#[test]
fn wide_ep_pd_on_h200_places_each_role_on_its_pool_with_sglang_pd_flags() {
    let (prefill, decode) = roles(
        "r1-wide-ep-pd-h200.yaml",
        &nodes(),
        ["h200-prefill", "h200-decode"],
    );
    assert_eq!(prefill.len(), 1, "prefill: TP8 on one node");
    assert_eq!(decode.len(), 2, "decode: DP16 x EP16 over two nodes");
    assert!(command(&prefill[0]).contains("--disaggregation-transfer-backend mooncake"));
}

#[test]
fn pd_on_ascend_a3_uses_sglang_on_npus_and_the_operators_kv_store() {
    let (prefill, decode) = roles(
        "r1-pd-ascend-a3.yaml",
        &nodes(),
        ["a3-prefill", "a3-decode"],
    );
    assert_eq!(
        decode.len(),
        2,
        "decode: DP8 x TP4 x EP32 over two A3 nodes"
    );
    for p in prefill.iter().chain(&decode) {
        let cmd = command(p);
        assert!(cmd.contains("--device npu"), "{cmd}");
        assert!(
            cmd.contains("--disaggregation-transfer-backend ascend"),
            "{cmd}"
        );
        assert!(
            cmd.contains("tcp://r1-pd-a3-kv-store.demo.svc:8999"),
            "both roles meet at the store the operator runs: {cmd}"
        );
    }
}

/// `deepseek-operator render` shows what the controller keeps for a disaggregated model:
/// the router's objects, both roles' children and, on Ascend, the KV store.
#[test]
fn render_shows_the_router_both_roles_and_the_ascend_store() {
    use deepseek_operator::cli::render::{run, RenderArgs};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let render = |file: &str| {
        run(&RenderArgs {
            model: dir.join("../examples").join(file),
            nodes: dir.join("tests/fixtures/nodes-pd.yaml"),
            config: None,
            namespace: "team-a".into(),
        })
        .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let kinds = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .map(str::to_string)
            .collect()
    };
    let h200 = kinds(&render("r1-wide-ep-pd-h200.yaml"));
    let count = |k: &[String], kind: &str| k.iter().filter(|x| *x == kind).count();
    assert_eq!(count(&h200, "Deployment"), 1, "the router: {h200:?}");
    assert_eq!((count(&h200, "Role"), count(&h200, "RoleBinding")), (1, 1));
    assert_eq!(
        count(&h200, "Pod"),
        3,
        "one prefill pod and a decode group of two"
    );
    let a3 = kinds(&render("r1-pd-ascend-a3.yaml"));
    assert_eq!(
        count(&a3, "Deployment"),
        2,
        "the router and the KV store: {a3:?}"
    );
}

/// The router and the KV store (CPU only) prefer nodes with no accelerator: on an
/// accelerator node they would take its CPU and memory and keep a node autoscaler from
/// removing it once empty.
#[test]
fn the_router_and_the_store_prefer_nodes_without_accelerators() {
    use deepseek_operator::cli::render::{run, RenderArgs};
    use deepseek_operator::inventory::CPU_EXCLUDED_LABELS;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = run(&RenderArgs {
        model: dir.join("../examples/r1-pd-ascend-a3.yaml"),
        nodes: dir.join("tests/fixtures/nodes-pd.yaml"),
        config: None,
        namespace: "team-a".into(),
    })
    .expect("renders");
    let deployments: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).expect("yaml"))
        .filter(|v| v["kind"] == "Deployment")
        .collect();
    assert_eq!(deployments.len(), 2, "the router and the store");
    for d in &deployments {
        let preferred = &d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"];
        let keys: Vec<&str> = preferred[0]["preference"]["matchExpressions"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|r| r["operator"] == "DoesNotExist")
                    .filter_map(|r| r["key"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            keys, CPU_EXCLUDED_LABELS,
            "{}: {preferred}",
            d["metadata"]["name"]
        );
    }
}
