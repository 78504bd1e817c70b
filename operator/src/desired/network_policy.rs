//! The NetworkPolicy of one model: who may reach its pods.
//!
//! A model's pods serve three kinds of traffic. Ranks of a group talk to each other: the
//! launcher's rendezvous, Ray (GCS on `RAY_PORT`, then raylet, object manager and worker
//! ports that Ray picks at random), NCCL/HCCL/Gloo bootstrap and data sockets (ephemeral
//! ports), SGLang's `--dist-init-addr` (`DIST_INIT_PORT`). Because most of those ports are
//! chosen at run time, ranks of one model may reach each other on every port: a port list
//! would break multi-node groups. Clients call the engine's API (`ENGINE_PORT`), and the
//! operator scrapes the launcher's `/metrics` (`LAUNCHER_PORT`, which serves probes and
//! metrics only): those two ports are open to the model's own namespace, the operator's
//! namespace and the namespaces the administrator selects. The launcher's group port
//! (`GROUP_PORT`: rendezvous, rank health, drain) is not among them: only the model's own
//! pods reach it, and the launcher also demands the group token there. Nothing else
//! reaches the pods, so another tenant cannot reach Ray's GCS, the dist-init port, the
//! rendezvous or the drain.
//!
//! Pure: configuration and names in, the object out. Only ingress is restricted; engines
//! still download weights.

use std::collections::BTreeMap;

use deepseek_engine::{ENGINE_PORT, LAUNCHER_PORT};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::hash::template_hash;
use super::{dns_name, labels};
use crate::config::NetworkPolicyConfig;

/// The label every namespace carries with its own name (set by the API server).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Name of a model's NetworkPolicy (its own kind, so the model's name itself).
pub fn network_policy_name(model: &str) -> String {
    dns_name(model, "")
}

fn namespace_named(ns: &str) -> NetworkPolicyPeer {
    namespace_selected(BTreeMap::from([(
        NAMESPACE_NAME_LABEL.to_string(),
        ns.to_string(),
    )]))
}

