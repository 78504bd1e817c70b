//! End to end on the real control plane: a leader cut off from the API server while its
//! standby is not must stop writing before the standby can take over (no split brain).
//!
//! The leader reaches the API server through a TCP proxy in this test, which binds its
//! upstream side to 127.0.0.77 so the API server's audit log tells the leader's requests
//! apart. The test black-holes the proxy (open connections are cut, new ones hang) until
//! the standby leads. While the proxy is still black-holed, the old leader cannot see the
//! new lease, so only its own renew deadline can stop it: it must have exited before the
//! standby first leads. Then the proxy is restored, so that a leader still running would
//! get its writes through, and the audit log is read: no write from the old leader may
//! arrive after its renew deadline (2/3 of the 6 s lease, counted from its last renewal).
//! Needs the audit log: start the cluster with `DSO_AUDIT=1 e2e/cluster up`.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::Api;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

const T: Duration = Duration::from_secs(120);
/// `--lease-duration-seconds` of the test operators (common/mod.rs).
const LEASE: Duration = Duration::from_secs(6);
/// The leader's own deadline: 2/3 of the lease (controller/leader.rs).
const RENEW_DEADLINE: Duration = Duration::from_secs(4);
/// The source address of the leader's connections as the API server sees them.
const LEADER_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);

/// A TCP proxy on 127.0.0.1 that the test can black-hole.
struct Proxy {
    port: u16,
    blackhole: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Result<Proxy> {
        ensure!(
            upstream.ip().is_loopback(),
            "refusing to proxy to {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (blackhole, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    if *rx.borrow_and_update() {
                        // Held, never answered: the client's request hangs until the
                        // black-hole ends, then the connection closes unanswered.
                        let _ = rx.wait_for(|b| !*b).await;
                        return;
                    }
                    let Ok(sock) = TcpSocket::new_v4() else {
                        return;
                    };
                    if sock.bind(SocketAddr::new(LEADER_SOURCE.into(), 0)).is_err() {
                        return;
                    }
                    let Ok(mut up) = sock.connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        // Black-holed: cut what is open, requests in flight included.
                        _ = rx.wait_for(|b| *b) => {}
                    }
                });
            }
        });
        Ok(Proxy {
            port,
            blackhole,
            task,
        })
    }

    fn set_blackhole(&self, on: bool) {
        let _ = self.blackhole.send(on);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes the admin kubeconfig with its server replaced by the proxy at `port` to `out`;
/// returns the API server's address.
fn kubeconfig_via(cluster: &Cluster, port: u16, out: &Path) -> Result<SocketAddr> {
    let text = std::fs::read_to_string(cluster.kubeconfig())?;
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let mut upstream = None;
    for c in doc["clusters"]
        .as_sequence_mut()
        .ok_or_else(|| anyhow!("kubeconfig without clusters"))?
    {
        let server = c["cluster"]["server"]
            .as_str()
            .ok_or_else(|| anyhow!("cluster without a server"))?;
        let hostport = server
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("unexpected server {server}"))?;
        upstream = Some(hostport.parse::<SocketAddr>()?);
        c["cluster"]["server"] = format!("https://127.0.0.1:{port}").into();
    }
    std::fs::write(out, serde_yaml::to_string(&doc)?)?;
    upstream.ok_or_else(|| anyhow!("kubeconfig names no server"))
}

/// One write request of the audit log.
#[derive(Debug)]
struct Write {
    at: Timestamp,
    verb: String,
    resource: String,
    code: i64,
}

