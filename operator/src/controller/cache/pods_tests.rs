use super::*;

fn pod(name: &str, model: Option<&str>, node: Option<&str>, phase: &str, rv: &str) -> Pod {
    let mut labels = serde_json::json!({"team": "x"});
    if let Some(m) = model {
        labels = serde_json::json!({
            labels::INSTANCE: m,
            labels::MANAGED_BY: labels::MANAGER,
            labels::GROUP_ID: "h-0",
        });
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "ns", "labels": labels, "resourceVersion": rv,
            "annotations": {"a": "b"}, "managedFields": [{"manager": "m"}],
            "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u"}]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
            "command": ["run"], "env": [{"name": "E", "value": "v"}],
            "resources": {"requests": {"nvidia.com/gpu": "4", "cpu": "2"},
                          "limits": {"nvidia.com/gpu": "4", "memory": "1Gi"}}}]},
        "status": {"phase": phase, "podIP": "127.0.0.9",
            "conditions": [{"type": "Ready", "status": "True", "message": "m"},
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"}],
            "containerStatuses": [{"name": "c", "restartCount": 2, "ready": true,
                "image": "i", "imageID": "x",
                "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1,
                    "message": "error: invalid argument: --no-such-flag",
                    "containerID": "containerd://x"}}}]}
    }))
    .expect("pod")
}

#[test]
fn stripping_keeps_what_judgement_scraping_and_capacity_read() {
    let mut p = pod("p", Some("m"), Some("n1"), "Running", "1");
    strip(&mut p);
    assert!(p.metadata.annotations.is_none() && p.metadata.managed_fields.is_none());
    assert_eq!(p.owner_references().len(), 1);
    assert_eq!(
        p.labels().get(labels::INSTANCE).map(String::as_str),
        Some("m")
    );
    let spec = p.spec.clone().unwrap_or_default();
    assert_eq!(spec.node_name.as_deref(), Some("n1"));
    let c = &spec.containers[0];
    assert!(c.command.is_none() && c.env.is_none() && c.image.is_none());
    let r = c.resources.clone().unwrap_or_default();
    let req = r.requests.unwrap_or_default();
    assert!(req.contains_key("nvidia.com/gpu") && !req.contains_key("cpu"));
    assert!(!r.limits.unwrap_or_default().contains_key("memory"));
    let st = p.status.clone().unwrap_or_default();
    assert_eq!(st.pod_ip.as_deref(), Some("127.0.0.9"));
    assert_eq!(st.phase.as_deref(), Some("Running"));
    let types: Vec<String> = st
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(
        types,
        ["Ready", "PodScheduled"],
        "only what judgement reads"
    );
    let cs = st.container_statuses.unwrap_or_default();
    assert_eq!(cs[0].restart_count, 2);
    assert!(cs[0].image.is_empty());
    let started = cs[0]
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref())
        .map(|t| t.0.to_string());
    assert_eq!(
        started.as_deref(),
        Some("2026-01-01T00:00:05Z"),
        "a rank that fell from Ready is told by it"
    );
    // A crash loop's Degraded message names the last termination (seen missing on a
    // real node: "a rank restarted or failed" instead of the reason and exit code).
    let last = cs[0]
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| {
            (
                t.reason.as_deref(),
                t.exit_code,
                t.message.as_deref(),
                t.container_id.as_deref(),
            )
        });
    assert_eq!(last, Some((Some("Error"), 1, None, None)));
}

#[test]
fn stripping_keeps_the_reason_and_exit_code_of_the_last_termination() {
    let mut p = pod("p", Some("m"), Some("n1"), "Running", "1");
    if let Some(cs) = p
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
    {
        cs[0] = serde_json::from_value(serde_json::json!({
            "name": "c", "restartCount": 3, "ready": false, "image": "i", "imageID": "x",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 3,
                "message": "long text", "startedAt": "2026-01-01T00:00:05Z"}},
        }))
        .expect("container status");
    }
    strip(&mut p);
    let cs = p
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default();
    let last = cs[0]
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| (t.reason.as_deref(), t.exit_code, t.message.is_none()));
    assert_eq!(last, Some((Some("Error"), 3, true)));
    assert!(cs[0].state.is_none(), "waiting is not kept");
}

#[test]
fn indexes_follow_moves_phase_changes_and_deletes() {
    let mut s = Shard::default();
    s.apply(pod("a", Some("m"), None, "Pending", "1"));
    s.apply(pod("b", None, Some("n1"), "Running", "1"));
    assert_eq!(
        s.by_model.get(&("ns".into(), "m".into())).map(|v| v.len()),
        Some(1)
    );
    assert_eq!(
        s.used.get("n1").and_then(|m| m.get("nvidia.com/gpu")),
        Some(&4)
    );
    // Bound: counts on its node.
    s.apply(pod("a", Some("m"), Some("n1"), "Running", "2"));
    assert_eq!(
        s.used.get("n1").and_then(|m| m.get("nvidia.com/gpu")),
        Some(&8)
    );
    // Terminal: no longer holds the node.
    s.apply(pod("b", None, Some("n1"), "Failed", "2"));
    assert_eq!(
        s.used.get("n1").and_then(|m| m.get("nvidia.com/gpu")),
        Some(&4)
    );
    s.delete(&pod("a", Some("m"), Some("n1"), "Running", "2"));
    assert!(!s.used.contains_key("n1"));
    assert!(s.by_model.is_empty());
    assert_eq!(s.pods.len(), 1);
}

#[test]
fn the_cache_answers_by_model_and_by_node() {
    let cache = PodCache::from_pods(vec![
        pod("a", Some("m"), Some("n1"), "Running", "1"),
        pod("b", Some("other"), Some("n1"), "Running", "1"),
        pod("c", None, Some("n2"), "Running", "1"),
    ]);
    let mine = cache.model_pods("ns", "m");
    assert_eq!(mine.len(), 1);
    assert!(cache.model_pods("elsewhere", "m").is_empty());
    assert_eq!(cache.used_on("n1", "nvidia.com/gpu"), 8);
    assert_eq!(cache.used_on("n2", "nvidia.com/gpu"), 4);
    assert_eq!(cache.used_on("n3", "nvidia.com/gpu"), 0);
    assert_eq!(cache.len(), 3);
    let on = |n: &str| -> Vec<String> { cache.models_on(n).into_iter().map(|(_, m)| m).collect() };
    assert_eq!(on("n1"), ["m", "other"]);
    assert!(on("n2").is_empty(), "unmanaged pods wake no model");
    assert!(on("n3").is_empty());
}

#[test]
fn a_relist_reports_the_managed_pods_it_found_changed_new_or_gone() {
    let mut old = Shard::default();
    old.apply(pod("same", Some("m"), None, "Running", "1"));
    old.apply(pod("changed", Some("m"), None, "Running", "1"));
    old.apply(pod("gone", Some("m"), None, "Running", "1"));
    old.apply(pod("foreign", None, None, "Running", "1"));
    let mut new = Shard::default();
    new.apply(pod("same", Some("m"), None, "Running", "1"));
    new.apply(pod("changed", Some("m"), None, "Running", "2"));
    new.apply(pod("new", Some("m"), None, "Running", "1"));
    let mut names: Vec<String> = relist_changes(&old, &new)
        .iter()
        .map(|p| p.name_any())
        .collect();
    names.sort();
    assert_eq!(names, vec!["changed", "gone", "new"]);
    assert!(
        relist_changes(&Shard::default(), &new).is_empty(),
        "first list"
    );
}
