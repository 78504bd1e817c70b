//! End to end on the real control plane (`mixed` topology): examples land on the right
//! pools with the right resources and engine arguments, bad manifests are refused by the
//! API server, impossible ones are explained, a steady state writes nothing, deleting a
//! model removes its children, and a new node pool lets a waiting model proceed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::fixtures::kwok_node;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::{Cluster, TestNamespace};
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;

const T: Duration = Duration::from_secs(90);

struct Expect {
    file: &'static str,
    pods: usize,
    resource: &'static str,
    per_pod: &'static str,
    node_label: (&'static str, &'static str),
    args: &'static [&'static str],
}

async fn node_labels(nodes: &Api<Node>, name: &str) -> Result<BTreeMap<String, String>> {
    Ok(nodes.get(name).await?.metadata.labels.unwrap_or_default())
}

async fn check_placement(ns: &TestNamespace, e: &Expect) -> Result<()> {
    let model = example(e.file)?;
    let name = model.metadata.name.clone().context("name")?;
    let pods_api: Api<Pod> = ns.api();
    let pods = wait_groups(&pods_api, &name, 1, e.pods, T).await?;
    let nodes: Api<Node> = Api::all(ns.client());
    let mut hosts = std::collections::BTreeSet::new();
    for pod in &pods {
        let spec = pod.spec.as_ref().context("spec")?;
        let node = spec.node_name.clone().context("scheduled")?;
        let labels = node_labels(&nodes, &node).await?;
        ensure!(
            labels.get(e.node_label.0).map(String::as_str) == Some(e.node_label.1),
            "{}: pod {} on node {node} with labels {labels:?}",
            e.file,
            pod.metadata.name.clone().unwrap_or_default()
        );
        let limits = spec.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        if !e.resource.is_empty() {
            ensure!(
                limits.get(e.resource).map(|q| q.0.as_str()) == Some(e.per_pod),
                "{}: limits {limits:?}",
                e.file
            );
        }
        hosts.insert(node);
    }
    ensure!(
        hosts.len() == e.pods,
        "{}: the group's pods must be on distinct nodes: {hosts:?}",
        e.file
    );
    let leader = pods
        .iter()
        .find(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("inference.deepseek-operator.dev/role"))
                .map(String::as_str)
                == Some("leader")
        })
        .context("leader pod")?;
    let cmd = leader
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("inference.deepseek-operator.dev/engine-command"))
        .cloned()
        .unwrap_or_default();
    for arg in e.args {
        ensure!(
            cmd.contains(arg),
            "{}: engine command lacks {arg}: {cmd}",
            e.file
        );
    }
    let models: Api<DeepSeekModel> = ns.api();
    let (reason, msg) = wait_condition(&models, &name, "Available", "True", T).await?;
    ensure!(reason == "ReplicasReady", "{reason}: {msg}");
    let m = models.get(&name).await?;
    let plan = m
        .status
        .as_ref()
        .and_then(|s| s.plan.clone())
        .context("status.plan")?;
    ensure!(plan.nodes_per_replica as usize == e.pods, "plan {plan:?}");
    Ok(())
}

async fn apply_examples(ns: &TestNamespace, files: &[&str]) -> Result<()> {
    let models: Api<DeepSeekModel> = ns.api();
    for f in files {
        apply_model(&models, &example(f)?).await?;
    }
    Ok(())
}

/// Deletes every model in the namespace and waits until the garbage collector removed
/// all their pods and Services.
async fn delete_models_and_wait_for_gc(ns: &TestNamespace) -> Result<()> {
    let models: Api<DeepSeekModel> = ns.api();
    models
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await?;
    let pods: Api<Pod> = ns.api();
    let svcs: Api<Service> = ns.api();
    wait_for(
        T,
        "every child pod and Service is garbage-collected",
        || async {
            let lp = kube::api::ListParams::default().labels(SELECTOR_MANAGED);
            let p = pods.list(&lp).await?.items.len();
            let s = svcs.list(&lp).await?.items.len();
            Ok((p == 0 && s == 0).then_some(()))
        },
    )
    .await
}

