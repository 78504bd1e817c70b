//! The built-in autoscaler: a loop the leader runs next to the controller. For every model
//! with `autoscaling.provider: builtin`, every `intervalSeconds` it takes the model's leader
//! pods from the pod cache, reads their normalised queue metrics ([`scrape`]), decides ([`decide`]), checks
//! capacity before adding groups ([`capacity`]), changes `spec.replicas` through the scale
//! subresource with the read model's resourceVersion as a precondition (so a concurrent
//! `kubectl scale` is never overwritten: a 409 means decide again next interval), records
//! an Event per scale, and writes its own status fields with its own field manager:
//! `queueDepth`, `lastScaleTime`, `lastScaleReason` and the `MetricsAvailable` and
//! `CapacityLimited` conditions (not before a new model's first reading, while its groups
//! start). The reconcile never touches those, and it never touches the reconcile's.

pub mod decide;
pub mod front;
pub mod room;
pub mod scrape;
pub mod timeline;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::api::{AutoscalingProvider, DeepSeekModel, ScaleMetric};
use crate::controller::apply::event;
use crate::controller::context::Context;
use crate::controller::metrics::ModelLabels;
use crate::decide::conditions as cond;
use crate::desired::labels;
use decide::{decide, limit_by_capacity, Direction, History, Observation, Params};

/// Field manager of everything the autoscaler writes.
pub const FIELD_MANAGER: &str = "deepseek-operator-autoscaler";
/// Condition: every leader's metrics were read at the last interval.
pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
/// Condition: a scale-up was limited (or needs new nodes) for lack of free accelerators.
pub const CAPACITY_LIMITED: &str = "CapacityLimited";
/// Annotation with extra demand (requests waiting outside the engines, e.g. counted by a
/// gateway while the model is at zero): added to the leaders' queue. The only wake-up
/// signal at zero replicas besides `kubectl scale`.
pub const DEMAND_ANNOTATION: &str = "autoscaling.deepseek-operator.dev/demand";

/// How often the loop looks for models that are due.
const TICK: Duration = Duration::from_millis(500);
/// Steps running at once: enough to keep up with many models, few enough that a burst
/// cannot flood the API server or the operator's sockets.
pub const STEP_CONCURRENCY: usize = 16;
/// The longest one step may take (scrape, capacity, scale, status); a step that hangs is
/// abandoned and the model is due again at its next interval.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// `status.queueDepth` alone is written at most this often; the live figure is in the
/// operator's metric `deepseek_operator_queue_depth`.
pub const QUEUE_STATUS_PERIOD: Duration = Duration::from_secs(30);

#[derive(Default)]
struct ModelState {
    history: History,
    next_due: Duration,
    /// When `queueDepth` was last written to status by this leader.
    queue_written: Option<Duration>,
    /// A wake-up from zero by held requests whose timeline is not complete yet.
    wake: Option<timeline::Wake>,
    /// The model's front pods, as last listed.
    fronts: front::FrontPods,
}

/// A wake-up's timeline is given up (not recorded) after this long.
const WAKE_RECORD_LIMIT: Duration = Duration::from_secs(3600);

