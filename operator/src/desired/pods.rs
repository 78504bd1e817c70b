//! The pods of one replica group: `nodesPerReplica` pods, rank 0 the leader, each taking
//! every accelerator of one node of the chosen pool, on distinct nodes.
//!
//! Each group's pods carry the group token (`DSO_GROUP_TOKEN`) that the launcher's group
//! port (rendezvous, rank health, drain) demands: [`group_token`] derives it from the
//! model's UID and the group id, so it is the same for every rank of a group, different
//! for every group, and recomputed identically by any operator replica or version
//! (docs/security.md says why it is not a Secret).

use std::collections::BTreeMap;

use deepseek_engine::{env, render, ENGINE_PORT, GROUP_PORT, LAUNCHER_PORT};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    HTTPGetAction, HostPathVolumeSource, Lifecycle, LifecycleHandler, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::affinity::affinity;
use super::labels::{self, group_id};
use super::{dns_name, WeightsVolume, Workload};
use crate::inventory::karpenter::DO_NOT_DISRUPT;

const MODELS_DIR: &str = "/models";
const TOKEN_DIR: &str = "/var/run/secrets/huggingface";
/// The non-root user engines run as (the runtime images create it): high, so it maps to
/// no user of the node.
pub const ENGINE_UID: i64 = 10001;
/// Ascend's driver gives its device files to `HwHiAiUser`, uid and gid 1000 by default.
pub const ASCEND_UID: i64 = 1000;

/// Name of a group's pod; also its hostname, so it stays a DNS label.
pub fn pod_name(w: &Workload, slot: u32, rank: u32) -> String {
    dns_name(
        &w.model_name,
        &format!("{}-{rank}", group_id(&w.template_hash, slot)),
    )
}

