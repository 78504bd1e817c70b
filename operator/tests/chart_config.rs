//! The operator configuration the chart renders (`config.yaml` of its ConfigMap): every
//! lifecycle bound, the drain bound, the administrator's security switches and declared
//! pools' namespaces can be set through Helm values, reach the operator as the values
//! say, keep the operator's own defaults when unset, and bad values are refused by the
//! chart's schema before anything is installed.

#[path = "common/mod.rs"]
mod common;

use anyhow::{anyhow, ensure, Context, Result};
use common::helm::{all_on_values, documents, template};
use deepseek_e2e::Cluster;
use deepseek_operator::config::OperatorConfig;

/// The operator configuration of a render, parsed as the operator parses it.
fn rendered_config(yaml: &str) -> Result<OperatorConfig> {
    let docs = documents(yaml)?;
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["data"]["config.yaml"].is_string())
        .context("a ConfigMap with config.yaml")?;
    let text = cm["data"]["config.yaml"].as_str().unwrap_or_default();
    OperatorConfig::from_yaml(text).map_err(|e| anyhow!("{e}:\n{text}"))
}

#[tokio::test]
async fn the_charts_config_carries_the_lifecycle_bounds_and_security_switches() -> Result<()> {
    let cluster = Cluster::ensure().await?;

    // Unset: the chart's defaults are the operator's own.
    let defaults = rendered_config(&template(&cluster, "cfg", "dso-system", None, &[])?)?;
    let builtin = OperatorConfig::default();
    let bounds = |c: &OperatorConfig| {
        (
            c.unreachable_node_timeout_seconds.0,
            c.rank_not_ready_timeout_seconds.0,
            c.capacity_pending_timeout_seconds.0,
            c.capacity_retry_seconds.0,
            c.drain_seconds.0,
            c.allow_root_host_path_cache,
            c.allow_custom_prometheus_queries,
        )
    };
    ensure!(
        bounds(&defaults) == bounds(&builtin),
        "chart defaults {:?} differ from the operator's {:?}",
        bounds(&defaults),
        bounds(&builtin)
    );

    // Set through values: each reaches the operator.
    let set = rendered_config(&template(
        &cluster,
        "cfg",
        "dso-system",
        None,
        &[
            "--set",
            "config.unreachableNodeTimeoutSeconds=61",
            "--set",
            "config.rankNotReadyTimeoutSeconds=122",
            "--set",
            "config.capacityPendingTimeoutSeconds=1800",
            "--set",
            "config.capacityRetrySeconds=604",
            "--set",
            "config.drainSeconds=95",
            "--set",
            "config.allowRootHostPathCache=true",
            "--set",
            "config.allowCustomPrometheusQueries=true",
        ],
    )?)?;
    ensure!(
        bounds(&set) == (61, 122, 1800, 604, 95, true, true),
        "rendered {:?}",
        bounds(&set)
    );

    // The all-on values file (also used by e2e_helm.rs): a declared pool's namespaces.
    let all_on = rendered_config(&template(
        &cluster,
        "cfg",
        "dso-system",
        Some(&all_on_values()),
        &[],
    )?)?;
    ensure!(
        all_on.declared_pools[0].namespaces == ["team-a", "team-b"],
        "declared pool namespaces: {:?}",
        all_on.declared_pools[0].namespaces
    );
    ensure!(bounds(&all_on) == (90, 240, 900, 600, 120, true, true));
    // Helper pods' placement: unset by default, the all-on values' system pool when set.
    ensure!(
        defaults.helper_pods == builtin.helper_pods,
        "{:?}",
        defaults.helper_pods
    );
    ensure!(
        all_on
            .helper_pods
            .node_selector
            .get("pool")
            .map(String::as_str)
            == Some("system")
            && all_on.helper_pods.tolerations.len() == 1,
        "helperPods: {:?}",
        all_on.helper_pods
    );

    // The schema refuses a bound the operator could not use.
    for bad in [
        "config.capacityRetrySeconds=0",
        "config.unreachableNodeTimeoutSeconds=-5",
        "config.drainSeconds=100000",
        "config.allowCustomPrometheusQueries=yes",
    ] {
        let out = template(&cluster, "cfg", "dso-system", None, &["--set", bad]);
        ensure!(out.is_err(), "{bad} was accepted");
    }
    Ok(())
}