/// Runs until the task is aborted (the leader stops or loses its lease). Models come from
/// the controllers' reflector stores (no LIST per tick); steps run on their own tasks,
/// at most [`STEP_CONCURRENCY`] at once and each bounded by [`STEP_TIMEOUT`], so one
/// slow leader or API call delays only its own model.
pub async fn run(ctx: Arc<Context>, stores: Vec<Store<DeepSeekModel>>) {
    // Polled again every tick rather than awaited once: a store's readiness wakes only
    // one waiter, and the controller waits on the same store.
    for s in &stores {
        loop {
            match tokio::time::timeout(TICK, s.wait_until_ready()).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => {
                    tracing::warn!("autoscaler: the model store closed before it was ready");
                    return;
                }
                Err(_) => continue,
            }
        }
    }
    let start = Instant::now();
    let http = scrape::client();
    let permits = Arc::new(Semaphore::new(STEP_CONCURRENCY));
    let mut states: HashMap<String, ModelState> = HashMap::new();
    let mut running: JoinSet<(String, ModelState)> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!("autoscaler started");
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(done) = running.join_next_with_id() => {
                match done {
                    Ok((id, (uid, st))) => {
                        in_flight.remove(&id);
                        states.insert(uid, st);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "autoscaler step task failed");
                        in_flight.remove(&e.id());
                    }
                }
                continue;
            }
        }
        let listed_at = Instant::now();
        let models: Vec<Arc<DeepSeekModel>> = stores.iter().flat_map(|s| s.state()).collect();
        // Series of models that are gone are dropped here: the controller is not called
        // for a deleted model.
        let live: HashSet<ModelLabels> = models
            .iter()
            .filter_map(|m| {
                Some(ModelLabels {
                    namespace: m.namespace()?,
                    model: m.name_any(),
                })
            })
            .collect();
        ctx.metrics.forget_models(&live, listed_at);
        let now = start.elapsed();
        let builtin: Vec<Arc<DeepSeekModel>> = models
            .into_iter()
            .filter(|m| {
                m.metadata.deletion_timestamp.is_none()
                    && m.spec
                        .autoscaling
                        .as_ref()
                        .is_some_and(|a| a.provider == AutoscalingProvider::Builtin)
                    // Invalid bounds are reported by the reconcile; nothing to scale.
                    && crate::spec_ranges::check(&m.spec).is_ok()
            })
            .collect();
        let busy: HashSet<&String> = in_flight.values().collect();
        // A set, not a scan per state: at 1,000 models the scan cloned half a million uids
        // every tick (heaptrack, issue 12).
        let live: HashSet<&str> = builtin
            .iter()
            .filter_map(|m| m.metadata.uid.as_deref())
            .collect();
        states.retain(|uid, _| live.contains(uid.as_str()));
        let mut due = Vec::new();
        for m in builtin {
            let Some(uid) = m.uid() else { continue };
            if busy.contains(&uid) {
                continue;
            }
            let st = states.remove(&uid).unwrap_or_default();
            if st.next_due <= now {
                due.push((uid, m, st));
            } else {
                states.insert(uid, st);
            }
        }
        for (uid, m, mut st) in due {
            let (ctx, http, permits) = (ctx.clone(), http.clone(), permits.clone());
            let key = uid.clone();
            let handle = running.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return (uid, st);
                };
                match tokio::time::timeout(STEP_TIMEOUT, step(&ctx, &http, &m, &mut st, start)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(model = %m.name_any(), error = %e, "autoscaler step failed")
                    }
                    Err(_) => {
                        tracing::warn!(model = %m.name_any(), timeout = ?STEP_TIMEOUT, "autoscaler step timed out")
                    }
                }
                (uid, st)
            });
            in_flight.insert(handle.id(), key);
        }
    }
}

