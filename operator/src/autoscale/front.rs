//! The autoscaler's side of a model's front (desired/front.rs): every step it tells each
//! front pod the model's group leaders (`POST /front/backends`, with the front token)
//! and reads, in the same answer, how many requests the front holds. The held count is
//! demand, like the demand annotation: at zero replicas it is the whole load, so a held
//! request scales the model 0 -> 1 in the step that reads it, and while a model is at
//! zero (or holds requests) its steps run every [`FAST_STEP`] rather than every interval.
//! Only the autoscaler changes `replicas`; the front only holds and forwards.

use std::net::IpAddr;
use std::time::Duration;

use deepseek_engine::{ENGINE_PORT, LAUNCHER_PORT, READINESS_PATH};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::scrape::pod_ip;
use crate::desired::front;

/// How often a model at zero (or holding requests) is stepped: the held count's reading
/// period, so a wake-up waits at most this long, not an interval.
pub const FAST_STEP: Duration = Duration::from_millis(500);
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// What the fronts said.
#[derive(Debug, Default, PartialEq)]
pub struct FrontRead {
    /// Requests held now, summed over the front's pods.
    pub held: u64,
    /// Front pods that answered, of those running.
    pub answered: usize,
    pub running: usize,
    /// The earliest start of the fronts' last hold episodes, and the earliest first
    /// answer to a held request (seconds since the epoch, the fronts' clocks).
    pub held_since: Option<f64>,
    pub first_answer: Option<f64>,
    /// When the front that answered first had picked its group (its own readiness probe).
    pub group_ready: Option<f64>,
}

/// The backend line of a leader: its engine, and its launcher's readiness (the whole
/// group).
pub fn backend_line(ip: IpAddr) -> String {
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    format!("http://{host}:{ENGINE_PORT},http://{host}:{LAUNCHER_PORT}{READINESS_PATH}")
}

/// The backend line of a disaggregated model's router: its port for requests and its
/// `/readiness`, which answers only once the router has a healthy worker of each role.
pub fn router_line(ip: IpAddr) -> String {
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let port = deepseek_engine::pd::ROUTER_PORT;
    format!("http://{host}:{port},http://{host}:{port}/readiness")
}

/// The front a model's step serves: its own, or for the prefill role of a disaggregated
/// model its parent's (the front before the router). `name` and `uid` are the front
/// owner's: its pods' label and its token derive from them.
#[derive(Clone, Debug, PartialEq)]
pub struct FrontOf {
    pub name: String,
    pub uid: String,
}

/// Whose front `model`'s autoscaler step pushes to and reads: the model's own when it
/// holds requests, its parent's when it is the prefill role of a disaggregated model whose
/// front holds (the role's autoscaling is the parent's `prefill.autoscaling`); none for
/// the decode role, which follows prefill instead.
pub fn front_of(model: &crate::api::DeepSeekModel) -> Option<FrontOf> {
    use kube::Resource;
    match crate::desired::disaggregated::role_of(&model.spec) {
        None => crate::controller::apply::front::holding(model).map(|_| FrontOf {
            name: model.name_any(),
            uid: model.meta().uid.clone().unwrap_or_default(),
        }),
        Some(deepseek_engine::PdRole::Prefill) => {
            let a = model.spec.autoscaling.as_ref()?;
            (a.provider == crate::api::AutoscalingProvider::Builtin).then_some(())?;
            a.holding()?;
            let owner = model
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true) && o.kind == "DeepSeekModel")?;
            Some(FrontOf {
                name: owner.name.clone(),
                uid: owner.uid.clone(),
            })
        }
        Some(deepseek_engine::PdRole::Decode) => None,
    }
}

/// The model's running front pods (name, IP), as last listed.
#[derive(Clone, Debug, Default)]
pub struct FrontPods {
    pods: Vec<(String, IpAddr)>,
    listed: Option<std::time::Instant>,
}

/// How long a listing of the front's pods is reused: the fast steps at zero would
/// otherwise list them twice a second per model. A push that fails, or fewer pods than
/// the Deployment's replicas, lists again at the next step.
pub const RELIST: Duration = Duration::from_secs(10);

impl FrontPods {
    fn fresh(&self) -> bool {
        self.pods.len() >= front::REPLICAS as usize
            && self.listed.is_some_and(|t| t.elapsed() < RELIST)
    }
}

/// Pushes `leaders` to every running front pod of the model and sums what they hold.
/// The front's pods are listed from the API (label-selected; they are not in the pod
/// cache, which holds ranks), at most every [`RELIST`] while all answer.
pub async fn sync(
    kube: &kube::Client,
    http: &reqwest::Client,
    ns: &str,
    model: &str,
    model_uid: &str,
    backends: Vec<String>,
    known: &mut FrontPods,
) -> anyhow::Result<FrontRead> {
    if !known.fresh() {
        let pods = Api::<Pod>::namespaced(kube.clone(), ns)
            .list(&ListParams::default().labels(&front::selector_string(model)))
            .await?;
        known.pods = pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| Some((p.name_any(), pod_ip(p)?)))
            .collect();
        known.listed = Some(std::time::Instant::now());
    }
    let body = serde_json::json!({ "backends": backends });
    let token = front::token(model_uid);
    let running = known.pods.clone();
    let calls = running.iter().map(|(name, ip)| {
        let host = match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        let req = http
            .post(format!("http://{host}:{ENGINE_PORT}/front/backends"))
            .bearer_auth(&token)
            .timeout(PUSH_TIMEOUT)
            .json(&body);
        async move {
            let answer = async {
                let r = req.send().await?.error_for_status()?;
                r.json::<serde_json::Value>().await
            };
            match answer.await {
                Ok(v) => Some((
                    v["held"].as_u64().unwrap_or(0),
                    v["episode"]["heldSince"].as_f64(),
                    v["episode"]["firstAnswer"].as_f64(),
                    v["episode"]["groupReady"].as_f64(),
                )),
                Err(e) => {
                    tracing::debug!(pod = %name, error = %e, "autoscaler: front unreachable");
                    None
                }
            }
        }
    });
    let answers: Vec<_> = futures::future::join_all(calls).await;
    if answers.iter().any(Option::is_none) {
        known.listed = None;
    }
    let answers: Vec<_> = answers.into_iter().flatten().collect();
    let earliest = |v: Vec<f64>| v.into_iter().reduce(f64::min);
    Ok(FrontRead {
        held: answers.iter().map(|a| a.0).sum(),
        answered: answers.len(),
        running: running.len(),
        held_since: earliest(answers.iter().filter_map(|a| a.1).collect()),
        first_answer: earliest(answers.iter().filter_map(|a| a.2).collect()),
        group_ready: earliest(answers.iter().filter_map(|a| a.3).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_its_engine_and_its_launchers_readiness() {
        assert_eq!(
            backend_line("127.11.0.7".parse().expect("ip")),
            "http://127.11.0.7:8000,http://127.11.0.7:8080/readyz"
        );
        assert_eq!(
            backend_line("fd00::7".parse().expect("ip")),
            "http://[fd00::7]:8000,http://[fd00::7]:8080/readyz"
        );
    }
}
