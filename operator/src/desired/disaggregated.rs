//! A disaggregated model as Kubernetes objects: one role model per role and the router
//! in front of both.
//!
//! Each role (prefill, decode) becomes an ordinary `DeepSeekModel` named
//! `<model>-prefill` / `<model>-decode`, owned by the user's model, with
//! `serving.mode: prefill|decode` and the role's own replicas, autoscaling, accelerator,
//! layout and resources. Everything a model already does (planning, placement, groups
//! that survive failures, rollouts, the autoscaler) then works per role unchanged, and a
//! change to one role's size never touches the other role's pods: they belong to another
//! object. The router (`sglang-router`, pinned) runs as a Deployment with a
//! ServiceAccount whose Role may only read pods in the namespace: it discovers both
//! roles' leaders itself, so scaling a role never restarts it. The model's Service
//! (`<model>`, port 80) fronts the router, as it fronts the leaders of an aggregated model.
//!
//! Pure: the user's model in, objects out.

use std::collections::BTreeMap;

use deepseek_engine::pd::{router_command, RouterConfig, ROUTER_METRICS_PORT, ROUTER_PORT};
use deepseek_engine::{Engine, PdRole};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, ServiceAccount, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use super::labels;
use crate::api::{DeepSeekModel, DeepSeekModelSpec, EngineChoice, Serving, ServingMode};
use crate::config::HelperPods;

/// Label every pod of a disaggregated model carries (both roles' and the router's), with
/// the user's model name: the roles' NetworkPolicies let these pods reach each other (the
/// KV handoff crosses role models).
pub const DISAGGREGATED: &str = "inference.deepseek-operator.dev/disaggregated";
/// `app.kubernetes.io/component` of the router's pods.
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const ROUTER_COMPONENT: &str = "router";
/// Container name SimFleet and readers look for.
pub const ROUTER_CONTAINER: &str = "router";
/// `app.kubernetes.io/component` of the `ascend` transfer's config store.
pub const KV_STORE_COMPONENT: &str = "kv-store";
pub const ROLES: [PdRole; 2] = [PdRole::Prefill, PdRole::Decode];

/// Name of a role's model.
pub fn role_model_name(model: &str, role: PdRole) -> String {
    format!("{model}-{}", role.as_str())
}

/// The role a model serves, if it is a role model.
pub fn role_of(spec: &DeepSeekModelSpec) -> Option<PdRole> {
    match spec.serving_mode() {
        ServingMode::Prefill => Some(PdRole::Prefill),
        ServingMode::Decode => Some(PdRole::Decode),
        ServingMode::Aggregated | ServingMode::Disaggregated => None,
    }
}

/// The user's model a role model belongs to (its name minus the role suffix), which is
/// also the name clients ask for: both roles serve under it.
pub fn served_name(model: &str, spec: &DeepSeekModelSpec) -> String {
    match role_of(spec) {
        Some(role) => model
            .strip_suffix(&format!("-{}", role.as_str()))
            .unwrap_or(model)
            .to_string(),
        None => model.to_string(),
    }
}

/// Name of the Deployment and Service of the `ascend` transfer's config store.
pub fn kv_store_name(model: &str) -> String {
    format!("{model}-kv-store")
}

/// Name of the router's Deployment, ServiceAccount, Role and RoleBinding.
pub fn router_name(model: &str) -> String {
    format!("{model}-router")
}

/// The engine both roles run: the pinned router speaks SGLang's prefill/decode protocol,
/// so `auto` means SGLang and anything else is refused with the router's own reason.
pub fn engine_for(spec: &DeepSeekModelSpec) -> Result<EngineChoice, String> {
    let engine = match spec.engine {
        EngineChoice::Auto | EngineChoice::Sglang => Engine::Sglang,
        EngineChoice::Vllm => Engine::Vllm,
        EngineChoice::VllmAscend => Engine::VllmAscend,
        EngineChoice::Llamacpp => Engine::Llamacpp,
    };
    router_command(&router_config("probe", "probe", engine))
        .map(|_| EngineChoice::Sglang)
        .map_err(|e| e.to_string())
}

fn router_config(namespace: &str, model: &str, engine: Engine) -> RouterConfig {
    let selector = |role| {
        vec![
            format!("{}={}", labels::INSTANCE, role_model_name(model, role)),
            format!("{}={}", labels::MANAGED_BY, labels::MANAGER),
            format!("{}=leader", labels::ROLE),
        ]
    };
    RouterConfig {
        namespace: namespace.to_string(),
        prefill_selector: selector(PdRole::Prefill),
        decode_selector: selector(PdRole::Decode),
        engine,
    }
}

