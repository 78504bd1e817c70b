//! Validation beyond what the API server's schema can check: catalog ids, vendor and
//! product agreement, engine and vendor agreement. Produces the one `ValidatedModel`
//! the planner and builders read, or a reason for the status.

use std::collections::BTreeMap;

use deepseek_engine::Engine;
use deepseek_planner::{Attention, Catalog, ModelArch};
use k8s_openapi::api::core::v1::Toleration;

use crate::api::{
    AttentionKind, CustomModel, DeepSeekModelSpec, EngineChoice, PodResources, Quantization,
    Rollout, SecretKeyRef, Vendor, WeightCache, WeightSource,
};
use crate::config::{NodeCache, OperatorConfig};

/// `spec.image` value that follows the operator's default image on every upgrade.
pub const AUTO_UPGRADE: &str = "auto-upgrade";

/// Where downloaded weights are cached, resolved against the operator configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheChoice {
    /// A node cache the administrator configured.
    Node(NodeCache),
    /// A PersistentVolumeClaim in the model's namespace.
    Claim(String),
}

/// A spec that passed every check, with catalog references resolved.
#[derive(Clone, Debug)]
pub struct ValidatedModel {
    pub arch: ModelArch,
    pub quantization: Quantization,
    pub vendor: Option<Vendor>,
    pub product: Option<String>,
    pub engine: Option<Engine>,
    pub tensor_parallel: Option<u32>,
    pub pipeline_parallel: Option<u32>,
    pub max_model_len: Option<u32>,
    pub concurrency: Option<u32>,
    pub gpu_memory_utilization: Option<f64>,
    pub extra_args: Vec<String>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    /// The manifest's image; `None` for the default (or `auto-upgrade`).
    pub image: Option<String>,
    /// `spec.image: auto-upgrade`: re-resolve image and launch settings on every operator
    /// version instead of keeping what `status.resolved` recorded.
    pub auto_upgrade: bool,
    /// Repository (or path) the engine loads.
    pub weights_repo: String,
    pub revision: Option<String>,
    pub hf_token: Option<SecretKeyRef>,
    pub source: WeightSource,
    pub cache: CacheChoice,
    pub resources: PodResources,
    pub replicas: u32,
    pub rollout: Rollout,
    /// DP attention, expert parallelism, MTP, KV cache type and the layout objective.
    pub parallel_options: deepseek_planner::ParallelOptions,
    /// The role of a role model of a disaggregated model (`serving.mode` prefill/decode).
    pub role: Option<deepseek_engine::PdRole>,
    pub kv_transfer: Option<crate::api::KvTransferChoice>,
    /// Pods that would run as root (AMD, since no `amdRenderGroups` are configured) may
    /// not be planned for this model: it caches weights on a node (a writable host path)
    /// and the administrator has not set `allowRootHostPathCache`. Placement leaves AMD
    /// pools out, saying why ([`ROOT_HOST_PATH_REASON`]).
    pub refuse_root_pods: bool,
}

/// Condition reason of a model refused because its pods would run as root with a
/// writable host path.
pub const ROOT_HOST_PATH_REASON: &str = "RootHostPathCache";

/// Why a model whose pods would run as root cannot use a node cache, and what to change.
pub fn root_host_path_message() -> String {
    "AMD pods run as root unless the operator configuration sets amdRenderGroups, and this model caches weights in a node directory (a writable host path) that a root process could plant files in; use a PersistentVolumeClaim (cache.claimName or source.volume), or ask the administrator to set amdRenderGroups (non-root pods) or allowRootHostPathCache".into()
}

/// Why a spec was refused; `reason` is the condition reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

fn invalid(reason: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        reason,
        message: message.into(),
    }
}

pub fn engine_of(choice: EngineChoice) -> Option<Engine> {
    match choice {
        EngineChoice::Auto => None,
        EngineChoice::Vllm => Some(Engine::Vllm),
        EngineChoice::Sglang => Some(Engine::Sglang),
        EngineChoice::VllmAscend => Some(Engine::VllmAscend),
        EngineChoice::Llamacpp => Some(Engine::Llamacpp),
    }
}

