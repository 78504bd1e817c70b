//! Finding or starting the local e2e cluster (`e2e/cluster up`).
//!
//! [`Cluster::ensure`] reuses a reachable API server from the state dir
//! (`$DSO_CLUSTER_DIR`, default `/tmp/deepseek-operator-cluster`) and otherwise
//! runs `e2e/cluster up`, which serialises concurrent callers with a file lock, so
//! several test binaries may call it at the same time. The environment it printed
//! (`export KUBECONFIG=...`, `export PATH=<bin dir>:$PATH`) is parsed once per
//! process; a fresh [`kube::Client`] is built per call because a client is bound to
//! the tokio runtime it was created on (each `#[tokio::test]` has its own).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use crate::namespace::TestNamespace;

/// What `e2e/cluster up` printed: where the admin kubeconfig and the binaries are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEnv {
    /// The admin kubeconfig (`export KUBECONFIG=...`).
    pub kubeconfig: PathBuf,
    /// The directory holding kubectl, helm and the control-plane binaries.
    pub bin_dir: PathBuf,
}

impl ClusterEnv {
    /// Parses the `export KUBECONFIG=...` and `export PATH=<dir>:$PATH` lines
    /// printed by `e2e/cluster up`.
    pub fn parse(stdout: &str) -> Result<Self> {
        let mut kubeconfig = None;
        let mut bin_dir = None;
        for line in stdout.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("export KUBECONFIG=") {
                kubeconfig = Some(PathBuf::from(unquote(v)));
            } else if let Some(v) = line.strip_prefix("export PATH=") {
                let v = unquote(v);
                let dir = v.strip_suffix(":$PATH").unwrap_or(v);
                bin_dir = Some(PathBuf::from(dir));
            }
        }
        match (kubeconfig, bin_dir) {
            (Some(kubeconfig), Some(bin_dir)) => Ok(Self {
                kubeconfig,
                bin_dir,
            }),
            _ => bail!(
                "`e2e/cluster up` did not print KUBECONFIG and PATH exports; it printed:\n{stdout}"
            ),
        }
    }
}

fn unquote(v: &str) -> &str {
    v.trim_matches(|c| c == '"' || c == '\'')
}

/// A handle on the running e2e cluster.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    env: ClusterEnv,
    state_dir: PathBuf,
}

static ENV: OnceCell<ClusterEnv> = OnceCell::const_new();

/// How long `e2e/cluster up` may take (a first build of the binaries takes far longer;
/// run `e2e/build` beforehand). Override with `DSO_E2E_UP_TIMEOUT_SECS`.
fn up_timeout() -> Duration {
    let secs = std::env::var("DSO_E2E_UP_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    Duration::from_secs(secs)
}

impl Cluster {
    /// The state directory of the cluster (`$DSO_CLUSTER_DIR` or
    /// `/tmp/deepseek-operator-cluster`): kubeconfigs, certificates, logs.
    pub fn default_state_dir() -> PathBuf {
        std::env::var_os("DSO_CLUSTER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/deepseek-operator-cluster"))
    }

    /// Path of the `e2e/cluster` script.
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster")
    }

    /// Returns a client for the e2e cluster, running `e2e/cluster up` first if its
    /// API server is not reachable. The topology is `$DSO_TOPOLOGY` (default
    /// `mixed`) when the cluster has to be started.
    pub async fn ensure() -> Result<Self> {
        let state_dir = Self::default_state_dir();
        let env = ENV
            .get_or_try_init(|| async { find_or_start(&state_dir).await })
            .await?
            .clone();
        let client = client_for(&env.kubeconfig).await?;
        Ok(Self {
            client,
            env,
            state_dir,
        })
    }

    /// A client authenticated as cluster admin (system:masters).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The environment printed by `e2e/cluster up`.
    pub fn env(&self) -> &ClusterEnv {
        &self.env
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.env.kubeconfig
    }

    /// The directory with kubectl, helm and the control-plane binaries.
    pub fn bin_dir(&self) -> &Path {
        &self.env.bin_dir
    }

    /// The state directory (logs in `logs/`, certificates in `pki/`).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `$PATH` with the bin dir in front.
    pub fn path_env(&self) -> OsString {
        let mut p = OsString::from(self.bin_dir());
        if let Some(old) = std::env::var_os("PATH") {
            p.push(":");
            p.push(old);
        }
        p
    }

    /// A command for a tool of the bin dir (`kubectl`, `helm`, ...) with
    /// `KUBECONFIG` and `PATH` set for this cluster.
    pub fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin_dir().join(tool));
        c.env("KUBECONFIG", self.kubeconfig())
            .env("PATH", self.path_env());
        c
    }

    /// `kubectl` for this cluster (see [`Cluster::command`]).
    pub fn kubectl(&self) -> Command {
        self.command("kubectl")
    }

    /// `helm` for this cluster (see [`Cluster::command`]).
    pub fn helm(&self) -> Command {
        self.command("helm")
    }

    /// Creates a fresh namespace `<prefix>-<unique suffix>` (see [`TestNamespace`]).
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        TestNamespace::create(self, prefix).await
    }
}

