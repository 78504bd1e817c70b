//! Leader election on a coordination.k8s.io Lease, so two operator replicas can run and
//! only one writes.
//!
//! Why our own loop and not a lease library: a leader must know *locally* when it can no
//! longer prove it leads. If renewals fail or hang (API server unreachable from this
//! replica only), the standby takes the lease once it has seen no renewal for a lease
//! duration, and the old leader must have stopped writing by then. So every renewal is
//! bounded by a deadline counted from the start of the last successful renewal:
//! `renew_deadline` (2/3 of the lease duration, the rest is the safety margin). Past it,
//! the receiver turns false and `run` returns at once, ending the process with a non-zero
//! code (the Deployment restarts it as a fresh standby). Exiting stops every writer
//! (controllers, autoscaler, status, Events) at once, with no shutdown path to get wrong.
//!
//! The standby judges expiry as client-go does: by when *it* last saw the lease record
//! change, not by the holder's timestamps, so clock skew between replicas cannot shorten
//! the wait. Since the leader's deadline counts from before its renewal was sent, and the
//! standby's wait from after it saw the result, the two intervals never overlap.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

/// Field manager of the lease writes (apart from the model's managers).
const FIELD_MANAGER: &str = "deepseek-operator-lease";

pub struct LeaderOptions {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub timing: Timing,
}

/// The lease's clock: how long a lease is valid, how long the leader keeps writing
/// without a successful renewal, and how often it renews (or a standby checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Timing {
    /// Timing from `--lease-duration-seconds`; 0 is refused (a lease that is always
    /// expired elects nobody). Durations are in milliseconds, so 1 s works too.
    pub fn from_seconds(seconds: u64) -> Result<Timing, String> {
        if seconds == 0 {
            return Err("--lease-duration-seconds must be at least 1".into());
        }
        let duration = Duration::from_secs(seconds.min(3600));
        Ok(Timing {
            duration,
            renew_deadline: duration * 2 / 3,
            retry: duration / 6,
        })
    }

    /// Whether a leader whose last successful renewal *started* at `renewed` must stop.
    pub fn past_deadline(&self, renewed: Instant, now: Instant) -> bool {
        now.saturating_duration_since(renewed) >= self.renew_deadline
    }
}

/// What a standby last saw of the lease record, and when it saw it change.
#[derive(Default)]
struct Observed {
    record: Option<(String, Option<String>)>,
    at: Option<Instant>,
}

impl Observed {
    /// Records the holder and renew time; returns whether the holder's lease has expired
    /// by this replica's own clock.
    fn see(&mut self, holder: &str, renew: Option<String>, valid: Duration, now: Instant) -> bool {
        let record = Some((holder.to_string(), renew));
        if self.record != record || self.at.is_none() {
            self.record = record;
            self.at = Some(now);
        }
        holder.is_empty()
            || self
                .at
                .is_some_and(|at| now.saturating_duration_since(at) >= valid)
    }
}

/// Starts competing for the lease. The receiver turns true when this replica leads and
/// false when it can no longer prove it does (then the process must exit).
pub async fn elect(client: Client, opts: LeaderOptions) -> anyhow::Result<watch::Receiver<bool>> {
    let api: Api<Lease> = Api::namespaced(client, &opts.namespace);
    let (tx, rx) = watch::channel(false);
    tokio::spawn(campaign(api, opts, tx));
    Ok(rx)
}