/// Write requests that came from `source` at or after `since`.
fn writes_from(audit: &Path, source: Ipv4Addr, since: Timestamp) -> Result<Vec<Write>> {
    let text = std::fs::read_to_string(audit)?;
    let source = source.to_string();
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let from_source = ev["sourceIPs"]
            .as_array()
            .is_some_and(|ips| ips.iter().any(|ip| ip.as_str() == Some(&source)));
        let verb = ev["verb"].as_str().unwrap_or_default();
        let write = matches!(
            verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        );
        let Some(at) = ev["requestReceivedTimestamp"]
            .as_str()
            .and_then(|s| s.parse::<Timestamp>().ok())
        else {
            continue;
        };
        if from_source && write && at >= since {
            out.push(Write {
                at,
                verb: verb.to_string(),
                resource: ev["objectRef"]["resource"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                code: ev["responseStatus"]["code"].as_i64().unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_writing_before_the_standby_leads() -> Result<()>
{
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    let audit: PathBuf = cluster.state_dir().join("logs").join("audit.log");
    ensure!(
        audit.exists(),
        "this test reads the API server's audit log, which is off: restart the cluster with \
         `DSO_AUDIT=1 e2e/cluster up` (after `e2e/cluster down`)"
    );
    install_crd(&cluster).await?;
    let ns = cluster.namespace("split").await?;
    let since = Timestamp::now();

    let kubeconfig = cluster.state_dir().join("split-brain.kubeconfig");
    // First pass only reads the API server's address (port 0 is rewritten below).
    let upstream = kubeconfig_via(&cluster, 0, &kubeconfig)?;
    let proxy = Proxy::start(upstream).await?;
    kubeconfig_via(&cluster, proxy.port, &kubeconfig)?;

    let mut a = Operator::start(
        &cluster,
        OperatorOptions {
            leader_election: Some((ns.name(), "replica-a")),
            kubeconfig: Some(&kubeconfig),
            ..Default::default()
        },
    )
    .await?;
    wait_for(T, "replica-a (through the proxy) leads", || async {
        Ok((a.counter("deepseek_operator_leader").await? == 1.0).then_some(()))
    })
    .await
    .with_context(|| a.log_tail())?;
    let b = Operator::start(
        &cluster,
        OperatorOptions {
            leader_election: Some((ns.name(), "replica-b")),
            ..Default::default()
        },
    )
    .await?;
    ensure!(b.counter("deepseek_operator_leader").await? == 0.0);

    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let mut m = example("r1-distill-qwen-1.5b-l4.yaml")?;
    m.metadata.name = Some("split".into());
    apply_model(&models, &m).await?;
    wait_groups(&pods, "split", 1, 1, T)
        .await
        .with_context(|| a.log_tail())?;

    // Cut only once the leader has renewed through the proxy at least once.
    let leases: Api<Lease> = ns.api();
    wait_for(T, "replica-a renewed its lease", || async {
        let spec = leases
            .get("deepseek-operator")
            .await?
            .spec
            .unwrap_or_default();
        Ok((spec.holder_identity.as_deref() == Some("replica-a")
            && spec.renew_time.map(|t| t.0) > spec.acquire_time.map(|t| t.0))
        .then_some(()))
    })
    .await?;
    proxy.set_blackhole(true);
    let cut = Instant::now();
    // While the old leader is still cut off it cannot learn of the new lease from the API
    // server: only its own renew deadline can stop it. So it must have stopped (exited)
    // before the standby first leads, observed here while the black-hole holds.
    let mut old_stopped: Option<Duration> = None;
    let standby_led = loop {
        if old_stopped.is_none() && a.try_exit_status().is_some() {
            old_stopped = Some(cut.elapsed());
        }
        if b.counter("deepseek_operator_leader").await? == 1.0 {
            break cut.elapsed();
        }
        ensure!(
            cut.elapsed() < T,
            "the standby did not lead within {T:?}\n{}",
            b.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "old leader stopped {old_stopped:?} after the cut, standby led {standby_led:?} after it"
    );
    let stopped = old_stopped.ok_or_else(|| {
        anyhow!(
            "split brain: the standby leads while the old leader, cut off, still runs\n{}",
            a.log_tail()
        )
    })?;
    ensure!(
        stopped <= RENEW_DEADLINE + Duration::from_secs(1),
        "the old leader stopped {stopped:?} after the cut, later than its renew deadline \
         ({RENEW_DEADLINE:?}) plus a second"
    );
    // The old leader's writes would get through again from here on.
    proxy.set_blackhole(false);
    models
        .patch_scale(
            "split",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
        )
        .await?;
    wait_groups(&pods, "split", 2, 1, T)
        .await
        .with_context(|| b.log_tail())?;
    let status = wait_for(Duration::from_secs(30), "the old leader exited", || {
        let status = a.try_exit_status();
        async move { Ok(status) }
    })
    .await
    .with_context(|| a.log_tail())?;
    ensure!(
        !status.success(),
        "the old leader must exit non-zero so it is restarted: {status}"
    );

    let writes = writes_from(&audit, LEADER_SOURCE, since)?;
    let last_renewal = writes
        .iter()
        .filter(|w| w.resource == "leases" && (200..300).contains(&w.code))
        .map(|w| w.at)
        .max()
        .ok_or_else(|| anyhow!("no lease renewal by the old leader in the audit log"))?;
    let deadline =
        last_renewal.checked_add(k8s_openapi::jiff::SignedDuration::try_from(RENEW_DEADLINE)?)?;
    let late: Vec<&Write> = writes.iter().filter(|w| w.at > deadline).collect();
    let verbs: std::collections::BTreeSet<String> = writes
        .iter()
        .map(|w| format!("{} {}", w.verb, w.resource))
        .collect();
    eprintln!(
        "old leader: {} write(s) in the audit log ({verbs:?}), last lease renewal {last_renewal}, deadline {deadline}, lease {LEASE:?}",
        writes.len()
    );
    ensure!(
        late.is_empty(),
        "the old leader wrote after its deadline {deadline}: {late:?}\n{}",
        a.log_tail()
    );
    ns.finish().await
}