/// The scale subresource patch: the new replica count, with the resourceVersion of the
/// model the decision was made from as a precondition. If anyone (`kubectl scale`, an
/// apply of the manifest) changed the model since, the API server answers 409 Conflict
/// instead of silently overwriting their count.
pub fn scale_patch(target: u32, resource_version: &str) -> serde_json::Value {
    json!({
        "metadata": {"resourceVersion": resource_version},
        "spec": {"replicas": target},
    })
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// One interval of one model.
async fn step(
    ctx: &Context,
    http: &reqwest::Client,
    model: &DeepSeekModel,
    st: &mut ModelState,
    start: Instant,
) -> anyhow::Result<()> {
    let Some(a) = model.spec.autoscaling.as_ref() else {
        return Ok(());
    };
    let p = Params::from_spec(a);
    let at = start.elapsed();
    st.next_due = at + p.interval;
    let ns = model
        .namespace()
        .ok_or_else(|| anyhow::anyhow!("model without a namespace"))?;
    let name = model.name_any();
    let current = model.spec.replicas.unwrap_or(a.min_replicas).max(0) as u32;

    // From the pod cache: a leader's IP or phase at most a watch event old.
    let pods = ctx.pods.model_pods(&ns, &name);
    let leaders: Vec<&Pod> = pods
        .iter()
        .map(Arc::as_ref)
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.labels().get(labels::ROLE).map(String::as_str) == Some("leader"))
        .collect();
    let demand = model
        .annotations()
        .get(DEMAND_ANNOTATION)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(0.0);
    let limits = scrape::ReadLimits {
        timeout: p
            .interval
            .clamp(Duration::from_millis(500), Duration::from_secs(2)),
        // The launcher refreshes about every second: never call a reading stale sooner.
        max_age: p.staleness().max(Duration::from_secs(3)),
        pending_grace: scrape::pending_grace(p.stabilization),
    };
    // A front (holdRequests) gets the leaders and tells what it holds: held requests are
    // demand, and a model at zero or holding requests is stepped again soon.
    let mut fronts = None;
    let held = match front::front_of(model) {
        None => 0,
        Some(of) => {
            let backends = if of.name == name {
                leaders
                    .iter()
                    .filter_map(|p| scrape::pod_ip(p))
                    .map(front::backend_line)
                    .collect()
            } else {
                router_backends(ctx, &ns, &of.name, &leaders)
            };
            match front::sync(
                &ctx.client,
                http,
                &ns,
                &of.name,
                &of.uid,
                backends,
                &mut st.fronts,
            )
            .await
            {
                Ok(f) => {
                    if current == 0 || f.held > 0 || st.wake.is_some() {
                        st.next_due = at + front::FAST_STEP.min(p.interval);
                    }
                    let held = f.held;
                    fronts = Some(f);
                    held
                }
                Err(e) => {
                    tracing::warn!(model = %name, namespace = %ns, error = %e, "autoscaler: reading the front failed");
                    0
                }
            }
        }
    };
    let mut demand = demand + held as f64;
    // Decode follows prefill: while the prefill role has pods, decode keeps at least one
    // group (a prompt prefilled has nowhere to go without one), and at zero it is stepped
    // as often as prefill, so it wakes in the step after prefill does.
    if crate::desired::disaggregated::role_of(&model.spec) == Some(deepseek_engine::PdRole::Decode)
    {
        let parent = crate::desired::disaggregated::served_name(&name, &model.spec);
        let prefill = crate::desired::disaggregated::role_model_name(
            &parent,
            deepseek_engine::PdRole::Prefill,
        );
        if ctx
            .pods
            .model_pods(&ns, &prefill)
            .iter()
            .any(|p| p.metadata.deletion_timestamp.is_none())
        {
            demand = demand.max(1.0);
        }
        if current == 0 {
            st.next_due = at + front::FAST_STEP.min(p.interval);
        }
    }
    let read = scrape::scrape(http, &leaders, limits).await;
    let obs = observe(
        at,
        current,
        leaders.len(),
        &read,
        model.spec.scale_metric(),
        demand,
    );
    let d = decide(&p, &mut st.history, start.elapsed(), current, obs);

    let mut target = d.replicas;
    let mut capacity_msg = None;
    if d.direction == Direction::Up && d.replicas > current.max(p.min) {
        let room = room::room(ctx, model, &pods, current).await;
        (target, capacity_msg) =
            limit_by_capacity(current, d.replicas, room, a.allow_node_provisioning);
    }

    let previous = model.status.clone().unwrap_or_default();
    let mut last_time = previous.last_scale_time.clone();
    let mut last_reason = previous.last_scale_reason.clone();
    if target != current {
        let api = Api::<DeepSeekModel>::namespaced(ctx.client.clone(), &ns);
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let rv = model
            .resource_version()
            .ok_or_else(|| anyhow::anyhow!("model without a resourceVersion"))?;
        ctx.metrics.write("patch", "deepseekmodels/scale");
        match api
            .patch_scale(&name, &pp, &Patch::Merge(scale_patch(target, &rv)))
            .await
        {
            Ok(_) => {}
            // The model changed since it was read: decide again from a fresh read at the
            // next interval rather than overwrite someone else's count.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::info!(model = %name, namespace = %ns, to = target, "autoscaler: the model changed since it was read; deciding again next interval");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let (verb, reason) = if target > current {
            ("ScaledUp", d.reason.clone())
        } else {
            ("ScaledDown", d.reason.clone())
        };
        let note = format!("{current} -> {target} replicas: {reason}");
        tracing::info!(model = %name, namespace = %ns, from = current, to = target, %reason, "autoscaler: scaled");
        event(ctx, model, false, verb, note).await;
        last_time = Some(now_rfc3339());
        last_reason = Some(reason);
        if current == 0 && held > 0 {
            let now = k8s_openapi::jiff::Timestamp::now();
            let seen = fronts
                .as_ref()
                .and_then(|f| f.held_since)
                .and_then(timeline::from_epoch)
                .unwrap_or(now);
            st.wake = Some(timeline::Wake::new(seen, now));
        }
    }
    // A wake-up's phases, from the pod cache and the fronts, until its first token.
    let mut from_zero = previous.last_scale_from_zero.clone();
    if let Some(w) = st.wake.as_mut() {
        let now = k8s_openapi::jiff::Timestamp::now();
        let node_created = |n: &str| ctx.nodes.get(&ObjectRef::new(n)).and_then(|f| f.created());
        w.observe_pods(&pods, now, &node_created);
        let at = |t: Option<f64>| t.and_then(timeline::from_epoch);
        w.observe_answer(
            at(fronts.as_ref().and_then(|f| f.first_answer)),
            at(fronts.as_ref().and_then(|f| f.group_ready)),
        );
        if let Some(done) = w.done() {
            event(ctx, model, false, "ScaledFromZero", w.note()).await;
            from_zero = Some(done);
            st.wake = None;
        } else if now.duration_since(w.decided).unsigned_abs() > WAKE_RECORD_LIMIT {
            tracing::info!(model = %name, namespace = %ns, "autoscaler: wake-up timeline incomplete after an hour: {}", w.note());
            st.wake = None;
        }
    }

    let queue = obs.load.filter(|_| obs.complete).map(|l| l.round() as u32);
    if let Some(q) = obs.load {
        ctx.metrics
            .queue_depth
            .get_or_create(&ModelLabels {
                namespace: ns.clone(),
                model: name.clone(),
            })
            .set(q);
    }
    let mut conditions: Vec<Condition> = Vec::new();
    let generation = model.metadata.generation;
    if d.metrics_missing {
        let msg = match read.failed.first() {
            Some((pod, why)) => format!(
                "{} of {} leader(s) unreadable (e.g. {pod}: {}); holding: no scale-down without complete metrics",
                read.failed.len(),
                leaders.len(),
                first_words(why)
            ),
            None => "metrics missing or stale; holding".into(),
        };
        cond::set(
            &previous.conditions,
            &mut conditions,
            METRICS_AVAILABLE,
            false,
            "MetricsUnavailable",
            msg,
            generation,
        );
    } else {
        cond::set(
            &previous.conditions,
            &mut conditions,
            METRICS_AVAILABLE,
            true,
            "MetricsRead",
            format!("queue metrics read from {} leader(s)", leaders.len()),
            generation,
        );
    }
    let carry_capacity = d.direction != Direction::Up
        && cond::get(&previous.conditions, CAPACITY_LIMITED).is_some_and(|c| c.status == "True")
        && d.recommendation > current;
    let capacity_msg_was_none = capacity_msg.is_none();
    match capacity_msg {
        Some(msg) => cond::set(
            &previous.conditions,
            &mut conditions,
            CAPACITY_LIMITED,
            true,
            "NoFreeAccelerators",
            msg,
            generation,
        ),
        None if carry_capacity => {
            if let Some(c) = cond::get(&previous.conditions, CAPACITY_LIMITED) {
                conditions.push(c.clone());
            }
        }
        None => cond::set(
            &previous.conditions,
            &mut conditions,
            CAPACITY_LIMITED,
            false,
            "NotLimited",
            "no scale-up is held back by capacity",
            generation,
        ),
    }
    // A new queue figure alone is written at most every QUEUE_STATUS_PERIOD; with any other
    // change it goes along.
    let others_changed = previous.last_scale_from_zero != from_zero
        || previous.last_scale_time != last_time
        || previous.last_scale_reason != last_reason
        || !conditions
            .iter()
            .all(|c| cond::get(&previous.conditions, &c.type_) == Some(c));
    let queue_due = st
        .queue_written
        .is_none_or(|t| at.saturating_sub(t) >= QUEUE_STATUS_PERIOD);
    let queue_depth = if others_changed || queue_due {
        queue.or(previous.queue_depth)
    } else {
        previous.queue_depth
    };
    let unchanged_on_server = previous.last_scale_from_zero == from_zero
        && previous.queue_depth == queue_depth
        && previous.last_scale_time == last_time
        && previous.last_scale_reason == last_reason
        && conditions
            .iter()
            .all(|c| cond::get(&previous.conditions, &c.type_) == Some(c));
    // A new model's first steps run while its groups start: nothing can be read yet, and
    // "metrics missing" says nothing the controller's own conditions do not. Until a
    // leader is Ready, a model never read before gets no status from the autoscaler unless
    // it scaled or was held back by capacity: at 1,000 new models those writes were one
    // in six of the operator's (issue 12). Once a leader is Ready, an unreadable one is
    // reported as before.
    let defer = status_deferred(&Deferral {
        metrics_missing: d.metrics_missing,
        ever_reported: cond::get(&previous.conditions, METRICS_AVAILABLE).is_some(),
        scaled: target != current,
        capacity_noted: !capacity_msg_was_none,
        leader_ready: leaders.iter().any(|p| crate::decide::groups::is_ready(p)),
    });
    if !unchanged_on_server && !defer {
        let mut status = serde_json::Map::new();
        status.insert("conditions".into(), json!(conditions));
        if let Some(q) = queue_depth {
            status.insert("queueDepth".into(), json!(q));
        }
        if let Some(t) = last_time {
            status.insert("lastScaleTime".into(), json!(t));
        }
        if let Some(r) = last_reason {
            status.insert("lastScaleReason".into(), json!(r));
        }
        // Always sent once known: a server-side apply without it would remove it.
        if let Some(z) = &from_zero {
            status.insert("lastScaleFromZero".into(), json!(z));
        }
        write_status(ctx, model, &ns, &serde_json::Value::Object(status)).await?;
        if queue_depth != previous.queue_depth {
            st.queue_written = Some(at);
        }
    }
    Ok(())
}

