//! From a validated model and its placement to the `Workload` the pod and Service
//! builders read: the launch configuration, the image, volumes, tolerations, the product
//! pin and the template hash.
//!
//! The image and launch configuration are resolved once per model and recorded in
//! `status.resolved`. While the inputs that a user or an administrator controls stay the
//! same (the spec minus scaling fields, the pool's identity, the operator configuration
//! that reaches pods), the recorded resolution is reused, so a new operator version,
//! with a new default image tag or a planner that sizes differently, restarts nothing.
//! `spec.image: auto-upgrade` opts out: the operator version joins the key.

use std::collections::BTreeMap;

use deepseek_engine::{Disaggregation, Engine, KvTransfer, LaunchConfig, SimProfile};
use k8s_openapi::api::core::v1::{Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Serialize;

use super::hash::template_hash;
use super::{PodSize, WeightsVolume, Workload};
use crate::api::{DeepSeekModelSpec, KvTransferChoice, ResolvedStatus, Vendor};
use crate::config::OperatorConfig;
use crate::inventory::taints::{accelerator_tolerations, toleration_for};
use crate::placement::Placement;

const GIB: f64 = (1u64 << 30) as f64;
/// Prompt tokens a prefill server computes per step (SGLang's default
/// `--max-prefill-tokens`: sglang/srt/arg_groups/fields/schedule.py of the pinned 0.5.23).
const PREFILL_BUDGET_TOKENS: u32 = 16384;
use crate::validate::{CacheChoice, ValidatedModel};

/// Version recorded with each resolution (and the default runtime image tag).
pub const OPERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct WorkloadInputs<'a> {
    pub model_name: &'a str,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    pub spec: &'a DeepSeekModelSpec,
    pub validated: &'a ValidatedModel,
    pub placement: &'a Placement,
    pub config: &'a OperatorConfig,
    pub catalog: &'a deepseek_planner::Catalog,
    /// What the last reconcile recorded, if anything.
    pub previous: Option<&'a ResolvedStatus>,
}

/// A declared pool's selector and taints, as they enter the key.
type DeclaredPoolKey<'a> = (&'a BTreeMap<String, String>, Vec<TaintTuple>);
type TaintTuple = (String, Option<String>, String);

/// The inputs a user or an administrator controls. Equal keys mean "nothing they asked
/// for changed", whatever this operator's version computes from them.
#[derive(Serialize)]
struct KeyInputs<'a> {
    spec: serde_json::Value,
    accelerator: &'a str,
    per_node: u32,
    resource: &'a str,
    declared_pool: Option<DeclaredPoolKey<'a>>,
    images: &'a BTreeMap<String, String>,
    weights: &'a WeightsVolume,
    /// The sizing the administrator configured, not the plan-derived size: a planner
    /// that sizes differently must not re-resolve (and so restart) running models.
    sizing: &'a crate::config::PodSizing,
    amd_groups: &'a [i64],
    /// A drain bound other than the default (absent at the default, so keys recorded
    /// before it was configurable still match).
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_seconds: Option<u64>,
    /// Only with `auto-upgrade`: this operator's version and default image.
    auto_upgrade: Option<String>,
}

/// Everything that reaches a pod, hashed: a change to any of it is a rollout. Only data
/// that is stable while the key is: no pool membership, no node names.
#[derive(Serialize)]
struct HashInputs<'a> {
    launch: &'a LaunchConfig,
    image: &'a str,
    product: &'a str,
    resource: &'a str,
    node_selector: &'a BTreeMap<String, String>,
    tolerations: &'a [Toleration],
    hf_token: Option<(String, Option<String>)>,
    weights: &'a WeightsVolume,
    size: &'a PodSize,
    run_as_root: bool,
    /// As in `KeyInputs`: only a drain bound other than the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_seconds: Option<u64>,
}