fn owner(model: &DeepSeekModel) -> Result<OwnerReference, String> {
    model
        .controller_owner_ref(&())
        .ok_or_else(|| "the model has no uid yet".to_string())
}

fn meta(model: &DeepSeekModel, name: String, extra: &[(&str, &str)]) -> Result<ObjectMeta, String> {
    let mut l = labels::base(&model.name_any());
    for (k, v) in extra {
        l.insert((*k).to_string(), (*v).to_string());
    }
    Ok(ObjectMeta {
        name: Some(name),
        namespace: model.namespace(),
        labels: Some(l),
        owner_references: Some(vec![owner(model)?]),
        ..Default::default()
    })
}

/// The role model of `role`: the user's spec with the role's fields in place of the
/// model-wide ones.
pub fn role_model(model: &DeepSeekModel, role: PdRole) -> Result<DeepSeekModel, String> {
    let parent = model.name_any();
    let mut spec = model.spec.clone();
    let part = match role {
        PdRole::Prefill => spec.prefill.take(),
        PdRole::Decode => spec.decode.take(),
    }
    .unwrap_or_default();
    spec.prefill = None;
    spec.decode = None;
    spec.engine = engine_for(&model.spec)?;
    spec.replicas = match part.autoscaling {
        Some(_) => None,
        None => Some(part.replicas.unwrap_or(1)),
    };
    spec.autoscaling = part.autoscaling;
    if part.accelerator.is_some() {
        spec.accelerator = part.accelerator;
    }
    spec.parallelism = part.parallelism;
    if part.resources.is_some() {
        spec.resources = part.resources;
    }
    let serving = spec.serving.unwrap_or_default();
    // Decode holds the KV cache of every running sequence; prefill only of the prompts in
    // flight: the planner's split, the one `plan --mode disaggregated` uses too.
    let concurrency = deepseek_planner::role_concurrency(role, serving.concurrency);
    spec.serving = Some(Serving {
        mode: Some(match role {
            PdRole::Prefill => ServingMode::Prefill,
            PdRole::Decode => ServingMode::Decode,
        }),
        concurrency,
        ..serving
    });
    let mut metadata = meta(
        model,
        role_model_name(&parent, role),
        &[(DISAGGREGATED, parent.as_str())],
    )?;
    // The role model is a model of its own: its children select on its own name.
    if let Some(l) = metadata.labels.as_mut() {
        l.insert(labels::INSTANCE.to_string(), role_model_name(&parent, role));
    }
    Ok(DeepSeekModel {
        metadata,
        spec,
        status: None,
    })
}

/// What runs the router: its identity, what that identity may read, the pods, and the
/// model's Service in front of them.
pub struct RouterObjects {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub deployment: Deployment,
    pub service: Service,
}

/// Labels of the router's pods (its Service and Deployment select on them).
pub fn router_pod_labels(model: &str) -> BTreeMap<String, String> {
    let mut l = labels::base(model);
    l.insert(COMPONENT.to_string(), ROUTER_COMPONENT.to_string());
    l.insert(DISAGGREGATED.to_string(), model.to_string());
    l
}

