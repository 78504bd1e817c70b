//! `peers-watch`: the benchmark's stopwatch. It watches the pods of one namespace and
//! prints, as JSON lines, the moment (milliseconds since the Unix epoch, taken when the
//! event arrives here) each pod is first seen, first bound to a node, first Ready and
//! deleted. The timestamps come from this separate process, not from the objects:
//! `creationTimestamp` has one-second resolution, and every operator under test writes
//! its own pods, so none of them can be trusted to time itself.
//!
//! Usage: `peers-watch NAMESPACE` with KUBECONFIG set. It prints
//! `{"event":"watching",...}` once the initial list is done, so a runner can apply its
//! workload only after the stopwatch runs, and exits on SIGTERM or end of input stream.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::{Api, Client};

mod podstate;
use podstate::{Milestones, Observed};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn emit(event: &str, obs: &Observed) {
    let mut line = serde_json::json!({
        "t": now_ms() as u64, "event": event, "pod": obs.name, "uid": obs.uid, "node": obs.node,
    });
    // Labels once, with the first sighting: the runner maps pods to models with them
    // (each operator labels its pods its own way).
    if event == "seen" {
        line["labels"] = serde_json::json!(obs.labels);
    }
    println!("{line}");
}

#[tokio::main]
async fn main() -> Result<()> {
    let ns = std::env::args()
        .nth(1)
        .context("usage: peers-watch NAMESPACE")?;
    let client = Client::try_default()
        .await
        .context("connecting with KUBECONFIG")?;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    // Milestones per pod uid: a recreated pod with the same name is a new pod.
    let mut seen: HashMap<String, Milestones> = HashMap::new();
    let mut stream = watcher(pods, watcher::Config::default()).boxed();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        let ev = tokio::select! {
            _ = sigterm.recv() => return Ok(()),
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return Ok(()) };
        match ev {
            Ok(watcher::Event::InitDone) => emit("watching", &Observed::default()),
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                let obs = Observed::of(&p);
                let m = seen.entry(obs.uid.clone()).or_default();
                for event in m.advance(&obs) {
                    emit(event, &obs);
                }
            }
            Ok(watcher::Event::Delete(p)) => {
                let obs = Observed::of(&p);
                seen.remove(&obs.uid);
                emit("deleted", &obs);
            }
            Ok(watcher::Event::Init) => {}
            // The watcher re-lists by itself after an error; the gap is reported.
            Err(e) => emit(
                "watch-error",
                &Observed {
                    name: e.to_string(),
                    ..Observed::default()
                },
            ),
        }
    }
}