/// The launch configuration every pod of the model gets. `bandwidth_tbps` feeds the
/// simulation engine's timing model, so simulated load behaves like the planned hardware.
pub fn launch_config(
    model_name: &str,
    namespace: &str,
    v: &ValidatedModel,
    p: &Placement,
    bandwidth_tbps: Option<f64>,
) -> LaunchConfig {
    let plan = &p.plan;
    // vLLM on CPU cannot size its KV cache from device memory (it would take a share of
    // the whole host's): it gets the planned cache, and a batch of the planned concurrency
    // that cache was sized for. Elsewhere the engine fills the memory the plan left.
    let cpu_vllm = plan.vendor == Vendor::Cpu && plan.engine == Engine::Vllm;
    let max_num_seqs = if cpu_vllm {
        plan.concurrency.max(1)
    } else {
        plan.max_concurrency.max(1)
    };
    let kv_cache_memory_bytes =
        cpu_vllm.then(|| (plan.memory.kv_cache_gib * GIB).ceil().max(1.0) as u64);
    let mut sim = SimProfile::from_hardware(
        bandwidth_tbps.unwrap_or(0.1),
        v.arch.active_params_b,
        v.quantization.bytes_per_param(),
        plan.gpus_per_replica,
    );
    sim.max_running = max_num_seqs;
    // Both roles of a disaggregated model answer to the user's model name.
    let served = match v.role {
        Some(role) => model_name
            .strip_suffix(&format!("-{role}"))
            .unwrap_or(model_name)
            .to_string(),
        None => model_name.to_string(),
    };
    // A prefill server computes one budget of prompt tokens per step (SGLang's
    // `--max-prefill-tokens`, 16384 by default); prompts beyond it wait. The sim models
    // that budget as a batch bound, so long prompts queue on prefill as they would.
    if v.role == Some(deepseek_engine::PdRole::Prefill) {
        sim.max_running = (PREFILL_BUDGET_TOKENS / plan.max_model_len.max(1)).max(1);
    }
    LaunchConfig {
        engine: plan.engine,
        vendor: plan.vendor.as_str().to_string(),
        model: v.weights_repo.clone(),
        served_model_name: served.clone(),
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
        trust_remote_code: v.arch.trust_remote_code,
        kv_cache_memory_bytes,
        sim: Some(sim),
        disaggregation: v.role.map(|role| {
            let mut d = Disaggregation::new(role, plan.engine, plan.vendor.as_str());
            match v.kv_transfer {
                Some(KvTransferChoice::Nixl) => d.transfer = KvTransfer::Nixl,
                Some(KvTransferChoice::Mooncake) => d.transfer = KvTransfer::Mooncake,
                Some(KvTransferChoice::Ascend) => d.transfer = KvTransfer::Ascend,
                None => {}
            }
            if d.transfer == KvTransfer::Ascend {
                d.ascend_store = Some(ascend_store_address(&served, namespace));
            }
            d
        }),
        // DP attention x EP layouts carry their shape; TP x PP plans leave these out, so
        // their launch configuration (and template hash) is what it was.
        expert: (plan.expert_parallel > 1).then_some(deepseek_engine::ExpertLayout {
            data_parallel: plan.data_parallel,
            expert_parallel: plan.expert_parallel,
            redundant_experts: plan.redundant_experts,
        }),
        speculative_mtp: plan.speculative_mtp,
        kv_cache_dtype: (plan.kv_cache_dtype == deepseek_planner::KvCacheDtype::Fp8)
            .then(|| "fp8".to_string()),
    }
}

/// Where the roles of a disaggregated model on Ascend find the config store of SGLang's
/// `ascend` KV transfer: the store the operator runs next to the router
/// (desired/disaggregated.rs `kv_store_objects`), through its Service.
pub fn ascend_store_address(model: &str, namespace: &str) -> String {
    format!(
        "{}.{namespace}.svc:{}",
        super::disaggregated::kv_store_name(model),
        deepseek_engine::pd::ASCEND_STORE_PORT
    )
}

/// The weights volume: the model's own claim, or its cache. A node cache is keyed by
/// namespace unless the administrator made it shared, so no tenant can plant files
/// another tenant's engine reads.
fn weights_volume(v: &ValidatedModel, namespace: &str) -> WeightsVolume {
    if let Some(vol) = &v.source.volume {
        return WeightsVolume::Existing {
            claim: vol.claim_name.clone(),
            path: vol.path.clone(),
        };
    }
    match &v.cache {
        CacheChoice::Claim(c) => WeightsVolume::Claim(c.clone()),
        CacheChoice::Node(c) if c.shared_across_namespaces => {
            WeightsVolume::HostPath(c.host_path.clone())
        }
        CacheChoice::Node(c) => {
            WeightsVolume::HostPath(format!("{}/{namespace}", c.host_path.trim_end_matches('/')))
        }
    }
}

