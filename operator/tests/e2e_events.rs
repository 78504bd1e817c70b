//! The operator's Event writer against the real API server: a repeated note extends the
//! first Event's series (one object, its count and last observation updated) instead of
//! creating another, a different note is a new Event, and a series whose Event is gone
//! (the API server's TTL, or someone deleted it) starts a new Event rather than failing.

use anyhow::{ensure, Context, Result};
use deepseek_e2e::Cluster;
use deepseek_operator::controller::events::{EventWriter, Note};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams};
use kube::Api;

fn regarding(ns: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("inference.deepseek-operator.dev/v1alpha1".into()),
        kind: Some("DeepSeekModel".into()),
        name: Some("m".into()),
        namespace: Some(ns.into()),
        uid: Some("0f1e2d3c-0000-4000-8000-000000000001".into()),
        resource_version: Some("1".into()),
        ..Default::default()
    }
}

fn note<'a>(reason: &'a str, text: &'a str) -> Note<'a> {
    Note {
        warning: false,
        reason,
        action: "Reconcile",
        note: text,
    }
}

/// The Events of the namespace, by name.
async fn events(api: &Api<Event>) -> Result<Vec<Event>> {
    let mut list = api.list(&ListParams::default()).await?.items;
    list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(list)
}

fn count(e: &Event) -> i32 {
    e.series.as_ref().map(|s| s.count).unwrap_or(1)
}

#[tokio::test]
async fn repeats_fold_into_one_series_and_a_deleted_series_starts_again() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let ns = cluster.namespace("events").await?;
    let api: Api<Event> = ns.api();
    let writer = EventWriter::new(cluster.client(), "deepseek-operator", "test-instance");
    let about = regarding(ns.name());

    writer.publish(&about, note("Planned", "first")).await?;
    writer.publish(&about, note("Planned", "first")).await?;
    writer.publish(&about, note("Planned", "first")).await?;
    let list = events(&api).await?;
    ensure!(list.len() == 1, "three repeats are one Event: {list:?}");
    ensure!(count(&list[0]) == 3, "its series counts 3: {:?}", list[0]);
    ensure!(
        list[0].note.as_deref() == Some("first") && list[0].reason.as_deref() == Some("Planned"),
        "{:?}",
        list[0]
    );
    ensure!(
        list[0]
            .regarding
            .as_ref()
            .is_some_and(|r| r.resource_version.is_none() && r.uid == about.uid),
        "regarding names the object by uid, without its version: {:?}",
        list[0].regarding
    );

    // Another note, or the same note about a newer version of the object, is told apart
    // by note only: the version is not part of what makes a repeat.
    writer.publish(&about, note("Planned", "second")).await?;
    let newer = ObjectReference {
        resource_version: Some("2".into()),
        ..about.clone()
    };
    writer.publish(&newer, note("Planned", "second")).await?;
    let list = events(&api).await?;
    ensure!(list.len() == 2, "a new note is a new Event: {list:?}");
    let second = list
        .iter()
        .find(|e| e.note.as_deref() == Some("second"))
        .context("the second note's Event")?;
    ensure!(count(second) == 2, "{second:?}");

    // The first series' Event goes away; its next repeat creates a new Event.
    let first = list
        .iter()
        .find(|e| e.note.as_deref() == Some("first"))
        .and_then(|e| e.metadata.name.clone())
        .context("the first note's Event")?;
    api.delete(&first, &DeleteParams::default()).await?;
    writer.publish(&about, note("Planned", "first")).await?;
    let list = events(&api).await?;
    let firsts: Vec<&Event> = list
        .iter()
        .filter(|e| e.note.as_deref() == Some("first"))
        .collect();
    ensure!(
        firsts.len() == 1 && firsts[0].metadata.name.as_deref() != Some(first.as_str()),
        "a repeat of a deleted Event is written anew: {firsts:?}"
    );
    ensure!(count(firsts[0]) == 1, "{:?}", firsts[0]);

    // A note over the API server's 1 kB limit is cut, not refused.
    let long = "x".repeat(3000);
    writer.publish(&about, note("Long", &long)).await?;
    let list = events(&api).await?;
    let cut = list
        .iter()
        .find(|e| e.reason.as_deref() == Some("Long"))
        .context("the long note's Event")?;
    ensure!(
        cut.note.as_ref().is_some_and(|n| n.len() <= 1000),
        "{cut:?}"
    );
    ns.finish().await
}
