//! Prefill/decode through the real router on the local control plane, without the
//! operator: the pods the controller creates for a disaggregated model (a prefill leader,
//! a decode leader, a router pod running `deepseek_engine::pd::router_command` under its
//! own ServiceAccount with a Role to read pods) are created here by hand, and the
//! SimFleet runs them: the launchers with the sim engine in their roles, the router as
//! the pinned `sglang-router` with a token of that ServiceAccount. The router finds both
//! leaders through its Kubernetes service discovery; a streamed chat completion sent to
//! the router pod's IP goes router -> prefill -> decode. Then the prefill pod is replaced
//! and the same router process must route to the new one.
//!
//! The namespace is `probed-*`: KWOK starts these pods not ready and the fleet is their
//! readiness prober (launchers' `/readyz`; the router's `/readiness`, which answers 200
//! once it has a healthy worker of each role).
//!
//! Needs the router that `engine/conformance/run` installs (`$DSO_SGLANG_ROUTER`, set by
//! `scripts/test`); built only with `--features pd-router`.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use deepseek_e2e::fixtures::accelerator_pod;
use deepseek_e2e::sim::{ready_condition, SimFleet, SimOptions, PROBED_NAMESPACE_PREFIX};
use deepseek_e2e::sim_router::router_binary;
use deepseek_e2e::wait::{deleted, wait_for};
use deepseek_e2e::{Cluster, TestNamespace};
use deepseek_engine::pd::{
    router_command, RouterConfig, BOOTSTRAP_PORT, BOOTSTRAP_PORT_ANNOTATION, ROUTER_PORT,
};
use deepseek_engine::{
    env, Disaggregation, Engine, KvTransfer, LaunchConfig, PdRole, SimProfile, ENGINE_PORT,
};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, HTTPGetAction, Pod, PodSpec, Probe, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::Api;

const MODEL: &str = "pd";
const ROUTER_SA: &str = "pd-router";
const ROUTER_POD: &str = "pd--router";
const INSTANCE: &str = "app.kubernetes.io/instance";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const GROUP_ID: &str = "inference.deepseek-operator.dev/group-id";
const RANK: &str = "inference.deepseek-operator.dev/rank";
const ROLE: &str = "inference.deepseek-operator.dev/role";
/// Which half of a disaggregated model a group serves (the router's selectors use it).
const PD_ROLE: &str = "inference.deepseek-operator.dev/pd-role";
const T: Duration = Duration::from_secs(120);
const MAX_TOKENS: usize = 12;

fn launch_config(role: PdRole) -> LaunchConfig {
    let model = "deepseek-ai/DeepSeek-V3";
    LaunchConfig {
        max_model_len: 4096,
        sim: Some(SimProfile {
            prefill_tokens_per_s: 2000.0,
            decode_tokens_per_s: 200.0,
            max_running: 8,
        }),
        disaggregation: Some(Disaggregation {
            role,
            transfer: KvTransfer::Mooncake,
            ascend_store: None,
        }),
        ..LaunchConfig::new(Engine::Sim, "nvidia", model, "deepseek-v3", "fp8", 1, 8)
    }
}