/// The token of group `gid` of the model whose UID is `model_uid`: SHA-256 over a fixed
/// label, the UID and the group id, hex-encoded. The UID is random (the API server's
/// UUID), so a caller that cannot read the model's objects cannot compute it.
pub fn group_token(model_uid: &str, gid: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in ["deepseek-operator group token v1", model_uid, gid] {
        h.update(part.as_bytes());
        // A separator no UID or group id contains: no two inputs hash alike.
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Headless Service through which ranks find their leader.
pub fn ranks_service_name(model: &str) -> String {
    dns_name(model, "ranks")
}

/// DNS name of a group's leader (rank 0) under the headless Service.
pub fn leader_address(w: &Workload, slot: u32) -> String {
    format!(
        "{}.{}.{}.svc",
        pod_name(w, slot, 0),
        ranks_service_name(&w.model_name),
        w.namespace
    )
}

/// Every pod of group `slot`, leader first.
pub fn group_pods(w: &Workload, slot: u32) -> Vec<Pod> {
    (0..w.nodes_per_group.max(1))
        .map(|rank| pod(w, slot, rank))
        .collect()
}

/// The engine command of one rank, as the launcher will run it.
pub fn engine_command(w: &Workload, slot: u32, rank: u32) -> String {
    match render(&w.launch, rank, &leader_address(w, slot)) {
        Ok(steps) => steps
            .prepare
            .iter()
            .chain(steps.serve.iter())
            .map(|c| c.to_shell())
            .collect::<Vec<_>>()
            .join(" && "),
        Err(e) => format!("invalid launch configuration: {e}"),
    }
}

fn pod(w: &Workload, slot: u32, rank: u32) -> Pod {
    let gid = group_id(&w.template_hash, slot);
    let mut pod_labels = labels::base(&w.model_name);
    pod_labels.insert(labels::GROUP.into(), slot.to_string());
    pod_labels.insert(labels::GROUP_ID.into(), gid.clone());
    pod_labels.insert(labels::RANK.into(), rank.to_string());
    pod_labels.insert(
        labels::ROLE.into(),
        if rank == 0 { "leader" } else { "worker" }.into(),
    );
    pod_labels.insert(labels::TEMPLATE_HASH.into(), w.template_hash.clone());
    pod_labels.insert(labels::POOL.into(), w.pool.name.clone());
    pod_labels.insert(
        labels::GROUP_SIZE.into(),
        w.nodes_per_group.max(1).to_string(),
    );

    if w.launch.disaggregation.is_some() {
        // Both roles' pods (and the router's) reach each other for the KV handoff.
        pod_labels.insert(
            super::disaggregated::DISAGGREGATED.into(),
            w.launch.served_model_name.clone(),
        );
    }

    let name = pod_name(w, slot, rank);
    let mut annotations = BTreeMap::from([(
        labels::ENGINE_COMMAND.to_string(),
        engine_command(w, slot, rank),
    )]);
    // On a Karpenter NodePool's nodes, Karpenter's own opt-out keeps consolidation and
    // drift from evicting one rank of a group (which would take the whole group down);
    // empty nodes are still removed once the group is gone (docs/autoscaling.md).
    if w.pool.nodepool.is_some() {
        annotations.insert(DO_NOT_DISRUPT.to_string(), "true".to_string());
    }
    // The router's service discovery reads where a prefill leader publishes its KV.
    let prefill = w
        .launch
        .disaggregation
        .as_ref()
        .is_some_and(|d| d.role == deepseek_engine::PdRole::Prefill);
    if prefill && rank == 0 {
        annotations.insert(
            deepseek_engine::pd::BOOTSTRAP_PORT_ANNOTATION.to_string(),
            deepseek_engine::pd::BOOTSTRAP_PORT.to_string(),
        );
    }

    Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(w.namespace.clone()),
            labels: Some(pod_labels),
            annotations: Some(annotations),
            owner_references: Some(vec![w.owner.clone()]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            hostname: Some(name),
            subdomain: Some(ranks_service_name(&w.model_name)),
            containers: vec![container(w, slot, rank)],
            init_containers: cache_owner(w).map(|c| vec![c]),
            affinity: Some(affinity(w, &gid)),
            node_selector: (!w.extra_node_selector.is_empty())
                .then(|| w.extra_node_selector.clone()),
            tolerations: (!w.tolerations.is_empty()).then(|| w.tolerations.clone()),
            volumes: Some(volumes(w)),
            security_context: Some(pod_security(w)),
            // Engines talk to nothing in the cluster API.
            automount_service_account_token: Some(false),
            // Covers the leader's drain, then each worker's wait for it and its own stop.
            termination_grace_period_seconds: Some(
                deepseek_engine::termination_grace_period_seconds(w.drain_seconds),
            ),
            restart_policy: Some("Always".into()),
            ..Default::default()
        }),
        status: None,
    }
}

