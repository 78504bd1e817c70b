//! `deepseek-operator run`: logging set-up and the controller.

use std::net::SocketAddr;

use clap::Args;

use crate::controller::{self, RunOptions};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Operator configuration (declared pools, images, cache).
    #[arg(long, env = "DSO_CONFIG")]
    pub config: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "DSO_METRICS_BIND", default_value = "127.0.0.1:9090")]
    pub metrics_bind: SocketAddr,
    /// Compete for a Lease so that only one replica reconciles.
    #[arg(long, env = "DSO_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    #[arg(long, env = "DSO_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    #[arg(long, env = "DSO_LEASE_NAME", default_value = "deepseek-operator")]
    pub lease_name: String,
    /// How long a lease is valid. The leader stops writing (and exits) when it has not
    /// renewed it for 2/3 of this; a standby takes over after a full duration.
    #[arg(long, env = "DSO_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Identity in the lease; defaults to the pod name or host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Watch only these namespaces (comma-separated); none means every namespace. The
    /// chart's namespaced mode grants Roles in exactly these.
    #[arg(long, env = "DSO_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Log as JSON lines.
    #[arg(long, env = "DSO_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
    /// Model reconciles run at once (per watched namespace). Each makes its writes one
    /// after another, so with the API server answering a write in ~70 ms, 8 at once
    /// write ~110 times a second: the bound of converging 1,000 models (issue 12).
    #[arg(long, env = "DSO_RECONCILE_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub reconcile_concurrency: u16,
}

pub fn run(args: RunArgs) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "deepseek-operator".into());
        format!("{host}-{}", std::process::id())
    });
    let opts = RunOptions {
        config_file: args.config,
        metrics_bind: args.metrics_bind,
        leader_election: args.leader_election,
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        identity,
        lease_duration_seconds: args.lease_duration_seconds,
        scope: controller::scope::Scope::from_list(&args.namespaces),
        reconcile_concurrency: args.reconcile_concurrency,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start the async runtime: {e}"))?;
    let result = rt.block_on(controller::run(opts));
    // Leaving now must stop every task at once (a lost lease means no more writes), not
    // wait for them to notice.
    rt.shutdown_background();
    result.map_err(|e| format!("{e:#}"))
}