fn custom_arch(c: &CustomModel) -> ModelArch {
    let attention = match c.attention {
        AttentionKind::Mla => Attention::Mla,
        AttentionKind::Gqa => Attention::Gqa,
    };
    let mut arch = ModelArch::custom(
        &c.hugging_face_repo,
        attention,
        c.parameters_billions,
        c.layers,
        c.hidden_size,
        c.attention_heads,
        c.max_position_embeddings,
    );
    if let Some(active) = c.active_parameters_billions {
        arch.active_params_b = active;
    }
    if let Some(kv) = c.kv_heads {
        arch.kv_heads = kv;
    }
    if let Some(d) = c.head_dim {
        arch.head_dim = d;
    }
    arch.kv_lora_rank = c.kv_lora_rank;
    arch.trust_remote_code = c.trust_remote_code;
    arch.qk_rope_head_dim = c.qk_rope_head_dim;
    if let Some(v) = c.vocab_size {
        arch.vocab_size = v;
    }
    arch
}

/// Resolves `spec.cache` against the configured caches. A host path in a manifest is
/// refused even if the API server's schema let it through (objects stored before the
/// rule existed).
fn resolve_cache(cache: &WeightCache, config: &OperatorConfig) -> Result<CacheChoice, Invalid> {
    if cache.host_path.is_some() {
        return Err(invalid(
            "InvalidSpec",
            "spec.cache.hostPath was removed: host paths come only from the operator configuration; set cache.name to a cache the administrator configured, or cache.claimName to a PersistentVolumeClaim in this namespace",
        ));
    }
    if let Some(claim) = &cache.claim_name {
        return Ok(CacheChoice::Claim(claim.clone()));
    }
    config
        .cache(cache.name.as_deref())
        .map(CacheChoice::Node)
        .ok_or_else(|| {
            let mut known: Vec<String> = config.caches.iter().map(|c| c.name.clone()).collect();
            if config.cache(None).is_some() && !known.iter().any(|k| k == "default") {
                known.insert(0, "default".into());
            }
            invalid(
                "UnknownCache",
                format!(
                    "cache '{}' is not configured; configured caches: {}",
                    cache.name.as_deref().unwrap_or("default"),
                    known.join(", ")
                ),
            )
        })
}

