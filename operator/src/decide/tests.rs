//! Table tests of `decide`: one pass's decision from the model, its pods and the pools,
//! for each branch a reconcile can take. Pods start as the ones `decide` asks to create,
//! then are bound, started and broken the way a kubelet and the node-lifecycle controller
//! would leave them.

use super::*;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::{json, Value};

use crate::inventory::pools_from_nodes;

const T0: &str = "2026-01-01T00:00:00Z";

fn at(secs: i64) -> Timestamp {
    let t0: Timestamp = T0.parse().expect("valid time");
    Timestamp::from_second(t0.as_second() + secs).expect("valid time")
}

fn pools() -> Vec<Pool> {
    let nodes: Vec<Node> =
        serde_yaml::from_str(include_str!("../../tests/fixtures/nodes-mixed.yaml"))
            .expect("fixture");
    let refs: Vec<&Node> = nodes.iter().collect();
    pools_from_nodes(&refs, Catalog::builtin(), &[])
}

fn model(spec: Value, status: Option<&DeepSeekModelStatus>) -> DeepSeekModel {
    let mut m: DeepSeekModel = serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": spec,
    }))
    .expect("model");
    m.status = status.cloned();
    m
}

/// One distill replica per H100 (one pod a group).
fn small(replicas: i64) -> Value {
    json!({"model": "deepseek-r1-distill-qwen-1.5b", "replicas": replicas,
           "accelerator": {"product": "h100-80gb"}})
}

/// R1 FP8 across two H100 nodes (two pods a group).
fn wide() -> Value {
    json!({"model": "deepseek-r1", "quantization": "fp8", "replicas": 1,
           "accelerator": {"product": "h100-80gb"}})
}

struct Case {
    model: DeepSeekModel,
    pods: Vec<Arc<Pod>>,
    lost: BTreeMap<String, Timestamp>,
    recall: Recall,
    now: i64,
}

impl Case {
    fn new(model: DeepSeekModel, pods: Vec<Pod>) -> Case {
        Case {
            model,
            pods: pods.into_iter().map(Arc::new).collect(),
            lost: BTreeMap::new(),
            recall: Recall::default(),
            now: 600,
        }
    }

    fn decide(&self) -> Decision {
        let pools = pools();
        decide(&Inputs {
            model: &self.model,
            pods: &self.pods,
            lost_nodes: &self.lost,
            pools: &pools,
            catalog: Catalog::builtin(),
            config: &OperatorConfig::default(),
            recall: &self.recall,
            autoscaler_state: None,
            now: at(self.now),
        })
    }
}

/// A pod as created, bound to `node`, Running and Ready (with `restarts`).
fn serving(mut p: Pod, node: &str, restarts: i32) -> Pod {
    p.spec.get_or_insert_with(Default::default).node_name = Some(node.into());
    p.status = Some(
        serde_json::from_value(json!({
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": at(0).to_string()},
                {"type": "Ready", "status": "True", "lastTransitionTime": at(60).to_string()},
            ],
            "containerStatuses": [{
                "name": "engine", "image": "i", "imageID": "", "ready": true,
                "restartCount": restarts,
            }],
        }))
        .expect("status"),
    );
    p
}

/// The pods and status of `spec` once its first decision is carried out and every group
/// serves: the world the other cases start from.
fn settled(spec: Value) -> (DeepSeekModelStatus, Vec<Pod>) {
    let first = Case::new(model(spec.clone(), None), vec![]).decide();
    let nodes = ["h100-a", "h100-b"];
    let pods: Vec<Pod> = first
        .create
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| serving(p.clone(), nodes[i % 2], 0))
        .collect();
    let second = Case::new(model(spec, Some(&first.status)), pods.clone()).decide();
    assert!(second.converged, "{:?}", second.status.conditions);
    (second.status, pods)
}

fn cond<'a>(d: &'a DeepSeekModelStatus, t: &str) -> (&'a str, &'a str) {
    cond::get(&d.conditions, t)
        .map(|c: &Condition| (c.status.as_str(), c.reason.as_str()))
        .unwrap_or(("absent", ""))
}

fn every_condition(s: &DeepSeekModelStatus) {
    for t in [
        cond::PLANNED,
        cond::SCHEDULED,
        cond::AVAILABLE,
        cond::PROGRESSING,
        cond::DEGRADED,
    ] {
        assert!(
            cond::get(&s.conditions, t).is_some(),
            "{t} missing: {:?}",
            s.conditions
        );
    }
}

#[test]
fn a_new_model_is_planned_and_its_groups_created_with_its_children() {
    let d = Case::new(model(small(2), None), vec![]).decide();
    assert_eq!(cond(&d.status, cond::PLANNED), ("True", "Planned"));
    every_condition(&d.status);
    assert_eq!(d.create.pods.len(), 2);
    assert_eq!(d.create.groups.len(), 2);
    assert!(d.services.as_ref().is_some_and(|s| !s.is_empty()));
    assert!(!d.deletes());
    assert!(d.events.iter().any(|e| e.reason == "Planned"));
    assert_eq!(d.requeue, Requeue::Busy);
}

