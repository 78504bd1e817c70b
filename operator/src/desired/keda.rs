//! `autoscaling.provider: keda`: the KEDA ScaledObject the operator emits instead of
//! scaling itself. It targets the DeepSeekModel's scale subresource (so replicas are
//! groups, and the HPA KEDA creates adds whole multi-node groups), with a Prometheus
//! trigger on the normalised queue metrics of the leaders, the same formula as the
//! built-in autoscaler (`AverageValue`: replicas = ceil(sum / targetQueueDepth)), and the
//! same stabilization window and step limit expressed as HPA behavior.
//!
//! Pure: the model in, the object out as JSON.

use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use super::labels;
use crate::api::{AutoscalingProvider, DeepSeekModel, ScaleMetric};
use crate::autoscale::decide::Params;
use crate::config::OperatorConfig;

pub const GROUP: &str = "keda.sh";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "ScaledObject";
pub const PLURAL: &str = "scaledobjects";

/// Annotation that once chose the Prometheus server. Ignored now: a manifest could point
/// KEDA at any address (SSRF from KEDA's pod); the server comes from the operator
/// configuration (`prometheusAddress`) only.
pub const PROMETHEUS_ADDRESS_ANNOTATION: &str =
    "autoscaling.deepseek-operator.dev/prometheus-address";
/// Annotation overriding the whole PromQL query; honoured only when the operator
/// configuration sets `allowCustomPrometheusQueries` ([`ignored_query`]).
pub const PROMETHEUS_QUERY_ANNOTATION: &str = "autoscaling.deepseek-operator.dev/prometheus-query";
/// Event reason when the query annotation is ignored.
pub const QUERY_IGNORED_REASON: &str = "CustomQueryIgnored";
/// Default server: the Service the Prometheus Operator creates in `monitoring`.
pub const DEFAULT_PROMETHEUS_ADDRESS: &str = "http://prometheus-operated.monitoring.svc:9090";

/// The ApiResource of ScaledObject, for dynamic clients.
pub fn api_resource() -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND.into(),
        plural: PLURAL.into(),
    }
}

