//! The sim's `/metrics` in vLLM's Prometheus format (names of vLLM v0.11).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::model::SimModel;

/// Renders the sim's metrics as vLLM would.
pub fn render(m: &SimModel) -> String {
    let c = &m.counters;
    let labels = format!(
        "{{engine=\"0\",model_name=\"{}\"}}",
        m.settings
            .served_model_name
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    );
    let mut out = String::with_capacity(1024);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}"
        );
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    metric(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        load(&c.running),
    );
    metric(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        load(&c.waiting),
    );
    metric(
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        m.kv_usage().to_string(),
    );
    metric(
        "vllm:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        load(&c.prompt_tokens_total),
    );
    metric(
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        load(&c.generation_tokens_total),
    );
    metric(
        "vllm:request_success_total",
        "counter",
        "Count of successfully processed requests.",
        load(&c.requests_total),
    );
    out
}
