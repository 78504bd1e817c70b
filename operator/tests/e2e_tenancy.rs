//! A shared cluster, as an administrator who lets several teams create models sees it, on
//! the real control plane: what a manifest can no longer do (host paths, names that broke
//! reconciles, other teams' nodes, the control plane, the wrong accelerator) and that the
//! inference pods pass Pod Security admission. Every case here failed before the tenancy
//! work: the operator mounted any host path, tolerated every taint of a pool, made a
//! tainted control-plane node a CPU pool, and let pods of a mixed H100 pool land on any
//! node with enough `nvidia.com/gpu`.
//!
//! The operator runs as the chart's ServiceAccount in namespaced mode: the chart is
//! installed with `watchNamespaces` set to the tenants' namespaces, and the operator runs
//! with a token of that ServiceAccount and `--namespaces`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::helm::{chart_dir, no_forbidden, release_config, run, service_account_kubeconfig};
use common::*;
use deepseek_e2e::fixtures::kwok_node;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::{Cluster, TestNamespace};
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

/// A namespaced install of the chart and the operator running as its ServiceAccount.
struct Tenancy {
    op: Operator,
    release: TestNamespace,
    dir: std::path::PathBuf,
}

impl Tenancy {
    async fn start(cluster: &Cluster, watched: &[&TestNamespace]) -> Result<Tenancy> {
        let release = cluster.namespace("tenancy-op").await?;
        let name = release.name().to_string();
        let fullname = format!("{name}-deepseek-operator");
        let list: Vec<&str> = watched.iter().map(|n| n.name()).collect();
        let mut cmd = cluster.helm();
        cmd.args(["install", &name])
            .arg(chart_dir())
            .args(["--namespace", &name, "--set"])
            .arg(format!("watchNamespaces={{{}}}", list.join(",")));
        run(cmd, "helm install (namespaced mode)")?;
        let dir = cluster.state_dir().join(format!("helm-{name}"));
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("sa.kubeconfig");
        service_account_kubeconfig(cluster, &name, &fullname, &kubeconfig).await?;
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = release.api();
        let (config_text, _) = release_config(&cms, &fullname).await?;
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, &config_text)?;
        let namespaces = list.join(",");
        let op = Operator::start(
            cluster,
            OperatorOptions {
                kubeconfig: Some(&kubeconfig),
                config_file: Some(&config_path),
                namespaces: Some(&namespaces),
                ..Default::default()
            },
        )
        .await?;
        Ok(Tenancy { op, release, dir })
    }

    /// Checks the ServiceAccount was never refused, then uninstalls.
    async fn finish(self, cluster: &Cluster) -> Result<()> {
        no_forbidden(&self.op)?;
        drop(self.op);
        let mut cmd = cluster.helm();
        cmd.args([
            "uninstall",
            self.release.name(),
            "--namespace",
            self.release.name(),
            "--wait",
        ]);
        run(cmd, "helm uninstall")?;
        let _ = std::fs::remove_dir_all(&self.dir);
        self.release.finish().await
    }
}

async fn delete_nodes(nodes: &Api<Node>, names: &[String]) {
    for n in names {
        let _ = nodes.delete(n, &DeleteParams::default()).await;
    }
}

fn model(name: &str, spec: Value) -> Result<DeepSeekModel> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone()
}

/// Waits until the model has `n` pods and returns them (scheduled or not).
async fn pods_created(pods: &Api<Pod>, model: &str, n: usize) -> Result<Vec<Pod>> {
    wait_for(T, &format!("{model} has {n} pod(s)"), || async {
        let ps = model_pods(pods, model).await?;
        Ok((ps.len() == n).then_some(ps))
    })
    .await
}

