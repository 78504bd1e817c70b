//! The front of a model that holds requests (`autoscaling.holdRequests`): a Deployment of
//! two `deepseek-launcher front` pods and a ClusterIP Service, both `<model>--front`.
//! The front needs no API access: the autoscaler gives it the leaders of the model's
//! groups (`POST /front/backends` with the front token) and reads how many requests it
//! holds. Its pods carry no `app.kubernetes.io/instance` label, so the controller's pod
//! cache and group judgement never count them as ranks.
//!
//! Pure: the model in, objects out.

use std::collections::BTreeMap;

use deepseek_engine::ENGINE_PORT;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use super::{dns_name, labels};
use crate::api::{DeepSeekModel, Holding};
use crate::config::HelperPods;

/// Label of the front's objects and pods, with the model's name.
pub const FRONT: &str = "inference.deepseek-operator.dev/front";
/// `app.kubernetes.io/name` of the front's pods.
pub const APP_NAME: &str = "deepseek-front";
/// Container name SimFleet looks for.
pub const CONTAINER: &str = "front";
/// Replicas of the front: one may restart while the other answers.
pub const REPLICAS: i32 = 2;
/// Env var with the token the front demands on `POST /front/backends`.
pub const TOKEN_ENV: &str = "DSO_FRONT_TOKEN";

/// Name of the front's Deployment and Service.
pub fn name(model: &str) -> String {
    dns_name(model, "front")
}

/// Labels of the front's pods (the Deployment's and the Service's selector).
pub fn pod_labels(model: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_string(), APP_NAME.to_string()),
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (FRONT.to_string(), model.to_string()),
    ])
}

/// Selector of a model's front pods.
pub fn selector_string(model: &str) -> String {
    format!(
        "{}={APP_NAME},{}={},{FRONT}={model}",
        labels::NAME,
        labels::MANAGED_BY,
        labels::MANAGER
    )
}

/// The token of the front of the model whose UID is `model_uid`, derived as the group
/// tokens are (desired/pods.rs): any operator replica computes the same, and who cannot
/// read the model's objects cannot.
pub fn token(model_uid: &str) -> String {
    super::pods::group_token(model_uid, "front")
}

/// The front's Deployment and Service.
pub fn objects(
    model: &DeepSeekModel,
    holding: Holding,
    image: &str,
    helpers: &HelperPods,
) -> Result<(Deployment, Service), String> {
    let model_name = model.name_any();
    let uid = model
        .meta()
        .uid
        .clone()
        .ok_or_else(|| "the model has no uid yet".to_string())?;
    let owner = model
        .controller_owner_ref(&())
        .ok_or_else(|| "the model has no uid yet".to_string())?;
    let pods = pod_labels(&model_name);
    let meta = ObjectMeta {
        name: Some(name(&model_name)),
        namespace: model.namespace(),
        labels: Some(pods.clone()),
        owner_references: Some(vec![owner]),
        ..Default::default()
    };
    let env = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        value_from: None,
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(image.into()),
        args: Some(vec![
            "front".into(),
            "--port".into(),
            ENGINE_PORT.to_string(),
            "--queue-size".into(),
            holding.queue_size.to_string(),
            "--max-wait-seconds".into(),
            holding.max_wait_seconds.to_string(),
        ]),
        env: Some(vec![super::pods::pod_ip_env(), env(TOKEN_ENV, token(&uid))]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: ENGINE_PORT.into(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Int(ENGINE_PORT.into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("250m".into())),
                ("memory".to_string(), Quantity("128Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("1Gi".into()),
            )])),
            ..Default::default()
        }),
        security_context: Some(super::helper_pod::restricted_container()),
        ..Default::default()
    };
    let mut pod = PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        security_context: Some(super::helper_pod::restricted_pod()),
        ..Default::default()
    };
    super::helper_pod::place(&mut pod, helpers);
    let deployment = Deployment {
        metadata: meta.clone(),
        spec: Some(DeploymentSpec {
            replicas: Some(REPLICAS),
            selector: LabelSelector {
                match_labels: Some(pods.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pods.clone()),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    };
    let service = Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(pods),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(ENGINE_PORT.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    Ok((deployment, service))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(uid: Option<&str>) -> DeepSeekModel {
        let mut m: DeepSeekModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
            "kind": "DeepSeekModel",
            "metadata": {"name": "r1", "namespace": "team"},
            "spec": {"model": "deepseek-ai/DeepSeek-R1",
                     "autoscaling": {"minReplicas": 0, "maxReplicas": 2}},
        }))
        .expect("model");
        m.metadata.uid = uid.map(str::to_string);
        m
    }

    #[test]
    fn the_front_is_two_pods_and_a_service_named_for_the_model_with_its_bounds() {
        let m = model(Some("uid-1"));
        let h = Holding {
            queue_size: 20,
            max_wait_seconds: 90,
        };
        let (d, s) = objects(&m, h, "img", &Default::default()).expect("built");
        assert_eq!(d.metadata.name.as_deref(), Some("r1--front"));
        assert_eq!(s.metadata.name.as_deref(), Some("r1--front"));
        let spec = d.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.as_ref().expect("pod");
        assert_eq!(
            pod.affinity,
            Some(super::super::affinity::general_nodes()),
            "the front prefers nodes with no accelerator"
        );
        let args = pod.containers[0].args.clone().expect("args");
        assert_eq!(
            args,
            [
                "front",
                "--port",
                "8000",
                "--queue-size",
                "20",
                "--max-wait-seconds",
                "90"
            ]
        );
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone());
        let labels = labels.expect("labels");
        assert!(
            !labels.contains_key(super::labels::INSTANCE),
            "front pods must not look like the model's ranks"
        );
        assert_eq!(
            s.spec.as_ref().and_then(|s| s.selector.clone()),
            Some(labels)
        );
        let token = pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == TOKEN_ENV)
            .and_then(|e| e.value.clone());
        assert_eq!(token, Some(super::token("uid-1")));
        assert_ne!(super::token("uid-1"), super::token("uid-2"));
        let owner = &d.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-1", Some(true))
        );
        assert!(
            objects(&model(None), h, "img", &Default::default()).is_err(),
            "no uid, no token"
        );
    }
}
