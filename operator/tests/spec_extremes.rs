//! Every numeric spec field at its extremes (schema bounds, one past them, 0, the type's
//! min and max, NaN and infinities) goes through the reconcile's pure pipeline (validate ->
//! place -> workload -> pods, desired/preview.rs) and the autoscaler's decision without a
//! panic: the API server's schema may be older than the operator (`helm upgrade` never
//! updates CRDs), so the code must refuse what the schema would have.

use std::path::Path;
use std::time::Duration;

use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::autoscale::decide::{decide, History, Observation, Params};
use deepseek_operator::config::OperatorConfig;
use deepseek_operator::desired::preview::desired;
use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::Node;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Value};

fn nodes() -> Vec<Node> {
    serde_yaml::from_str(include_str!("fixtures/nodes-mixed.yaml")).expect("node fixture")
}

fn example(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(path).expect("example exists");
    serde_yaml::from_str(&text).expect("example parses")
}

const I32: &[i64] = &[
    i32::MIN as i64,
    -1,
    0,
    1,
    2,
    100,
    1000,
    1001,
    i32::MAX as i64,
];
const U32: &[i64] = &[
    0,
    1,
    2,
    64,
    256,
    4096,
    86_400,
    100_000,
    1_048_576,
    u32::MAX as i64,
];
const F64: &[f64] = &[
    f64::NAN,
    f64::NEG_INFINITY,
    -1.0,
    0.0,
    1e-9,
    0.5,
    1.0,
    2.0,
    1e300,
    f64::INFINITY,
];

fn i32s() -> impl Strategy<Value = i64> {
    select(I32)
}
fn u32s() -> impl Strategy<Value = i64> {
    select(U32)
}
/// An f64 as JSON; NaN and infinities cannot be JSON, so they are set on the typed spec.
fn f64s() -> impl Strategy<Value = f64> {
    select(F64)
}

/// Runs the pipeline and the autoscaler's decision; panics are the failure.
fn run(model: &DeepSeekModel) {
    let nodes = nodes();
    let refs: Vec<&Node> = nodes.iter().collect();
    let cfg = OperatorConfig::default();
    let _ = desired(model, &refs, &cfg, Catalog::builtin());
    if let Some(a) = &model.spec.autoscaling {
        let p = Params::from_spec(a);
        let mut h = History::default();
        let current = model.spec.replicas.unwrap_or(0).max(0) as u32;
        for (i, load) in [0.0, 1e12, f64::MAX].into_iter().enumerate() {
            let at = Duration::from_secs(i as u64);
            let _ = decide(&p, &mut h, at, current, Observation::complete(at, load));
        }
        let _ = decide(
            &p,
            &mut h,
            Duration::from_secs(9),
            current,
            Observation::missing(Duration::ZERO),
        );
    }
}

fn typed(v: Value) -> Option<DeepSeekModel> {
    let mut m: DeepSeekModel = serde_json::from_value(v).ok()?;
    m.metadata.namespace = Some("demo".into());
    m.metadata.uid = Some("uid-1".into());
    Some(m)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn catalog_model_fields_at_their_extremes_never_panic(
        replicas in i32s(), min in i32s(), max in i32s(), target in u32s(),
        interval in u32s(), stabilization in u32s(), step in u32s(),
        tensor in u32s(), pipeline in u32s(), len in u32s(), concurrency in u32s(),
        unavailable in u32s(), surge in u32s(), util in f64s(),
    ) {
        let mut v = example("r1-distill-qwen-1.5b-l4.yaml");
        let spec = &mut v["spec"];
        spec["replicas"] = json!(replicas);
        spec["autoscaling"] = json!({
            "minReplicas": min, "maxReplicas": max, "targetQueueDepth": target,
            "intervalSeconds": interval, "scaleDownStabilizationSeconds": stabilization,
            "maxScaleUpStep": step,
        });
        spec["parallelism"] = json!({"tensor": tensor, "pipeline": pipeline});
        spec["serving"] = json!({"maxModelLen": len, "concurrency": concurrency});
        spec["rollout"] = json!({"maxUnavailable": unavailable, "maxSurge": surge});
        // Values a field's type cannot hold fail to parse, as they would on the wire.
        if let Some(mut m) = typed(v) {
            if let Some(s) = m.spec.serving.as_mut() {
                s.gpu_memory_utilization = Some(util);
            }
            run(&m);
        }
    }

    #[test]
    fn custom_model_fields_at_their_extremes_never_panic(
        params in f64s(), active in f64s(), layers in u32s(), hidden in u32s(),
        heads in u32s(), kv_heads in u32s(), head_dim in u32s(), vocab in u32s(),
        positions in u32s(), mla in any::<bool>(), rank in u32s(), rope in u32s(),
    ) {
        let v = json!({
            "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
            "kind": "DeepSeekModel",
            "metadata": {"name": "custom"},
            "spec": {
                "model": "custom",
                "customModel": {
                    "huggingFaceRepo": "org/model",
                    "attention": if mla { "mla" } else { "gqa" },
                    "parametersBillions": 1.0,
                    "layers": layers, "hiddenSize": hidden, "attentionHeads": heads,
                    "kvHeads": kv_heads, "headDim": head_dim, "kvLoraRank": rank,
                    "qkRopeHeadDim": rope, "vocabSize": vocab,
                    "maxPositionEmbeddings": positions,
                },
            },
        });
        if let Some(mut m) = typed(v) {
            if let Some(c) = m.spec.custom_model.as_mut() {
                c.parameters_billions = params;
                c.active_parameters_billions = Some(active);
            }
            run(&m);
        }
    }
}

#[test]
fn min_above_max_is_refused_with_a_reason_instead_of_a_panic() {
    let mut v = example("r1-distill-qwen-1.5b-l4.yaml");
    v["spec"]["autoscaling"] = json!({"minReplicas": 5, "maxReplicas": 2});
    let m = typed(v).expect("parses");
    let nodes = nodes();
    let refs: Vec<&Node> = nodes.iter().collect();
    let err = desired(&m, &refs, &OperatorConfig::default(), Catalog::builtin())
        .err()
        .expect("refused");
    assert_eq!(err.0, "InvalidSpec");
    assert!(err.1.contains("minReplicas"), "{}", err.1);
}
