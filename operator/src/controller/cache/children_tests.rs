use super::*;

fn meta(ns: &str, name: &str, model: &str, digest: &str, rv: &str) -> ObjectMeta {
    serde_json::from_value(serde_json::json!({
        "name": name, "namespace": ns, "resourceVersion": rv,
        "labels": {labels::INSTANCE: model, labels::MANAGED_BY: labels::MANAGER},
        "annotations": {labels::SPEC_DIGEST: digest, "big": "x".repeat(100)},
        "managedFields": [{"manager": "m"}],
        "ownerReferences": [{"apiVersion": "inference.deepseek-operator.dev/v1alpha1",
            "kind": "DeepSeekModel", "name": model, "uid": "u", "controller": true}],
    }))
    .expect("meta")
}

fn refs(v: Vec<ObjectRef<DeepSeekModel>>) -> Vec<String> {
    let mut out: Vec<String> = v
        .iter()
        .map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or(""), r.name))
        .collect();
    out.sort();
    out
}

fn child(ns: &str, name: &str, model: &str, digest: &str) -> Child {
    Child::from_meta(&meta(ns, name, model, digest, "1"))
}

#[test]
fn a_child_keeps_the_digest_and_its_model_only() {
    let c = child("ns", "a--api", "a", "d1");
    assert_eq!(c.digest.as_deref(), Some("d1"));
    assert!(c.managed);
    assert_eq!(c.model().map(|r| r.name), Some("a".to_string()));
    let mut unowned = meta("ns", "x--api", "x", "d", "1");
    unowned.owner_references = None;
    assert_eq!(
        Child::from_meta(&unowned).model().map(|r| r.name),
        Some("x".to_string()),
        "falls back to the instance label"
    );
    let mut foreign = unowned;
    foreign.labels = None;
    assert!(!Child::from_meta(&foreign).managed);
}

#[test]
fn lookups_answer_unknown_before_the_first_list_and_absent_without_keda() {
    let c = ChildCache::unlisted(&Scope::All);
    assert_eq!(c.network_policy("ns", "a--np"), Seen::Unknown);
    assert_eq!(c.services_of("ns", "a"), None);
    assert_eq!(c.scaled_object("ns", "a"), Seen::Absent);
    // A write before the first list is not cached (the list decides).
    c.applied(
        ChildKind::NetworkPolicy,
        &meta("ns", "a--np", "a", "d", "1"),
    );
    assert_eq!(c.network_policy("ns", "a--np"), Seen::Unknown);
}

/// KEDA installed after the operator started: a ScaledObject applied before discovery
/// finds its API must still be found (and so deleted) when the model stops asking for it.
#[test]
fn a_scaled_object_applied_before_keda_is_discovered_is_looked_up_not_assumed_absent() {
    let c = ChildCache::unlisted(&Scope::All);
    assert_eq!(c.scaled_object("ns", "a"), Seen::Absent);
    c.applied(ChildKind::ScaledObject, &meta("ns", "a", "a", "d", "1"));
    assert_eq!(c.scaled_object("ns", "a"), Seen::Unknown);
}

#[test]
fn a_models_services_are_found_by_instance_label_and_namespace() {
    let c = ChildCache::listed(vec![
        (ChildKind::Service, meta("ns", "a--api", "a", "d1", "1")),
        (ChildKind::Service, meta("ns", "a--ranks", "a", "d2", "2")),
        (ChildKind::Service, meta("other", "a--api", "a", "d1", "3")),
        (ChildKind::Service, meta("ns", "b--api", "b", "d1", "4")),
    ]);
    let mut names: Vec<String> = c
        .services_of("ns", "a")
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .collect();
    names.sort();
    assert_eq!(names, ["a--api", "a--ranks"]);
    assert_eq!(c.services_of("ns", "c"), Some(Vec::new()));
    c.deleted(ChildKind::Service, "ns", "a--api");
    assert_eq!(c.services_of("ns", "a").map(|v| v.len()), Some(1));
}