/// Queued + running requests of the model's leaders (rank 0 pods, whose names end in
/// `-0`), as scraped by a PodMonitor on the launcher port (labels `namespace`, `pod`).
/// No `or vector(0)`: when the series are missing (Prometheus or the scrape is down) the
/// result is empty, and with `ignoreNullValues: "false"` KEDA reports an error so the HPA
/// holds the count, as the built-in autoscaler does with missing data. Reading an outage
/// as zero load would scale the model down to `minReplicas` in the middle of it.
/// The gauges summed follow `autoscaling.metric` (a prefill role counts waiting requests,
/// a decode role running ones).
pub fn default_query(namespace: &str, model: &str, metric: ScaleMetric) -> String {
    let sel = format!(r#"namespace="{namespace}",pod=~"{model}--[a-z0-9]+-[0-9]+-0""#);
    let waiting = format!("sum(dso_queue_depth{{{sel}}})");
    let running = format!("sum(dso_requests_running{{{sel}}})");
    match metric {
        ScaleMetric::Queue => format!("{waiting} + {running}"),
        ScaleMetric::Waiting => waiting,
        ScaleMetric::Running => running,
    }
}

/// The message of the Event saying that the model's query annotation was ignored, when
/// it was: a KEDA model with the annotation, under a configuration that does not allow
/// custom queries.
pub fn ignored_query(model: &DeepSeekModel, config: &OperatorConfig) -> Option<String> {
    let keda = model
        .spec
        .autoscaling
        .as_ref()
        .is_some_and(|a| a.provider == AutoscalingProvider::Keda);
    (keda
        && !config.allow_custom_prometheus_queries
        && model.annotations().contains_key(PROMETHEUS_QUERY_ANNOTATION))
    .then(|| {
        format!(
            "annotation {PROMETHEUS_QUERY_ANNOTATION} ignored: the operator configuration does not allow custom queries (allowCustomPrometheusQueries), so the ScaledObject uses the operator's own query"
        )
    })
}

/// The ScaledObject for a model with `provider: keda`; `None` otherwise.
pub fn scaled_object(model: &DeepSeekModel, config: &OperatorConfig) -> Option<Value> {
    let a = model.spec.autoscaling.as_ref()?;
    if a.provider != AutoscalingProvider::Keda {
        return None;
    }
    let p = Params::from_spec(a);
    let name = model.name_any();
    let namespace = model.namespace().unwrap_or_default();
    let ann = model.annotations();
    let address = config
        .prometheus_address
        .clone()
        .unwrap_or_else(|| DEFAULT_PROMETHEUS_ADDRESS.to_string());
    // A tenant's query would run on the shared Prometheus with its result in the
    // tenant's HPA status: only the administrator can allow one.
    let query = ann
        .get(PROMETHEUS_QUERY_ANNOTATION)
        .filter(|_| config.allow_custom_prometheus_queries)
        .cloned()
        .unwrap_or_else(|| default_query(&namespace, &name, model.spec.scale_metric()));
    let interval = p.interval.as_secs();
    let window = p.stabilization.as_secs();
    let mut metadata = json!({
        "name": name,
        "namespace": namespace,
        "labels": labels::base(&name),
    });
    if let Some(owner) = model.controller_owner_ref(&()) {
        metadata["ownerReferences"] = json!([owner]);
    }
    let mut so = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {
                "apiVersion": DeepSeekModel::api_version(&()),
                "kind": DeepSeekModel::kind(&()),
                "name": name,
            },
            "pollingInterval": interval,
            // KEDA's cooldown governs only the last step to zero; the HPA behavior
            // below governs every other scale-down.
            "cooldownPeriod": window,
            "minReplicaCount": p.min,
            "maxReplicaCount": p.max,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": p.max_step, "periodSeconds": interval}],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": window,
                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": interval}],
                        },
                    },
                },
            },
            "triggers": [{
                "type": "prometheus",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": address,
                    "query": query,
                    "threshold": p.target.to_string(),
                    "activationThreshold": "0",
                    // An empty result is an error (hold), not zero load.
                    "ignoreNullValues": "false",
                },
            }],
        },
    });
    // Digest of the desired form, so an unchanged object is never re-applied.
    let digest = super::hash::short_digest(&so.to_string());
    so["metadata"]["annotations"] = json!({ labels::SPEC_DIGEST: digest });
    Some(so)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(provider: &str) -> DeepSeekModel {
        serde_json::from_value(json!({
            "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
            "kind": "DeepSeekModel",
            "metadata": {"name": "r1", "namespace": "ai", "uid": "u-1"},
            "spec": {
                "model": "deepseek-r1",
                "autoscaling": {
                    "minReplicas": 0, "maxReplicas": 4, "targetQueueDepth": 16,
                    "provider": provider, "scaleDownStabilizationSeconds": 120,
                    "intervalSeconds": 10, "maxScaleUpStep": 1
                }
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn targets_the_model_scale_subresource_with_the_queue_trigger() {
        let so = scaled_object(&model("keda"), &OperatorConfig::default()).unwrap_or_default();
        let spec = &so["spec"];
        assert_eq!(so["kind"], "ScaledObject");
        assert_eq!(so["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(spec["scaleTargetRef"]["kind"], "DeepSeekModel");
        assert_eq!(
            spec["scaleTargetRef"]["apiVersion"],
            "inference.deepseek-operator.dev/v1alpha1"
        );
        assert_eq!(spec["scaleTargetRef"]["name"], "r1");
        assert_eq!(
            (
                spec["minReplicaCount"].clone(),
                spec["maxReplicaCount"].clone()
            ),
            (json!(0), json!(4))
        );
        assert_eq!(spec["cooldownPeriod"], 120);
        assert_eq!(spec["pollingInterval"], 10);
        let trig = &spec["triggers"][0];
        assert_eq!(trig["type"], "prometheus");
        assert_eq!(trig["metadata"]["threshold"], "16");
        let q = trig["metadata"]["query"].as_str().unwrap_or_default();
        assert!(
            q.contains("dso_queue_depth") && q.contains("dso_requests_running"),
            "{q}"
        );
        assert!(q.contains(r#"namespace="ai""#), "{q}");
        let behavior = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
        assert_eq!(behavior["scaleDown"]["stabilizationWindowSeconds"], 120);
        assert_eq!(behavior["scaleUp"]["policies"][0]["value"], 1);
        let digest = &so["metadata"]["annotations"][labels::SPEC_DIGEST];
        assert!(digest.is_string());
        let again = scaled_object(&model("keda"), &OperatorConfig::default()).unwrap_or_default();
        assert_eq!(
            &again["metadata"]["annotations"][labels::SPEC_DIGEST],
            digest
        );
    }

    #[test]
    fn the_prometheus_address_comes_from_the_configuration_only() {
        let mut m = model("keda");
        m.metadata.annotations = Some(
            [(
                PROMETHEUS_ADDRESS_ANNOTATION.to_string(),
                "http://169.254.169.254/latest".to_string(),
            )]
            .into(),
        );
        let so = scaled_object(&m, &OperatorConfig::default()).unwrap_or_default();
        let addr = &so["spec"]["triggers"][0]["metadata"]["serverAddress"];
        assert_eq!(
            addr, DEFAULT_PROMETHEUS_ADDRESS,
            "the annotation is ignored"
        );
        let cfg = OperatorConfig {
            prometheus_address: Some("http://prom.monitoring.svc:9090".into()),
            ..Default::default()
        };
        let so = scaled_object(&m, &cfg).unwrap_or_default();
        assert_eq!(
            so["spec"]["triggers"][0]["metadata"]["serverAddress"],
            "http://prom.monitoring.svc:9090"
        );
    }

    #[test]
    fn the_query_matches_leader_pod_names() {
        let q = default_query("ai", "r1", ScaleMetric::Queue);
        let pod = crate::desired::dns_name("r1", "0123456789-3-0");
        assert!(
            q.contains(r#"pod=~"r1--[a-z0-9]+-[0-9]+-0""#),
            "{q} vs {pod}"
        );
        assert!(pod.starts_with("r1--"));
    }

    #[test]
    fn a_metrics_outage_is_an_error_not_zero_load() {
        let q = default_query("ai", "r1", ScaleMetric::Queue);
        assert!(!q.contains("vector(0)"), "{q}");
        let so = scaled_object(&model("keda"), &OperatorConfig::default()).expect("keda");
        assert_eq!(
            so["spec"]["triggers"][0]["metadata"]["ignoreNullValues"],
            json!("false")
        );
    }

    #[test]
    fn a_role_queries_only_its_own_gauge() {
        let prefill = default_query("ai", "r1-prefill", ScaleMetric::Waiting);
        assert!(prefill.contains("dso_queue_depth") && !prefill.contains("running"));
        let decode = default_query("ai", "r1-decode", ScaleMetric::Running);
        assert!(decode.contains("dso_requests_running") && !decode.contains("queue_depth"));
    }

    #[test]
    fn a_tenants_query_is_used_only_when_the_administrator_allows_it() {
        let mut m = model("keda");
        let tenant = r#"sum(dso_queue_depth{namespace="other-team"})"#;
        m.metadata.annotations =
            Some([(PROMETHEUS_QUERY_ANNOTATION.to_string(), tenant.to_string())].into());
        let query = |cfg: &OperatorConfig| {
            scaled_object(&m, cfg).expect("keda")["spec"]["triggers"][0]["metadata"]["query"]
                .clone()
        };
        let closed = OperatorConfig::default();
        assert_eq!(
            query(&closed),
            json!(default_query("ai", "r1", ScaleMetric::Queue)),
            "the operator's own query by default"
        );
        let msg = ignored_query(&m, &closed).expect("an Event says it was ignored");
        assert!(msg.contains("allowCustomPrometheusQueries"), "{msg}");
        let open = OperatorConfig {
            allow_custom_prometheus_queries: true,
            ..Default::default()
        };
        assert_eq!(query(&open), json!(tenant));
        assert_eq!(ignored_query(&m, &open), None);
        assert_eq!(
            ignored_query(&model("keda"), &closed),
            None,
            "no annotation"
        );
        let mut builtin = model("builtin");
        builtin.metadata.annotations = m.metadata.annotations.clone();
        assert_eq!(ignored_query(&builtin, &closed), None, "no ScaledObject");
    }

    #[test]
    fn only_for_the_keda_provider() {
        assert!(scaled_object(&model("builtin"), &OperatorConfig::default()).is_none());
    }
}