/// CPU, memory and `/dev/shm` of each pod: the manifest's override, else the
/// configuration's, else sized from the plan.
fn pod_size(v: &ValidatedModel, p: &Placement, config: &OperatorConfig) -> PodSize {
    let s = &config.pod_sizing;
    let cpu_node = p.pool.resource_name.is_empty();
    let accel = p.plan.gpus_per_node.max(1);
    let (cpu, memory) = if cpu_node {
        // CPU serving holds the whole model in RAM.
        let gib = p.plan.memory.per_gpu_gib.ceil().max(1.0) as u32;
        ("8".to_string(), format!("{gib}Gi"))
    } else {
        let cpu = (s.cpu_per_accelerator.unwrap_or(4) * accel).max(2);
        let mem = s.memory_gib.unwrap_or((8 * accel).max(16));
        (cpu.to_string(), format!("{mem}Gi"))
    };
    PodSize {
        cpu: v.resources.cpu.clone().unwrap_or(cpu),
        memory: v.resources.memory.clone().unwrap_or(memory),
        shm: format!("{}Gi", s.shm_gib.unwrap_or(16)),
    }
}

/// Tolerations: the accelerator taints (GPU and NPU pools), a declared pool's own taints,
/// and whatever the manifest adds. Nothing else: other taints reserve nodes for others.
fn tolerations(v: &ValidatedModel, p: &Placement) -> Vec<Toleration> {
    let mut out = Vec::new();
    if !p.pool.resource_name.is_empty() {
        out.extend(accelerator_tolerations());
    }
    if p.pool.declared {
        out.extend(p.pool.taints.iter().map(toleration_for));
    }
    out.extend(v.tolerations.iter().cloned());
    out
}

/// AMD's ROCm devices are group-owned (`video`, `render`) with host-specific ids: pods run
/// as root unless the administrator names the groups.
fn runs_as_root(vendor: Vendor, config: &OperatorConfig) -> bool {
    vendor == Vendor::Amd && config.amd_render_groups.is_empty()
}

/// The spec as it enters the resolution key: scaling fields removed, and every null,
/// empty list and empty object dropped (recursively), so a field added to the spec in a
/// later version, unset in the manifest, leaves the key as it was (whatever its serde
/// attributes), and so does spelling an empty optional (`nodeSelector: {}`).
pub fn key_spec(spec: &DeepSeekModelSpec) -> serde_json::Value {
    key_spec_json(serde_json::to_value(spec).unwrap_or_default())
}

/// [`key_spec`] over the spec's JSON form.
pub fn key_spec_json(mut spec: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = spec.as_object_mut() {
        // Scaling never changes what a pod runs.
        for k in ["replicas", "autoscaling", "rollout"] {
            obj.remove(k);
        }
    }
    prune_empty(&mut spec);
    spec
}

/// Drops nulls, empty arrays and empty objects from `v`'s objects, innermost first
/// (array elements stay: their positions mean something).
fn prune_empty(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                prune_empty(child);
            }
            map.retain(|_, child| match child {
                Value::Null => false,
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => true,
            });
        }
        Value::Array(items) => items.iter_mut().for_each(prune_empty),
        _ => {}
    }
}

/// The resolution key over a given form of the spec.
fn key_with(i: &WorkloadInputs<'_>, weights: &WeightsVolume, spec: serde_json::Value) -> String {
    let pool = &i.placement.pool;
    let drain = i.config.drain_seconds.0;
    template_hash(&KeyInputs {
        spec,
        accelerator: &pool.accelerator,
        per_node: pool.per_node,
        resource: &pool.resource_name,
        declared_pool: pool
            .declared
            .then(|| (&pool.selector, taint_tuples(&pool.taints))),
        images: &i.config.images,
        weights,
        sizing: &i.config.pod_sizing,
        amd_groups: &i.config.amd_render_groups,
        drain_seconds: (drain != deepseek_engine::DEFAULT_DRAIN_SECONDS).then_some(drain),
        auto_upgrade: i.validated.auto_upgrade.then(|| {
            let plan = &i.placement.plan;
            format!(
                "{OPERATOR_VERSION}/{}",
                i.config.image_for(plan.vendor, plan.engine)
            )
        }),
    })
}