async fn campaign(api: Api<Lease>, opts: LeaderOptions, tx: watch::Sender<bool>) {
    let t = opts.timing;
    let mut observed = Observed::default();
    let mut renewed: Option<Instant> = None;
    loop {
        let started = Instant::now();
        // A leader's attempt may take only until its deadline; a standby's one retry
        // period plus the renewal budget (a hung call must not stall the campaign).
        let budget = match renewed {
            Some(r) => (r + t.renew_deadline).saturating_duration_since(started),
            None => t.renew_deadline,
        };
        let attempt = tokio::time::timeout(budget, try_hold(&api, &opts, &mut observed)).await;
        match attempt {
            Ok(Ok(true)) => {
                if renewed.is_none() {
                    tracing::info!(identity = %opts.identity, "holding the leader lease");
                }
                renewed = Some(started);
                tx.send_if_modified(|v| !std::mem::replace(v, true));
            }
            Ok(Ok(false)) => {
                if renewed.is_some() {
                    tracing::error!(identity = %opts.identity, "another replica holds the lease");
                    let _ = tx.send(false);
                    return;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(identity = %opts.identity, error = %e, "lease renewal failed")
            }
            Err(_) => tracing::warn!(identity = %opts.identity, "lease renewal timed out"),
        }
        if let Some(r) = renewed {
            if t.past_deadline(r, Instant::now()) {
                tracing::error!(
                    identity = %opts.identity,
                    since = ?r.elapsed(),
                    "no successful lease renewal within the renew deadline; stopping every writer"
                );
                let _ = tx.send(false);
                return;
            }
        }
        let next = started + t.retry;
        let sleep_until = match renewed {
            // Never sleep past the deadline: the next attempt must get to run first.
            Some(r) => next.min(r + t.renew_deadline),
            None => next,
        };
        tokio::time::sleep_until(sleep_until.into()).await;
    }
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One attempt to take or renew the lease: true when this replica holds it now.
async fn try_hold(
    api: &Api<Lease>,
    opts: &LeaderOptions,
    observed: &mut Observed,
) -> Result<bool, kube::Error> {
    let seconds = opts.timing.duration.as_secs().max(1) as i32;
    let Some(lease) = api.get_opt(&opts.lease_name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(opts.lease_name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(opts.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        return match api.create(&pp, &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let valid = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(1) as u64);
    let renew = spec.renew_time.as_ref().map(|t| t.0.to_string());
    let expired = observed.see(&holder, renew, valid, Instant::now());
    if holder != opts.identity && !expired {
        return Ok(false);
    }
    if holder != opts.identity {
        spec.acquire_time = Some(now_micro());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        spec.holder_identity = Some(opts.identity.clone());
    }
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(now_micro());
    // The read resourceVersion travels with the patch: a concurrent taker gets a 409.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": lease.metadata.resource_version},
        "spec": spec,
    });
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch(&opts.lease_name, &pp, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_zero_lease_durations_do_not_panic() {
        assert!(Timing::from_seconds(0).is_err());
        let one = Timing::from_seconds(1).expect("1 s is valid");
        assert!(one.renew_deadline < one.duration && one.retry > Duration::ZERO);
        let huge = Timing::from_seconds(u64::MAX).expect("clamped");
        assert!(huge.renew_deadline < huge.duration);
    }

    #[test]
    fn the_leader_stops_a_safety_margin_before_the_lease_can_expire() {
        let t = Timing::from_seconds(15).expect("valid");
        let r = Instant::now();
        assert!(!t.past_deadline(r, r + Duration::from_secs(9)));
        assert!(t.past_deadline(r, r + Duration::from_secs(10)));
        assert!(t.renew_deadline + Duration::from_secs(5) <= t.duration);
    }

    #[test]
    fn a_standby_waits_a_full_duration_after_it_last_saw_the_record_change() {
        let mut o = Observed::default();
        let d = Duration::from_secs(6);
        let t0 = Instant::now();
        assert!(!o.see("a", Some("r1".into()), d, t0));
        assert!(!o.see("a", Some("r1".into()), d, t0 + Duration::from_secs(5)));
        // A renewal seen late restarts the wait, whatever its timestamp says.
        assert!(!o.see("a", Some("r2".into()), d, t0 + Duration::from_secs(5)));
        assert!(!o.see("a", Some("r2".into()), d, t0 + Duration::from_secs(10)));
        assert!(o.see("a", Some("r2".into()), d, t0 + Duration::from_secs(11)));
        assert!(o.see("", None, d, t0 + Duration::from_secs(11)));
    }
}