#[tokio::test]
async fn host_paths_and_names_that_broke_reconciles_are_refused_at_admission() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("admission").await?;
    let ar = kube::api::ApiResource::erase::<DeepSeekModel>(&());
    let models: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &ar);
    let create = |name: String, spec: Value| {
        let models = models.clone();
        async move {
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
                "kind": "DeepSeekModel",
                "metadata": {"name": name},
                "spec": spec,
            }))?;
            anyhow::Ok(models.create(&PostParams::default(), &obj).await)
        }
    };
    let small = json!({"model": "deepseek-r1-distill-qwen-1.5b"});

    let err = create(
        "escape".into(),
        json!({"model": "deepseek-r1", "cache": {"hostPath": "/etc/kubernetes"}}),
    )
    .await?
    .err()
    .context("a manifest naming a host path was accepted")?;
    ensure!(
        err.to_string().contains("cache.hostPath was removed"),
        "{err}"
    );

    for bad in [
        "r1.prod".to_string(),
        "7b-chat".to_string(),
        "a".repeat(41),
        "foo--bar".to_string(),
    ] {
        let err = create(bad.clone(), small.clone())
            .await?
            .err()
            .with_context(|| format!("name {bad} was accepted"))?;
        let msg = err.to_string();
        // `r1.prod` passes the API server's own name check (a DNS subdomain) and is caught
        // by the rule; the others are caught by the rule too.
        ensure!(msg.contains("metadata.name"), "{bad}: {msg}");
    }
    // The longest admitted name, and one ending like another model's child, are fine.
    for good in ["a".repeat(40), "foo-ranks".to_string()] {
        create(good.clone(), small.clone())
            .await?
            .with_context(|| format!("name {good} was refused"))?;
    }
    ns.finish().await
}