fn container(w: &Workload, slot: u32, rank: u32) -> Container {
    let launch_json = serde_json::to_string(&w.launch).unwrap_or_default();
    let mut env_vars = vec![
        EnvVar {
            name: env::LAUNCH_CONFIG.into(),
            value: Some(launch_json),
            value_from: None,
        },
        EnvVar {
            name: env::RANK.into(),
            value: Some(rank.to_string()),
            value_from: None,
        },
        EnvVar {
            name: env::LEADER_ADDRESS.into(),
            value: Some(leader_address(w, slot)),
            value_from: None,
        },
        pod_ip_env(),
        EnvVar {
            name: env::GROUP_TOKEN.into(),
            value: Some(group_token(&w.owner.uid, &group_id(&w.template_hash, slot))),
            value_from: None,
        },
        EnvVar {
            name: "HF_HOME".into(),
            value: Some(format!("{MODELS_DIR}/hf")),
            value_from: None,
        },
    ];
    // The configured drain bound (the launcher's default when it is the default).
    if w.drain_seconds != deepseek_engine::DEFAULT_DRAIN_SECONDS {
        env_vars.push(EnvVar {
            name: env::DRAIN_SECONDS.into(),
            value: Some(w.drain_seconds.to_string()),
            value_from: None,
        });
    }
    if !w.run_as_root {
        // A non-root user with no home in the image: caches (torch, triton) go to /tmp.
        for (k, v) in [("HOME", "/tmp"), ("USER", "engine")] {
            env_vars.push(EnvVar {
                name: k.into(),
                value: Some(v.into()),
                value_from: None,
            });
        }
    }
    let mut mounts = vec![
        VolumeMount {
            name: "models".into(),
            mount_path: MODELS_DIR.into(),
            ..Default::default()
        },
        VolumeMount {
            name: "dshm".into(),
            mount_path: "/dev/shm".into(),
            ..Default::default()
        },
    ];
    if w.hf_token.is_some() {
        env_vars.push(EnvVar {
            name: env::HF_TOKEN_FILE.into(),
            value: Some(format!("{TOKEN_DIR}/token")),
            value_from: None,
        });
        mounts.push(VolumeMount {
            name: "hf-token".into(),
            mount_path: TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }

    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    if !w.pool.resource_name.is_empty() {
        let n = Quantity(w.accelerators_per_pod.to_string());
        limits.insert(w.pool.resource_name.clone(), n.clone());
        requests.insert(w.pool.resource_name.clone(), n);
    }
    // Requests keep pods out of BestEffort, the first class evicted under memory
    // pressure. No CPU or memory limit: loading weights spikes host memory.
    requests.insert("cpu".into(), Quantity(w.size.cpu.clone()));
    requests.insert("memory".into(), Quantity(w.size.memory.clone()));

    let probe = |path: &str, period: i32, failures: i32, timeout: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(LAUNCHER_PORT.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(timeout),
        ..Default::default()
    };
    // Liveness asks the engine's health endpoint within its bound; the leader's /readyz
    // asks every rank: both more than the kubelet's default 1 s.
    let live = deepseek_engine::LIVENESS_PROBE_TIMEOUT_SECONDS;
    let ready = deepseek_engine::READINESS_PROBE_TIMEOUT_SECONDS;

    Container {
        name: "engine".into(),
        image: Some(w.image.clone()),
        command: Some(vec!["deepseek-launcher".into()]),
        env: Some(env_vars),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: ENGINE_PORT.into(),
                ..Default::default()
            },
            ContainerPort {
                name: Some("launcher".into()),
                container_port: LAUNCHER_PORT.into(),
                ..Default::default()
            },
            ContainerPort {
                name: Some("group".into()),
                container_port: GROUP_PORT.into(),
                ..Default::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            limits: (!limits.is_empty()).then_some(limits),
            requests: (!requests.is_empty()).then_some(requests),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        // Loading hundreds of GB of weights takes minutes: allow an hour to start.
        security_context: Some(container_security(w)),
        // The leader stops taking requests and finishes those in flight before its
        // container gets SIGTERM; workers wait for the leader on their own. The drain is
        // on the group port with the group token, so the hook runs the launcher's own
        // `drain` command in the container instead of an HTTP GET the kubelet would send
        // without the token.
        lifecycle: (rank == 0).then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(
                        deepseek_engine::DRAIN_COMMAND
                            .iter()
                            .map(|s| s.to_string())
                            .collect(),
                    ),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        startup_probe: Some(probe(deepseek_engine::LIVENESS_PATH, 10, 360, live)),
        liveness_probe: Some(probe(deepseek_engine::LIVENESS_PATH, 10, 6, live)),
        readiness_probe: Some(probe(deepseek_engine::READINESS_PATH, 5, 3, ready)),
        ..Default::default()
    }
}

fn volumes(w: &Workload) -> Vec<Volume> {
    let models = match &w.weights {
        WeightsVolume::HostPath(path) => Volume {
            name: "models".into(),
            host_path: Some(HostPathVolumeSource {
                path: path.clone(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Default::default()
        },
        WeightsVolume::Claim(claim) | WeightsVolume::Existing { claim, .. } => Volume {
            name: "models".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(matches!(w.weights, WeightsVolume::Existing { .. })),
            }),
            ..Default::default()
        },
    };
    let mut v = vec![
        models,
        Volume {
            name: "dshm".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity(w.size.shm.clone())),
            }),
            ..Default::default()
        },
    ];
    if let Some(secret) = &w.hf_token {
        let key = secret.key.clone().unwrap_or_else(|| "token".into());
        v.push(Volume {
            name: "hf-token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                    key,
                    path: "token".into(),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    v
}

/// The user (and group) a non-root engine runs as: Ascend's device owner, else ENGINE_UID.
fn engine_uid(w: &Workload) -> i64 {
    if w.launch.vendor == "ascend" {
        ASCEND_UID
    } else {
        ENGINE_UID
    }
}

/// For a non-root engine on a node cache, an init container that gives the cache
/// directory to the engine's user. The kubelet creates a missing `DirectoryOrCreate`
/// path owned by root with mode 0755, and `fsGroup` does not apply to hostPath volumes,
/// so without it the engine cannot create `/models/hf` ("permission denied"). It runs
/// as root with CHOWN as its only capability, changes the owner of that one directory
/// (not recursively: files already there belong to whoever wrote them) and exits; see
/// docs/security.md. PVC-backed caches get `fsGroup` instead, root engines need nothing.
fn cache_owner(w: &Workload) -> Option<Container> {
    if w.run_as_root || !matches!(w.weights, WeightsVolume::HostPath(_)) {
        return None;
    }
    let uid = engine_uid(w);
    let tiny = BTreeMap::from([
        ("cpu".to_string(), Quantity("10m".into())),
        ("memory".to_string(), Quantity("16Mi".into())),
    ]);
    Some(Container {
        name: "cache-owner".into(),
        image: Some(w.image.clone()),
        command: Some(vec![
            "chown".into(),
            format!("{uid}:{uid}"),
            MODELS_DIR.into(),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: "models".into(),
            mount_path: MODELS_DIR.into(),
            ..Default::default()
        }]),
        resources: Some(ResourceRequirements {
            limits: Some(tiny.clone()),
            requests: Some(tiny),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(vec!["CHOWN".into()]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Pod-level security: seccomp RuntimeDefault, and a non-root user (with a group that
/// owns the weight volumes) unless the vendor's devices need root.
fn pod_security(w: &Workload) -> PodSecurityContext {
    let non_root = !w.run_as_root;
    let uid = engine_uid(w);
    PodSecurityContext {
        run_as_non_root: Some(non_root),
        run_as_user: non_root.then_some(uid),
        run_as_group: non_root.then_some(uid),
        fs_group: non_root.then_some(uid),
        supplemental_groups: (!w.supplemental_groups.is_empty())
            .then(|| w.supplemental_groups.clone()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// Container-level security: never privileged, no privilege escalation, every capability
/// dropped (device plugins grant device access without any).
fn container_security(w: &Workload) -> SecurityContext {
    SecurityContext {
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_non_root: Some(!w.run_as_root),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// `DSO_POD_IP` from the downward API: the address a launcher (engine or front) binds
/// and announces.
pub fn pod_ip_env() -> EnvVar {
    EnvVar {
        name: env::POD_IP.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "status.podIP".into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_tokens_are_per_group_per_model_and_stable() {
        let t = group_token("0f6c6a1e-uid", "abcdef0123-0");
        assert_eq!(t.len(), 64, "{t}");
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(t, group_token("0f6c6a1e-uid", "abcdef0123-0"), "stable");
        assert_ne!(
            t,
            group_token("0f6c6a1e-uid", "abcdef0123-1"),
            "another group"
        );
        assert_ne!(
            t,
            group_token("another-uid", "abcdef0123-0"),
            "another model"
        );
        // The separator keeps the parts apart.
        assert_ne!(group_token("ab", "c"), group_token("a", "bc"));
    }
}