#[test]
fn writes_through_show_at_once_and_namespaced_shards_hold_their_namespace() {
    let scope = Scope::Namespaces(vec!["a".into(), "b".into()]);
    let c = ChildCache::unlisted(&scope);
    for kind in [&c.policies, &c.scaled] {
        for s in kind.shards.iter() {
            if let Ok(mut s) = s.write() {
                s.relist(Vec::new());
            }
        }
    }
    c.keda.store(true, Ordering::Relaxed);
    assert_eq!(c.network_policy("b", "m--np"), Seen::Listed(None));
    c.applied(ChildKind::NetworkPolicy, &meta("b", "m--np", "m", "d", "5"));
    let Seen::Listed(Some(got)) = c.network_policy("b", "m--np") else {
        panic!("not cached");
    };
    assert_eq!(got.digest.as_deref(), Some("d"));
    assert_eq!(c.network_policy("a", "m--np"), Seen::Listed(None));
    assert!(c.policies.shards[1]
        .read()
        .is_ok_and(|s| s.objects.len() == 1));
    c.applied(ChildKind::ScaledObject, &meta("a", "m", "m", "k", "6"));
    assert!(matches!(c.scaled_object("a", "m"), Seen::Listed(Some(_))));
    c.deleted(ChildKind::ScaledObject, "a", "m");
    assert_eq!(c.scaled_object("a", "m"), Seen::Listed(None));
    // KEDA gone (the watch loop clears both flags): nothing can exist.
    c.keda.store(false, Ordering::Relaxed);
    c.keda_applied.store(false, Ordering::Relaxed);
    assert_eq!(c.scaled_object("a", "m"), Seen::Absent);
}

#[test]
fn only_a_new_digest_is_a_change_and_a_relist_reports_what_the_watch_missed() {
    let mut s = Shard::default();
    assert!(
        s.relist(vec![child("ns", "a--api", "a", "d1")]).is_empty(),
        "first list"
    );
    // Our own apply written through, then its watch event: no change the second time.
    assert!(!s.insert(child("ns", "a--api", "a", "d1")));
    assert!(s.insert(child("ns", "a--api", "a", "d2")));
    assert!(s.insert(child("ns", "b--api", "b", "d1")), "new object");
    let touched = s.relist(vec![
        child("ns", "a--api", "a", "d2"),
        child("ns", "c--api", "c", "d1"),
    ]);
    // a: same digest (no change); b: gone; c: new.
    assert_eq!(refs(touched), ["ns/b", "ns/c"]);
    assert_eq!(s.by_model.len(), 2);
    assert!(s.remove(&("ns".into(), "c--api".into())).is_some());
    assert!(s.remove(&("ns".into(), "c--api".into())).is_none());
    assert_eq!(s.by_model.len(), 1);
}

#[tokio::test]
async fn follow_forwards_changes_by_others_and_not_echoes_of_our_writes() {
    let kind = Kind::new(&Scope::All);
    let (tx, mut rx) = mpsc::channel(16);
    let pm = |m: ObjectMeta| relabel_meta::<Service>(m);
    let events: Vec<Result<watcher::Event<PartialObjectMeta<Service>>, watcher::Error>> = vec![
        Ok(watcher::Event::Init),
        Ok(watcher::Event::InitApply(pm(meta(
            "ns", "a--api", "a", "d1", "1",
        )))),
        Ok(watcher::Event::InitDone),
        // An echo of a write with the digest already cached: nothing to do.
        Ok(watcher::Event::Apply(pm(meta(
            "ns", "a--api", "a", "d1", "2",
        )))),
        // Someone deleted b's Service, and edited a's digest.
        Ok(watcher::Event::Apply(pm(meta(
            "ns", "b--api", "b", "d1", "3",
        )))),
        Ok(watcher::Event::Delete(pm(meta(
            "ns", "b--api", "b", "d1", "4",
        )))),
        Ok(watcher::Event::Apply(pm(meta(
            "ns", "a--api", "a", "x", "5",
        )))),
    ];
    let mut stream = std::pin::pin!(super::super::watch::changes(futures::stream::iter(events)));
    let mut listed = 0;
    let end = follow(&mut stream, &kind, 0, &tx, &mut || listed += 1).await;
    assert!(end.is_none());
    assert_eq!(listed, 1);
    drop(tx);
    let mut got = Vec::new();
    while let Some(r) = rx.recv().await {
        got.push(r.name);
    }
    assert_eq!(got, ["b", "b", "a"]);
    assert!(kind.shards[0]
        .read()
        .is_ok_and(|s| s.listed && s.objects.len() == 1));
}

fn relabel_meta<K>(metadata: ObjectMeta) -> PartialObjectMeta<K> {
    PartialObjectMeta {
        types: None,
        metadata,
        _phantom: Default::default(),
    }
}
