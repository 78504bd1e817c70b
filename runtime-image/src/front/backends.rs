//! The front's backends: one per replica group, the URL of its leader's engine and the
//! URL that says whether the whole group serves. A background loop probes them (and
//! re-reads the backends file), and `pick` chooses one for a request: least outstanding
//! requests (the front's own count per backend, exact and current, unlike a scraped
//! queue reading), or round robin for comparison.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

/// Where a group is reached and how its readiness is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Base URL requests are forwarded to, e.g. `http://10.0.0.5:8000`.
    pub url: String,
    /// GET answered 2xx while the group serves (default: `<url>/health`; the leader
    /// launcher's `/readyz` covers every rank).
    pub ready_url: String,
}

impl FromStr for BackendSpec {
    type Err = String;

    /// `URL` or `URL,READY_URL`, both `http://`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.trim().splitn(2, ',');
        let url = parts
            .next()
            .unwrap_or_default()
            .trim()
            .trim_end_matches('/');
        let ready_url = match parts.next() {
            Some(r) => r.trim().to_string(),
            None => format!("{url}/health"),
        };
        for u in [url, ready_url.as_str()] {
            let ok = u
                .strip_prefix("http://")
                .is_some_and(|rest| !rest.is_empty());
            if !ok {
                return Err(format!("backend {s:?}: {u:?} is not an http:// URL"));
            }
        }
        Ok(BackendSpec {
            url: url.to_string(),
            ready_url,
        })
    }
}

/// Reads a backends file: one `URL[,READY_URL]` per line, `#` comments and blank lines
/// skipped.
pub fn parse_list(text: &str) -> Result<Vec<BackendSpec>, String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(BackendSpec::from_str)
        .collect()
}

/// How a backend is chosen among the ready ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Balance {
    LeastOutstanding,
    RoundRobin,
}

/// Index of the backend to use: `outstanding[i]` is `None` for a backend not ready.
/// Candidates are visited from `start` on, so ties (and round robin) rotate.
pub fn choose(outstanding: &[Option<u64>], start: usize, balance: Balance) -> Option<usize> {
    let n = outstanding.len();
    let order = (0..n).map(|k| (start + k) % n);
    match balance {
        Balance::RoundRobin => order.into_iter().find(|&i| outstanding[i].is_some()),
        Balance::LeastOutstanding => order
            .filter_map(|i| outstanding[i].map(|o| (o, i)))
            .min_by_key(|&(o, _)| o)
            .map(|(_, i)| i),
    }
}

pub struct Backend {
    pub spec: BackendSpec,
    ready: AtomicBool,
    outstanding: AtomicU64,
}

/// A request forwarded to a backend; dropping it (the answer finished, or the client
/// left) counts it as no longer outstanding.
pub struct Lease {
    pub backend: Arc<Backend>,
    set: Arc<Backends>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.set.metrics_outstanding(&self.backend);
    }
}

/// The backends and their state, shared by requests and the probe loop.
pub struct Backends {
    list: RwLock<Vec<Arc<Backend>>>,
    /// Bumped whenever a backend turns ready or not: held requests wait on it.
    changed: watch::Sender<u64>,
    next: AtomicUsize,
    balance: Balance,
    metrics: super::metrics::Metrics,
}

/// One backend as `/front/status` shows it.
#[derive(serde::Serialize)]
pub struct BackendView {
    pub url: String,
    pub ready: bool,
    pub outstanding: u64,
}

impl Backends {
    pub fn new(balance: Balance, metrics: super::metrics::Metrics) -> Arc<Self> {
        Arc::new(Backends {
            list: RwLock::default(),
            changed: watch::channel(0).0,
            next: AtomicUsize::new(0),
            balance,
            metrics,
        })
    }

    fn read(&self) -> Vec<Arc<Backend>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the set, keeping the state of backends that stay. New ones start not
    /// ready until probed.
    pub fn set(&self, specs: Vec<BackendSpec>) {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if list.iter().map(|b| &b.spec).eq(specs.iter()) {
            return;
        }
        let old = std::mem::take(&mut *list);
        for s in specs {
            let kept = old.iter().find(|b| b.spec == s).cloned();
            list.push(kept.unwrap_or_else(|| {
                Arc::new(Backend {
                    spec: s,
                    ready: AtomicBool::new(false),
                    outstanding: AtomicU64::new(0),
                })
            }));
        }
        for gone in old
            .iter()
            .filter(|b| !list.iter().any(|k| Arc::ptr_eq(b, k)))
        {
            self.metrics.forget_backend(&gone.spec.url);
        }
        drop(list);
        self.publish();
    }

    /// Records a probe's (or a refused connection's) verdict on `backend`.
    pub fn mark(&self, backend: &Backend, ready: bool) {
        if backend.ready.swap(ready, Ordering::SeqCst) != ready {
            tracing::info!(backend = %backend.spec.url, ready, "front: backend readiness changed");
            self.publish();
        }
    }