/// What a disaggregated model's front forwards to: its router's pods, once both roles have
/// a Ready leader (before, nothing: the front holds). `prefill` are the prefill role's
/// leaders; the decode role's come from the pod cache.
fn router_backends(ctx: &Context, ns: &str, parent: &str, prefill: &[&Pod]) -> Vec<String> {
    use crate::decide::groups::is_ready;
    use crate::desired::disaggregated::{role_model_name, COMPONENT, ROUTER_COMPONENT};
    let decode = ctx.pods.model_pods(
        ns,
        &role_model_name(parent, deepseek_engine::PdRole::Decode),
    );
    let ready_leader = |p: &Pod| {
        p.metadata.deletion_timestamp.is_none()
            && p.labels().get(labels::ROLE).map(String::as_str) == Some("leader")
            && is_ready(p)
    };
    if !prefill.iter().any(|p| ready_leader(p)) || !decode.iter().any(|p| ready_leader(p)) {
        return Vec::new();
    }
    ctx.pods
        .model_pods(ns, parent)
        .iter()
        .map(Arc::as_ref)
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.labels().get(COMPONENT).map(String::as_str) == Some(ROUTER_COMPONENT))
        .filter_map(scrape::pod_ip)
        .map(front::router_line)
        .collect()
}

/// What decides whether a step's status write waits for the model's first reading.
struct Deferral {
    metrics_missing: bool,
    /// The model has a MetricsAvailable condition already.
    ever_reported: bool,
    /// The step changed the replicas.
    scaled: bool,
    /// Capacity held the step back.
    capacity_noted: bool,
    leader_ready: bool,
}

