//! Prefill/decode disaggregation through the real router: the pinned `sglang-router` in
//! PD mode in front of two launchers, each running the sim as configured by a
//! `LaunchConfig` with its role (each on its own loopback address, as pods have their own
//! IPs). A streamed chat completion goes router -> prefill (computes the prompt, publishes
//! its KV on the bootstrap port) -> decode (takes the KV, streams the tokens).
//!
//! Needs the router that `engine/conformance/run` installs (`$DSO_SGLANG_ROUTER`, set by
//! `scripts/test`); built only with `--features pd-router`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{client, free_port_on, sim_config, spawn_launcher_at, wait_until};
use deepseek_engine::pd::BOOTSTRAP_PORT;
use deepseek_engine::{Disaggregation, KvTransfer, LaunchConfig, PdRole, SimProfile};

const PREFILL_IP: &str = "127.0.41.1";
const DECODE_IP: &str = "127.0.41.2";
const ROUTER_IP: &str = "127.0.41.3";

fn role_config(role: PdRole) -> LaunchConfig {
    let mut cfg = sim_config(
        1,
        SimProfile {
            prefill_tokens_per_s: 2000.0,
            decode_tokens_per_s: 200.0,
            max_running: 8,
        },
    );
    cfg.disaggregation = Some(Disaggregation {
        role,
        transfer: KvTransfer::Mooncake,
        ascend_store: None,
    });
    cfg
}

struct Router(Child);

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn router_binary() -> String {
    std::env::var("DSO_SGLANG_ROUTER").unwrap_or_else(|_| {
        panic!("DSO_SGLANG_ROUTER must name the pinned sglang-router (engine/conformance/run installs it; scripts/test sets it)")
    })
}

async fn counter(url: &str, name: &str) -> f64 {
    let text = client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_chat_goes_through_router_prefill_and_decode() {
    let leader_port = |ip| free_port_on(ip);
    let prefill = spawn_launcher_at(
        &role_config(PdRole::Prefill),
        0,
        PREFILL_IP,
        PREFILL_IP,
        leader_port(PREFILL_IP),
        &["--engine", "sim"],
        &[("DSO_SIM_TIME_SCALE", "1")],
    );
    let decode = spawn_launcher_at(
        &role_config(PdRole::Decode),
        0,
        DECODE_IP,
        DECODE_IP,
        leader_port(DECODE_IP),
        &["--engine", "sim"],
        &[("DSO_SIM_TIME_SCALE", "1")],
    );
    let http = client();
    for (what, url) in [
        ("prefill", prefill.engine_url()),
        ("decode", decode.engine_url()),
    ] {
        wait_until(what, Duration::from_secs(60), || {
            let http = http.clone();
            let url = format!("{url}/health");
            async move {
                http.get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    }

    // Straight to decode, without the router's bootstrap fields: refused with the reason.
    let direct = http
        .post(format!("{}/v1/chat/completions", decode.engine_url()))
        .json(&serde_json::json!({"model": "deepseek-v3", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("direct request");
    assert_eq!(direct.status().as_u16(), 400);
    assert!(direct
        .text()
        .await
        .unwrap_or_default()
        .contains("through the router"));

    let port = free_port_on(ROUTER_IP);
    let metrics_port = free_port_on(ROUTER_IP);
    let router = Router(
        Command::new(router_binary())
            .args(["launch", "--pd-disaggregation"])
            .args(["--host", ROUTER_IP, "--port", &port.to_string()])
            .args(["--prometheus-host", ROUTER_IP])
            .args(["--prometheus-port", &metrics_port.to_string()])
            .args([
                "--prefill",
                &prefill.engine_url(),
                &BOOTSTRAP_PORT.to_string(),
            ])
            .args(["--decode", &decode.engine_url()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sglang-router"),
    );
    let url = format!("http://{ROUTER_IP}:{port}/v1/chat/completions");
    let prompt = "Explain prefill and decode disaggregation in one long sentence, please.";
    let body = serde_json::json!({
        "model": "deepseek-v3",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 12,
        "stream": true,
    });
    // The router registers its workers in the background: retry until it routes.
    let answer = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    wait_until("a routed, streamed answer", Duration::from_secs(60), || {
        let (http, url, body, answer) = (http.clone(), url.clone(), body.clone(), answer.clone());
        async move {
            let Ok(resp) = http.post(url).json(&body).send().await else {
                return false;
            };
            if !resp.status().is_success() {
                return false;
            }
            let text = resp.text().await.unwrap_or_default();
            let done = text.contains("[DONE]");
            if let Ok(mut a) = answer.lock() {
                *a = text;
            }
            done
        }
    })
    .await;
    let text = answer.lock().map(|a| a.clone()).unwrap_or_default();
    let chunks: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
        .collect();
    assert_eq!(chunks.len(), 12, "decode streams every token: {text}");

    // Prefill computed the prompt and made the first token; decode took the KV (no
    // prompt computed there) and generated all twelve.
    let p = prefill.engine_url();
    let d = decode.engine_url();
    assert!(counter(&p, "vllm:prompt_tokens_total").await > 0.0);
    assert_eq!(counter(&d, "vllm:prompt_tokens_total").await, 0.0);
    assert!(counter(&d, "vllm:generation_tokens_total").await >= 12.0);
    assert!(counter(&p, "vllm:generation_tokens_total").await >= 1.0);
    drop(router);
}