#[test]
fn a_spec_made_invalid_keeps_its_serving_groups_and_every_condition() {
    let (status, pods) = settled(small(2));
    let invalid = json!({"model": "custom", "replicas": 2});
    let d = Case::new(model(invalid, Some(&status)), pods).decide();
    assert_eq!(cond(&d.status, cond::PLANNED), ("False", "InvalidSpec"));
    assert_eq!(cond(&d.status, cond::AVAILABLE), ("True", "ReplicasReady"));
    assert_eq!(cond(&d.status, cond::DEGRADED).0, "False");
    every_condition(&d.status);
    assert!(!d.deletes() && d.create.pods.is_empty() && d.services.is_none());
    assert_eq!(d.status.plan, status.plan, "the last plan is kept");
    assert!(d.events.iter().any(|e| e.reason == "InvalidSpec"));
    // Not frozen: it looks again.
    assert!(matches!(d.requeue, Requeue::After(_)));
}

#[test]
fn scale_to_zero_happens_while_the_spec_is_invalid() {
    let (status, pods) = settled(small(2));
    let invalid = json!({"model": "custom", "replicas": 0});
    let d = Case::new(model(invalid, Some(&status)), pods.clone()).decide();
    assert_eq!(d.delete.len(), pods.len(), "every group goes");
    assert!(d.delete.iter().all(|x| !x.force));
    assert_eq!(cond(&d.status, cond::PLANNED), ("False", "InvalidSpec"));
    assert_eq!(cond(&d.status, cond::AVAILABLE), ("False", "ScaledToZero"));
    assert_eq!(d.status.desired_replicas, 0);
    assert_eq!(d.requeue, Requeue::Busy, "moving: looked at again soon");
    assert!(d.events.iter().any(|e| e.reason == "GroupDeleted"));
}

#[test]
fn an_unplaceable_model_keeps_serving_its_groups() {
    let (status, pods) = settled(small(2));
    let elsewhere = json!({"model": "deepseek-r1-distill-qwen-1.5b", "replicas": 2,
                           "accelerator": {"product": "b200"}});
    let d = Case::new(model(elsewhere, Some(&status)), pods).decide();
    let (planned, reason) = cond(&d.status, cond::PLANNED);
    assert_eq!(planned, "False");
    assert_ne!(reason, "Planned");
    assert_eq!(cond(&d.status, cond::AVAILABLE), ("True", "ReplicasReady"));
    every_condition(&d.status);
    assert!(!d.deletes() && d.create.pods.is_empty());
    assert_eq!(d.requeue, Requeue::After(IDLE_REQUEUE));
}

#[test]
fn a_group_created_in_part_gets_only_its_missing_rank() {
    let first = Case::new(model(wide(), None), vec![]).decide();
    assert_eq!(first.create.pods.len(), 2, "one group of two pods");
    // Rank 0 was created, rank 1 refused: the group never started.
    let rank0 = first.create.pods[0].clone();
    let mut c = Case::new(model(wide(), Some(&first.status)), vec![rank0.clone()]);
    c.recall.partially_created = first.create.groups.iter().cloned().collect();
    let d = c.decide();
    assert!(!d.deletes(), "the rank present is kept");
    let names: Vec<String> = d.create.pods.iter().map(|p| p.name_any()).collect();
    assert_eq!(names, [first.create.pods[1].name_any()]);
}

#[test]
fn a_crash_looping_rank_gets_its_group_recreated_and_degraded_says_so() {
    let (status, mut pods) = settled(small(2));
    let node = pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    pods[0] = serving(pods[0].clone(), &node, 1);
    let d = Case::new(model(small(2), Some(&status)), pods.clone()).decide();
    assert_eq!(d.delete.len(), 1);
    assert_eq!(d.delete[0].name, pods[0].name_any());
    assert_eq!(cond(&d.status, cond::DEGRADED), ("True", "RankRestarted"));
    assert!(d
        .events
        .iter()
        .any(|e| e.warning && e.reason == "GroupDeleted" && e.note.contains("restarted")));
}

#[test]
fn a_group_on_a_node_lost_past_the_bound_is_force_deleted() {
    let (status, pods) = settled(small(2));
    let node = pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let mut c = Case::new(model(small(2), Some(&status)), pods.clone());
    c.lost.insert(node.clone(), at(100));
    // Within the bound (60 s by default): nothing yet, but a look when it runs out.
    c.now = 130;
    let d = c.decide();
    assert!(!d.deletes());
    assert!(d.recheck.is_some_and(|r| r <= Duration::from_secs(30)));
    c.now = 200;
    let d = c.decide();
    let on_lost: Vec<&Deletion> = d.delete.iter().filter(|x| x.force).collect();
    assert_eq!(on_lost.len(), 1, "{:?}", d.delete);
    assert_eq!(cond(&d.status, cond::DEGRADED), ("True", "NodeLost"));
}

