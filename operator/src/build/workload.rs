//! From a validated model and its placement to the `Workload` the pod and Service
//! builders read: the launch configuration, the image, volumes and the template hash.

use deepseek_engine::{LaunchConfig, SimProfile};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Serialize;

use super::hash::template_hash;
use super::{WeightsVolume, Workload};
use crate::config::OperatorConfig;
use crate::placement::Placement;
use crate::validate::ValidatedModel;

/// Default node directory for downloaded weights.
pub const DEFAULT_CACHE_HOST_PATH: &str = "/var/lib/deepseek-operator/models";

pub struct WorkloadInputs<'a> {
    pub model_name: &'a str,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    pub validated: &'a ValidatedModel,
    pub placement: &'a Placement,
    pub config: &'a OperatorConfig,
    pub catalog: &'a deepseek_planner::Catalog,
}

/// Everything that reaches a pod, hashed: a change to any of it is a rollout.
#[derive(Serialize)]
struct HashInputs<'a> {
    launch: &'a LaunchConfig,
    image: &'a str,
    selector: &'a std::collections::BTreeMap<String, String>,
    taints: Vec<(String, Option<String>, String)>,
    node_selector: &'a std::collections::BTreeMap<String, String>,
    tolerations: String,
    hf_token: Option<(String, Option<String>)>,
    weights: String,
    resource: &'a str,
}

/// The launch configuration every pod of the model gets. `bandwidth_tbps` feeds the
/// simulation engine's timing model, so simulated load behaves like the planned hardware.
pub fn launch_config(
    model_name: &str,
    v: &ValidatedModel,
    p: &Placement,
    bandwidth_tbps: Option<f64>,
) -> LaunchConfig {
    let plan = &p.plan;
    let max_num_seqs = plan.max_concurrency.max(1);
    let mut sim = SimProfile::from_hardware(
        bandwidth_tbps.unwrap_or(0.1),
        v.arch.active_params_b,
        v.quantization.bytes_per_param(),
        plan.gpus_per_replica,
    );
    sim.max_running = max_num_seqs;
    LaunchConfig {
        engine: plan.engine,
        vendor: plan.vendor.as_str().to_string(),
        model: v.weights_repo.clone(),
        served_model_name: model_name.to_string(),
        revision: v.revision.clone(),
        quantization: v.quantization.as_str().to_string(),
        tensor_parallel: plan.tensor_parallel,
        pipeline_parallel: plan.pipeline_parallel,
        nodes: plan.nodes_per_replica,
        gpus_per_node: plan.gpus_per_node,
        max_model_len: plan.max_model_len,
        max_num_seqs,
        gpu_memory_utilization: v.gpu_memory_utilization.unwrap_or(0.9),
        extra_args: v.extra_args.clone(),
        sim: Some(sim),
    }
}

pub fn workload(i: &WorkloadInputs<'_>) -> Workload {
    let v = i.validated;
    let plan = &i.placement.plan;
    let pool = &i.placement.pool;
    let bandwidth = i
        .catalog
        .accelerator(&plan.accelerator)
        .and_then(|a| a.bandwidth_tbps);
    let launch = launch_config(i.model_name, v, i.placement, bandwidth);
    let image = v
        .image
        .clone()
        .unwrap_or_else(|| i.config.image_for(plan.vendor, plan.engine));
    let weights = match (&v.source.volume, &v.cache.claim_name, &v.cache.host_path) {
        (Some(vol), _, _) => WeightsVolume::Existing {
            claim: vol.claim_name.clone(),
            path: vol.path.clone(),
        },
        (None, Some(claim), _) => WeightsVolume::Claim(claim.clone()),
        (None, None, Some(path)) => WeightsVolume::HostPath(path.clone()),
        (None, None, None) => WeightsVolume::HostPath(
            i.config
                .cache_host_path
                .clone()
                .unwrap_or_else(|| DEFAULT_CACHE_HOST_PATH.to_string()),
        ),
    };
    let cpu_memory_gib = pool
        .resource_name
        .is_empty()
        .then(|| plan.memory.per_gpu_gib.ceil().max(1.0) as u32);
    let hash = template_hash(&HashInputs {
        launch: &launch,
        image: &image,
        selector: &pool.selector,
        taints: pool
            .taints
            .iter()
            .map(|t| (t.key.clone(), t.value.clone(), t.effect.clone()))
            .collect(),
        node_selector: &v.node_selector,
        tolerations: serde_json::to_string(&v.tolerations).unwrap_or_default(),
        hf_token: v.hf_token.as_ref().map(|s| (s.name.clone(), s.key.clone())),
        weights: format!("{weights:?}"),
        resource: &pool.resource_name,
    });
    Workload {
        model_name: i.model_name.to_string(),
        namespace: i.namespace.to_string(),
        owner: i.owner.clone(),
        image,
        pool: pool.clone(),
        nodes_per_group: plan.nodes_per_replica,
        accelerators_per_pod: plan.gpus_per_node,
        launch,
        template_hash: hash,
        extra_node_selector: v.node_selector.clone(),
        extra_tolerations: v.tolerations.clone(),
        hf_token: v.hf_token.clone(),
        weights,
        cpu_memory_gib,
    }
}
