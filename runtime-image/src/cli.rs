//! Command-line interface of `deepseek-launcher` (flags override the `DSO_*` environment).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use deepseek_engine::{
    SimProfile, DEFAULT_DRAIN_SECONDS, DIST_INIT_PORT, ENGINE_PORT, GROUP_PORT, LAUNCHER_PORT,
};

#[derive(Parser, Debug)]
#[command(
    name = "deepseek-launcher",
    version,
    about = "Starts a DeepSeek inference engine in a pod: renders its command, checks hardware, rendezvous, drain, normalised metrics",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Launch the engine (the default without a subcommand).
    Run(LaunchArgs),
    /// Print the rendered steps of this rank and exit.
    Render(RenderArgs),
    /// Validate the config and check the hardware, then exit.
    Check(LaunchArgs),
    /// Run the GPU-free sim engine.
    Sim(SimArgs),
    /// Serve a model's front: forward requests to ready replica groups, hold them
    /// (bounded) while none is ready.
    Front(FrontArgs),
    /// Drain this pod's rank through its group port and wait until the engine stopped
    /// (the leader pod's preStop hook).
    Drain(DrainArgs),
}

#[derive(Args, Debug, Clone)]
pub struct DrainArgs {
    /// Address the launcher binds (the pod IP); loopback when unset.
    #[arg(long, env = "DSO_POD_IP")]
    pub bind: Option<IpAddr>,
    /// The launcher's group port.
    #[arg(long, default_value_t = GROUP_PORT)]
    pub group_port: u16,
    /// The group token (bearer token of the group port).
    #[arg(long, env = "DSO_GROUP_TOKEN", hide_env_values = true)]
    pub group_token: Option<String>,
    /// Drain bound in seconds: how long to wait (plus the stop margin).
    #[arg(long, env = "DSO_DRAIN_SECONDS", default_value_t = DEFAULT_DRAIN_SECONDS as f64)]
    pub drain_seconds: f64,
}

#[derive(Args, Debug, Clone)]
pub struct LaunchArgs {
    /// LaunchConfig as JSON.
    #[arg(long, env = "DSO_LAUNCH_CONFIG", hide_env_values = true)]
    pub config_json: Option<String>,
    /// Rank in the replica group (0 = leader).
    #[arg(long, env = "DSO_RANK", default_value_t = 0)]
    pub rank: u32,
    /// Leader pod address (DNS name or IP).
    #[arg(long, env = "DSO_LEADER_ADDRESS")]
    pub leader: Option<String>,
    /// Address this pod's servers bind (the pod IP); also substituted for $(DSO_POD_IP).
    #[arg(long, env = "DSO_POD_IP")]
    pub bind: Option<IpAddr>,
    /// Force an engine (e.g. `sim`), overriding the config's. `DSO_ENGINE` is set by an
    /// image, never by the operator: the runtime-sim image of `scripts/images` runs the
    /// sim engine in real containers on real test nodes.
    #[arg(long, env = "DSO_ENGINE")]
    pub engine: Option<String>,
    /// Port of this launcher's public HTTP server (probes, metrics).
    #[arg(long, default_value_t = LAUNCHER_PORT)]
    pub launcher_port: u16,
    /// Port of this launcher's group server (rendezvous, rank health, drain).
    #[arg(long, default_value_t = GROUP_PORT)]
    pub group_port: u16,
    /// The group token: calls to the group port carry it. Required for a multi-node
    /// group; a single-node launcher without one makes up its own.
    #[arg(long, env = "DSO_GROUP_TOKEN", hide_env_values = true)]
    pub group_token: Option<String>,
    /// Port of the engine's HTTP server.
    #[arg(long, default_value_t = ENGINE_PORT)]
    pub engine_port: u16,
    /// The leader launcher's group port (rendezvous).
    #[arg(long, default_value_t = GROUP_PORT)]
    pub leader_port: u16,
    /// Port of the leader's distributed-init endpoint (SGLang, sim).
    #[arg(long, default_value_t = DIST_INIT_PORT)]
    pub dist_port: u16,
    /// Seconds to wait for all ranks to join.
    #[arg(long, env = "DSO_RENDEZVOUS_TIMEOUT_SECONDS", default_value_t = 600.0)]
    pub rendezvous_timeout: f64,
    /// Drain bound in seconds: in-flight requests get this long once a drain begins.
    #[arg(long, env = "DSO_DRAIN_SECONDS", default_value_t = DEFAULT_DRAIN_SECONDS as f64)]
    pub drain_seconds: f64,
    /// Where device nodes are counted (tests).
    #[arg(long, default_value = "/dev", hide = true)]
    pub dev_dir: PathBuf,
    /// Appends `<rank> <event>` lines for each start-up stage and drain event to this file
    /// (tests compare the order across ranks).
    #[arg(long, hide = true)]
    pub trace_stages: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    #[command(flatten)]
    pub launch: LaunchArgs,
    /// `shell` (one line) or `json` (LaunchSteps).
    #[arg(long, default_value = "shell")]
    pub format: String,
}

