//! End to end with simulated engines (issue 5's acceptance): the operator deploys the
//! 2-node H100 example, the SimFleet runs the real launcher in sim mode behind each pod,
//! and a streaming chat completion sent to the leader that the model's Service selects
//! (resolved by hand: loopback pod IPs never reach EndpointSlices) gets a streamed answer;
//! the leader's launcher reports every rank joined.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::sim::{SimFleet, SimOptions};
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

/// Accelerator nodes are shared with other suites: wait generously for them.
const T: Duration = Duration::from_secs(300);

#[tokio::test]
async fn streamed_chat_completion_from_the_leader_of_a_simulated_2_node_group() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let launcher = launcher().await?;
    let ns = cluster.namespace("serving").await?;
    let _op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let fleet = SimFleet::start(ns.client(), ns.name(), SimOptions::new(launcher));

    let model = example("r1-fp8-h100-multinode.yaml")?;
    let name = model.metadata.name.clone().context("name")?;
    let models: Api<DeepSeekModel> = ns.api();
    apply_model(&models, &model).await?;
    let pods: Api<Pod> = ns.api();
    wait_groups(&pods, &name, 1, 2, T).await?;

    // "The Service": its selector resolved to ready pods; the API Service selects leaders.
    let leaders = wait_for(
        T,
        "the model's Service selects one ready leader",
        || async {
            let ips = service_pod_ips(&ns.client(), ns.name(), &name).await?;
            Ok((ips.len() == 1).then_some(ips))
        },
    )
    .await?;
    let leader = leaders[0];
    ensure!(leader.is_loopback());

    // The launcher on the leader: every rank joined, ready.
    wait_for(
        Duration::from_secs(120),
        "the leader's launcher reports 2 of 2 ranks joined and ready",
        || async {
            let joined = launcher_metric(leader, "dso_ranks_joined").await?;
            let size = launcher_metric(leader, "dso_group_size").await?;
            let ready = reqwest::get(format!("http://{leader}:8080/readyz")).await?;
            Ok(
                (joined == Some(2.0) && size == Some(2.0) && ready.status().is_success())
                    .then_some(()),
            )
        },
    )
    .await?;
    ensure!(fleet.running().len() == 2, "{:?}", fleet.running());

    // A streaming chat completion on port 8000 of the leader.
    let body = serde_json::json!({
        "model": name,
        "messages": [{"role": "user", "content": "Say hello in a few words."}],
        "stream": true,
        "max_tokens": 8,
    });
    let mut resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()?
        .post(format!("http://{leader}:8000/v1/chat/completions"))
        .json(&body)
        .send()
        .await?;
    ensure!(resp.status().is_success(), "status {}", resp.status());
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    ensure!(
        ctype.starts_with("text/event-stream"),
        "content-type {ctype}"
    );
    let mut chunks = 0;
    let mut text = String::new();
    while let Some(bytes) = resp.chunk().await? {
        chunks += 1;
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    ensure!(events.last() == Some(&"[DONE]"), "stream: {text}");
    let mut content = String::new();
    for e in events.iter().filter(|e| **e != "[DONE]") {
        let v: serde_json::Value = serde_json::from_str(e)?;
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
    }
    ensure!(
        events.len() >= 3 && !content.is_empty(),
        "expected several streamed deltas with content, got {} events: {text}",
        events.len()
    );
    eprintln!(
        "streamed {} events in {chunks} chunk(s) from leader {leader}: {content:?}",
        events.len()
    );

    drop(fleet);
    ns.finish().await
}
