//! Scale from zero that loses no request (issue 27), end to end on the local control
//! plane: a model at zero replicas with `autoscaling.holdRequests` gets its front
//! (`<model>--front`, two `deepseek-launcher front` pods that SimFleet runs at their 127.x
//! IPs); 20 concurrent streamed chats sent to a front pod are held, the autoscaler reads
//! the held count and scales 0 -> 1 at once, the group comes up (the sim engine "loads
//! weights" for 5 s, and the namespace is probed, so a pod is Ready only once its
//! launcher is), and every held chat is answered in full, exactly once (the engines
//! count 20 answers in all). A 21st request beyond the queue bound of 20 gets 503 with
//! Retry-After. The cold-start timeline is printed per shape, its phases in order. Then
//! the model is scaled to zero by hand and, as soon as its group is gone, 5 more chats
//! are sent: held, the model woken again, each answered once (the front's forwarded count
//! grows by 5). Last, `holdRequests.enabled: false` deletes the front.
//!
//! Shapes: an aggregated model of one node per group (DeepSeek-V3 FP8 on MI300X), a
//! group of two nodes (R1 INT8 on Ascend 910B, both ranks joined before Ready), and, with
//! `--features pd-router` (the real pinned router, as e2e_disaggregated), a disaggregated
//! model whose roles both start at zero: its front stands before the router, the prefill
//! role wakes on the held prompts, decode follows, and the front forwards to the router
//! only once both roles have a Ready leader.

mod common;

#[cfg(feature = "pd-router")]
use std::net::Ipv4Addr;
use std::time::Duration;
#[cfg(feature = "pd-router")]
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use common::front_client::*;
use common::*;
use deepseek_e2e::sim::{SimFleet, SimOptions};
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::desired::front;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
#[cfg(feature = "pd-router")]
use kube::api::ListParams;
use kube::Api;

/// Accelerator nodes may be shared with other suites: wait generously for them.
const T: Duration = Duration::from_secs(300);
const HELD: usize = 20;
const LOAD_SECONDS: &str = "5";

