//! What a manifest can no longer do, and what every inference pod gets, checked on the
//! pure path from manifest to pods (the e2e tenancy suite repeats the cluster-level ones on
//! the real control plane). Each case failed on the operator before the tenancy work.

use deepseek_e2e::fixtures::ready_node;
use deepseek_operator::api::{DeepSeekModel, ResolvedStatus};
use deepseek_operator::config::OperatorConfig;
use deepseek_operator::desired::preview::{desired, Desired};
use deepseek_operator::desired::WeightsVolume;
use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value, gpus: u32) -> Node {
    let mut alloc = json!({"cpu": "96", "memory": "1024Gi", "pods": "110"});
    if gpus > 0 {
        alloc["nvidia.com/gpu"] = json!(gpus.to_string());
    }
    ready_node(name, labels, taints, alloc)
}

fn gpu_taint() -> serde_json::Value {
    json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
}

fn model(name: &str, ns: &str, spec: serde_json::Value) -> DeepSeekModel {
    serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}")},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("model fixture: {e}"))
}

fn build(m: &DeepSeekModel, nodes: &[Node], cfg: &OperatorConfig) -> Result<Desired, String> {
    let refs: Vec<&Node> = nodes.iter().collect();
    desired(m, &refs, cfg, Catalog::builtin()).map_err(|(r, msg)| format!("{r}: {msg}"))
}