#[tokio::test]
async fn examples_land_on_matching_pools_and_are_garbage_collected() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let ns = cluster.namespace("placement").await?;

    // Phase 1: pools that do not compete.
    let phase1 = [
        Expect {
            file: "r1-fp8-h100-multinode.yaml",
            pods: 2,
            resource: "nvidia.com/gpu",
            per_pod: "8",
            node_label: ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
            args: &[
                "--tensor-parallel-size 8",
                "--pipeline-parallel-size 2",
                "--distributed-executor-backend mp",
            ],
        },
        Expect {
            file: "v3-fp8-mi300x.yaml",
            pods: 1,
            resource: "amd.com/gpu",
            per_pod: "4",
            node_label: ("amd.com/gpu.product-name", "AMD_Instinct_MI300X_OAM"),
            args: &["--tensor-parallel-size 4"],
        },
        Expect {
            file: "r1-int8-ascend.yaml",
            pods: 2,
            resource: "huawei.com/Ascend910",
            per_pod: "8",
            node_label: ("accelerator", "huawei-Ascend910"),
            args: &["HCCL_IF_IP", "vllm-ascend/DeepSeek-R1-W8A8"],
        },
        Expect {
            file: "r1-distill-7b-cpu-gguf.yaml",
            pods: 1,
            resource: "",
            per_pod: "",
            node_label: ("e2e.deepseek.ai/pool", "cpu"),
            args: &["llama-server", "Q4_K_M"],
        },
        Expect {
            file: "r1-distill-qwen-1.5b-l4.yaml",
            pods: 1,
            resource: "nvidia.com/gpu",
            per_pod: "1",
            node_label: ("cloud.google.com/gke-accelerator", "nvidia-l4"),
            args: &["--max-model-len 16384"],
        },
        Expect {
            file: "r1-distill-qwen-7b-l4.yaml",
            pods: 1,
            resource: "nvidia.com/gpu",
            per_pod: "1",
            node_label: ("cloud.google.com/gke-accelerator", "nvidia-l4"),
            args: &["--max-model-len 4096"],
        },
    ];
    apply_examples(&ns, &phase1.iter().map(|e| e.file).collect::<Vec<_>>()).await?;
    for e in &phase1 {
        check_placement(&ns, e)
            .await
            .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    }
    delete_models_and_wait_for_gc(&ns).await?;

    // Phase 2: the H100 and H200 examples that would compete with phase 1.
    let phase2 = [
        Expect {
            file: "r1-distill-qwen-32b-h100.yaml",
            pods: 1,
            resource: "nvidia.com/gpu",
            per_pod: "",
            node_label: ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
            args: &["--max-model-len 32768"],
        },
        Expect {
            file: "r1-distill-llama-70b-nvidia.yaml",
            pods: 1,
            resource: "nvidia.com/gpu",
            per_pod: "2",
            node_label: ("cloud.google.com/gke-accelerator", "nvidia-h200-141gb"),
            args: &["--tensor-parallel-size 2"],
        },
    ];
    apply_examples(&ns, &phase2.iter().map(|e| e.file).collect::<Vec<_>>()).await?;
    for e in &phase2 {
        let mut e2 = Expect { ..*e };
        if e.per_pod.is_empty() {
            e2.resource = "";
        }
        check_placement(&ns, &e2)
            .await
            .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    }
    delete_models_and_wait_for_gc(&ns).await?;

    // Phase 3: the autoscaled example holds its minimum of one whole H200 node.
    apply_examples(&ns, &["r1-autoscaled-h200.yaml"]).await?;
    check_placement(
        &ns,
        &Expect {
            file: "r1-autoscaled-h200.yaml",
            pods: 1,
            resource: "nvidia.com/gpu",
            per_pod: "8",
            node_label: ("cloud.google.com/gke-accelerator", "nvidia-h200-141gb"),
            args: &["--tensor-parallel-size 8"],
        },
    )
    .await?;
    delete_models_and_wait_for_gc(&ns).await?;
    ns.finish().await
}

