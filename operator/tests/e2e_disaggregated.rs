//! Disaggregated serving end to end with the operator on the local control plane: the
//! example `r1-wide-ep-pd-h200.yaml` on two H200 node groups (told apart by a
//! `node-pool` label, as cloud node groups are). The operator creates the two role
//! models, their groups on their own nodes and the router; the SimFleet runs the role
//! leaders' launchers with the sim engine in its prefill/decode roles and the router pod
//! as the real pinned `sglang-router` (service discovery with its ServiceAccount's token).
//!
//! Asserts: a streamed chat completion goes router -> prefill -> decode; a load step of
//! long prompts and one-token answers scales prefill (it queues) and leaves decode alone;
//! then a step of short prompts and long answers scales decode (its sequences run) and
//! leaves prefill alone; neither role's pods restart when the other scales.
//!
//! Built only with `--features pd-router` (needs `$DSO_SGLANG_ROUTER`, as scripts/test
//! sets it). The namespace is `probed-*`: pods are Ready when the fleet's probes say so.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::fixtures::kwok_node;
use deepseek_e2e::sim::{SimFleet, SimOptions, PROBED_NAMESPACE_PREFIX};
use deepseek_e2e::sim_router::router_binary;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::{Cluster, TestNamespace};
use deepseek_engine::pd::ROUTER_PORT;
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::desired::disaggregated::{COMPONENT, ROUTER_COMPONENT};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(300);
const PREFILL_NODES: usize = 2;
/// Two decode groups of two nodes each.
const DECODE_NODES: usize = 4;
const WORKERS: usize = 12;