#[test]
fn a_refusal_holds_creations_back_and_shows_until_they_go_through() {
    let mut c = Case::new(model(small(1), None), vec![]);
    c.recall.refused = Some(("exceeded quota".into(), Some(Duration::from_secs(4))));
    let d = c.decide();
    assert!(d.create.pods.is_empty(), "waiting out the backoff");
    assert_eq!(d.requeue, Requeue::After(Duration::from_secs(4)));
    assert_eq!(cond(&d.status, cond::PROGRESSING), ("True", "CreateFailed"));
    // A second refusal met while carrying the decision out is reported in the same pass.
    c.recall.refused = None;
    let d = c.decide();
    let (s, _, _) = d.status(&Outcome {
        refused: Some("exceeded quota".into()),
        created: true,
        ..Default::default()
    });
    assert_eq!(cond(&s, cond::DEGRADED), ("True", "CreateFailed"));
    let (s, notes, converged) = d.status(&Outcome {
        conflict: Some("NetworkPolicy ns/m already exists".into()),
        ..Default::default()
    });
    assert_eq!(cond(&s, cond::CONFLICT), ("True", "ObjectNotOwned"));
    assert!(!converged);
    assert!(notes.iter().any(|n| n.reason == "Conflict"));
}

/// `p` failing at every start: its container restarted `restarts` times, waiting in
/// CrashLoopBackOff, and its last run ended as the kubelet reports it.
fn crashing(mut p: Pod, restarts: i32) -> Pod {
    let status = p.status.get_or_insert_with(Default::default);
    status.conditions = None;
    status.container_statuses = Some(vec![serde_json::from_value(json!({
        "name": "engine", "image": "i", "imageID": "", "ready": false,
        "restartCount": restarts,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 3}},
    }))
    .expect("container status")]);
    p
}

#[test]
fn a_crash_looping_group_is_recreated_then_held_back_then_recreated_after_the_backoff() {
    let spec = small(1);
    let (status, pods) = settled(spec.clone());
    let crashed = vec![crashing(pods[0].clone(), 1)];
    let name = crashed[0].name_any();

    // First crash, nothing recreated lately: recreated at once, and remembered.
    let mut case = Case::new(model(spec.clone(), Some(&status)), crashed.clone());
    let first = case.decide();
    assert_eq!(first.delete.len(), 1, "recreated at once");
    assert!(first.crash_recreated);

    // The new group crashes again 5 s later: held until 10 s after the recreation.
    case.recall.crashes = vec![Recreation {
        at: at(600),
        jitter: 1.0,
    }];
    case.now = 605;
    let held = case.decide();
    assert!(held.delete.is_empty(), "held back: {:?}", held.delete);
    assert!(!held.crash_recreated);
    assert!(held.create.pods.is_empty());
    assert_eq!(held.requeue, Requeue::After(Duration::from_secs(5)));
    assert_eq!(cond(&held.status, cond::DEGRADED), ("True", "CrashLooping"));
    let message = cond::get(&held.status.conditions, cond::DEGRADED)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&name) && message.contains("Error") && message.contains("exit code 3"),
        "{message}"
    );
    assert!(held.events.iter().any(|e| e.reason == "CrashLooping"));
    every_condition(&held.status);

    // Waiting: the same status, no Event, nothing written (steady state).
    case.model = model(spec.clone(), Some(&held.status));
    case.now = 607;
    let again = case.decide();
    assert!(again.delete.is_empty() && again.create.pods.is_empty());
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(again.status, held.status);

    // The back-off over: recreated again.
    case.now = 611;
    let after = case.decide();
    assert_eq!(after.delete.len(), 1, "recreated after the back-off");
    assert!(after.crash_recreated);
}

#[test]
fn crash_recreations_stop_at_the_window_bound() {
    let spec = small(1);
    let (status, pods) = settled(spec.clone());
    let mut case = Case::new(
        model(spec, Some(&status)),
        vec![crashing(pods[0].clone(), 1)],
    );
    // Six recreations in the last 10 minutes with no pause left: the seventh waits
    // until the oldest leaves the window.
    case.recall.crashes = (0..6)
        .map(|k| Recreation {
            at: at(10 * k),
            jitter: 0.0,
        })
        .collect();
    case.now = 300;
    let d = case.decide();
    assert!(d.delete.is_empty(), "{:?}", d.delete);
    assert_eq!(d.requeue, Requeue::After(Duration::from_secs(300)));
    assert_eq!(cond(&d.status, cond::DEGRADED), ("True", "CrashLooping"));
}