fn default_profile() -> SimProfile {
    SimProfile::default()
}

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to bind (the pod IP; tests: 127.x).
    #[arg(long, env = "DSO_POD_IP", default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, default_value_t = ENGINE_PORT)]
    pub port: u16,
    #[arg(long, default_value = "deepseek-sim")]
    pub served_model_name: String,
    #[arg(long, default_value_t = 8192)]
    pub max_model_len: u32,
    #[arg(long, default_value_t = default_profile().prefill_tokens_per_s)]
    pub prefill_tokens_per_s: f64,
    #[arg(long, default_value_t = default_profile().decode_tokens_per_s)]
    pub decode_tokens_per_s: f64,
    #[arg(long, default_value_t = default_profile().max_running)]
    pub max_running: u32,
    /// Multiplies every simulated delay (0 = none; tests use small values).
    #[arg(long, env = "DSO_SIM_TIME_SCALE", default_value_t = 1.0)]
    pub time_scale: f64,
    /// Seconds the engine spends "loading weights" before it is healthy and serves
    /// (stands in for a real engine's load time in tests; not scaled by the time scale).
    #[arg(long, env = "DSO_SIM_LOAD_SECONDS", default_value_t = 0.0)]
    pub load_seconds: f64,
    /// Drain bound: after SIGTERM, new requests get 503 and in-flight ones get this long.
    #[arg(long, env = "DSO_DRAIN_SECONDS", default_value_t = DEFAULT_DRAIN_SECONDS as f64)]
    pub drain_seconds: f64,
    /// Ranks of the group (1: single-node).
    #[arg(long, default_value_t = 1)]
    pub nnodes: u32,
    /// This rank (0 serves HTTP and accepts the other ranks' links).
    #[arg(long, default_value_t = 0)]
    pub node_rank: u32,
    /// `host:port` of the leader's group link (multi-node).
    #[arg(long)]
    pub dist_init_addr: Option<String>,
    /// This server's role in a prefill/decode-disaggregated model (prefill or decode).
    #[arg(long, value_parser = parse_pd_role)]
    pub pd_role: Option<deepseek_engine::PdRole>,
    /// Prefill role: port of the KV handoff endpoint decode servers take prompts from.
    #[arg(long, default_value_t = deepseek_engine::pd::BOOTSTRAP_PORT)]
    pub bootstrap_port: u16,
}

fn parse_pd_role(s: &str) -> Result<deepseek_engine::PdRole, String> {
    match s {
        "prefill" => Ok(deepseek_engine::PdRole::Prefill),
        "decode" => Ok(deepseek_engine::PdRole::Decode),
        other => Err(format!(
            "unknown role '{other}' (expected prefill or decode)"
        )),
    }
}

#[derive(Args, Debug, Clone)]
pub struct FrontArgs {
    /// Address to bind (the pod IP; tests: 127.0.0.1).
    #[arg(long, env = "DSO_POD_IP", default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, default_value_t = ENGINE_PORT)]
    pub port: u16,
    /// A replica group: `URL` or `URL,READY_URL` (repeatable).
    #[arg(long = "backend")]
    pub backends: Vec<crate::front::BackendSpec>,
    /// File listing groups, one `URL[,READY_URL]` a line, re-read at every probe.
    #[arg(long, env = "DSO_FRONT_BACKENDS_FILE")]
    pub backends_file: Option<PathBuf>,
    /// Requests held at once while no group is ready; more get 503.
    #[arg(long, env = "DSO_FRONT_QUEUE_SIZE", default_value_t = 100)]
    pub queue_size: usize,
    /// Seconds one request may wait for a ready group before a 503.
    #[arg(long, env = "DSO_FRONT_MAX_WAIT_SECONDS", default_value_t = 600.0)]
    pub max_wait_seconds: f64,
    /// `Retry-After` of the front's 503 answers, in seconds.
    #[arg(long, default_value_t = 5)]
    pub retry_after_seconds: u64,
    /// How often groups are probed, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub probe_interval_ms: u64,
    #[arg(long, value_enum, default_value = "least-outstanding")]
    pub balance: crate::front::Balance,
    /// Bearer token the operator's backend pushes carry (`POST /front/backends`).
    #[arg(long, env = "DSO_FRONT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}