/// The config store both roles' `ascend` KV transfer meets at (only for models on
/// Ascend): one pod, no accelerator, no API token, and its Service at the address
/// desired/workload.rs `ascend_store_address` gives the roles.
pub fn kv_store_objects(
    model: &DeepSeekModel,
    image: &str,
    helpers: &HelperPods,
) -> Result<(Deployment, Service), String> {
    let name = model.name_any();
    let sname = kv_store_name(&name);
    let component = [(COMPONENT, KV_STORE_COMPONENT)];
    let mut pod_labels = labels::base(&name);
    pod_labels.insert(COMPONENT.to_string(), KV_STORE_COMPONENT.to_string());
    pod_labels.insert(DISAGGREGATED.to_string(), name.clone());
    let cmd = deepseek_engine::pd::ascend_store_command();
    let port = deepseek_engine::pd::ASCEND_STORE_PORT;
    let container = Container {
        name: KV_STORE_COMPONENT.into(),
        image: Some(image.to_string()),
        command: Some(vec![cmd.program.clone()]),
        args: Some(cmd.args.clone()),
        env: Some(
            cmd.env
                .iter()
                .map(|(k, v)| k8s_openapi::api::core::v1::EnvVar {
                    name: k.clone(),
                    value: Some(v.clone()),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("store".into()),
            container_port: port.into(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        // Up while it accepts connections.
        readiness_probe: Some(tcp_probe(port, 5)),
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            ..tcp_probe(port, 10)
        }),
        resources: Some(small_requests()),
        security_context: Some(super::helper_pod::restricted_container()),
        ..Default::default()
    };
    let mut pod = PodSpec {
        automount_service_account_token: Some(false),
        containers: vec![container],
        security_context: Some(super::helper_pod::restricted_pod()),
        ..Default::default()
    };
    super::helper_pod::place(&mut pod, helpers);
    let deployment = one_pod_deployment(meta(model, sname.clone(), &component)?, &pod_labels, pod);
    let service = cluster_ip(
        meta(model, sname, &component)?,
        pod_labels,
        "store",
        port.into(),
        port,
    );
    Ok((deployment, service))
}

/// What a helper pod (router, KV store) asks for: half a core and 512 MiB, at most 2 GiB.
fn small_requests() -> ResourceRequirements {
    let quantity = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), quantity("500m")),
            ("memory".to_string(), quantity("512Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), quantity("2Gi"))])),
        ..Default::default()
    }
}

fn tcp_probe(port: u16, period: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}

/// A ClusterIP Service with one TCP port.
fn cluster_ip(
    metadata: ObjectMeta,
    selector: BTreeMap<String, String>,
    name: &str,
    port: i32,
    target: u16,
) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some(name.into()),
                port,
                target_port: Some(IntOrString::Int(target.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// A Deployment of one pod labelled `pod_labels` (its selector too).
fn one_pod_deployment(
    metadata: ObjectMeta,
    pod_labels: &BTreeMap<String, String>,
    pod: PodSpec,
) -> Deployment {
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(pod_labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels.clone()),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Container security of the operator's helper pods (router, KV store): no privilege,
/// no capability, read-only root, not root.
pub fn router_objects(
    model: &DeepSeekModel,
    image: &str,
    helpers: &HelperPods,
) -> Result<RouterObjects, String> {
    let name = model.name_any();
    let ns = model
        .namespace()
        .ok_or_else(|| "the model has no namespace".to_string())?;
    let rname = router_name(&name);
    let component = [(COMPONENT, ROUTER_COMPONENT)];
    let cmd =
        router_command(&router_config(&ns, &name, Engine::Sglang)).map_err(|e| e.to_string())?;

    let service_account = ServiceAccount {
        metadata: meta(model, rname.clone(), &component)?,
        // Only the router's own pods mount a token (the Deployment asks for it).
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(model, rname.clone(), &component)?,
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["list".into(), "watch".into()],
            ..Default::default()
        }]),
    };
    let role_binding = RoleBinding {
        metadata: meta(model, rname.clone(), &component)?,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: rname.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: rname.clone(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };

    let pod_labels = router_pod_labels(&name);
    let http_probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(ROUTER_PORT.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    };
    let container = Container {
        name: ROUTER_CONTAINER.into(),
        image: Some(image.to_string()),
        command: Some(vec![cmd.program.clone()]),
        args: Some(cmd.args.clone()),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: ROUTER_PORT.into(),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: ROUTER_METRICS_PORT.into(),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        // The pinned router answers /readiness only once it has a healthy worker of each
        // role, and /liveness as soon as it listens.
        readiness_probe: Some(http_probe("/readiness", 5)),
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            ..http_probe("/liveness", 10)
        }),
        resources: Some(small_requests()),
        security_context: Some(super::helper_pod::restricted_container()),
        // The root file system is read-only: a tokenizer the router fetches goes to an
        // emptyDir.
        env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "HOME".into(),
            value: Some("/tmp".into()),
            ..Default::default()
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mut pod = PodSpec {
        service_account_name: Some(rname.clone()),
        // Service discovery reads pods with this token.
        automount_service_account_token: Some(true),
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }]),
        security_context: Some(super::helper_pod::restricted_pod()),
        ..Default::default()
    };
    super::helper_pod::place(&mut pod, helpers);
    let deployment = one_pod_deployment(meta(model, rname.clone(), &component)?, &pod_labels, pod);
    let service = cluster_ip(
        meta(model, super::services::api_service_name(&name), &component)?,
        pod_labels,
        "http",
        80,
        ROUTER_PORT,
    );
    Ok(RouterObjects {
        service_account,
        role,
        role_binding,
        deployment,
        service,
    })
}

#[cfg(test)]
#[path = "disaggregated_tests.rs"]
mod tests;