pub fn validate(
    spec: &DeepSeekModelSpec,
    catalog: &Catalog,
    config: &OperatorConfig,
) -> Result<ValidatedModel, Invalid> {
    let arch = match (&spec.model[..], &spec.custom_model) {
        ("custom", Some(c)) => custom_arch(c),
        ("custom", None) => return Err(invalid("InvalidSpec", "model 'custom' needs customModel")),
        (id, _) => catalog.model(id).cloned().ok_or_else(|| {
            let known: Vec<&str> = catalog.models().iter().map(|m| m.id.as_str()).collect();
            invalid(
                "UnknownModel",
                format!("unknown model '{id}'; known models: {}", known.join(", ")),
            )
        })?,
    };
    arch.validate().map_err(|e| invalid("InvalidSpec", e))?;
    crate::spec_ranges::check(spec).map_err(|e| invalid("InvalidSpec", e))?;

    let accel = spec.accelerator.clone().unwrap_or_default();
    let mut vendor = accel.vendor;
    if let Some(product) = &accel.product {
        let a = catalog.accelerator(product).ok_or_else(|| {
            let known: Vec<&str> = catalog
                .accelerators()
                .iter()
                .map(|a| a.id.as_str())
                .collect();
            invalid(
                "UnknownAccelerator",
                format!(
                    "unknown accelerator '{product}'; known: {}",
                    known.join(", ")
                ),
            )
        })?;
        if let Some(v) = vendor {
            if v != a.vendor {
                return Err(invalid(
                    "InvalidSpec",
                    format!(
                        "accelerator.product {product} is a {} accelerator, not {v}",
                        a.vendor
                    ),
                ));
            }
        }
        vendor = Some(a.vendor);
    }
    let quantization = spec.quantization.unwrap_or(arch.native_dtype);
    if quantization.is_gguf() {
        match vendor {
            None | Some(Vendor::Cpu) => vendor = Some(Vendor::Cpu),
            Some(v) => {
                return Err(invalid(
                    "UnsupportedCombination",
                    format!("{} is served by llama.cpp on CPU, not on {v}; choose cpu or another quantization", quantization),
                ))
            }
        }
    }
    let engine = engine_of(spec.engine);
    if let (Some(e), Some(v)) = (engine, vendor) {
        if !deepseek_planner::engine_runs_on(e, v) {
            return Err(invalid(
                "UnsupportedCombination",
                format!("engine {e} does not run on {v} accelerators"),
            ));
        }
    }

    let serving = spec.serving.clone().unwrap_or_default();
    if let Some(u) = serving.gpu_memory_utilization {
        if !(u > 0.0 && u <= 1.0) {
            return Err(invalid(
                "InvalidSpec",
                "serving.gpuMemoryUtilization must be in (0, 1]",
            ));
        }
    }
    let parallel = spec.parallelism.clone().unwrap_or_default();
    let source = spec.source.clone().unwrap_or_default();
    let hf = source.hugging_face.clone().unwrap_or_default();
    let weights_repo = match &source.volume {
        Some(v) => v.path.clone(),
        None => hf.repo.clone().unwrap_or_else(|| arch.hf_repo.clone()),
    };
    let cache = resolve_cache(&spec.cache.clone().unwrap_or_default(), config)?;
    // Only AMD pods run as root (desired/workload.rs `runs_as_root`).
    let refuse_root_pods = source.volume.is_none()
        && matches!(cache, CacheChoice::Node(_))
        && config.amd_render_groups.is_empty()
        && !config.allow_root_host_path_cache;
    if refuse_root_pods && vendor == Some(Vendor::Amd) {
        return Err(invalid(ROOT_HOST_PATH_REASON, root_host_path_message()));
    }
    let auto_upgrade = spec.image.as_deref() == Some(AUTO_UPGRADE);
    let replicas = match (&spec.autoscaling, spec.replicas) {
        // min <= max is checked above; `max(lo)` keeps this panic-free regardless.
        (Some(a), r) => {
            let lo = a.min_replicas.max(0);
            r.unwrap_or(a.min_replicas)
                .clamp(lo, a.max_replicas.max(lo))
        }
        (None, r) => r.unwrap_or(1).max(0),
    };

    Ok(ValidatedModel {
        arch,
        quantization,
        vendor,
        product: accel.product.clone(),
        engine,
        tensor_parallel: parallel.tensor,
        pipeline_parallel: parallel.pipeline,
        max_model_len: serving.max_model_len,
        concurrency: serving.concurrency,
        gpu_memory_utilization: serving.gpu_memory_utilization,
        extra_args: serving.extra_args.clone(),
        node_selector: accel.node_selector.clone().unwrap_or_default(),
        tolerations: accel.tolerations.clone().unwrap_or_default(),
        image: spec.image.clone().filter(|_| !auto_upgrade),
        auto_upgrade,
        weights_repo,
        revision: hf.revision.clone(),
        hf_token: hf.token_secret_ref.clone(),
        source,
        cache,
        resources: spec.resources.clone().unwrap_or_default(),
        replicas: replicas as u32,
        rollout: spec.rollout.clone().unwrap_or_default(),
        parallel_options: deepseek_planner::ParallelOptions {
            objective: parallel.objective.unwrap_or_default(),
            data_parallel: parallel.data,
            redundant_experts: parallel.redundant_experts.unwrap_or(0),
            speculative_mtp: parallel.speculative_mtp,
            kv_cache_dtype: serving.kv_cache_dtype.unwrap_or_default(),
        },
        role: crate::desired::disaggregated::role_of(spec),
        kv_transfer: serving.kv_transfer,
        refuse_root_pods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> DeepSeekModelSpec {
        serde_yaml::from_str(yaml).expect("spec parses")
    }

    fn check(yaml: &str) -> Result<ValidatedModel, Invalid> {
        // Non-root AMD pods, so AMD specs are checked for what these tests are about
        // (root pods with a node cache: `root_pods_need_the_administrators_opt_in`).
        let cfg = OperatorConfig {
            amd_render_groups: vec![44],
            ..Default::default()
        };
        validate(&spec(yaml), Catalog::builtin(), &cfg)
    }

    #[test]
    fn root_pods_need_the_administrators_opt_in_for_a_node_cache() {
        let amd = "model: deepseek-r1\naccelerator: {vendor: amd}";
        let root = OperatorConfig::default();
        let e = validate(&spec(amd), Catalog::builtin(), &root).expect_err("root + host path");
        assert_eq!(e.reason, ROOT_HOST_PATH_REASON);
        assert!(
            e.message.contains("allowRootHostPathCache"),
            "{}",
            e.message
        );
        let claim = format!("{amd}\ncache: {{claimName: w}}");
        assert!(validate(&spec(&claim), Catalog::builtin(), &root).is_ok());
        let opted = OperatorConfig {
            allow_root_host_path_cache: true,
            ..Default::default()
        };
        assert!(validate(&spec(amd), Catalog::builtin(), &opted).is_ok());
        // Any vendor: refused only where pods would run as root (placement, for AMD).
        let any = validate(&spec("model: deepseek-r1"), Catalog::builtin(), &root).expect("valid");
        assert!(any.refuse_root_pods);
    }

    #[test]
    fn host_paths_are_refused_and_caches_resolve_by_name() {
        let e = check("model: deepseek-r1\ncache: {hostPath: /etc/kubernetes}")
            .expect_err("a manifest may not name a host path");
        assert_eq!(e.reason, "InvalidSpec");
        assert!(e.message.contains("hostPath"), "{}", e.message);
        let v = check("model: deepseek-r1").expect("default cache");
        assert!(matches!(v.cache, CacheChoice::Node(ref c) if c.name == "default"));
        let v = check("model: deepseek-r1\ncache: {claimName: weights}").expect("claim");
        assert_eq!(v.cache, CacheChoice::Claim("weights".into()));
        let e = check("model: deepseek-r1\ncache: {name: nvme}").expect_err("not configured");
        assert_eq!(e.reason, "UnknownCache");
        assert!(e.message.contains("default"), "{}", e.message);
    }

    #[test]
    fn auto_upgrade_is_not_an_image() {
        let v = check("model: deepseek-r1\nimage: auto-upgrade").expect("valid");
        assert!(v.auto_upgrade);
        assert_eq!(v.image, None);
        let v = check("model: deepseek-r1\nimage: example.com/mine:1").expect("valid");
        assert!(!v.auto_upgrade);
    }

    #[test]
    fn catalog_model_resolves_with_defaults() {
        let v = check("model: deepseek-r1\nquantization: fp8").expect("valid");
        assert_eq!(v.arch.id, "deepseek-r1");
        assert_eq!(v.weights_repo, "deepseek-ai/DeepSeek-R1");
        assert_eq!(v.replicas, 1);
        assert_eq!(v.vendor, None);
    }

    #[test]
    fn quantization_defaults_to_the_native_format() {
        let v = check("model: deepseek-r1").expect("valid");
        assert_eq!(v.quantization, Quantization::Fp8);
        let v = check("model: deepseek-r1-distill-llama-70b").expect("valid");
        assert_eq!(v.quantization, Quantization::Bf16);
        let v = check("model: deepseek-r1\nquantization: int8").expect("valid");
        assert_eq!(v.quantization, Quantization::Int8);
    }

    #[test]
    fn product_implies_vendor_and_must_agree_with_it() {
        let v = check("model: deepseek-r1\naccelerator: {product: mi300x}").expect("valid");
        assert_eq!(v.vendor, Some(Vendor::Amd));
        let e = check("model: deepseek-r1\naccelerator: {product: mi300x, vendor: nvidia}")
            .expect_err("mismatch");
        assert_eq!(e.reason, "InvalidSpec");
        assert!(e.message.contains("amd"), "{}", e.message);
        let e = check("model: deepseek-r1\naccelerator: {product: tpu-v5}").expect_err("unknown");
        assert_eq!(e.reason, "UnknownAccelerator");
    }

    #[test]
    fn engines_must_run_on_the_vendor() {
        let e = check("model: deepseek-r1\nengine: vllm-ascend\naccelerator: {vendor: nvidia}")
            .expect_err("mismatch");
        assert_eq!(e.reason, "UnsupportedCombination");
        assert!(check("model: deepseek-r1\nengine: sglang\naccelerator: {vendor: amd}").is_ok());
        // vLLM's CPU build is a choice a manifest can make; SGLang and vllm-ascend are not.
        let v = check("model: deepseek-r1-distill-qwen-1.5b\nengine: vllm\nquantization: bf16\naccelerator: {vendor: cpu}")
            .expect("vllm on cpu");
        assert_eq!(
            (v.engine, v.vendor),
            (Some(Engine::Vllm), Some(Vendor::Cpu))
        );
        for engine in ["sglang", "vllm-ascend"] {
            let e = check(&format!(
                "model: deepseek-r1-distill-qwen-1.5b\nengine: {engine}\naccelerator: {{vendor: cpu}}"
            ))
            .expect_err("needs accelerators");
            assert_eq!(e.reason, "UnsupportedCombination");
        }
    }

    #[test]
    fn gguf_means_cpu() {
        let v =
            check("model: deepseek-r1-distill-qwen-7b\nquantization: gguf-q4_k_m").expect("valid");
        assert_eq!(v.vendor, Some(Vendor::Cpu));
        let e =
            check("model: deepseek-r1\nquantization: gguf-q4_k_m\naccelerator: {vendor: ascend}")
                .expect_err("gguf on npu");
        assert_eq!(e.reason, "UnsupportedCombination");
    }

    #[test]
    fn replicas_are_clamped_to_the_autoscaling_range() {
        let v =
            check("model: deepseek-r1\nreplicas: 9\nautoscaling: {minReplicas: 1, maxReplicas: 3}")
                .expect("valid");
        assert_eq!(v.replicas, 3);
        let v = check("model: deepseek-r1\nautoscaling: {minReplicas: 2, maxReplicas: 3}")
            .expect("valid");
        assert_eq!(v.replicas, 2);
        let v = check("model: deepseek-r1\nreplicas: 0").expect("valid");
        assert_eq!(v.replicas, 0);
    }

    #[test]
    fn custom_models_map_their_architecture() {
        let v = check(
            "model: custom\ncustomModel: {huggingFaceRepo: me/tuned-v3, attention: mla, parametersBillions: 671, activeParametersBillions: 37, layers: 61, hiddenSize: 7168, attentionHeads: 128, kvLoraRank: 512, qkRopeHeadDim: 64, maxPositionEmbeddings: 163840}",
        )
        .expect("valid");
        assert_eq!(v.weights_repo, "me/tuned-v3");
        assert_eq!(v.arch.kv_lora_rank, Some(512));
        assert!((v.arch.active_params_b - 37.0).abs() < 1e-9);
        let e = check("model: custom").expect_err("needs numbers");
        assert_eq!(e.reason, "InvalidSpec");
        let e = check("model: deepseek-r9").expect_err("unknown");
        assert_eq!(e.reason, "UnknownModel");
        assert!(
            e.message.contains("deepseek-r1"),
            "lists known models: {}",
            e.message
        );
    }

    #[test]
    fn weights_from_a_volume_use_its_path() {
        let v =
            check("model: deepseek-r1\nsource: {volume: {claimName: weights, path: /models/r1}}")
                .expect("valid");
        assert_eq!(v.weights_repo, "/models/r1");
    }
}