/// Two node groups of one product for a disaggregated example: prefill's and decode's,
/// told apart by a `node-pool` label as cloud node groups are.
struct NodeGroups {
    /// (pool label, node count)
    pools: [(&'static str, usize); 2],
    labels: Value,
    taints: Value,
    resources: Value,
}

fn h200_groups() -> NodeGroups {
    NodeGroups {
        pools: [
            ("h200-prefill", PREFILL_NODES),
            ("h200-decode", DECODE_NODES),
        ],
        labels: json!({"nvidia.com/gpu.product": "NVIDIA-H200", "nvidia.com/gpu.count": "8"}),
        taints: json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
        resources: json!({"nvidia.com/gpu": "8"}),
    }
}

/// Atlas 800 A3 nodes as Huawei's device plugin and node labels describe them: 16 dies.
fn a3_groups() -> NodeGroups {
    NodeGroups {
        pools: [("a3-prefill", 1), ("a3-decode", 2)],
        labels: json!({"accelerator": "huawei-Ascend910", "node.kubernetes.io/npu.chip.name": "910C"}),
        taints: json!([]),
        resources: json!({"huawei.com/Ascend910": "16"}),
    }
}

impl NodeGroups {
    fn names(&self) -> Vec<(String, &'static str)> {
        self.pools
            .iter()
            .flat_map(|(pool, n)| (0..*n).map(move |i| (format!("pd-{pool}-{i}"), *pool)))
            .collect()
    }

    fn in_pool(&self, pool: &str) -> BTreeSet<String> {
        self.names()
            .into_iter()
            .filter(|(_, p)| *p == pool)
            .map(|(n, _)| n)
            .collect()
    }

    async fn delete(&self, nodes: &Api<Node>) {
        for (name, _) in self.names() {
            let _ = nodes.delete(&name, &DeleteParams::default()).await;
        }
    }

    async fn create(&self, nodes: &Api<Node>) -> Result<()> {
        self.delete(nodes).await;
        for (name, _) in self.names() {
            wait_for(T, &format!("old node {name} gone"), || async {
                Ok(nodes.get_opt(&name).await?.is_none().then_some(()))
            })
            .await?;
        }
        for (name, pool) in self.names() {
            let mut labels = self.labels.clone();
            labels["node-pool"] = json!(pool);
            kwok_node(
                nodes,
                &name,
                labels,
                self.taints.clone(),
                self.resources.clone(),
                "127.0.0.1",
            )
            .await?;
        }
        Ok(())
    }
}

/// The stage of a disaggregated example: its node groups, a `probed-*` namespace, the
/// operator, and a fleet that runs launchers and the real router (durations scaled by
/// `time_scale`).
async fn stage(
    groups: NodeGroups,
    namespace: &str,
    time_scale: Option<&str>,
) -> Result<(Api<Node>, NodeGroups, TestNamespace, Operator, SimFleet)> {
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let nodes: Api<Node> = Api::all(cluster.client().clone());
    groups.create(&nodes).await?;
    let ns = cluster
        .namespace(&format!("{PROBED_NAMESPACE_PREFIX}{namespace}"))
        .await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let mut opts = SimOptions::new(launcher().await?)
        .probe_readiness()
        .router(router_binary()?, cluster.kubeconfig());
    if let Some(scale) = time_scale {
        opts = opts.env("DSO_SIM_TIME_SCALE", scale);
    }
    let fleet = SimFleet::start(ns.client(), ns.name(), opts);
    Ok((nodes, groups, ns, op, fleet))
}

/// The router pod's 127.x IP.
async fn router_ip(pods: &Api<Pod>) -> Result<Ipv4Addr> {
    let ip: Ipv4Addr = router_pods(pods)
        .await?
        .first()
        .and_then(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
        .context("router pod IP")?;
    ensure!(ip.is_loopback(), "{ip}");
    Ok(ip)
}

/// A streamed chat completion through the router; the number of token chunks.
async fn streamed_chat(router: Ipv4Addr, model: &str, max_tokens: usize) -> Result<usize> {
    let streamed = wait_for(T, "a streamed answer through the router", || async {
        let body = json!({"model": model, "stream": true, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Hello from the e2e."}]});
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .post(format!("http://{router}:{ROUTER_PORT}/v1/chat/completions"))
            .json(&body)
            .send()
            .await?;
        let text = resp.text().await?;
        Ok(text.contains("[DONE]").then_some(text))
    })
    .await?;
    Ok(streamed
        .lines()
        .filter(|l| l.starts_with("data: ") && !l.contains("[DONE]"))
        .count())
}

/// Workers posting chat completions to the router back to back, with a body that can be
/// swapped between load steps; at most 10 minutes of load.
struct RouterLoad {
    body: Arc<Mutex<Option<Value>>>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RouterLoad {
    fn start(router: Ipv4Addr) -> RouterLoad {
        let body: Arc<Mutex<Option<Value>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let started = std::time::Instant::now();
        let url = format!("http://{router}:{ROUTER_PORT}/v1/chat/completions");
        let tasks = (0..WORKERS)
            .map(|_| {
                let (body, stop, ok, url) = (body.clone(), stop.clone(), ok.clone(), url.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .no_proxy()
                        .timeout(Duration::from_secs(120))
                        .build()
                        .unwrap_or_default();
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(600)
                    {
                        let b = body.lock().ok().and_then(|b| b.clone());
                        let Some(b) = b else {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        };
                        let sent = http.post(&url).json(&b).send().await;
                        if sent.is_ok_and(|r| r.status().is_success()) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                })
            })
            .collect();
        RouterLoad {
            body,
            stop,
            ok,
            tasks,
        }
    }

    fn set(&self, body: Option<Value>) {
        if let Ok(mut b) = self.body.lock() {
            *b = body;
        }
    }
}

impl Drop for RouterLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn chat(prompt_chars: usize, max_tokens: u32) -> Value {
    json!({
        "model": "r1-pd",
        "messages": [{"role": "user", "content": "x".repeat(prompt_chars)}],
        "max_tokens": max_tokens,
    })
}

async fn replicas(models: &Api<DeepSeekModel>, name: &str) -> Result<i32> {
    Ok(models.get(name).await?.spec.replicas.unwrap_or(1))
}

fn nodes_of(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect()
}

/// Waits until `changing` reaches `want` replicas while `steady` stays at `steady_at`
/// at every look.
async fn scales_alone(
    models: &Api<DeepSeekModel>,
    changing: &str,
    want: i32,
    steady: &str,
    steady_at: i32,
) -> Result<()> {
    // A move of the steady role ends the wait at once (wait_for retries errors).
    let moved = wait_for(T, &format!("{changing} scaled to {want}"), || async {
        let s = replicas(models, steady).await?;
        if s != steady_at {
            return Ok(Some(Some(s)));
        }
        Ok((replicas(models, changing).await? == want).then_some(None))
    })
    .await?;
    match moved {
        Some(s) => anyhow::bail!("{steady} moved to {s} replicas while {changing} had the load"),
        None => Ok(()),
    }
}

#[tokio::test]
async fn a_disaggregated_model_serves_through_its_router_and_each_role_scales_on_its_own_load(
) -> Result<()> {
    let _serial = SERIAL.lock().await;
    // Durations x5: a 4,000-token prompt takes ~2 s on a prefill group, so a dozen queue.
    let (nodes, groups, ns, _op, _fleet) = stage(h200_groups(), "pd", Some("5")).await?;

    let mut model = example("r1-wide-ep-pd-h200.yaml")?;
    let scaling = |target: u32| {
        serde_json::from_value(json!({
            "minReplicas": 1, "maxReplicas": 2, "targetQueueDepth": target,
            "intervalSeconds": 1, "scaleDownStabilizationSeconds": 3600, "maxScaleUpStep": 1,
        }))
    };
    if let Some(p) = model.spec.prefill.as_mut() {
        p.autoscaling = Some(scaling(2)?);
    }
    if let Some(d) = model.spec.decode.as_mut() {
        d.autoscaling = Some(scaling(8)?);
    }
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &model).await?;
    let result = async {
        wait_condition(&models, "r1-pd", "Available", "True", T).await?;
        let prefill = wait_groups(&pods, "r1-pd-prefill", 1, 1, T).await?;
        let decode = wait_groups(&pods, "r1-pd-decode", 1, 2, T).await?;
        let pool_nodes = |pool: &str| groups.in_pool(pool);
        ensure!(
            nodes_of(&prefill).is_subset(&pool_nodes("h200-prefill")),
            "prefill on its pool: {:?}",
            nodes_of(&prefill)
        );
        ensure!(
            nodes_of(&decode).is_subset(&pool_nodes("h200-decode")),
            "decode on its pool: {:?}",
            nodes_of(&decode)
        );
        let m = models.get("r1-pd").await?;
        let roles = m.status.and_then(|s| s.roles).context("status.roles")?;
        eprintln!("status.roles: {roles:?}");
        ensure!(
            roles.decode.layout.as_deref() == Some("DP16xEP16") && roles.router_ready_replicas == 1,
            "{roles:?}"
        );

        router_isolated(&ns, &pods, "r1-pd").await?;
        let router = router_ip(&pods).await?;
        let chunks = streamed_chat(router, "r1-pd", 8).await?;
        ensure!(chunks == 8, "decode streamed every token: {chunks} chunks");

        let prefill_uids = uids(&model_pods(&pods, "r1-pd-prefill").await?);
        let decode_uids = uids(&model_pods(&pods, "r1-pd-decode").await?);
        let load = RouterLoad::start(router);
        // Long prompts, one-token answers: prefill queues, decode has nothing to run.
        let step = std::time::Instant::now();
        load.set(Some(chat(16_000, 1)));
        scales_alone(&models, "r1-pd-prefill", 2, "r1-pd-decode", 1).await?;
        eprintln!(
            "prefill step: prefill 1 -> 2 after {:.1}s ({} requests served so far); decode stayed at 1",
            step.elapsed().as_secs_f64(),
            load.ok.load(Ordering::Relaxed)
        );
        wait_groups(&pods, "r1-pd-prefill", 2, 1, T).await?;
        ensure!(
            uids(&model_pods(&pods, "r1-pd-decode").await?) == decode_uids,
            "decode pods restarted while prefill scaled"
        );
        // Short prompts, long answers: decode runs a dozen sequences, prefill is idle.
        let step = std::time::Instant::now();
        load.set(Some(chat(80, 400)));
        scales_alone(&models, "r1-pd-decode", 2, "r1-pd-prefill", 2).await?;
        eprintln!(
            "decode step: decode 1 -> 2 after {:.1}s ({} requests served so far); prefill stayed at 2",
            step.elapsed().as_secs_f64(),
            load.ok.load(Ordering::Relaxed)
        );
        wait_groups(&pods, "r1-pd-decode", 2, 2, T).await?;
        let prefill_now = uids(&model_pods(&pods, "r1-pd-prefill").await?);
        ensure!(
            prefill_uids.is_subset(&prefill_now),
            "prefill's first group restarted while decode scaled"
        );
        ensure!(load.ok.load(Ordering::Relaxed) > 0, "requests were served");
        load.set(None);
        anyhow::Ok(())
    }
    .await;
    let _ = models.delete("r1-pd", &DeleteParams::default()).await;
    groups.delete(&nodes).await;
    result?;
    ns.finish().await
}

/// Every router pod is selected by a NetworkPolicy that the model controls, so only the
/// namespaces it names reach the router (issue 26 item 2: the router and the Ascend KV
/// store had no policy, so every namespace reached them).
async fn router_isolated(ns: &TestNamespace, pods: &Api<Pod>, model: &str) -> Result<()> {
    let policies: Vec<NetworkPolicy> = ns.api().list(&ListParams::default()).await?.items;
    let routers = router_pods(pods).await?;
    ensure!(!routers.is_empty(), "no router pod");
    for r in &routers {
        let labels = r.labels();
        let selects = |p: &&NetworkPolicy| {
            p.spec
                .as_ref()
                .and_then(|s| s.pod_selector.as_ref())
                .and_then(|sel| sel.match_labels.as_ref())
                .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        };
        let owned = |p: &&NetworkPolicy| {
            p.owner_references()
                .iter()
                .any(|o| o.kind == "DeepSeekModel" && o.name == model && o.controller == Some(true))
        };
        let names: Vec<String> = policies
            .iter()
            .filter(selects)
            .map(|p| p.name_any())
            .collect();
        ensure!(
            policies.iter().filter(selects).any(|p| owned(&p)),
            "router pod {} is selected by no NetworkPolicy of {model} (selected by: {names:?})",
            r.name_any()
        );
    }
    Ok(())
}

/// The router pods (the Deployment's, old and new).
async fn router_pods(pods: &Api<Pod>) -> Result<Vec<Pod>> {
    let lp = ListParams::default().labels(&format!("{COMPONENT}={ROUTER_COMPONENT}"));
    Ok(pods.list(&lp).await?.items)
}

/// One role failing heals without touching the other, and the router follows: the
/// prefill group's only pod is deleted (as a drained or lost node does), the operator
/// recreates the group, the router finds the new prefill server by itself and chats go
/// through again, with decode's pods the same. Then the router's pod is deleted: its
/// Deployment replaces it, and serving resumes through the new one.
#[tokio::test]
async fn a_lost_prefill_group_or_router_pod_heals_and_serving_resumes() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (nodes, groups, ns, _op, _fleet) = stage(h200_groups(), "pd-heal", None).await?;
    let model = example("r1-wide-ep-pd-h200.yaml")?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &model).await?;
    let result = async {
        wait_condition(&models, "r1-pd", "Available", "True", T).await?;
        let prefill = wait_groups(&pods, "r1-pd-prefill", 1, 1, T).await?;
        wait_groups(&pods, "r1-pd-decode", 1, 2, T).await?;
        let router = router_ip(&pods).await?;
        ensure!(streamed_chat(router, "r1-pd", 4).await? == 4);
        let decode_uids = uids(&model_pods(&pods, "r1-pd-decode").await?);

        let lost = prefill
            .first()
            .map(|p| p.name_any())
            .context("prefill pod")?;
        pods.delete(&lost, &DeleteParams::default()).await?;
        let before = uids(&prefill);
        wait_for(T, "the prefill group recreated and Ready", || async {
            let now = model_pods(&pods, "r1-pd-prefill").await?;
            let fresh = now.len() == 1 && uids(&now).is_disjoint(&before);
            Ok((fresh && now.iter().all(is_running_ready)).then_some(()))
        })
        .await?;
        ensure!(
            streamed_chat(router, "r1-pd", 4).await? == 4,
            "the router serves through the new prefill group"
        );
        ensure!(
            uids(&model_pods(&pods, "r1-pd-decode").await?) == decode_uids,
            "decode pods restarted when prefill failed"
        );

        let old = router_pods(&pods).await?;
        let old_name = old.first().map(|p| p.name_any()).context("router pod")?;
        pods.delete(&old_name, &DeleteParams::default()).await?;
        let new_router = wait_for(T, "a new router pod Ready", || async {
            let now = router_pods(&pods).await?;
            Ok(now
                .iter()
                .filter(|p| p.name_any() != old_name && p.metadata.deletion_timestamp.is_none())
                .filter(|p| is_running_ready(p))
                .find_map(|p| {
                    p.status
                        .as_ref()?
                        .pod_ip
                        .as_deref()?
                        .parse::<Ipv4Addr>()
                        .ok()
                }))
        })
        .await?;
        ensure!(new_router.is_loopback(), "{new_router}");
        ensure!(
            streamed_chat(new_router, "r1-pd", 4).await? == 4,
            "the new router serves"
        );
        wait_condition(&models, "r1-pd", "Available", "True", T).await?;
        anyhow::Ok(())
    }
    .await;
    let _ = models.delete("r1-pd", &DeleteParams::default()).await;
    groups.delete(&nodes).await;
    result?;
    ns.finish().await
}

/// A user's own model that happens to have a role model's name is never taken over: the
/// disaggregated model reports the conflict and leaves it as it was.
#[tokio::test]
async fn a_role_name_taken_by_a_users_own_model_is_a_reported_conflict() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("pd-conflict").await?;
    let _op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let own: DeepSeekModel = serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": "taken-prefill"},
        "spec": {"model": "deepseek-r1-distill-qwen-1.5b", "replicas": 0},
    }))?;
    let own = apply_model(&models, &own).await?;
    let pd: DeepSeekModel = serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": "taken"},
        "spec": {"model": "deepseek-r1", "serving": {"mode": "disaggregated"}},
    }))?;
    apply_model(&models, &pd).await?;
    let message = wait_for(T, "taken reports the name conflict", || async {
        let m = models.get("taken").await?;
        Ok(condition(&m, "Planned")
            .filter(|(s, r, _)| s == "False" && r == "NameConflict")
            .map(|(_, _, msg)| msg))
    })
    .await?;
    ensure!(message.contains("taken-prefill"), "{message}");
    // The mode is fixed for a model's life, and the roles' names must fit. The operator
    // writes the model's status meanwhile, so a replace from a read may meet a newer
    // version (409): read again and retry; the answer sought is the validation's.
    let mut refused = String::new();
    for _ in 0..10 {
        let mut flipped = models.get("taken").await?;
        if let Some(s) = flipped.spec.serving.as_mut() {
            s.mode = None;
        }
        match models.replace("taken", &Default::default(), &flipped).await {
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            r => {
                refused = r.err().map(|e| e.to_string()).unwrap_or_default();
                break;
            }
        }
    }
    ensure!(refused.contains("serving.mode cannot change"), "{refused}");
    let mut long = pd.clone();
    long.metadata.name = Some("a".repeat(33));
    let refused = models
        .create(&Default::default(), &long)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(refused.contains("at most 32 characters"), "{refused}");
    let after = models.get("taken-prefill").await?;
    ensure!(
        after.spec == own.spec && after.metadata.owner_references.is_none(),
        "the user's model was changed: {:?}",
        after.spec
    );
    ns.finish().await
}

