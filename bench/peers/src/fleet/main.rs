//! `peers-fleet`: the engines and the load of the autoscaling scenario, the same for
//! every operator under test. For one model in one namespace it
//!
//! - runs simulated engines behind its pods: ours through `deepseek_e2e::sim::SimFleet`
//!   (the launcher, as the e2e suites run it); for a LeaderWorkerSet, the sim engine alone
//!   (`deepseek-launcher sim`) on each group leader's 127.x IP and the port its template's
//!   `vllm serve` listens on ([`lws_sims`]);
//! - sends completions from a fixed pool of workers to the model's ready leaders, as
//!   many at once as the last `load N` line on stdin says ([`load`]);
//! - watches the model object and prints every change of its `spec.replicas`.
//!
//! Output: JSON lines with millisecond timestamps (`{"t":..,"event":"replicas","n":2}`,
//! `"load"`, `"started"`). Usage:
//! `peers-fleet ours|lws NAMESPACE MODEL LAUNCHER` with KUBECONFIG set (an identity that
//! may list pods and read the model). Exits at the end of stdin or on SIGTERM, stopping
//! every engine it started.

mod load;
mod lws_sims;
mod replicas;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use deepseek_e2e::sim::{SimFleet, SimOptions};
use kube::Client;
use std::io::BufRead;

/// Workers in the pool: more than any load step the runner asks for.
const WORKERS: usize = 32;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn emit(event: &str, n: i64) {
    println!(
        "{}",
        serde_json::json!({"t": now_ms(), "event": event, "n": n})
    );
}

/// Which operator runs the model: how to find its leaders and where they serve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Ours,
    Lws,
}

impl Kind {
    pub fn leader_selector(self, model: &str) -> String {
        match self {
            Kind::Ours => format!(
                "app.kubernetes.io/instance={model},inference.deepseek-operator.dev/role=leader"
            ),
            Kind::Lws => format!(
                "leaderworkerset.sigs.k8s.io/name={model},leaderworkerset.sigs.k8s.io/worker-index=0"
            ),
        }
    }

    /// The engine port: ours serves on the launcher's engine port, the LWS template's
    /// `vllm serve --port 8080`.
    pub fn port(self) -> u16 {
        match self {
            Kind::Ours => deepseek_engine::ENGINE_PORT,
            Kind::Lws => lws_sims::PORT,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, ns, model, launcher] = args.as_slice() else {
        bail!("usage: peers-fleet ours|lws NAMESPACE MODEL LAUNCHER");
    };
    let kind = match kind.as_str() {
        "ours" => Kind::Ours,
        "lws" => Kind::Lws,
        other => bail!("unknown kind {other}"),
    };
    let launcher = PathBuf::from(launcher);
    let client = Client::try_default()
        .await
        .context("connecting with KUBECONFIG")?;
    // Held for the life of the process: dropping either stops its engines.
    let _ours = (kind == Kind::Ours).then(|| {
        let mut opts = SimOptions::new(launcher.clone());
        opts.log_dir = std::env::temp_dir().join("peers-fleet-logs");
        SimFleet::start(client.clone(), ns, opts)
    });
    let _lws =
        (kind == Kind::Lws).then(|| lws_sims::LwsSims::start(client.clone(), ns, model, &launcher));
    let gen = load::LoadGen::start(client.clone(), ns, kind, model, WORKERS);
    let watch = tokio::spawn(replicas::watch(client, ns.clone(), model.clone(), kind));
    emit("started", 0);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    // Stdin on a thread of its own (blocking reads), its lines handed over a channel;
    // the channel closes at the end of input.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = tokio::select! {
            _ = sigterm.recv() => break,
            l = lines.recv() => l,
        };
        let Some(line) = line else { break };
        if let Some(n) = line.trim().strip_prefix("load ") {
            let n: usize = n
                .parse()
                .with_context(|| format!("bad load line {line:?}"))?;
            gen.set(n);
            emit("load", n as i64);
        }
    }
    watch.abort();
    Ok(())
}