#[tokio::test]
async fn tenants_get_their_own_caches_and_only_their_own_nodes() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let team_a = cluster.namespace("team-a").await?;
    let team_b = cluster.namespace("team-b").await?;
    let tenancy = Tenancy::start(&cluster, &[&team_a, &team_b]).await?;
    let nodes: Api<Node> = Api::all(cluster.client());
    let tag = team_a.name().to_string();
    let team_node = format!("team-b-a100-{tag}");
    let cp_node = format!("control-plane-{tag}");
    let created = vec![team_node.clone(), cp_node.clone()];
    let result = async {
        // Team b's reserved A100 node, and a control-plane node (no accelerator: it would
        // have been a CPU pool). A label unique to this test keeps other nodes out.
        kwok_node(
            &nodes,
            &team_node,
            json!({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB", "tenancy": tag}),
            json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                   {"key": "dedicated", "value": "team-b", "effect": "NoSchedule"}]),
            json!({"nvidia.com/gpu": "8"}),
            "127.0.9.21",
        )
        .await?;
        kwok_node(
            &nodes,
            &cp_node,
            json!({"node-role.kubernetes.io/control-plane": "", "tenancy": tag}),
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
            json!({}),
            "127.0.9.22",
        )
        .await?;

        let a_models: Api<DeepSeekModel> = team_a.api();
        let b_models: Api<DeepSeekModel> = team_b.api();
        let a_pods: Api<Pod> = team_a.api();
        let b_pods: Api<Pod> = team_b.api();
        let selector = json!({"tenancy": tag});

        // Team a asks for exactly those nodes: refused, never placed there.
        apply_model(
            &a_models,
            &model(
                "on-b-nodes",
                json!({"model": "deepseek-r1-distill-qwen-1.5b",
                       "accelerator": {"product": "a100-40gb", "nodeSelector": selector}}),
            )?,
        )
        .await?;
        let (reason, msg) = wait_condition(&a_models, "on-b-nodes", "Planned", "False", T).await?;
        ensure!(reason == "InsufficientAccelerators", "{reason}: {msg}");
        apply_model(
            &a_models,
            &model(
                "on-control-plane",
                json!({"model": "deepseek-r1-distill-qwen-1.5b", "quantization": "gguf-q4_k_m",
                       "accelerator": {"vendor": "cpu", "nodeSelector": selector}}),
            )?,
        )
        .await?;
        let (reason, msg) =
            wait_condition(&a_models, "on-control-plane", "Planned", "False", T).await?;
        ensure!(reason == "InsufficientAccelerators", "{reason}: {msg}");

        // Team b tolerates its own taint and gets its node.
        apply_model(
            &b_models,
            &model(
                "on-b-nodes",
                json!({"model": "deepseek-r1-distill-qwen-1.5b",
                       "accelerator": {"product": "a100-40gb", "nodeSelector": selector,
                         "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "team-b", "effect": "NoSchedule"}]}}),
            )?,
        )
        .await?;
        let running = wait_groups(&b_pods, "on-b-nodes", 1, 1, T).await?;
        ensure!(node_of(&running[0]).as_deref() == Some(team_node.as_str()));

        // Both teams on the shared L4 pool: each pod's writable cache is its namespace's.
        let l4 = json!({"model": "deepseek-r1-distill-qwen-1.5b", "accelerator": {"product": "l4"}});
        apply_model(&a_models, &model("chat", l4.clone())?).await?;
        apply_model(&b_models, &model("chat", l4)?).await?;
        let a = pods_created(&a_pods, "chat", 1).await?;
        let b = pods_created(&b_pods, "chat", 1).await?;
        let host_paths = |p: &Pod| -> Vec<String> {
            p.spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| v.host_path.as_ref().map(|h| h.path.clone()))
                .collect()
        };
        let (pa, pb) = (host_paths(&a[0]), host_paths(&b[0]));
        ensure!(
            pa == vec![format!("/var/lib/deepseek-operator/models/{}", team_a.name())],
            "{pa:?}"
        );
        ensure!(
            pb == vec![format!("/var/lib/deepseek-operator/models/{}", team_b.name())],
            "{pb:?}"
        );
        for p in a.iter().chain(b.iter()).chain(running.iter()) {
            let tols = p
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            ensure!(
                tols.iter().all(|t| t.key.is_some()
                    && t.key.as_deref() != Some("node-role.kubernetes.io/control-plane")),
                "pod tolerates too much: {tols:?}"
            );
        }
        // Nothing of team a ever reached team b's or the control-plane node.
        let stray: Vec<Option<String>> = model_pods(&a_pods, "on-b-nodes")
            .await?
            .iter()
            .chain(model_pods(&a_pods, "on-control-plane").await?.iter())
            .map(node_of)
            .collect();
        ensure!(stray.is_empty(), "team a got pods on reserved nodes: {stray:?}");
        anyhow::Ok(())
    }
    .await;
    delete_nodes(&nodes, &created).await;
    result.with_context(|| format!("operator log:\n{}", tenancy.op.log_tail()))?;
    tenancy.finish(&cluster).await?;
    team_a.finish().await?;
    team_b.finish().await
}

#[tokio::test]
async fn a_mixed_h100_pool_never_lends_its_pods_to_another_product() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("mixed-h100").await?;
    let tenancy = Tenancy::start(&cluster, &[&ns]).await?;
    let nodes: Api<Node> = Api::all(cluster.client());
    let tag = ns.name().to_string();
    let names = vec![
        format!("sxm-{tag}"),
        format!("pcie-{tag}"),
        format!("decoy-l4-{tag}"),
    ];
    let gpu_taint = json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]);
    let result = async {
        // Four-GPU nodes make a pool of their own: SXM and PCIe H100s that share no product
        // label value, and an L4 node with the same GPU count and the same test label.
        for (name, product, ip) in [
            (&names[0], "NVIDIA-H100-80GB-HBM3", "127.0.9.31"),
            (&names[1], "NVIDIA-H100-PCIe", "127.0.9.32"),
            (&names[2], "NVIDIA-L4", "127.0.9.33"),
        ] {
            kwok_node(
                &nodes,
                name,
                json!({"nvidia.com/gpu.product": product, "pin-test": tag}),
                gpu_taint.clone(),
                json!({"nvidia.com/gpu": "4"}),
                ip,
            )
            .await?;
        }
        let models: Api<DeepSeekModel> = ns.api();
        let pods: Api<Pod> = ns.api();
        // Three groups of one 4-GPU pod on two H100 nodes: the third must wait, not take
        // the L4 node.
        apply_model(
            &models,
            &model(
                "pinned",
                json!({"model": "deepseek-r1-distill-qwen-32b", "replicas": 3,
                       "parallelism": {"tensor": 4},
                       "accelerator": {"product": "h100-80gb", "nodeSelector": {"pin-test": tag}}}),
            )?,
        )
        .await?;
        let all = wait_for(
            T,
            "two pinned pods run and the third is unschedulable",
            || async {
                let ps = model_pods(&pods, "pinned").await?;
                let running = ps.iter().filter(|p| is_running_ready(p)).count();
                let pending = ps
                    .iter()
                    .filter(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| {
                                    c.type_ == "PodScheduled"
                                        && c.status == "False"
                                        && c.reason.as_deref() == Some("Unschedulable")
                                })
                            })
                    })
                    .count();
                Ok((ps.len() == 3 && running == 2 && pending == 1).then_some(ps))
            },
        )
        .await?;
        for p in &all {
            let on = node_of(p);
            ensure!(
                on.as_deref() != Some(names[2].as_str()),
                "a pod planned for H100 landed on the L4 node"
            );
        }
        Ok(())
    }
    .await;
    delete_nodes(&nodes, &names).await;
    result.with_context(|| format!("operator log:\n{}", tenancy.op.log_tail()))?;
    tenancy.finish(&cluster).await?;
    ns.finish().await
}