async fn find_or_start(state_dir: &Path) -> Result<ClusterEnv> {
    let kubeconfig = state_dir.join("admin.kubeconfig");
    let bin_dir_file = state_dir.join("bin-dir");
    if kubeconfig.is_file() && bin_dir_file.is_file() {
        let bin_dir = std::fs::read_to_string(&bin_dir_file)
            .with_context(|| format!("reading {}", bin_dir_file.display()))?;
        let env = ClusterEnv {
            kubeconfig: kubeconfig.clone(),
            bin_dir: PathBuf::from(bin_dir.trim()),
        };
        if env.bin_dir.join("kubectl").is_file() && reachable(&kubeconfig).await {
            return Ok(env);
        }
    }
    run_up(state_dir).await
}

async fn reachable(kubeconfig: &Path) -> bool {
    let Ok(client) = client_for(kubeconfig).await else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await,
        Ok(Ok(_))
    )
}

async fn run_up(state_dir: &Path) -> Result<ClusterEnv> {
    let script = Cluster::script();
    eprintln!(
        "deepseek-e2e: starting the cluster with `{} up` (state dir {})",
        script.display(),
        state_dir.display()
    );
    let mut cmd = tokio::process::Command::new(&script);
    cmd.arg("up")
        .env("DSO_CLUSTER_DIR", state_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        // Progress and errors go straight to the test's stderr.
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    let out = tokio::time::timeout(up_timeout(), cmd.output())
        .await
        .map_err(|_| {
            anyhow!(
                "`{} up` did not finish within {:?}",
                script.display(),
                up_timeout()
            )
        })?
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "`{} up` failed ({}); its messages are above, component logs are in {}",
            script.display(),
            out.status,
            state_dir.join("logs").display()
        );
    }
    ClusterEnv::parse(&stdout)
}

/// Builds a client from a kubeconfig, refusing any API server that is not on
/// loopback (the e2e network rule).
pub async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", kubeconfig.display()))?;
    let host = config.cluster_url.host().unwrap_or_default();
    if !(host.starts_with("127.") || host == "localhost" || host == "[::1]") {
        bail!(
            "refusing non-loopback API server {} from {}",
            config.cluster_url,
            kubeconfig.display()
        );
    }
    Client::try_from(config).context("building the kube client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_up_output() {
        let env = ClusterEnv::parse(
            "export KUBECONFIG=/tmp/x/admin.kubeconfig\nexport PATH=/c/bin:$PATH\n",
        )
        .expect("parse");
        assert_eq!(env.kubeconfig, PathBuf::from("/tmp/x/admin.kubeconfig"));
        assert_eq!(env.bin_dir, PathBuf::from("/c/bin"));
        assert!(ClusterEnv::parse("nothing").is_err());
    }
}
