//! The chart's optional PodMonitor for the KEDA path (`metrics.podMonitor`): off by
//! default, selecting exactly the leader pods the operator builds on their launcher port,
//! limited to the watched namespaces in namespaced mode, and accepted by the Prometheus
//! Operator's real PodMonitor CRD (e2e/prometheus-crds, from its Go module) in a
//! server-side dry-run, which also refuses a broken one.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::repo_root;
use deepseek_e2e::Cluster;
use deepseek_operator::desired::labels;
use serde_json::Value;

async fn render(cluster: &Cluster, ns: &str, args: &[&str]) -> Result<Vec<Value>> {
    let out = cluster
        .helm()
        .args(["template", "pm-test"])
        .arg(repo_root().join("charts").join("deepseek-operator"))
        .args(["--namespace", ns, "--kube-version", "1.35.0"])
        .args(args)
        .output()
        .context("running helm template")?;
    ensure!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&String::from_utf8(out.stdout)?) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn pod_monitors(docs: &[Value]) -> Vec<&Value> {
    docs.iter().filter(|d| d["kind"] == "PodMonitor").collect()
}

#[tokio::test]
async fn the_pod_monitor_is_optional_and_selects_the_leaders_launcher_port() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let off = render(&cluster, "dso-system", &[]).await?;
    ensure!(pod_monitors(&off).is_empty(), "off by default");

    let on = render(
        &cluster,
        "dso-system",
        &["--set", "metrics.podMonitor.enabled=true"],
    )
    .await?;
    let pm = pod_monitors(&on);
    ensure!(pm.len() == 1, "one PodMonitor, got {}", pm.len());
    let spec = &pm[0]["spec"];
    ensure!(
        spec["namespaceSelector"]["any"] == true,
        "every namespace: {spec}"
    );
    // The selector must match the leader pods exactly as build/ labels them.
    let mut leader: BTreeMap<String, String> = labels::base("any-model");
    leader.insert(labels::ROLE.into(), "leader".into());
    let sel: BTreeMap<String, String> =
        serde_json::from_value(spec["selector"]["matchLabels"].clone())?;
    ensure!(!sel.is_empty(), "a selector");
    for (k, v) in &sel {
        ensure!(
            leader.get(k) == Some(v),
            "{k}={v} is not a leader pod label"
        );
    }
    ensure!(sel.contains_key(labels::ROLE), "leaders only");
    let ep = &spec["podMetricsEndpoints"][0];
    ensure!(ep["port"] == "launcher" && ep["path"] == "/metrics", "{ep}");

    let namespaced = render(
        &cluster,
        "dso-system",
        &[
            "--set",
            "metrics.podMonitor.enabled=true",
            "--set",
            "watchNamespaces={team-a,team-b}",
        ],
    )
    .await?;
    let pm = pod_monitors(&namespaced);
    let names = &pm.first().context("PodMonitor")?["spec"]["namespaceSelector"]["matchNames"];
    ensure!(
        *names == serde_json::json!(["team-a", "team-b"]),
        "watched namespaces only: {names}"
    );
    Ok(())
}

/// `kubectl apply --dry-run=server` of one document; the command's output and success.
fn dry_run(cluster: &Cluster, doc: &Value, file: &str) -> Result<(bool, String)> {
    let path = cluster.state_dir().join(file);
    std::fs::write(&path, serde_yaml::to_string(doc)?)?;
    let out = cluster
        .kubectl()
        .args(["apply", "--dry-run=server", "--server-side", "-f"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.context("running kubectl")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[tokio::test]
async fn the_real_pod_monitor_crd_accepts_the_rendered_pod_monitor() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let mut cmd = std::process::Command::new(repo_root().join("e2e").join("prometheus-crds"));
    cmd.args(["install", "podmonitors"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("PATH", cluster.path_env());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .context("running e2e/prometheus-crds")?;
    ensure!(
        out.status.success(),
        "e2e/prometheus-crds install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = cluster.namespace("podmonitor").await?;
    let docs = render(
        &cluster,
        ns.name(),
        &[
            "--set",
            "metrics.podMonitor.enabled=true",
            "--set",
            "metrics.podMonitor.labels.release=prom",
        ],
    )
    .await?;
    let pm = (*pod_monitors(&docs).first().context("PodMonitor")?).clone();
    // The CRD is Established by the script; its API may take a moment to be served.
    let (ok, text) =
        deepseek_e2e::wait::wait_for(Duration::from_secs(60), "PodMonitor dry-run", || {
            let pm = pm.clone();
            let cluster = &cluster;
            async move {
                let (ok, text) = dry_run(cluster, &pm, "podmonitor.yaml")?;
                Ok((ok || !text.contains("no matches for kind")).then_some((ok, text)))
            }
        })
        .await?;
    ensure!(ok && text.contains("server dry run"), "refused: {text}");

    // The CRD validates: an endpoint with a scrape interval it cannot parse is refused.
    let mut broken = pm.clone();
    broken["spec"]["podMetricsEndpoints"][0]["interval"] = Value::from("every minute");
    let (ok, text) = dry_run(&cluster, &broken, "podmonitor-broken.yaml")?;
    ensure!(!ok, "a broken PodMonitor was accepted: {text}");
    ns.finish().await
}