/// The KV store of SGLang's ascend transfer follows the spec, not the roles' plans: with
/// both roles asking for A3 dies on node pools that do not exist, neither role is ever
/// planned, and the store runs anyway, so no rank of a role that does get placed later
/// starts before its store.
#[tokio::test]
async fn the_ascend_kv_store_runs_before_any_role_is_planned() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("pd-store-first").await?;
    let _op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let mut model = example("r1-pd-ascend-a3.yaml")?;
    for role in [model.spec.prefill.as_mut(), model.spec.decode.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Some(a) = role.accelerator.as_mut() {
            a.node_selector = Some([("node-pool".into(), "nowhere".into())].into());
        }
    }
    apply_model(&models, &model).await?;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = ns.api();
    wait_for(T, "the ascend transfer's config store exists", || async {
        Ok(deployments.get_opt("r1-pd-a3-kv-store").await?.map(|_| ()))
    })
    .await?;
    // The roles are written after the store: wait for each to be reconciled (its Planned
    // condition says False: no pool matches) before reading its plan, so the check is
    // about a role the operator has looked at, not one not yet created.
    for role in ["r1-pd-a3-prefill", "r1-pd-a3-decode"] {
        let m = wait_for(T, &format!("{role} is reconciled and unplaced"), || async {
            let Some(m) = models.get_opt(role).await? else {
                return Ok(None);
            };
            let planned = m
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Planned"))
                .map(|c| c.status.clone());
            Ok(match planned.as_deref() {
                Some("False") => Some(m),
                Some(_) => anyhow::bail!("{role} was planned: {:?}", m.status),
                None => None,
            })
        })
        .await?;
        let plan = m.status.as_ref().and_then(|s| s.plan.as_ref());
        ensure!(
            plan.is_none_or(|p| p.pool.is_none()),
            "{role} was placed on a pool that should not exist: {plan:?}"
        );
    }
    let _ = models.delete("r1-pd-a3", &DeleteParams::default()).await;
    ns.finish().await
}