#[tokio::test]
async fn invalid_manifests_are_refused_by_the_api_server() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("invalid").await?;
    // Raw objects, so the client's own types cannot refuse them first.
    let ar = kube::api::ApiResource::erase::<DeepSeekModel>(&());
    let models: Api<kube::api::DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &ar);
    let cases: [(&str, serde_json::Value, &str); 6] = [
        (
            "minmax",
            serde_json::json!({"model": "deepseek-r1", "autoscaling": {"minReplicas": 3, "maxReplicas": 1}}),
            "minReplicas must be <= maxReplicas",
        ),
        (
            "util",
            serde_json::json!({"model": "deepseek-r1", "serving": {"gpuMemoryUtilization": 1.5}}),
            "gpuMemoryUtilization must be in (0, 1]",
        ),
        (
            "quant",
            serde_json::json!({"model": "deepseek-r1", "quantization": "int3"}),
            "Unsupported value: \"int3\"",
        ),
        (
            "custom",
            serde_json::json!({"model": "custom"}),
            "customModel is required",
        ),
        (
            "gguf-gpu",
            serde_json::json!({"model": "deepseek-r1", "quantization": "gguf-q4_k_m", "accelerator": {"vendor": "nvidia"}}),
            "GGUF quantizations are served by llama.cpp on CPU",
        ),
        (
            "mla",
            serde_json::json!({"model": "custom", "customModel": {"huggingFaceRepo": "me/m", "attention": "mla", "parametersBillions": 10.0, "layers": 10, "hiddenSize": 1024, "attentionHeads": 8, "maxPositionEmbeddings": 4096}}),
            "MLA models need kvLoraRank and qkRopeHeadDim",
        ),
    ];
    for (name, spec, want) in cases {
        let obj: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
            "kind": "DeepSeekModel",
            "metadata": {"name": name},
            "spec": spec,
        }))?;
        let err = models
            .create(&PostParams::default(), &obj)
            .await
            .err()
            .with_context(|| format!("{name} was accepted"))?;
        ensure!(
            err.to_string().contains(want),
            "{name}: expected '{want}' in: {err}"
        );
    }
    ns.finish().await
}

#[tokio::test]
async fn impossible_model_is_explained_and_proceeds_when_a_pool_appears() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let ns = cluster.namespace("insufficient").await?;
    let models: Api<DeepSeekModel> = ns.api();

    // BF16 R1 needs ~1.3 TB: far beyond two H100 nodes.
    let mut big = example("r1-fp8-h100-multinode.yaml")?;
    big.metadata.name = Some("r1-bf16".into());
    big.spec.quantization = Some(deepseek_operator::api::Quantization::Bf16);
    apply_model(&models, &big).await?;
    let (reason, msg) = wait_condition(&models, "r1-bf16", "Planned", "False", T).await?;
    ensure!(reason == "InsufficientAccelerators", "{reason}: {msg}");
    ensure!(
        msg.contains("largest matching pool: 2 nodes of 8 x"),
        "message names the largest pool: {msg}"
    );

    // A100 80GB: no such pool until a node appears.
    let mut waiting = example("r1-distill-qwen-1.5b-l4.yaml")?;
    waiting.metadata.name = Some("waits-for-a100".into());
    waiting.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
        product: Some("a100-80gb".into()),
        ..Default::default()
    });
    apply_model(&models, &waiting).await?;
    let (reason, _) = wait_condition(&models, "waits-for-a100", "Planned", "False", T).await?;
    ensure!(reason == "InsufficientAccelerators");

    let nodes: Api<Node> = Api::all(cluster.client());
    let node_name = format!("a100-{}", ns.name());
    kwok_node(
        &nodes,
        &node_name,
        serde_json::json!({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}),
        serde_json::json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
        serde_json::json!({"nvidia.com/gpu": "8"}),
        "127.0.9.9",
    )
    .await?;
    let result = async {
        wait_condition(&models, "waits-for-a100", "Planned", "True", T).await?;
        let pods: Api<Pod> = ns.api();
        let running = wait_groups(&pods, "waits-for-a100", 1, 1, T).await?;
        ensure!(
            running[0].spec.as_ref().and_then(|s| s.node_name.clone()) == Some(node_name.clone())
        );
        Ok(())
    }
    .await;
    nodes.delete(&node_name, &DeleteParams::default()).await?;
    result.with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    ns.finish().await
}