fn role_selector(role: PdRole) -> Vec<String> {
    vec![
        format!("{INSTANCE}={MODEL}"),
        format!("{PD_ROLE}={role}"),
        format!("{ROLE}=leader"),
    ]
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// A group leader of `role`, as the controller builds it (labels, launcher environment,
/// and on prefill the bootstrap-port annotation the router reads).
fn leader_pod(name: &str, group: &str, role: PdRole) -> Result<Pod> {
    let mut pod = accelerator_pod(name, "nvidia.com/gpu", 1, &[]);
    let labels = BTreeMap::from([
        (INSTANCE.to_string(), MODEL.to_string()),
        (MANAGED_BY.to_string(), "deepseek-operator".to_string()),
        (GROUP_ID.to_string(), group.to_string()),
        (RANK.to_string(), "0".to_string()),
        (ROLE.to_string(), "leader".to_string()),
        (PD_ROLE.to_string(), role.to_string()),
    ]);
    pod.metadata.labels = Some(labels);
    if role == PdRole::Prefill {
        pod.metadata.annotations = Some(BTreeMap::from([(
            BOOTSTRAP_PORT_ANNOTATION.to_string(),
            BOOTSTRAP_PORT.to_string(),
        )]));
    }
    let config = serde_json::to_string(&launch_config(role))?;
    let spec = pod.spec.as_mut().context("fixture pod has a spec")?;
    let container = spec.containers.first_mut().context("fixture container")?;
    container.env = Some(vec![
        env_var(env::LAUNCH_CONFIG, &config),
        env_var(env::RANK, "0"),
        env_var(env::LEADER_ADDRESS, &format!("{name}.{MODEL}--ranks")),
    ]);
    Ok(pod)
}

/// The router pod: `router_command`'s argv split into command and args, run as its own
/// ServiceAccount, with a readiness probe on the router's `/readiness`.
fn router_pod(namespace: &str) -> Result<Pod> {
    let cmd = router_command(&RouterConfig {
        namespace: namespace.into(),
        prefill_selector: role_selector(PdRole::Prefill),
        decode_selector: role_selector(PdRole::Decode),
        engine: Engine::Sim,
    })?;
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(ROUTER_POD.into()),
            labels: Some(BTreeMap::from([
                (INSTANCE.to_string(), MODEL.to_string()),
                (MANAGED_BY.to_string(), "deepseek-operator".to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(ROUTER_SA.into()),
            containers: vec![Container {
                name: "router".into(),
                image: Some("registry.invalid/sglang-router:0.3.2".into()),
                command: Some(vec![cmd.program.clone()]),
                args: Some(cmd.args.clone()),
                readiness_probe: Some(Probe {
                    http_get: Some(HTTPGetAction {
                        path: Some("/readiness".into()),
                        port: IntOrString::Int(ROUTER_PORT.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The ServiceAccount, Role (pods: get/list/watch) and RoleBinding the controller gives
/// the router.
async fn router_rbac(ns: &TestNamespace) -> Result<()> {
    let pp = PostParams::default();
    let meta = || ObjectMeta {
        name: Some(ROUTER_SA.into()),
        ..Default::default()
    };
    let sa = ServiceAccount {
        metadata: meta(),
        ..Default::default()
    };
    ns.api::<ServiceAccount>().create(&pp, &sa).await?;
    let role = Role {
        metadata: meta(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
    };
    ns.api::<Role>().create(&pp, &role).await?;
    let binding = RoleBinding {
        metadata: meta(),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: ROUTER_SA.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: ROUTER_SA.into(),
            namespace: Some(ns.name().into()),
            ..Default::default()
        }]),
    };
    ns.api::<RoleBinding>().create(&pp, &binding).await?;
    Ok(())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// The pod's IP once it runs and is Ready (as the fleet's probe reported it).
async fn ready_ip(pods: &Api<Pod>, name: &str) -> Result<Ipv4Addr> {
    wait_for(T, &format!("pod {name} is Ready"), || async {
        let pod = pods.get(name).await?;
        let ready = ready_condition(&pod).is_some_and(|(ok, _)| ok);
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        Ok(ip.filter(|_| ready))
    })
    .await
}

async fn counter(ip: Ipv4Addr, name: &str) -> Result<f64> {
    let text = http()
        .get(format!("http://{ip}:{ENGINE_PORT}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

/// The workers the router has registered (`/workers`), as their URLs.
async fn router_workers(router: Ipv4Addr) -> Result<String> {
    Ok(http()
        .get(format!("http://{router}:{ROUTER_PORT}/workers"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// Sends a streamed chat completion to the router until one comes back whole (the router
/// registers workers in the background); returns the data chunks, without `[DONE]`.
async fn routed_chat(router: Ipv4Addr) -> Result<Vec<String>> {
    let body = serde_json::json!({
        "model": "deepseek-v3",
        "messages": [{"role": "user", "content": "Explain prefill and decode disaggregation in one long sentence, please."}],
        "max_tokens": MAX_TOKENS,
        "stream": true,
    });
    let url = format!("http://{router}:{ROUTER_PORT}/v1/chat/completions");
    let text = wait_for(T, "a streamed answer routed through the router", || {
        let (url, body) = (url.clone(), body.clone());
        async move {
            let resp = http().post(url).json(&body).send().await?;
            if !resp.status().is_success() {
                return Ok(None);
            }
            let text = resp.text().await?;
            Ok(text.contains("data: [DONE]").then_some(text))
        }
    })
    .await?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
        .map(str::to_string)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_routes_through_discovered_prefill_and_decode_pods() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let ns = cluster
        .namespace(&format!("{PROBED_NAMESPACE_PREFIX}pd-router"))
        .await?;
    let opts = SimOptions::new(common::launcher().await?)
        .probe_readiness()
        .router(router_binary()?, cluster.kubeconfig());
    let fleet = SimFleet::start(ns.client(), ns.name(), opts);
    let pods: Api<Pod> = ns.api();
    let pp = PostParams::default();

    router_rbac(&ns).await?;
    pods.create(&pp, &leader_pod("pd--p1-0", "p1", PdRole::Prefill)?)
        .await?;
    pods.create(&pp, &leader_pod("pd--d1-0", "d1", PdRole::Decode)?)
        .await?;
    pods.create(&pp, &router_pod(ns.name())?).await?;

    let prefill = ready_ip(&pods, "pd--p1-0").await?;
    let decode = ready_ip(&pods, "pd--d1-0").await?;
    // Ready only once the router has discovered a healthy worker of each role.
    let router = ready_ip(&pods, ROUTER_POD).await?;
    let workers = router_workers(router).await?;
    ensure!(
        workers.contains(&format!("http://{prefill}:{ENGINE_PORT}"))
            && workers.contains(&format!("http://{decode}:{ENGINE_PORT}")),
        "the router discovered both leaders at their pod IPs: {workers}"
    );

    let chunks = routed_chat(router).await?;
    ensure!(
        chunks.len() == MAX_TOKENS,
        "decode streams every token: {chunks:?}"
    );
    // Prefill computed the prompt; decode took the KV (no prompt computed there) and
    // generated the tokens.
    ensure!(counter(prefill, "vllm:prompt_tokens_total").await? > 0.0);
    ensure!(counter(decode, "vllm:prompt_tokens_total").await? == 0.0);
    ensure!(counter(decode, "vllm:generation_tokens_total").await? >= MAX_TOKENS as f64);

    // The prefill group is replaced: the same router process must find the new leader
    // and forget the old one.
    pods.delete("pd--p1-0", &DeleteParams::default()).await?;
    deleted(&pods, "pd--p1-0", T).await?;
    pods.create(&pp, &leader_pod("pd--p2-0", "p2", PdRole::Prefill)?)
        .await?;
    let prefill2 = ready_ip(&pods, "pd--p2-0").await?;
    // By count, not by address: the new pod may get the old one's IP back.
    wait_for(
        T,
        "the router registered only the new prefill leader",
        || async {
            let w = router_workers(router).await?;
            let prefills =
                serde_json::from_str::<serde_json::Value>(&w)?["stats"]["prefill_count"].as_u64();
            Ok(
                (prefills == Some(1) && w.contains(&format!("http://{prefill2}:{ENGINE_PORT}")))
                    .then_some(()),
            )
        },
    )
    .await?;
    let chunks = routed_chat(router).await?;
    ensure!(
        chunks.len() == MAX_TOKENS,
        "decode streams every token: {chunks:?}"
    );
    ensure!(counter(prefill2, "vllm:prompt_tokens_total").await? > 0.0);
    ensure!(
        fleet.routers_started_total() == 1,
        "the router was never restarted (started {} times)",
        fleet.routers_started_total()
    );
    drop(fleet);
    ns.finish().await
}
