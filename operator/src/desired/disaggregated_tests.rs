use serde_json::json;

use super::*;
use crate::api::ScaleMetric;

fn model(spec: serde_json::Value) -> DeepSeekModel {
    serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": "r1", "namespace": "ai", "uid": "u-1"},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn pd() -> DeepSeekModel {
    model(json!({
        "model": "deepseek-r1",
        "accelerator": {"product": "h200"},
        "serving": {"mode": "disaggregated", "maxModelLen": 16384, "concurrency": 64},
        "resources": {"cpu": "32"},
        "prefill": {"replicas": 2, "parallelism": {"tensor": 8}},
        "decode": {
            "accelerator": {"product": "h20-141gb"},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 4},
            "resources": {"memory": "512Gi"}
        }
    }))
}

#[test]
fn each_role_model_takes_its_own_fields_and_the_model_wide_rest() {
    let m = pd();
    let p = role_model(&m, PdRole::Prefill).unwrap_or_else(|e| panic!("{e}"));
    let d = role_model(&m, PdRole::Decode).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.name_any(), "r1-prefill");
    assert_eq!(d.name_any(), "r1-decode");
    assert_eq!(
        (p.spec.replicas, p.spec.autoscaling.is_some()),
        (Some(2), false)
    );
    assert_eq!(
        (d.spec.replicas, d.spec.autoscaling.is_some()),
        (None, true)
    );
    let product = |m: &DeepSeekModel| m.spec.accelerator.as_ref().and_then(|a| a.product.clone());
    assert_eq!(product(&p).as_deref(), Some("h200"));
    assert_eq!(product(&d).as_deref(), Some("h20-141gb"));
    assert_eq!(p.spec.parallelism.as_ref().and_then(|x| x.tensor), Some(8));
    assert!(d.spec.parallelism.is_none());
    // Prefill holds KV only for prompts in flight: a quarter of the sequences.
    let c = |m: &DeepSeekModel| m.spec.serving.as_ref().and_then(|s| s.concurrency);
    assert_eq!((c(&p), c(&d)), (Some(16), Some(64)));
    // Model-wide serving limits stay; the mode names the role.
    for (m, mode) in [(&p, ServingMode::Prefill), (&d, ServingMode::Decode)] {
        let s = m.spec.serving.clone().unwrap_or_default();
        assert_eq!((s.mode, s.max_model_len), (Some(mode), Some(16384)));
        assert!(m.spec.prefill.is_none() && m.spec.decode.is_none());
        assert_eq!(m.spec.engine, EngineChoice::Sglang);
        let l = m.labels();
        assert_eq!(l.get(DISAGGREGATED).map(String::as_str), Some("r1"));
        assert_eq!(l.get(labels::INSTANCE), Some(&m.name_any()));
        let owner = &m.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!((owner.name.as_str(), owner.controller), ("r1", Some(true)));
    }
    // A role's resources replace the model's; none keeps them.
    assert_eq!(
        p.spec.resources.as_ref().and_then(|r| r.cpu.clone()),
        Some("32".into())
    );
    assert_eq!(
        d.spec.resources.as_ref().and_then(|r| r.memory.clone()),
        Some("512Gi".into())
    );
    // Each role scales on its own load.
    assert_eq!(p.spec.scale_metric(), ScaleMetric::Waiting);
    assert_eq!(d.spec.scale_metric(), ScaleMetric::Running);
    assert_eq!(served_name("r1-prefill", &p.spec), "r1");
    assert_eq!(served_name("r1-decode", &d.spec), "r1");
    assert_eq!(role_of(&m.spec), None);
}

#[test]
fn a_role_without_settings_gets_one_group() {
    let m = model(json!({"model": "deepseek-r1", "serving": {"mode": "disaggregated"}}));
    let d = role_model(&m, PdRole::Decode).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.spec.replicas, Some(1));
}

#[test]
fn engines_without_a_router_are_refused_with_the_reason() {
    for engine in ["vllm", "vllm-ascend", "llamacpp"] {
        let m = model(
            json!({"model": "deepseek-r1", "engine": engine, "serving": {"mode": "disaggregated"}}),
        );
        let err = role_model(&m, PdRole::Prefill).err().unwrap_or_default();
        assert!(err.contains("sglang"), "{engine}: {err}");
    }
    let m = model(
        json!({"model": "deepseek-r1", "engine": "sglang", "serving": {"mode": "disaggregated"}}),
    );
    assert!(role_model(&m, PdRole::Prefill).is_ok());
}

#[test]
fn the_router_may_only_read_pods_and_finds_both_roles_leaders() {
    let r = router_objects(&pd(), "img:1", &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let rules = r.role.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources, Some(vec!["pods".to_string()]));
    assert_eq!(rules[0].verbs, vec!["list", "watch"]);
    assert_eq!(r.role_binding.role_ref.name, "r1-router");
    let subject = &r.role_binding.subjects.clone().unwrap_or_default()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("r1-router", Some("ai"))
    );
    assert_eq!(
        r.service_account.automount_service_account_token,
        Some(false)
    );

    let spec = r.deployment.spec.clone().unwrap_or_default();
    let template_labels = spec.template.metadata.clone().unwrap_or_default().labels;
    assert_eq!(spec.selector.match_labels, template_labels);
    let pod = spec.template.spec.clone().unwrap_or_default();
    assert_eq!(pod.service_account_name.as_deref(), Some("r1-router"));
    let c = &pod.containers[0];
    assert_eq!(c.name, ROUTER_CONTAINER);
    assert_eq!(c.command, Some(vec!["sglang-router".to_string()]));
    let args = c.args.clone().unwrap_or_default().join(" ");
    for needle in [
        "--pd-disaggregation",
        "--service-discovery-namespace ai",
        "--prefill-selector app.kubernetes.io/instance=r1-prefill",
        "--decode-selector app.kubernetes.io/instance=r1-decode",
        "inference.deepseek-operator.dev/role=leader",
    ] {
        assert!(args.contains(needle), "{needle} not in {args}");
    }
    // The model's Service (its usual name) fronts the router.
    let svc = r.service.spec.clone().unwrap_or_default();
    assert_eq!(r.service.metadata.name.as_deref(), Some("r1"));
    assert_eq!(svc.selector, template_labels);
}