/// Applies `model` at zero replicas with holding on, holds 20 streamed chats at one front
/// pod, checks the 21st is refused, and that all 20 are answered once the group is up.
async fn wakes_and_answers_every_held_request(
    file: &str,
    ns_name: &str,
    ranks: usize,
) -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let launcher = launcher().await?;
    let ns = cluster.namespace(ns_name).await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let fleet = SimFleet::start(
        ns.client(),
        ns.name(),
        SimOptions::new(launcher)
            .probe_readiness()
            .env("DSO_SIM_LOAD_SECONDS", LOAD_SECONDS)
            .env("DSO_SIM_TIME_SCALE", "0.05"),
    );

    let mut model = example(file)?;
    let name = model.metadata.name.clone().context("name")?;
    model.spec.replicas = Some(0);
    model.spec.autoscaling = Some(serde_json::from_value(held_at_zero(HELD))?);
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &model).await?;
    let c = client()?;

    // The front: two pods, each answering with nothing held and no group.
    let fronts = ready_fronts(&c, &pods, &name, T)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}; operator log:\n{}", op.log_tail()))?;
    ensure!(
        model_pods(&pods, &name).await?.is_empty(),
        "no group at zero"
    );
    let at = fronts[0];
    let url = format!("http://{at}:8000/v1/chat/completions");

    let wake = wake_for_held_chats(&c, at, &models, &pods, &ns.api(), &name, ranks, HELD).await?;
    eprintln!("  Event ScaledFromZero: {}", wake.note);
    wake.timeline
        .print(&format!("{file} ({ranks} pod(s) per group)"));
    eprintln!(
        "  all {HELD} held chats answered in full {:.1}s after they were sent; 21st: 503, Retry-After {}",
        wake.answered_after.as_secs_f64(),
        wake.retry_after
    );
    let load: u64 = LOAD_SECONDS.parse()?;
    ensure!(
        wake.answered_after >= Duration::from_secs(load),
        "answered before the engine could have loaded"
    );

    // Back to zero, then requests right after the last group went: held and answered by
    // a new wake-up, not refused by the group that is gone.
    let forwarded_before = forwarded(&c, at).await?;
    let out = cluster
        .kubectl()
        .args([
            "-n",
            ns.name(),
            "scale",
            "deepseekmodel",
            &name,
            "--replicas=0",
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(T, "the group is gone", || async {
        Ok(model_pods(&pods, &name).await?.is_empty().then_some(()))
    })
    .await?;
    // Gone for the front too: its process stopped (SimFleet polls), so no group is ready.
    wait_for(T, "the front has no ready group", || async {
        let st = front_status(&c, at).await?;
        let any_ready = st["backends"]
            .as_array()
            .is_some_and(|l| l.iter().any(|b| b["ready"] == true));
        Ok((!any_ready).then_some(()))
    })
    .await?;
    let again: Vec<_> = (0..5)
        .map(|_| tokio::spawn(streamed_chat(c.clone(), url.clone())))
        .collect();
    for (i, chat) in again.into_iter().enumerate() {
        let (status, chunks, done, _) = chat.await??;
        ensure!(
            (status, chunks, done) == (200, TOKENS, true),
            "after the scale-down, chat {i}: status {status}, {chunks} of {TOKENS} chunks, [DONE] {done}"
        );
    }
    let sent_on = forwarded(&c, at).await? - forwarded_before;
    ensure!(
        sent_on == 5,
        "the front forwarded {sent_on} answers for 5 requests"
    );
    let woke_again = models.get(&name).await?;
    let second = woke_again
        .status
        .as_ref()
        .and_then(|s| s.last_scale_time.clone())
        .context("lastScaleTime")?;
    let second_at: Timestamp = second.parse()?;
    ensure!(
        second_at > wake.timeline.0[1].1,
        "not woken again: lastScaleTime {second} is the first wake-up's"
    );
    eprintln!("  after a scale to zero, 5 requests sent as the group went were held and answered (woken again at {second})");

    // Holding turned off: the front goes (Deployment and Service).
    let patch = serde_json::json!({"spec": {"autoscaling": {"holdRequests": {"enabled": false}}}});
    models
        .patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    let front_name = front::name(&name);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = ns.api();
    let services: Api<k8s_openapi::api::core::v1::Service> = ns.api();
    wait_for(T, "the front is deleted once holding is off", || async {
        let d = deployments.get_opt(&front_name).await?;
        let s = services.get_opt(&front_name).await?;
        Ok((d.is_none() && s.is_none()).then_some(()))
    })
    .await?;
    drop(fleet);
    drop(op);
    ns.finish().await
}

#[tokio::test]
async fn an_aggregated_one_node_model_wakes_for_held_requests() -> Result<()> {
    wakes_and_answers_every_held_request("v3-fp8-mi300x.yaml", "probed-from-zero-1", 1).await
}

#[tokio::test]
async fn a_two_node_group_wakes_whole_for_held_requests() -> Result<()> {
    wakes_and_answers_every_held_request("r1-int8-ascend.yaml", "probed-from-zero-2", 2).await
}

/// The disaggregated shape: R1 on Atlas A3 (prefill one node, decode a group of two), both
/// roles at zero, holding on the prefill role.
#[cfg(feature = "pd-router")]
#[tokio::test]
async fn a_disaggregated_model_wakes_both_roles_for_held_requests() -> Result<()> {
    use deepseek_e2e::fixtures::kwok_node;
    use k8s_openapi::api::core::v1::Node;

    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let nodes: Api<Node> = Api::all(cluster.client().clone());
    let node_names = [
        ("zero-pd-a3-prefill-0", "a3-prefill"),
        ("zero-pd-a3-decode-0", "a3-decode"),
        ("zero-pd-a3-decode-1", "a3-decode"),
    ];
    for (node, pool) in node_names {
        let _ = nodes.delete(node, &Default::default()).await;
        wait_for(T, &format!("old node {node} gone"), || async {
            Ok(nodes.get_opt(node).await?.is_none().then_some(()))
        })
        .await?;
        kwok_node(
            &nodes,
            node,
            serde_json::json!({"accelerator": "huawei-Ascend910",
                "node.kubernetes.io/npu.chip.name": "910C", "node-pool": pool}),
            serde_json::json!([]),
            serde_json::json!({"huawei.com/Ascend910": "16"}),
            "127.0.0.1",
        )
        .await?;
    }
    let ns = cluster.namespace("probed-from-zero-pd").await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let fleet = SimFleet::start(
        ns.client(),
        ns.name(),
        SimOptions::new(launcher().await?)
            .probe_readiness()
            .router(
                deepseek_e2e::sim_router::router_binary()?,
                cluster.kubeconfig(),
            )
            .env("DSO_SIM_LOAD_SECONDS", LOAD_SECONDS)
            .env("DSO_SIM_TIME_SCALE", "0.05"),
    );

    let mut model = example("r1-pd-ascend-a3.yaml")?;
    let name = model.metadata.name.clone().context("name")?;
    let scaling = |target: u32, hold: bool| -> Result<_> {
        let mut a = serde_json::json!({
            "minReplicas": 0, "maxReplicas": 1, "targetQueueDepth": target,
            "intervalSeconds": 1, "scaleDownStabilizationSeconds": 3600,
            "allowNodeProvisioning": true,
        });
        if hold {
            a["holdRequests"] = serde_json::json!({"queueSize": HELD, "maxWaitSeconds": 240});
        }
        Ok(serde_json::from_value(a)?)
    };
    if let Some(p) = model.spec.prefill.as_mut() {
        p.autoscaling = Some(scaling(4, true)?);
    }
    if let Some(d) = model.spec.decode.as_mut() {
        d.autoscaling = Some(scaling(64, false)?);
    }
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &model).await?;
    let c = client()?;
    let prefill = format!("{name}-prefill");
    let decode = format!("{name}-decode");

    let selector = front::selector_string(&name);
    let fronts: Vec<Ipv4Addr> = wait_for(T, "the model's two front pods answer", || async {
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        let ips: Vec<Ipv4Addr> = list
            .items
            .iter()
            .filter(|p| is_running_ready(p))
            .filter_map(ip)
            .collect();
        if ips.len() != front::REPLICAS as usize {
            return Ok(None);
        }
        for ip in &ips {
            if front_status(&c, *ip).await.is_err() {
                return Ok(None);
            }
        }
        Ok(Some(ips))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}; operator log:\n{}", op.log_tail()))?;
    for role in [&prefill, &decode] {
        ensure!(
            model_pods(&pods, role).await?.is_empty(),
            "{role}: no group at zero"
        );
    }
    let at = fronts[0];
    let url = format!("http://{at}:8000/v1/chat/completions");
    let served: &'static str = Box::leak(name.clone().into_boxed_str());

    let seen = Timestamp::now();
    let t0 = Instant::now();
    let chats: Vec<_> = (0..HELD)
        .map(|_| tokio::spawn(streamed_chat_to(c.clone(), url.clone(), Some(served))))
        .collect();
    wait_for(Duration::from_secs(30), "20 requests held", || async {
        Ok((front_status(&c, at).await?["held"] == HELD).then_some(()))
    })
    .await?;
    // Until both roles have a Ready leader, the router (running all along) is not the
    // front's backend: watched every 200 ms while the chats wait (the front first, then the
    // API, which is never behind the operator's pod cache).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = {
        let (c, pods, stop) = (c.clone(), pods.clone(), stop.clone());
        let roles = [prefill.clone(), decode.clone()];
        tokio::spawn(async move {
            let mut polls = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let st = front_status(&c, at).await?;
                if st["backends"].as_array().is_some_and(|l| !l.is_empty()) {
                    for role in &roles {
                        let ready = model_pods(&pods, role).await?.iter().any(|p| {
                            is_running_ready(p)
                                && p.metadata
                                    .labels
                                    .as_ref()
                                    .and_then(|l| l.get("inference.deepseek-operator.dev/rank"))
                                    == Some(&"0".to_string())
                        });
                        ensure!(
                            ready,
                            "the front had a backend while {role} had no Ready leader: {st}"
                        );
                    }
                }
                polls += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            anyhow::Ok(polls)
        })
    };
    refused_over_bound(&c, &url, HELD).await?;
    let first_token = all_answered(chats).await?;
    let answered_after = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let polls = gate.await??;
    ensure!(polls > 0, "the front's backends were never watched");
    // Both roles woke: a group of each.
    wait_groups(&pods, &prefill, 1, 1, T).await?;
    wait_groups(&pods, &decode, 1, 2, T).await?;
    // Now the router, and only it, is the front's backend.
    use deepseek_operator::desired::disaggregated::{COMPONENT, ROUTER_COMPONENT};
    let routers = pods
        .list(&ListParams::default().labels(&format!("{COMPONENT}={ROUTER_COMPONENT}")))
        .await?;
    let router = routers.items.iter().find_map(ip).context("router pod IP")?;
    let st = front_status(&c, at).await?;
    let backends = st["backends"].as_array().cloned().unwrap_or_default();
    ensure!(
        backends.len() == 1
            && backends[0]["url"] == format!("http://{router}:8000")
            && backends[0]["ready"] == true,
        "the router ({router}) as the front's one backend: {st}"
    );
    // Exactly once: the fronts forwarded 20 answers in all, and hold none.
    let mut sent_on = 0;
    for f in &fronts {
        sent_on += forwarded(&c, *f).await?;
        let st = front_status(&c, *f).await?;
        ensure!(st["held"] == 0, "still held: {st}");
    }
    ensure!(
        sent_on == HELD as u64,
        "the fronts forwarded {sent_on} answers for {HELD} requests"
    );

    // The prefill role's wake-up timeline.
    let z = wait_for(
        Duration::from_secs(30),
        "status.lastScaleFromZero of the prefill role",
        || async {
            let m = models.get(&prefill).await?;
            Ok(m.status.and_then(|s| s.last_scale_from_zero))
        },
    )
    .await?;
    let timeline = Timeline::of(&z)?;
    timeline.between(seen, first_token.context("a first token")?)?;
    timeline.print("r1-pd-ascend-a3.yaml (prefill 1 pod, decode 2 pods per group)");
    eprintln!(
        "  all {HELD} held chats answered in full through the router {:.1}s after they were sent",
        answered_after.as_secs_f64()
    );
    timeline.in_order()?;
    let load: u64 = LOAD_SECONDS.parse()?;
    ensure!(
        answered_after >= Duration::from_secs(load),
        "answered before the engines could have loaded"
    );
    drop(fleet);
    drop(op);
    let done = ns.finish().await;
    for (node, _) in node_names {
        let _ = nodes.delete(node, &Default::default()).await;
    }
    done
}
