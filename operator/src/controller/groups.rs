//! Reading replica groups back from the pods in the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::build::labels;
use crate::rollout::ObservedGroup;

/// A group and its pods as found.
pub struct FoundGroup<'a> {
    pub observed: ObservedGroup,
    pub pods: Vec<&'a Pod>,
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_dead(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Failed" | "Succeeded")
        )
}

/// Groups pods by group id. Pods without readable group labels are returned apart as
/// orphans to delete.
pub fn find_groups(pods: &[Pod]) -> (Vec<FoundGroup<'_>>, Vec<&Pod>) {
    let mut by_id: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    let mut orphans = Vec::new();
    for pod in pods {
        match (
            label(pod, labels::GROUP_ID),
            label(pod, labels::GROUP).and_then(|s| s.parse::<u32>().ok()),
        ) {
            (Some(id), Some(_)) if label(pod, labels::TEMPLATE_HASH).is_some() => {
                by_id.entry(id).or_default().push(pod)
            }
            _ => orphans.push(pod),
        }
    }
    let groups = by_id
        .into_values()
        .filter_map(|pods| {
            let first = pods.first()?;
            let slot = label(first, labels::GROUP)?.parse().ok()?;
            let hash = label(first, labels::TEMPLATE_HASH)?.to_string();
            let size: usize = label(first, labels::GROUP_SIZE)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            let broken = pods.len() < size || pods.iter().any(|p| is_dead(p));
            let ready = !broken && pods.iter().all(|p| is_ready(p));
            Some(FoundGroup {
                observed: ObservedGroup {
                    slot,
                    hash,
                    ready,
                    broken,
                },
                pods,
            })
        })
        .collect();
    (groups, orphans)
}

/// The scheduler's message for the first pod it could not place, if any.
pub fn unschedulable(pods: &[&Pod]) -> Option<String> {
    pods.iter().find_map(|p| {
        p.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find_map(|c| {
                (c.type_ == "PodScheduled" && c.status == "False").then(|| {
                    c.message
                        .clone()
                        .unwrap_or_else(|| "pod cannot be scheduled".into())
                })
            })
    })
}
