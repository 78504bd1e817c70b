//! Helm helpers shared by the chart suites (e2e_helm.rs, e2e_helm_namespaced.rs): render
//! the chart, run commands, a kubeconfig for the chart's ServiceAccount, the rendered
//! operator config, and the check that the operator was never refused anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::config::OperatorConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

use super::{repo_root, Operator};

const T: Duration = Duration::from_secs(90);

pub fn chart_dir() -> PathBuf {
    repo_root().join("charts").join("deepseek-operator")
}

pub fn all_on_values() -> PathBuf {
    chart_dir().join("ci").join("all-on-values.yaml")
}

/// Runs a command, returning stdout, or an error with its stderr.
pub fn run(mut cmd: std::process::Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `helm template` for `release` in `ns` (CRDs included) as YAML text.
pub fn template(
    cluster: &Cluster,
    release: &str,
    ns: &str,
    values: Option<&Path>,
    extra: &[&str],
) -> Result<String> {
    let mut cmd = cluster.helm();
    cmd.args(["template", release])
        .arg(chart_dir())
        // Without a cluster, helm assumes Kubernetes v1.20, below the chart's kubeVersion.
        .args([
            "--namespace",
            ns,
            "--include-crds",
            "--kube-version",
            "1.35.0",
        ]);
    if let Some(v) = values {
        cmd.arg("-f").arg(v);
    }
    cmd.args(extra);
    run(cmd, "helm template")
}

pub fn documents(yaml: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// A kubeconfig for the chart's ServiceAccount: the admin kubeconfig's cluster (same
/// server URL and CA) with a token from the TokenRequest API.
pub async fn service_account_kubeconfig(
    cluster: &Cluster,
    ns: &str,
    sa: &str,
    path: &Path,
) -> Result<()> {
    let sas: Api<ServiceAccount> = Api::namespaced(cluster.client(), ns);
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sas
        .create_token_request(sa, &PostParams::default(), &tr)
        .await
        .context("TokenRequest for the chart's ServiceAccount")?
        .status
        .context("TokenRequest has no status")?
        .token;
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(cluster.kubeconfig())?)?;
    let context = admin["current-context"]
        .as_str()
        .context("current-context")?;
    let cluster_name = admin["contexts"]
        .as_array()
        .context("contexts")?
        .iter()
        .find(|c| c["name"] == context)
        .and_then(|c| c["context"]["cluster"].as_str())
        .context("current context's cluster")?;
    let cluster_entry = admin["clusters"]
        .as_array()
        .context("clusters")?
        .iter()
        .find(|c| c["name"] == cluster_name)
        .cloned()
        .context("cluster entry")?;
    let kc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster_entry],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": cluster_name, "user": sa, "namespace": ns}}],
        "current-context": sa,
    });
    std::fs::write(path, serde_yaml::to_string(&kc)?)?;
    Ok(())
}

/// The operator config rendered into the release's ConfigMap.
pub async fn release_config(cm: &Api<ConfigMap>, name: &str) -> Result<(String, OperatorConfig)> {
    let text = cm
        .get(name)
        .await?
        .data
        .and_then(|d| d.get("config.yaml").cloned())
        .context("config.yaml in the ConfigMap")?;
    let cfg = OperatorConfig::from_yaml(&text).map_err(|e| anyhow!("{e}:\n{text}"))?;
    Ok((text, cfg))
}

pub async fn wait_rolled_out(
    deps: &Api<Deployment>,
    name: &str,
    replicas: i32,
) -> Result<Deployment> {
    wait_for(
        T,
        &format!("deployment {name} has {replicas} updated, available replicas"),
        || async {
            let d = deps.get(name).await?;
            let st = d.status.clone().unwrap_or_default();
            let done = st.observed_generation == d.metadata.generation
                && st.updated_replicas == Some(replicas)
                && st.available_replicas == Some(replicas)
                && st.replicas == Some(replicas);
            Ok(done.then_some(d))
        },
    )
    .await
}

pub fn no_forbidden(op: &Operator) -> Result<()> {
    let log = std::fs::read_to_string(&op.log)?;
    let bad: Vec<&str> = log
        .lines()
        // The operator watches every namespace: writes into a namespace that another suite
        // is deleting are refused by the NamespaceLifecycle admission plugin (also a 403,
        // "forbidden"), which says nothing about RBAC.
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("forbidden") && !l.contains("because it is being terminated")
        })
        .collect();
    ensure!(
        bad.is_empty(),
        "the operator was refused something:\n{}",
        bad.join("\n")
    );
    Ok(())
}
