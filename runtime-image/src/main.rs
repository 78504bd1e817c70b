//! Entry point of `deepseek-launcher`.

use std::time::Duration;

use clap::Parser;
use deepseek_launcher::cli::{Cli, Command, DrainArgs, FrontArgs, SimArgs};
use deepseek_launcher::launch::Launch;
use deepseek_launcher::sim::{self, Ended, GroupSpec, SimSettings};

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(&cli.launch),
        Some(Command::Run(a)) => run(&a),
        Some(Command::Check(a)) => check(&a),
        Some(Command::Render(r)) => render(&r.launch, &r.format),
        Some(Command::Sim(s)) => run_sim(s),
        Some(Command::Drain(d)) => drain(&d),
        Some(Command::Front(f)) => run_front(f),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("deepseek-launcher: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn run(a: &deepseek_launcher::cli::LaunchArgs) -> anyhow::Result<i32> {
    let launch = Launch::from_args(a)?;
    runtime()?.block_on(deepseek_launcher::launch::run(launch))
}

fn check(a: &deepseek_launcher::cli::LaunchArgs) -> anyhow::Result<i32> {
    let launch = Launch::from_args(a)?;
    launch.steps()?;
    let found = launch.check_hardware()?;
    println!(
        "ok: {} on {} needs {} devices per node, {found} visible",
        launch.cfg.engine, launch.cfg.vendor, launch.cfg.gpus_per_node
    );
    Ok(0)
}

fn render(a: &deepseek_launcher::cli::LaunchArgs, format: &str) -> anyhow::Result<i32> {
    // Rendering serves no group port, so a multi-node group's token is not needed to
    // print its commands (the token appears in none of them).
    let mut a = a.clone();
    if a.group_token.as_deref().is_none_or(|t| t.trim().is_empty()) {
        a.group_token = Some("render".into());
    }
    let launch = Launch::from_args(&a)?;
    let steps = launch.steps()?;
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(&steps)?),
        "shell" => println!("{}", steps.to_shell()),
        other => anyhow::bail!("unknown format {other:?} (shell or json)"),
    }
    Ok(0)
}

/// The leader's preStop hook: asks this pod's group server to drain, with the group
/// token, and waits for its answer (sent once the engine has stopped).
fn drain(a: &DrainArgs) -> anyhow::Result<i32> {
    use deepseek_launcher::launch::{loopback_if_unspecified, url};
    let token = a
        .group_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no group token: set {} or --group-token",
                deepseek_engine::env::GROUP_TOKEN
            )
        })?;
    let host = loopback_if_unspecified(
        a.bind
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
    );
    let target = format!(
        "{}{}",
        url(&host.to_string(), a.group_port),
        deepseek_engine::DRAIN_PATH
    );
    // The launcher answers after the drain bound plus the stop margin at the latest.
    let wait = Duration::try_from_secs_f64(a.drain_seconds)?
        + Duration::from_secs(deepseek_engine::STOP_MARGIN_SECONDS + 1);
    let client = deepseek_launcher::server::local_client(wait);
    runtime()?.block_on(async move {
        let r = client.post(&target).bearer_auth(token).send().await?;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        println!("{target}: {status} {body}");
        Ok(if status.is_success() { 0 } else { 1 })
    })
}

fn run_front(a: FrontArgs) -> anyhow::Result<i32> {
    use deepseek_launcher::front::{self, FrontConfig, Source};
    let cfg = FrontConfig {
        queue_size: a.queue_size,
        max_wait: Duration::try_from_secs_f64(a.max_wait_seconds)?,
        retry_after: Duration::from_secs(a.retry_after_seconds),
        probe_every: Duration::from_millis(a.probe_interval_ms.max(50)),
        balance: a.balance,
        source: Source {
            fixed: a.backends,
            file: a.backends_file,
        },
        token: a.token,
    };
    // Many connections at once (every held request is one): use the machine's cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let listener = tokio::net::TcpListener::bind((a.host, a.port)).await?;
        tracing::info!(
            "front listening on {}:{} (queue {}, max wait {:?})",
            a.host,
            a.port,
            cfg.queue_size,
            cfg.max_wait
        );
        let shutdown = async move {
            let _ = term.recv().await;
        };
        front::serve(listener, front::Front::new(cfg), shutdown).await?;
        Ok::<_, anyhow::Error>(0)
    })
}

fn run_sim(s: SimArgs) -> anyhow::Result<i32> {
    let settings = SimSettings {
        served_model_name: s.served_model_name,
        max_model_len: s.max_model_len,
        profile: deepseek_engine::SimProfile {
            prefill_tokens_per_s: s.prefill_tokens_per_s,
            decode_tokens_per_s: s.decode_tokens_per_s,
            max_running: s.max_running,
        },
        time_scale: s.time_scale,
        pd_role: s.pd_role,
        load_delay: Duration::try_from_secs_f64(s.load_seconds)?,
    };
    let drain = Duration::try_from_secs_f64(s.drain_seconds)?;
    let group = match (s.nnodes, s.dist_init_addr) {
        (0 | 1, _) => None,
        (nnodes, Some(dist_init_addr)) => Some(GroupSpec {
            nnodes,
            node_rank: s.node_rank,
            dist_init_addr,
        }),
        (nnodes, None) => anyhow::bail!("--nnodes {nnodes} needs --dist-init-addr"),
    };
    let rt = runtime()?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        if let Some(spec) = group.clone().filter(|g| g.node_rank > 0) {
            // A worker rank serves nothing itself: it holds its link until told to stop.
            tokio::select! {
                reason = sim::group::follow(spec) => {
                    tracing::error!("sim worker: {reason}");
                    return Ok(1);
                }
                () = shutdown => return Ok(0),
            }
        }
        let listener = tokio::net::TcpListener::bind((s.host, s.port)).await?;
        tracing::info!("sim engine listening on {}:{}", s.host, s.port);
        let group = match group {
            Some(spec) => {
                let l = tokio::net::TcpListener::bind(&spec.dist_init_addr).await?;
                Some((l, spec))
            }
            None => None,
        };
        let bootstrap = match s.pd_role {
            Some(deepseek_engine::PdRole::Prefill) => {
                Some(tokio::net::TcpListener::bind((s.host, s.bootstrap_port)).await?)
            }
            _ => None,
        };
        let ended = sim::serve(listener, settings, shutdown, drain, group, bootstrap).await?;
        Ok::<_, anyhow::Error>(if ended == Ended::Drained { 0 } else { 1 })
    })
}