/// `spec` as model `a/m` on the L4 nodes with the default configuration; panics if it is
/// refused.
fn on_l4(spec: serde_json::Value) -> Desired {
    build(
        &model("m", "a", spec),
        &l4_nodes(),
        &OperatorConfig::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn l4_nodes() -> Vec<Node> {
    vec![
        node(
            "l4-a",
            json!({"cloud.google.com/gke-accelerator": "nvidia-l4"}),
            gpu_taint(),
            1,
        ),
        node(
            "l4-b",
            json!({"cloud.google.com/gke-accelerator": "nvidia-l4"}),
            gpu_taint(),
            1,
        ),
    ]
}

fn small() -> serde_json::Value {
    json!({"model": "deepseek-r1-distill-qwen-1.5b", "accelerator": {"product": "l4"}})
}

fn spec_of(p: &Pod) -> &k8s_openapi::api::core::v1::PodSpec {
    p.spec
        .as_ref()
        .unwrap_or_else(|| panic!("pod without spec"))
}

#[test]
fn a_manifest_cannot_mount_a_host_path() {
    let mut spec = small();
    spec["cache"] = json!({"hostPath": "/etc/kubernetes"});
    let err = build(
        &model("m", "team-a", spec),
        &l4_nodes(),
        &OperatorConfig::default(),
    )
    .err()
    .unwrap_or_default();
    assert!(
        err.starts_with("InvalidSpec") && err.contains("hostPath"),
        "{err}"
    );
}

#[test]
fn tenants_never_share_a_writable_node_cache() {
    let cfg = OperatorConfig::default();
    let paths: Vec<String> = ["team-a", "team-b"]
        .iter()
        .map(|ns| {
            let d = build(&model("m", ns, small()), &l4_nodes(), &cfg)
                .unwrap_or_else(|e| panic!("{e}"));
            let vols = spec_of(&d.pods[0]).volumes.clone().unwrap_or_default();
            let models = vols
                .iter()
                .find(|v| v.name == "models")
                .cloned()
                .unwrap_or_default();
            models.host_path.map(|h| h.path).unwrap_or_default()
        })
        .collect();
    assert_eq!(paths[0], "/var/lib/deepseek-operator/models/team-a");
    assert_eq!(paths[1], "/var/lib/deepseek-operator/models/team-b");
    // Sharing is the administrator's explicit choice.
    let shared = OperatorConfig::from_yaml(
        "caches: [{name: default, hostPath: /nvme/w, sharedAcrossNamespaces: true}]",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d = build(&model("m", "team-a", small()), &l4_nodes(), &shared)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        d.workload.weights,
        WeightsVolume::HostPath("/nvme/w".into())
    );
}

#[test]
fn engines_do_not_trust_remote_code_for_catalog_models() {
    let d = on_l4(small());
    assert!(!d.workload.launch.trust_remote_code);
}

#[test]
fn team_and_control_plane_nodes_receive_no_pods() {
    let team = json!([{"key": "dedicated", "value": "team-b", "effect": "NoSchedule"}]);
    let cp = json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
    let nodes = vec![
        node(
            "team-l4",
            json!({"cloud.google.com/gke-accelerator": "nvidia-l4"}),
            json!([{"key": "nvidia.com/gpu", "effect": "NoSchedule"}, {"key": "dedicated", "value": "team-b", "effect": "NoSchedule"}]),
            1,
        ),
        node(
            "cp",
            json!({"node-role.kubernetes.io/control-plane": ""}),
            cp,
            0,
        ),
        node("team-cpu", json!({}), team, 0),
    ];
    let cfg = OperatorConfig::default();
    let err = build(&model("m", "team-a", small()), &nodes, &cfg)
        .err()
        .unwrap_or_default();
    assert!(
        err.starts_with("InsufficientAccelerators"),
        "team-b's L4 is not team-a's: {err}"
    );
    let gguf = json!({"model": "deepseek-r1-distill-qwen-1.5b", "quantization": "gguf-q4_k_m"});
    let err = build(&model("m", "team-a", gguf.clone()), &nodes, &cfg)
        .err()
        .unwrap_or_default();
    assert!(
        err.starts_with("InsufficientAccelerators"),
        "no CPU pool from the control plane or team-b: {err}"
    );
    // Team b tolerates its own taint and gets its nodes; its pods tolerate nothing else.
    let mut spec_b = small();
    spec_b["accelerator"]["tolerations"] = json!([{"key": "dedicated", "operator": "Equal", "value": "team-b", "effect": "NoSchedule"}]);
    let d = build(&model("m", "team-b", spec_b), &nodes, &cfg).unwrap_or_else(|e| panic!("{e}"));
    let tols = spec_of(&d.pods[0]).tolerations.clone().unwrap_or_default();
    assert!(tols
        .iter()
        .all(|t| t.key.as_deref() != Some("node-role.kubernetes.io/control-plane")));
    assert!(
        tols.iter().all(|t| t.key.is_some()),
        "no wildcard toleration: {tols:?}"
    );
}

#[test]
fn a_mixed_h100_pool_pins_the_product() {
    let nodes = vec![
        node(
            "sxm",
            json!({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
            gpu_taint(),
            8,
        ),
        node(
            "pcie",
            json!({"nvidia.com/gpu.product": "NVIDIA-H100-PCIe"}),
            gpu_taint(),
            8,
        ),
    ];
    let spec =
        json!({"model": "deepseek-r1-distill-qwen-32b", "accelerator": {"product": "h100-80gb"}});
    let d = build(&model("m", "a", spec), &nodes, &OperatorConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        d.placement.pool.selector.is_empty(),
        "the two products share no label value"
    );
    let terms = spec_of(&d.pods[0])
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|s| s.node_selector_terms.clone())
        .unwrap_or_default();
    let product_values: Vec<String> = terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .filter(|e| e.key == "nvidia.com/gpu.product" && e.operator == "In")
        .flat_map(|e| e.values.clone().unwrap_or_default())
        .collect();
    assert!(product_values.contains(&"NVIDIA-H100-PCIe".to_string()));
    assert!(product_values.contains(&"NVIDIA-H100-80GB-HBM3".to_string()));
    assert!(!product_values
        .iter()
        .any(|v| v.contains("L4") || v.contains("A100")));
    // Every term names the product: no term an L4 or A100 node could satisfy.
    for t in &terms {
        assert!(
            t.match_expressions
                .iter()
                .flatten()
                .any(|e| e.operator == "In"),
            "{t:?}"
        );
    }
}

#[test]
fn pool_membership_changes_do_not_change_the_template_hash() {
    let mut nodes = vec![
        node(
            "sxm",
            json!({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
            gpu_taint(),
            8,
        ),
        node(
            "sxm2",
            json!({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
            gpu_taint(),
            8,
        ),
    ];
    let spec =
        json!({"model": "deepseek-r1-distill-qwen-32b", "accelerator": {"product": "h100-80gb"}});
    let m = model("m", "a", spec);
    let cfg = OperatorConfig::default();
    let before = build(&m, &nodes, &cfg)
        .unwrap_or_else(|e| panic!("{e}"))
        .workload
        .template_hash;
    // A PCIe node joins (the pool's shared labels become empty), then one node leaves.
    nodes.push(node(
        "pcie",
        json!({"nvidia.com/gpu.product": "NVIDIA-H100-PCIe"}),
        gpu_taint(),
        8,
    ));
    let mixed = build(&m, &nodes, &cfg)
        .unwrap_or_else(|e| panic!("{e}"))
        .workload
        .template_hash;
    nodes.remove(0);
    let fewer = build(&m, &nodes, &cfg)
        .unwrap_or_else(|e| panic!("{e}"))
        .workload
        .template_hash;
    assert_eq!(before, mixed);
    assert_eq!(before, fewer);
}

#[test]
fn every_pod_has_requests_a_bounded_shm_and_a_tight_security_context() {
    let d = on_l4(small());
    let spec = spec_of(&d.pods[0]);
    let c = &spec.containers[0];
    let req = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    assert!(
        req.contains_key("cpu") && req.contains_key("memory"),
        "{req:?}"
    );
    let shm = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "dshm")
        .and_then(|v| v.empty_dir.clone());
    assert!(
        shm.and_then(|e| e.size_limit).is_some(),
        "/dev/shm is bounded"
    );
    let sc = c.security_context.clone().unwrap_or_default();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    let psc = spec.security_context.clone().unwrap_or_default();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
    assert_eq!(spec.automount_service_account_token, Some(false));
    // Overrides from the manifest win.
    let mut sized = small();
    sized["resources"] = json!({"cpu": "3", "memory": "20Gi"});
    let d = on_l4(sized);
    let req = spec_of(&d.pods[0]).containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    assert_eq!(req.get("cpu").map(|q| q.0.as_str()), Some("3"));
    assert_eq!(req.get("memory").map(|q| q.0.as_str()), Some("20Gi"));
}

/// The kubelet creates a missing node cache directory owned by root, mode 0755, and
/// fsGroup does not apply to hostPath volumes: a non-root engine could not write its
/// cache. Non-root pods on a node cache get an init container that gives the directory
/// (only it) to the engine's user, as root with CHOWN as its only capability.
#[test]
fn a_non_root_engine_owns_its_node_cache_directory() {
    let d = on_l4(small());
    assert!(matches!(d.workload.weights, WeightsVolume::HostPath(_)));
    for pod in &d.pods {
        let spec = spec_of(pod);
        let uid = spec
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_user)
            .unwrap_or_default();
        assert_eq!(uid, 10001);
        let init = spec.init_containers.clone().unwrap_or_default();
        assert_eq!(init.len(), 1, "{init:?}");
        let c = &init[0];
        assert_eq!(
            c.command.clone().unwrap_or_default(),
            ["chown", "10001:10001", "/models"]
        );
        assert_eq!(c.image, spec.containers[0].image);
        let mounts = c.volume_mounts.clone().unwrap_or_default();
        assert_eq!(
            mounts
                .iter()
                .map(|m| (m.name.as_str(), m.mount_path.as_str()))
                .collect::<Vec<_>>(),
            [("models", "/models")]
        );
        let sc = c.security_context.clone().unwrap_or_default();
        assert_eq!(sc.run_as_user, Some(0));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.privileged, Some(false));
        let caps = sc.capabilities.unwrap_or_default();
        assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
        assert_eq!(caps.add, Some(vec!["CHOWN".to_string()]));
    }
    // A volume claim gets fsGroup instead: no init container.
    let mut claimed = small();
    claimed["cache"] = json!({"claimName": "weights"});
    let d = on_l4(claimed);
    assert!(!matches!(d.workload.weights, WeightsVolume::HostPath(_)));
    assert_eq!(spec_of(&d.pods[0]).init_containers, None);
}

/// Golden template hashes of fixed manifests. A change here restarts every model of that
/// shape the next time its spec changes: make it deliberately, and say so in the release
/// notes. (Running models are protected anyway: they reuse `status.resolved`.)
/// The fixed manifests whose template hash and resolution key are pinned, built with a
/// fixed runtime image tag.
fn golden_builds() -> [Desired; 2] {
    let cfg = OperatorConfig {
        runtime_image_tag: Some("golden".into()),
        ..Default::default()
    };
    let specs = [
        small(),
        json!({"model": "deepseek-r1-distill-qwen-7b", "accelerator": {"product": "l4"}, "serving": {"maxModelLen": 4096}}),
    ];
    specs.map(|spec| {
        build(&model("m", "ns", spec), &l4_nodes(), &cfg).unwrap_or_else(|e| panic!("{e}"))
    })
}

#[test]
fn golden_template_hashes() {
    let got = golden_builds().map(|d| d.workload.template_hash);
    assert_eq!(got, ["1fb3d63368", "ce91179702"], "template hashes changed");
}

#[test]
fn an_operator_upgrade_reuses_the_resolved_image_and_launch() {
    let m = model("m", "ns", small());
    let old_cfg = OperatorConfig {
        runtime_image_tag: Some("0.1.0".into()),
        ..Default::default()
    };
    let first = build(&m, &l4_nodes(), &old_cfg).unwrap_or_else(|e| panic!("{e}"));
    // The model as the old operator left it: status.resolved recorded.
    let mut recorded = m.clone();
    let mut resolved: ResolvedStatus = first.workload.resolved.clone();
    resolved.operator_version = "0.0.9".into();
    recorded.status = Some(deepseek_operator::api::DeepSeekModelStatus {
        resolved: Some(resolved),
        ..Default::default()
    });
    // The new operator defaults to another image tag.
    let new_cfg = OperatorConfig {
        runtime_image_tag: Some("0.2.0".into()),
        ..Default::default()
    };
    let fresh = build(&m, &l4_nodes(), &new_cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        fresh.workload.template_hash, first.workload.template_hash,
        "a new image is a new hash"
    );
    let upgraded = build(&recorded, &l4_nodes(), &new_cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        upgraded.workload.template_hash,
        first.workload.template_hash
    );
    assert_eq!(upgraded.workload.image, first.workload.image);
    assert_eq!(upgraded.pods[0].metadata.name, first.pods[0].metadata.name);
    // Scaling keeps the resolution; a real spec change re-resolves.
    let mut scaled = recorded.clone();
    scaled.spec.replicas = Some(4);
    assert_eq!(
        build(&scaled, &l4_nodes(), &new_cfg)
            .unwrap_or_else(|e| panic!("{e}"))
            .workload
            .template_hash,
        first.workload.template_hash
    );
    let mut changed = recorded.clone();
    changed.spec.serving = Some(deepseek_operator::api::Serving {
        max_model_len: Some(4096),
        ..Default::default()
    });
    assert_ne!(
        build(&changed, &l4_nodes(), &new_cfg)
            .unwrap_or_else(|e| panic!("{e}"))
            .workload
            .template_hash,
        first.workload.template_hash
    );
    // auto-upgrade opts into the new operator's image.
    let mut auto = recorded.clone();
    auto.spec.image = Some("auto-upgrade".into());
    let a = build(&auto, &l4_nodes(), &new_cfg).unwrap_or_else(|e| panic!("{e}"));
    assert!(a.workload.image.ends_with(":0.2.0"), "{}", a.workload.image);
}

/// The node-affinity requirements of a pod, per ORed term: (key, operator).
fn affinity_terms(p: &Pod) -> Vec<Vec<(String, String)>> {
    spec_of(p)
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|s| {
            s.node_selector_terms
                .iter()
                .map(|t| {
                    t.match_expressions
                        .iter()
                        .flatten()
                        .map(|e| (e.key.clone(), e.operator.clone()))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Issue 26: CPU pods were kept off control-plane nodes only by the pool inventory, so a
/// manifest tolerating every taint could reach them. Every term of every pod (CPU and
/// accelerator) now requires a node that is not the control plane (except on a Karpenter
/// NodePool's pool, whose nodes never are and which refuses the label: e2e_cloud).
#[test]
fn no_pod_may_land_on_a_control_plane_node() {
    let cpu = node("cpu-a", json!({}), json!([]), 0);
    let cpu_model = model(
        "small",
        "a",
        json!({"model": "deepseek-r1-distill-qwen-1.5b", "quantization": "gguf-q4_k_m"}),
    );
    let cases = [
        build(&cpu_model, &[cpu], &OperatorConfig::default()),
        build(
            &model("m", "a", small()),
            &l4_nodes(),
            &OperatorConfig::default(),
        ),
    ];
    for d in cases {
        let d = d.unwrap_or_else(|e| panic!("{e}"));
        let terms = affinity_terms(&d.pods[0]);
        assert!(
            !terms.is_empty(),
            "{}: no node affinity",
            d.placement.pool.name
        );
        for t in &terms {
            for key in [
                "node-role.kubernetes.io/control-plane",
                "node-role.kubernetes.io/master",
            ] {
                assert!(
                    t.contains(&(key.to_string(), "DoesNotExist".to_string())),
                    "{}: {t:?}",
                    d.placement.pool.name
                );
            }
        }
    }
}

/// Golden resolution keys (`status.resolved.key`) of fixed manifests. A change here
/// re-resolves every running model of that shape on upgrade (new default image: a
/// restart): the key must stay what the operator recorded before.
#[test]
fn golden_resolution_keys() {
    let got = golden_builds().map(|d| d.workload.resolved.key);
    assert_eq!(got, GOLDEN_KEYS, "resolution keys changed");
}

const GOLDEN_KEYS: [&str; 2] = ["e6f5933c5d", "8b41a82239"];

/// Issue 26: the key hashed the spec's JSON whole, so a field added to the spec in a
/// later version (serialized as `null`, `[]` or `{}` while unset) would change every
/// model's key, and a real upgrade would restart every model. Unset fields, at any
/// depth, now leave the key as it was.
#[test]
fn an_unset_optional_field_leaves_the_resolution_key_unchanged() {
    use deepseek_operator::desired::workload::{key_spec, key_spec_json};
    let m = model(
        "m",
        "ns",
        json!({"model": "deepseek-r1-distill-qwen-7b", "accelerator": {"product": "l4"}, "serving": {"maxModelLen": 4096}}),
    );
    let before = key_spec(&m.spec);
    let mut grown = serde_json::to_value(&m.spec).unwrap_or_default();
    grown["futureOption"] = json!(null);
    grown["futureList"] = json!([]);
    grown["futureMap"] = json!({});
    grown["futureGroup"] = json!({"inner": null, "list": []});
    grown["serving"]["futureFlag"] = json!(null);
    grown["accelerator"]["futureTolerations"] = json!([]);
    assert_eq!(key_spec_json(grown.clone()), before);
    // A set field still changes it.
    grown["serving"]["futureFlag"] = json!(true);
    assert_ne!(key_spec_json(grown), before);

    // And through the whole build: a manifest spelling an empty optional resolves with
    // the key of one that leaves it out.
    let cfg = OperatorConfig::default();
    let plain = build(&m, &l4_nodes(), &cfg).unwrap_or_else(|e| panic!("{e}"));
    let mut spelled = m.clone();
    if let Some(a) = spelled.spec.accelerator.as_mut() {
        a.node_selector = Some(Default::default());
    }
    let spelled = build(&spelled, &l4_nodes(), &cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spelled.workload.resolved.key, plain.workload.resolved.key);
}