/// Labels a namespace to enforce a Pod Security Standards level.
async fn enforce(client: &kube::Client, ns: &TestNamespace, level: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels = BTreeMap::from([(
        "pod-security.kubernetes.io/enforce".to_string(),
        level.to_string(),
    )]);
    namespaces
        .patch(
            ns.name(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn pod_security_admission_accepts_the_inference_pods() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let restricted = cluster.namespace("pss-restricted").await?;
    let baseline = cluster.namespace("pss-baseline").await?;
    let tenancy = Tenancy::start(&cluster, &[&restricted, &baseline]).await?;
    enforce(&cluster.client(), &restricted, "restricted").await?;
    enforce(&cluster.client(), &baseline, "baseline").await?;
    let result = async {
        // Restricted: NVIDIA (and CPU, and Ascend) pods run as non-root with every
        // capability dropped; the weights cache is a claim, since no PSS level admits a
        // host path.
        let models: Api<DeepSeekModel> = restricted.api();
        let pods: Api<Pod> = restricted.api();
        for (name, spec) in [
            ("nvidia", json!({"model": "deepseek-r1-distill-qwen-1.5b", "accelerator": {"product": "l4"}, "cache": {"claimName": "weights"}})),
            ("ascend", json!({"model": "deepseek-r1-distill-qwen-1.5b", "accelerator": {"vendor": "ascend"}, "cache": {"claimName": "weights"}})),
            ("cpu", json!({"model": "deepseek-r1-distill-qwen-1.5b", "quantization": "gguf-q4_k_m", "cache": {"claimName": "weights"}})),
        ] {
            apply_model(&models, &model(name, spec)?).await?;
            pods_created(&pods, name, 1).await.with_context(|| {
                format!("restricted admission refused the {name} pods")
            })?;
        }
        // Baseline: AMD pods run as root (ROCm device groups differ per host) but still
        // unprivileged, with capabilities dropped.
        let models: Api<DeepSeekModel> = baseline.api();
        let pods: Api<Pod> = baseline.api();
        apply_model(
            &models,
            &model(
                "amd",
                json!({"model": "deepseek-r1-distill-qwen-1.5b", "accelerator": {"vendor": "amd"}, "cache": {"claimName": "weights"}}),
            )?,
        )
        .await?;
        pods_created(&pods, "amd", 1)
            .await
            .context("baseline admission refused the AMD pods")?;
        anyhow::Ok(())
    }
    .await;
    result.with_context(|| format!("operator log:\n{}", tenancy.op.log_tail()))?;
    tenancy.finish(&cluster).await?;
    restricted.finish().await?;
    baseline.finish().await
}
