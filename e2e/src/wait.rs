//! Polling with a deadline: [`wait_for`] and pod/object helpers built on it.
//!
//! Tests wait for conditions, never for fixed amounts of time. Each helper fails
//! with a message naming what it waited for and the last state it saw.

use std::cell::RefCell;
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::ListParams;
use kube::{Api, Resource};
use serde_json::Value;

/// Polls `check` until it returns `Ok(Some(value))`, backing off from 50 ms to
/// 1 s between attempts. `Ok(None)` means "not yet"; an `Err` is remembered and
/// retried (API hiccups are transient). Fails after `timeout` with
/// `description` and the last error.
pub async fn wait_for<T, F, Fut>(timeout: Duration, description: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    let mut last_err: Option<anyhow::Error> = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(match last_err {
                Some(e) => anyhow!(
                    "timed out after {timeout:?} waiting until {description} (last error: {e:#})"
                ),
                None => anyhow!("timed out after {timeout:?} waiting until {description}"),
            });
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// Like [`wait_for`], but the closure reports the state it saw; the timeout
/// message includes the last one.
pub async fn wait_for_state<T, S, F, Fut>(
    timeout: Duration,
    description: &str,
    mut check: F,
) -> Result<T>
where
    S: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, S>>>,
{
    let last: RefCell<Option<String>> = RefCell::new(None);
    let r = wait_for(timeout, description, || {
        let fut = check();
        let last = &last;
        async move {
            match fut.await? {
                Ok(v) => Ok(Some(v)),
                Err(state) => {
                    *last.borrow_mut() = Some(format!("{state:?}"));
                    Ok(None)
                }
            }
        }
    })
    .await;
    r.map_err(|e| match last.into_inner() {
        Some(state) => anyhow!("{e:#}; last state: {state}"),
        None => e,
    })
}

fn pod_summary(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let conditions: Vec<String> = status
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{}={}{}",
                        c.type_,
                        c.status,
                        c.reason
                            .as_ref()
                            .map(|r| format!("({r})"))
                            .unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "phase={:?} node={:?} podIP={:?} conditions=[{}]",
        status.and_then(|s| s.phase.clone()),
        pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        status.and_then(|s| s.pod_ip.clone()),
        conditions.join(", ")
    )
}

fn condition<'a>(
    pod: &'a Pod,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Waits until the pod is Running, Ready and has a pod IP; returns it.
pub async fn pod_running(api: &Api<Pod>, name: &str, timeout: Duration) -> Result<Pod> {
    wait_for_state(
        timeout,
        &format!("pod {name} is Running and Ready"),
        || async {
            let Some(pod) = api.get_opt(name).await? else {
                return Ok(Err("pod does not exist".to_string()));
            };
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let ready = condition(&pod, "Ready").is_some_and(|c| c.status == "True");
            let has_ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_ref())
                .is_some();
            if running && ready && has_ip {
                Ok(Ok(pod))
            } else {
                Ok(Err(pod_summary(&pod)))
            }
        },
    )
    .await
}

/// Waits until the scheduler has reported the pod unschedulable (phase Pending,
/// condition PodScheduled=False with reason Unschedulable); returns it.
pub async fn pod_pending_unschedulable(
    api: &Api<Pod>,
    name: &str,
    timeout: Duration,
) -> Result<Pod> {
    wait_for_state(
        timeout,
        &format!("pod {name} is Pending and Unschedulable"),
        || async {
            let Some(pod) = api.get_opt(name).await? else {
                return Ok(Err("pod does not exist".to_string()));
            };
            let pending = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
            let unschedulable = condition(&pod, "PodScheduled").is_some_and(|c| {
                c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
            });
            if pending && unschedulable {
                Ok(Ok(pod))
            } else {
                Ok(Err(pod_summary(&pod)))
            }
        },
    )
    .await
}

/// Waits until the pod reached phase Succeeded or Failed; returns it.
pub async fn pod_completed(api: &Api<Pod>, name: &str, timeout: Duration) -> Result<Pod> {
    wait_for_state(timeout, &format!("pod {name} has completed"), || async {
        let Some(pod) = api.get_opt(name).await? else {
            return Ok(Err("pod does not exist".to_string()));
        };
        match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded" | "Failed") => Ok(Ok(pod)),
            _ => Ok(Err(pod_summary(&pod))),
        }
    })
    .await
}

/// Waits until the named object no longer exists.
pub async fn deleted<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    wait_for(
        timeout,
        &format!("{} {name} is deleted", K::kind(&Default::default())),
        || async {
            Ok(match api.get_opt(name).await? {
                None => Some(()),
                Some(_) => None,
            })
        },
    )
    .await
}

/// Waits until the named object exists; returns it.
pub async fn exists<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    wait_for(
        timeout,
        &format!("{} {name} exists", K::kind(&Default::default())),
        || async { Ok(api.get_opt(name).await?) },
    )
    .await
}

/// Whether a node has condition Ready=True.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until at least `min` nodes matching `selector` (a label selector, may be
/// empty) are Ready; returns the matching nodes.
pub async fn nodes_ready(
    api: &Api<Node>,
    selector: &str,
    min: usize,
    timeout: Duration,
) -> Result<Vec<Node>> {
    wait_for_state(
        timeout,
        &format!("at least {min} nodes matching '{selector}' are Ready"),
        || async {
            let nodes = api
                .list(&ListParams::default().labels(selector))
                .await?
                .items;
            let ready = nodes.iter().filter(|n| node_is_ready(n)).count();
            if ready >= min {
                Ok(Ok(nodes))
            } else {
                Ok(Err(format!("{ready} of {} Ready", nodes.len())))
            }
        },
    )
    .await
}

/// Waits until the pod has an event whose reason is `reason` (e.g.
/// `FailedScheduling`); returns the event as JSON.
pub async fn pod_event(
    events: &Api<k8s_openapi::api::core::v1::Event>,
    pod: &str,
    reason: &str,
    timeout: Duration,
) -> Result<Value> {
    wait_for(
        timeout,
        &format!("pod {pod} has an event with reason {reason}"),
        || async {
            let lp = ListParams::default().fields(&format!("involvedObject.name={pod}"));
            let list = events.list(&lp).await?;
            Ok(list
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
                .map(|e| serde_json::to_value(e).unwrap_or(Value::Null)))
        },
    )
    .await
}