/// The Ascend A3 example end to end: SGLang on NPU dies in both roles, decode DP attention
/// x EP32 over two nodes, the KV store the operator runs for SGLang's ascend transfer, and
/// a streamed chat through the router.
#[tokio::test]
async fn the_ascend_a3_example_serves_through_its_router_with_the_operators_kv_store() -> Result<()>
{
    let _serial = SERIAL.lock().await;
    let (nodes, groups, ns, _op, _fleet) = stage(a3_groups(), "pd-a3", None).await?;
    let model = example("r1-pd-ascend-a3.yaml")?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &model).await?;
    let result = async {
        wait_condition(&models, "r1-pd-a3", "Available", "True", T).await?;
        let prefill = wait_groups(&pods, "r1-pd-a3-prefill", 1, 1, T).await?;
        let decode = wait_groups(&pods, "r1-pd-a3-decode", 1, 2, T).await?;
        ensure!(nodes_of(&prefill).is_subset(&groups.in_pool("a3-prefill")));
        ensure!(nodes_of(&decode).is_subset(&groups.in_pool("a3-decode")));
        let m = models.get("r1-pd-a3").await?;
        let roles = m.status.and_then(|s| s.roles).context("status.roles")?;
        eprintln!("status.roles: {roles:?}");
        ensure!(
            roles.decode.layout.as_deref() == Some("DP8xTP4xEP32"),
            "{roles:?}"
        );
        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = ns.api();
        ensure!(
            deployments.get_opt("r1-pd-a3-kv-store").await?.is_some(),
            "the ascend transfer's config store runs"
        );
        let router = router_ip(&pods).await?;
        let chunks = streamed_chat(router, "r1-pd-a3", 6).await?;
        ensure!(chunks == 6, "decode streamed every token: {chunks} chunks");
        anyhow::Ok(())
    }
    .await;
    let _ = models.delete("r1-pd-a3", &DeleteParams::default()).await;
    groups.delete(&nodes).await;
    result?;
    ns.finish().await
}