fn key_of(i: &WorkloadInputs<'_>, weights: &WeightsVolume) -> String {
    key_with(i, weights, key_spec(i.spec))
}

/// The key as versions up to 0.1 computed it: the spec minus scaling fields, not pruned.
/// It differs from [`key_of`] only for a manifest that spells an empty optional; a
/// resolution recorded under it is still reused (and recorded again under the new key),
/// so upgrading restarts no model.
fn legacy_key_of(i: &WorkloadInputs<'_>, weights: &WeightsVolume) -> String {
    let mut spec = serde_json::to_value(i.spec).unwrap_or_default();
    if let Some(obj) = spec.as_object_mut() {
        for k in ["replicas", "autoscaling", "rollout"] {
            obj.remove(k);
        }
    }
    key_with(i, weights, spec)
}

fn taint_tuples(taints: &[Taint]) -> Vec<TaintTuple> {
    taints
        .iter()
        .map(|t| (t.key.clone(), t.value.clone(), t.effect.clone()))
        .collect()
}

pub fn workload(i: &WorkloadInputs<'_>) -> Workload {
    let v = i.validated;
    let plan = &i.placement.plan;
    let pool = &i.placement.pool;
    let weights = weights_volume(v, i.namespace);
    let size = pod_size(v, i.placement, i.config);
    let tolerations = tolerations(v, i.placement);
    let run_as_root = runs_as_root(plan.vendor, i.config);
    let key = key_of(i, &weights);

    let reused = i
        .previous
        .filter(|r| r.key == key || r.key == legacy_key_of(i, &weights))
        .and_then(|r| Some((r, LaunchConfig::from_json(&r.launch_config).ok()?)));
    let resolved = match reused {
        Some((r, launch)) => (
            ResolvedStatus {
                key: key.clone(),
                ..r.clone()
            },
            launch,
        ),
        None => {
            let bandwidth = i
                .catalog
                .accelerator(&plan.accelerator)
                .and_then(|a| a.bandwidth_tbps);
            let launch = launch_config(i.model_name, i.namespace, v, i.placement, bandwidth);
            let image = v
                .image
                .clone()
                .unwrap_or_else(|| i.config.image_for(plan.vendor, plan.engine));
            let hash = template_hash(&HashInputs {
                launch: &launch,
                image: &image,
                product: &plan.accelerator,
                resource: &pool.resource_name,
                node_selector: &v.node_selector,
                tolerations: &tolerations,
                hf_token: v.hf_token.as_ref().map(|s| (s.name.clone(), s.key.clone())),
                weights: &weights,
                size: &size,
                run_as_root,
                drain_seconds: (i.config.drain_seconds.0 != deepseek_engine::DEFAULT_DRAIN_SECONDS)
                    .then_some(i.config.drain_seconds.0),
            });
            let r = ResolvedStatus {
                key,
                image,
                launch_config: launch.to_json(),
                template_hash: hash,
                operator_version: OPERATOR_VERSION.to_string(),
            };
            (r, launch)
        }
    };
    let (resolved, launch) = resolved;
    let product_terms = super::affinity::product_terms(i.catalog, pool, &plan.accelerator);
    Workload {
        model_name: i.model_name.to_string(),
        namespace: i.namespace.to_string(),
        owner: i.owner.clone(),
        image: resolved.image.clone(),
        pool: pool.clone(),
        product_terms,
        nodes_per_group: plan.nodes_per_replica,
        same_nvlink_domain: plan.nodes_per_replica > 1
            && i.catalog
                .accelerator(&plan.accelerator)
                .is_some_and(|a| a.nvlink_domain.is_some()),
        accelerators_per_pod: plan.gpus_per_node,
        launch,
        template_hash: resolved.template_hash.clone(),
        extra_node_selector: v.node_selector.clone(),
        tolerations,
        hf_token: v.hf_token.clone(),
        weights,
        size,
        run_as_root,
        supplemental_groups: if plan.vendor == Vendor::Amd {
            i.config.amd_render_groups.clone()
        } else {
            Vec::new()
        },
        drain_seconds: i.config.drain_seconds.0,
        resolved,
    }
}
