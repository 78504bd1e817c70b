//! The model's Services: one exposing the leaders' OpenAI-compatible endpoint and, for
//! groups of more than one node, a headless one through which ranks find their leader.

use std::collections::BTreeMap;

use deepseek_engine::{ENGINE_PORT, LAUNCHER_PORT};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::hash::template_hash;
use super::labels;
use super::pods::ranks_service_name;
use super::{dns_name, Workload};

/// Name of the Service users call.
pub fn api_service_name(model: &str) -> String {
    dns_name(model, "")
}

pub fn services(w: &Workload) -> Vec<Service> {
    let selector = labels::base(&w.model_name);
    let mut leader_selector = selector.clone();
    leader_selector.insert(labels::ROLE.into(), "leader".into());
    let port = |name: &str, port: i32, target: u16| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(target.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let api = ServiceSpec {
        type_: Some("ClusterIP".into()),
        selector: Some(leader_selector),
        ports: Some(vec![
            port("http", 80, ENGINE_PORT),
            port("launcher", LAUNCHER_PORT.into(), LAUNCHER_PORT),
        ]),
        ..Default::default()
    };
    let ranks = ServiceSpec {
        cluster_ip: Some("None".into()),
        selector: Some(selector),
        // Ranks must resolve each other before any of them is ready.
        publish_not_ready_addresses: Some(true),
        ports: Some(vec![port("launcher", LAUNCHER_PORT.into(), LAUNCHER_PORT)]),
        ..Default::default()
    };
    let mut out = vec![service(w, api_service_name(&w.model_name), api)];
    // A one-node group has no other rank to find its leader: no headless Service, and none
    // of the EndpointSlice churn it costs the controller manager (at 1,000 models the
    // scale bench's largest share of writes after our own, issue 12). The pods keep their
    // subdomain, so a plan that turns multi-node later restarts nothing to add it.
    if w.nodes_per_group > 1 {
        out.push(service(w, ranks_service_name(&w.model_name), ranks));
    }
    out
}

fn service(w: &Workload, name: String, spec: ServiceSpec) -> Service {
    let digest = template_hash(&spec);
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(w.namespace.clone()),
            labels: Some(labels::base(&w.model_name)),
            annotations: Some(BTreeMap::from([(labels::SPEC_DIGEST.to_string(), digest)])),
            owner_references: Some(vec![w.owner.clone()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}