#[tokio::test]
async fn steady_state_makes_no_writes() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let ns = cluster.namespace("steady").await?;
    let models: Api<DeepSeekModel> = ns.api();
    let model = example("r1-distill-qwen-1.5b-l4.yaml")?;
    apply_model(&models, &model).await?;
    let pods: Api<Pod> = ns.api();
    wait_groups(&pods, "r1-distill-1-5b", 1, 1, T).await?;
    wait_condition(&models, "r1-distill-1-5b", "Progressing", "False", T).await?;

    // Let the status settle, then poke the model without changing its spec: the
    // reconcile that follows must find nothing to do.
    let settled = wait_for(T, "two reconciles in a row write nothing", || async {
        let before = op.counter("deepseek_operator_api_writes_total").await?;
        let r0 = op.counter("deepseek_operator_reconciles_total").await?;
        poke(&models, "r1-distill-1-5b").await?;
        wait_for(T, "the poke was reconciled", || async {
            Ok((op.counter("deepseek_operator_reconciles_total").await? > r0).then_some(()))
        })
        .await?;
        let after = op.counter("deepseek_operator_api_writes_total").await?;
        Ok((after == before).then_some((before, after)))
    })
    .await?;
    // And once more, after settling, to be sure.
    let before = op.counter("deepseek_operator_api_writes_total").await?;
    let r0 = op.counter("deepseek_operator_reconciles_total").await?;
    poke(&models, "r1-distill-1-5b").await?;
    wait_for(T, "the second poke was reconciled", || async {
        Ok((op.counter("deepseek_operator_reconciles_total").await? > r0).then_some(()))
    })
    .await?;
    let after = op.counter("deepseek_operator_api_writes_total").await?;
    ensure!(
        after == before,
        "steady-state reconcile wrote {} times (settled at {settled:?})",
        after - before
    );
    ensure!(
        before > 0.0,
        "the operator did write while creating the model"
    );
    ns.finish().await
}

async fn poke(models: &Api<DeepSeekModel>, name: &str) -> Result<()> {
    let stamp = format!("{:?}", std::time::SystemTime::now());
    let patch = serde_json::json!({"metadata": {"annotations": {"e2e/poke": stamp}}});
    models
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[tokio::test]
async fn declared_pool_at_zero_gets_pending_pods_for_the_cluster_autoscaler() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("declared").await?;
    let config = cluster
        .state_dir()
        .join(format!("operator-config-{}.yaml", ns.name()));
    std::fs::write(
        &config,
        "declaredPools:\n  - name: gke-a100-spot\n    product: a100-40gb\n    acceleratorsPerNode: 8\n    maxNodes: 2\n    nodeSelector: {cloud.google.com/gke-accelerator: nvidia-tesla-a100}\n    taints: [{key: nvidia.com/gpu, value: present, effect: NoSchedule}]\n",
    )?;
    let op = Operator::start(
        &cluster,
        OperatorOptions {
            config_file: Some(&config),
            ..Default::default()
        },
    )
    .await?;
    let models: Api<DeepSeekModel> = ns.api();
    let mut m = example("r1-distill-qwen-1.5b-l4.yaml")?;
    m.metadata.name = Some("scale-from-zero".into());
    m.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
        product: Some("a100-40gb".into()),
        ..Default::default()
    });
    apply_model(&models, &m).await?;
    let (_, msg) = wait_condition(&models, "scale-from-zero", "Planned", "True", T)
        .await
        .with_context(|| op.log_tail())?;
    ensure!(
        msg.contains("gke-a100-spot"),
        "planned on the declared pool: {msg}"
    );
    // The pod exists and waits for a node: that is what makes a cluster autoscaler act.
    let (reason, msg) = wait_condition(&models, "scale-from-zero", "Scheduled", "False", T).await?;
    ensure!(reason == "Unschedulable", "{reason}: {msg}");
    let pods: Api<Pod> = ns.api();
    let pending = model_pods(&pods, "scale-from-zero").await?;
    ensure!(pending.len() == 1);
    let affinity =
        serde_json::to_string(&pending[0].spec.as_ref().and_then(|s| s.affinity.clone()))?;
    ensure!(
        affinity.contains("nvidia-tesla-a100"),
        "pods select the declared pool's labels: {affinity}"
    );
    let _ = std::fs::remove_file(&config);
    ns.finish().await
}
