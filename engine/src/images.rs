//! Default runtime image names (built from runtime-image/Dockerfile.*), one per vendor.

use crate::Engine;

/// Registry and repository prefix of the runtime images.
pub const REGISTRY: &str = "ghcr.io/deepseek-operator";
/// Tag of the runtime images matching this crate's version.
pub const TAG: &str = env!("CARGO_PKG_VERSION");

/// Upstream engine images the runtime images are built on (pinned).
pub const UPSTREAM_CUDA: &str = "vllm/vllm-openai:v0.11.0";
pub const UPSTREAM_ROCM: &str = "rocm/vllm:rocm6.4.1_vllm_0.10.1_20250909";
pub const UPSTREAM_ASCEND: &str = "quay.io/ascend/vllm-ascend:v0.11.0rc0";
pub const UPSTREAM_CPU: &str = "ghcr.io/ggml-org/llama.cpp:server-b6700";

/// Image flavour (Dockerfile suffix) for a vendor and engine: `cuda`, `rocm`, `ascend`, `cpu`.
/// The sim engine is inside every image; alone it gets the small `cpu` image.
pub fn flavour(vendor: &str, engine: Engine) -> &'static str {
    match (vendor, engine) {
        (_, Engine::VllmAscend) | ("ascend", _) => "ascend",
        (_, Engine::Llamacpp) | (_, Engine::Sim) | ("cpu", _) => "cpu",
        ("amd", _) => "rocm",
        _ => "cuda",
    }
}

/// Default image for a vendor and engine, e.g. `ghcr.io/deepseek-operator/runtime-cuda:0.1.0`.
/// SGLang images carry an `-sglang` suffix (built from the same Dockerfile with the SGLang base).
pub fn default_image(vendor: &str, engine: Engine) -> String {
    default_image_tagged(vendor, engine, TAG)
}

/// Default image for a vendor and engine at a given runtime image tag.
pub fn default_image_tagged(vendor: &str, engine: Engine, tag: &str) -> String {
    let suffix = if engine == Engine::Sglang {
        "-sglang"
    } else {
        ""
    };
    format!(
        "{REGISTRY}/runtime-{}{suffix}:{tag}",
        flavour(vendor, engine)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_per_vendor() {
        let v = TAG;
        assert_eq!(
            default_image("nvidia", Engine::Vllm),
            format!("ghcr.io/deepseek-operator/runtime-cuda:{v}")
        );
        assert_eq!(
            default_image("amd", Engine::Sglang),
            format!("ghcr.io/deepseek-operator/runtime-rocm-sglang:{v}")
        );
        assert_eq!(
            default_image("ascend", Engine::VllmAscend),
            format!("ghcr.io/deepseek-operator/runtime-ascend:{v}")
        );
        assert_eq!(
            default_image("cpu", Engine::Llamacpp),
            format!("ghcr.io/deepseek-operator/runtime-cpu:{v}")
        );
        assert_eq!(
            default_image("nvidia", Engine::Sim),
            format!("ghcr.io/deepseek-operator/runtime-cpu:{v}")
        );
    }
}