/// A model never read, no leader of which is Ready yet, gets no status from a step that
/// neither scaled nor was held back: see the caller.
fn status_deferred(d: &Deferral) -> bool {
    d.metrics_missing && !d.ever_reported && !d.scaled && !d.capacity_noted && !d.leader_ready
}

/// What one read measured: the load, and whether it is complete enough to scale down on.
pub fn observe(
    at: Duration,
    current: u32,
    leaders: usize,
    read: &scrape::Scrape,
    metric: ScaleMetric,
    demand: f64,
) -> Observation {
    if leaders == 0 && current > 0 {
        // Replicas are wanted but no leader exists (being created, or deleted under us):
        // nothing was measured, which is not the same as no load. Demand is a lower bound.
        Observation {
            at,
            load: (demand > 0.0).then_some(demand),
            complete: false,
        }
    } else if leaders == 0 {
        Observation::complete(at, demand)
    } else if read.answered == 0 && demand == 0.0 {
        Observation::missing(at)
    } else {
        Observation {
            at,
            load: Some(read.load(metric) + demand),
            complete: read.complete(),
        }
    }
}

/// The first line and at most 120 characters of an error, for a condition message.
fn first_words(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(120).collect()
}

async fn write_status(
    ctx: &Context,
    model: &DeepSeekModel,
    ns: &str,
    status: &serde_json::Value,
) -> anyhow::Result<()> {
    crate::controller::apply::write_status_block(ctx, model, ns, FIELD_MANAGER, status).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_unreadable_model_without_a_ready_leader_waits_for_its_status() {
        let new = Deferral {
            metrics_missing: true,
            ever_reported: false,
            scaled: false,
            capacity_noted: false,
            leader_ready: false,
        };
        assert!(status_deferred(&new), "starting up: nothing to say yet");
        let cases = [
            (
                "read",
                Deferral {
                    metrics_missing: false,
                    ..new
                },
            ),
            (
                "reported before",
                Deferral {
                    ever_reported: true,
                    ..new
                },
            ),
            (
                "scaled",
                Deferral {
                    scaled: true,
                    ..new
                },
            ),
            (
                "held back by capacity",
                Deferral {
                    capacity_noted: true,
                    ..new
                },
            ),
            (
                "a leader is Ready yet unreadable",
                Deferral {
                    leader_ready: true,
                    ..new
                },
            ),
        ];
        for (why, d) in cases {
            assert!(!status_deferred(&d), "{why}: the status is written");
        }
    }

    #[test]
    fn no_leaders_while_replicas_are_wanted_is_missing_not_zero_load() {
        let at = Duration::from_secs(1);
        let nothing = scrape::Scrape::default();
        let o = observe(at, 2, 0, &nothing, Q, 0.0);
        assert!(!o.complete && o.load.is_none(), "{o:?}");
        // Demand still counts as a lower bound (it may scale up, never down).
        let o = observe(at, 2, 0, &nothing, Q, 5.0);
        assert_eq!((o.load, o.complete), (Some(5.0), false));
        // At zero replicas there is nothing to read: the demand is the whole load.
        assert_eq!(
            observe(at, 0, 0, &nothing, Q, 0.0),
            Observation::complete(at, 0.0)
        );
        // Leaders all starting (left out) with no answer: missing.
        let starting = scrape::Scrape {
            starting: 1,
            ..Default::default()
        };
        assert!(!observe(at, 1, 1, &starting, Q, 0.0).complete);
    }

    const Q: ScaleMetric = ScaleMetric::Queue;

    #[test]
    fn each_role_scales_on_its_own_share_of_the_load() {
        let at = Duration::from_secs(1);
        let read = scrape::Scrape {
            waiting: 6.0,
            running: 4.0,
            answered: 2,
            ..Default::default()
        };
        let load = |m| observe(at, 2, 2, &read, m, 1.0).load;
        assert_eq!(load(ScaleMetric::Queue), Some(11.0));
        assert_eq!(load(ScaleMetric::Waiting), Some(7.0));
        assert_eq!(load(ScaleMetric::Running), Some(5.0));
    }

    #[test]
    fn the_scale_patch_carries_the_resource_version_it_decided_from() {
        assert_eq!(
            scale_patch(3, "4711"),
            json!({"metadata": {"resourceVersion": "4711"}, "spec": {"replicas": 3}})
        );
    }
}