    fn publish(&self) {
        let ready = self
            .read()
            .iter()
            .filter(|b| b.ready.load(Ordering::SeqCst))
            .count();
        self.metrics.ready_backends.set(ready as i64);
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn len(&self) -> usize {
        self.list.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes on every readiness change after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A ready backend for one request (counted outstanding until the lease drops).
    pub fn pick(self: &Arc<Self>) -> Option<Lease> {
        let list = self.read();
        let view: Vec<Option<u64>> = list
            .iter()
            .map(|b| {
                b.ready
                    .load(Ordering::SeqCst)
                    .then(|| b.outstanding.load(Ordering::SeqCst))
            })
            .collect();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let i = choose(&view, start % list.len().max(1), self.balance)?;
        let backend = list[i].clone();
        backend.outstanding.fetch_add(1, Ordering::SeqCst);
        self.metrics_outstanding(&backend);
        Some(Lease {
            backend,
            set: self.clone(),
        })
    }

    fn metrics_outstanding(&self, b: &Backend) {
        self.metrics
            .outstanding(&b.spec.url)
            .set(b.outstanding.load(Ordering::SeqCst) as i64);
    }

    pub fn view(&self) -> Vec<BackendView> {
        self.read()
            .iter()
            .map(|b| BackendView {
                url: b.spec.url.clone(),
                ready: b.ready.load(Ordering::SeqCst),
                outstanding: b.outstanding.load(Ordering::SeqCst),
            })
            .collect()
    }
}

/// Where the backends come from.
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// Given on the command line; always part of the set.
    pub fixed: Vec<BackendSpec>,
    /// Re-read at every probe round; a missing or unreadable file counts as no backend
    /// from it.
    pub file: Option<PathBuf>,
}

impl Source {
    fn load(&self, pushed: &[BackendSpec]) -> Vec<BackendSpec> {
        let mut specs = self.fixed.clone();
        if let Some(path) = &self.file {
            match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| parse_list(&t))
            {
                Ok(more) => specs.extend(more),
                Err(e) => tracing::debug!("front: backends file {}: {e}", path.display()),
            }
        }
        specs.extend(pushed.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        specs.retain(|s| seen.insert(s.url.clone()));
        specs
    }
}

/// The backends the operator pushed last (`POST /front/backends`), and a bell that starts
/// a probe round at once, so a new group is tried without waiting out the interval.
#[derive(Default)]
pub struct Pushed {
    list: RwLock<Vec<BackendSpec>>,
    bell: tokio::sync::Notify,
}

impl Pushed {
    /// Replaces the pushed list; a change rings the bell.
    pub fn replace(&self, specs: Vec<BackendSpec>) {
        let mut l = self.list.write().unwrap_or_else(|e| e.into_inner());
        if *l != specs {
            *l = specs;
            self.bell.notify_one();
        }
    }

    fn get(&self) -> Vec<BackendSpec> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Re-reads the sources and probes every backend each `every` (or at once when the
/// pushed list changes), forever.
pub async fn probe_loop(set: Arc<Backends>, source: Source, pushed: Arc<Pushed>, every: Duration) {
    let client = crate::server::local_client(
        every.clamp(Duration::from_millis(200), Duration::from_secs(2)),
    );
    loop {
        set.set(source.load(&pushed.get()));
        let probes = set.read().into_iter().map(|b| {
            let (client, set) = (client.clone(), set.clone());
            async move {
                let ok = match client.get(&b.spec.ready_url).send().await {
                    Ok(r) => r.status().is_success(),
                    Err(_) => false,
                };
                set.mark(&b, ok);
            }
        });
        futures::future::join_all(probes).await;
        let _ = tokio::time::timeout(every, pushed.bell.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_outstanding_takes_the_idlest_ready_backend() {
        use Balance::*;
        type Case<'a> = (&'a [Option<u64>], usize, Balance, Option<usize>);
        let cases: &[Case] = &[
            (&[], 0, LeastOutstanding, None),
            (&[None, None], 1, LeastOutstanding, None),
            (&[Some(3), Some(1), Some(2)], 0, LeastOutstanding, Some(1)),
            // Not ready is skipped even when idle.
            (&[Some(3), None, Some(2)], 0, LeastOutstanding, Some(2)),
            // Ties rotate with the start.
            (&[Some(1), Some(1), Some(1)], 0, LeastOutstanding, Some(0)),
            (&[Some(1), Some(1), Some(1)], 2, LeastOutstanding, Some(2)),
            // Round robin ignores load.
            (&[Some(9), Some(0)], 0, RoundRobin, Some(0)),
            (&[None, Some(0), Some(5)], 2, RoundRobin, Some(2)),
            (&[None, Some(0), None], 2, RoundRobin, Some(1)),
        ];
        for (view, start, balance, want) in cases {
            assert_eq!(
                choose(view, *start, *balance),
                *want,
                "{view:?} from {start} {balance:?}"
            );
        }
    }

    #[test]
    fn backend_lines_parse_or_say_why() {
        let specs = parse_list(
            "# groups\nhttp://127.0.0.1:8000/\n\nhttp://127.0.0.2:8000,http://127.0.0.2:8080/readyz # leader\n",
        )
        .expect("valid list");
        assert_eq!(
            specs,
            vec![
                BackendSpec {
                    url: "http://127.0.0.1:8000".into(),
                    ready_url: "http://127.0.0.1:8000/health".into()
                },
                BackendSpec {
                    url: "http://127.0.0.2:8000".into(),
                    ready_url: "http://127.0.0.2:8080/readyz".into()
                },
            ]
        );
        let err = parse_list("127.0.0.1:8000").expect_err("no scheme");
        assert!(err.contains("not an http:// URL"), "{err}");
        assert!(parse_list("https://x").is_err());
    }
}