fn namespace_selected(match_labels: BTreeMap<String, String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(match_labels),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tcp(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The policy for model `model` in `namespace`, owned by the model, carrying a digest of
/// its spec so the controller applies it only when it changed.
pub fn network_policy(
    model: &str,
    namespace: &str,
    owner: OwnerReference,
    cfg: &NetworkPolicyConfig,
    disaggregated: Option<&str>,
) -> NetworkPolicy {
    let pods = LabelSelector {
        match_labels: Some(labels::base(model)),
        ..Default::default()
    };
    // A role of a disaggregated model also takes the other role's pods and the router's:
    // the KV handoff (bootstrap port, then the transfer engine's own ports) crosses roles.
    let peers = match disaggregated {
        Some(parent) => LabelSelector {
            match_labels: Some(BTreeMap::from([(
                super::disaggregated::DISAGGREGATED.to_string(),
                parent.to_string(),
            )])),
            ..Default::default()
        },
        None => pods.clone(),
    };
    let ranks = NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(peers),
            ..Default::default()
        }]),
        // Every port: Ray and NCCL pick most of theirs at run time.
        ports: None,
    };
    let mut clients = vec![namespace_named(namespace)];
    if let Some(op) = cfg
        .operator_namespace
        .as_deref()
        .filter(|op| *op != namespace)
    {
        clients.push(namespace_named(op));
    }
    clients.extend(
        cfg.allow_from_namespaces
            .iter()
            .filter(|sel| !sel.is_empty())
            .cloned()
            .map(namespace_selected),
    );
    let api = NetworkPolicyIngressRule {
        from: Some(clients),
        ports: Some(vec![tcp(ENGINE_PORT), tcp(LAUNCHER_PORT)]),
    };
    let spec = NetworkPolicySpec {
        pod_selector: Some(pods),
        policy_types: Some(vec!["Ingress".into()]),
        ingress: Some(vec![ranks, api]),
        egress: None,
    };
    let digest = template_hash(&spec);
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(network_policy_name(model)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels::base(model)),
            annotations: Some(BTreeMap::from([(labels::SPEC_DIGEST.to_string(), digest)])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepseek_engine::{DIST_INIT_PORT, GROUP_PORT, RAY_PORT};

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "inference.deepseek-operator.dev/v1alpha1".into(),
            kind: "DeepSeekModel".into(),
            name: "r1".into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn spec(cfg: &NetworkPolicyConfig) -> NetworkPolicySpec {
        network_policy("r1", "team-a", owner(), cfg, None)
            .spec
            .unwrap_or_default()
    }

    /// The namespaces (by name or selector) that may open `port`, and whether the model's
    /// own ranks may.
    fn who_reaches(spec: &NetworkPolicySpec, port: u16) -> (Vec<String>, bool) {
        let mut namespaces = Vec::new();
        let mut ranks = false;
        for rule in spec.ingress.iter().flatten() {
            let open = rule.ports.as_ref().is_none_or(|ps| {
                ps.iter()
                    .any(|p| p.port == Some(IntOrString::Int(port.into())))
            });
            if !open {
                continue;
            }
            for peer in rule.from.iter().flatten() {
                if let Some(ns) = &peer.namespace_selector {
                    assert!(peer.pod_selector.is_none(), "{peer:?}");
                    let m = ns.match_labels.clone().unwrap_or_default();
                    namespaces.push(
                        m.get(NAMESPACE_NAME_LABEL)
                            .cloned()
                            .unwrap_or_else(|| format!("{m:?}")),
                    );
                }
                if let Some(pods) = &peer.pod_selector {
                    assert_eq!(pods.match_labels, Some(labels::base("r1")));
                    ranks = true;
                }
            }
        }
        namespaces.sort();
        (namespaces, ranks)
    }

    #[test]
    fn ranks_reach_each_other_on_every_port_and_no_one_else_reaches_ray_or_dist_init() {
        let cfg = NetworkPolicyConfig {
            operator_namespace: Some("dso-system".into()),
            ..Default::default()
        };
        let s = spec(&cfg);
        assert_eq!(
            s.pod_selector.as_ref().and_then(|p| p.match_labels.clone()),
            Some(labels::base("r1"))
        );
        assert_eq!(s.policy_types, Some(vec!["Ingress".to_string()]));
        for port in [RAY_PORT, DIST_INIT_PORT, GROUP_PORT, 29400, 45000] {
            assert_eq!(who_reaches(&s, port), (Vec::new(), true), "port {port}");
        }
        for port in [ENGINE_PORT, LAUNCHER_PORT] {
            assert_eq!(
                who_reaches(&s, port),
                (vec!["dso-system".to_string(), "team-a".to_string()], true),
                "port {port}"
            );
        }
    }

    #[test]
    fn administrator_namespaces_reach_only_the_api_and_launcher_ports() {
        let cfg = NetworkPolicyConfig {
            operator_namespace: Some("team-a".into()),
            allow_from_namespaces: vec![
                BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), "gateway".to_string())]),
                // An empty selector would select every namespace: ignored.
                BTreeMap::new(),
            ],
            ..Default::default()
        };
        let s = spec(&cfg);
        assert_eq!(
            who_reaches(&s, ENGINE_PORT).0,
            vec!["gateway".to_string(), "team-a".to_string()]
        );
        assert!(who_reaches(&s, RAY_PORT).0.is_empty());
        // The group's own endpoints (rendezvous, drain) are on a port no client reaches.
        assert_ne!(GROUP_PORT, LAUNCHER_PORT);
        assert_ne!(GROUP_PORT, ENGINE_PORT);
        assert_eq!(who_reaches(&s, GROUP_PORT), (Vec::new(), true));
    }

    #[test]
    fn a_role_is_reached_on_every_port_by_the_other_role_and_no_one_else() {
        let p = network_policy(
            "r1-decode",
            "team-a",
            owner(),
            &NetworkPolicyConfig::default(),
            Some("r1"),
        );
        let spec = p.spec.unwrap_or_default();
        let ranks = &spec.ingress.unwrap_or_default()[0];
        assert!(ranks.ports.is_none());
        let from = ranks.from.clone().unwrap_or_default();
        let sel = from[0].pod_selector.clone().unwrap_or_default();
        assert_eq!(
            sel.match_labels,
            Some(BTreeMap::from([(
                crate::desired::disaggregated::DISAGGREGATED.to_string(),
                "r1".to_string()
            )]))
        );
        // The policy still selects only this role's own pods.
        let own = spec.pod_selector.unwrap_or_default().match_labels;
        assert_eq!(own, Some(labels::base("r1-decode")));
    }

    #[test]
    fn owned_named_and_digested() {
        let a = network_policy(
            "r1",
            "team-a",
            owner(),
            &NetworkPolicyConfig::default(),
            None,
        );
        assert_eq!(a.metadata.name.as_deref(), Some("r1"));
        assert_eq!(a.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(a.metadata.owner_references, Some(vec![owner()]));
        let digest = |p: &NetworkPolicy| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(labels::SPEC_DIGEST).cloned())
        };
        let b = network_policy(
            "r1",
            "team-a",
            owner(),
            &NetworkPolicyConfig {
                operator_namespace: Some("ops".into()),
                ..Default::default()
            },
            None,
        );
        assert!(digest(&a).is_some());
        assert_ne!(digest(&a), digest(&b), "a changed policy gets a new digest");
        assert_eq!(digest(&a), digest(&a.clone()));
    }
}
