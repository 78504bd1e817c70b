//! The chart's namespaced mode on the real local control plane: installed with
//! `watchNamespaces`, the chart's ServiceAccount may act only in the watched namespace
//! (plus reading Nodes), and the operator, run with a token of that ServiceAccount and
//! `--namespaces`, reconciles a model there (NetworkPolicy included) without ever being
//! refused anything. Switching the model NetworkPolicy off in the config deletes it, and
//! deleting the model removes its metric series.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::helm::*;
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::{Cluster, TestNamespace};
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::DeleteParams;
use kube::Api;

const T: Duration = Duration::from_secs(90);
const MODEL: &str = "r1-distill-1-5b";

/// `kubectl auth can-i` as the ServiceAccount: true for "yes".
fn can_i(cluster: &Cluster, kubeconfig: &std::path::Path, args: &[&str]) -> Result<bool> {
    let out = cluster
        .kubectl()
        .env("KUBECONFIG", kubeconfig)
        .args(["auth", "can-i"])
        .args(args)
        .output()
        .context("kubectl auth can-i")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "yes")
}

/// Permissions of a namespaced install: the model rules in the watched namespace only.
fn check_permissions(
    cluster: &Cluster,
    kubeconfig: &std::path::Path,
    watched: &str,
    other: &str,
) -> Result<()> {
    for (verb, resource) in [
        ("list", "deepseekmodels.inference.deepseek-operator.dev"),
        ("watch", "pods"),
        ("create", "pods"),
        ("delete", "services"),
        ("patch", "networkpolicies.networking.k8s.io"),
        ("create", "events.events.k8s.io"),
    ] {
        ensure!(
            can_i(cluster, kubeconfig, &[verb, resource, "-n", watched])?,
            "{verb} {resource} in the watched namespace is refused"
        );
        ensure!(
            !can_i(cluster, kubeconfig, &[verb, resource, "-n", other])?,
            "{verb} {resource} is allowed outside the watched namespaces"
        );
        ensure!(
            !can_i(cluster, kubeconfig, &[verb, resource, "--all-namespaces"])?,
            "{verb} {resource} is allowed cluster-wide"
        );
    }
    ensure!(
        can_i(cluster, kubeconfig, &["watch", "nodes"])?,
        "nodes are readable"
    );
    Ok(())
}

async fn reconcile_scenario(watched: &TestNamespace, op: &Operator) -> Result<()> {
    let models: Api<DeepSeekModel> = watched.api();
    let pods: Api<Pod> = watched.api();
    apply_model(&models, &example("r1-distill-qwen-1.5b-l4.yaml")?).await?;
    wait_groups(&pods, MODEL, 1, 1, T).await?;
    wait_condition(&models, MODEL, "Available", "True", T).await?;
    let nps: Api<NetworkPolicy> = watched.api();
    wait_for(T, "the model's NetworkPolicy", || async {
        Ok(nps.get_opt(MODEL).await?.map(|_| ()))
    })
    .await?;
    no_forbidden(op)
}

#[tokio::test]
async fn namespaced_install_reconciles_its_namespace_and_nothing_else() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("helm-nsd").await?;
    let watched = cluster.namespace("helm-nsd-watched").await?;
    let other = cluster.namespace("helm-nsd-other").await?;
    let release = ns.name().to_string();
    let fullname = format!("{release}-deepseek-operator");

    let mut cmd = cluster.helm();
    cmd.args(["install", &release])
        .arg(chart_dir())
        .args(["--namespace", ns.name(), "--set"])
        .arg(format!("watchNamespaces={{{}}}", watched.name()));
    run(cmd, "helm install (namespaced mode)")?;

    let dir = cluster.state_dir().join(format!("helm-{release}"));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("sa.kubeconfig");
    service_account_kubeconfig(&cluster, ns.name(), &fullname, &kubeconfig).await?;
    check_permissions(&cluster, &kubeconfig, watched.name(), other.name())?;

    let cms: Api<ConfigMap> = ns.api();
    let (config_text, cfg) = release_config(&cms, &fullname).await?;
    ensure!(
        cfg.network_policy.enabled
            && cfg.network_policy.operator_namespace.as_deref() == Some(ns.name()),
        "{config_text}"
    );
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, &config_text)?;
    let op = Operator::start(
        &cluster,
        OperatorOptions {
            leader_election: Some((ns.name(), "helm-nsd-0")),
            kubeconfig: Some(&kubeconfig),
            config_file: Some(&config_path),
            namespaces: Some(watched.name()),
        },
    )
    .await?;
    reconcile_scenario(&watched, &op)
        .await
        .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    drop(op);

    // The same release with the model NetworkPolicy switched off: the operator deletes
    // the policy it made (a delete the namespaced Role must allow).
    let mut cmd = cluster.helm();
    cmd.args(["upgrade", &release])
        .arg(chart_dir())
        .args(["--namespace", ns.name(), "--reuse-values", "--set"])
        .arg("networkPolicy.models.enabled=false");
    run(cmd, "helm upgrade (model NetworkPolicy off)")?;
    let (config_text, cfg) = release_config(&cms, &fullname).await?;
    ensure!(!cfg.network_policy.enabled, "{config_text}");
    std::fs::write(&config_path, &config_text)?;
    let op = Operator::start(
        &cluster,
        OperatorOptions {
            leader_election: Some((ns.name(), "helm-nsd-1")),
            kubeconfig: Some(&kubeconfig),
            config_file: Some(&config_path),
            namespaces: Some(watched.name()),
        },
    )
    .await?;
    let nps: Api<NetworkPolicy> = watched.api();
    let switched_off = async {
        wait_for(
            T,
            "the operator deleted the model's NetworkPolicy",
            || async { Ok(nps.get_opt(MODEL).await?.is_none().then_some(())) },
        )
        .await?;
        // The model's metric series exist while it does and go when it is deleted.
        let series = format!("model=\"{MODEL}\"");
        wait_for(T, "the model's metric series", || async {
            Ok(op.metrics().await?.contains(&series).then_some(()))
        })
        .await?;
        let models: Api<DeepSeekModel> = watched.api();
        models.delete(MODEL, &DeleteParams::default()).await?;
        wait_for(
            T,
            "the deleted model's metric series are removed",
            || async { Ok((!op.metrics().await?.contains(&series)).then_some(())) },
        )
        .await?;
        no_forbidden(&op)
    };
    switched_off
        .await
        .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    drop(op);

    let mut cmd = cluster.helm();
    cmd.args(["uninstall", &release, "--namespace", ns.name(), "--wait"]);
    run(cmd, "helm uninstall")?;
    let _ = std::fs::remove_dir_all(&dir);
    other.finish().await?;
    watched.finish().await?;
    ns.finish().await
}
