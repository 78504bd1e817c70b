//! Normalised load metrics: names the launcher serves on `LAUNCHER_PORT` `/metrics`, the
//! one mapping from each engine's Prometheus names to them, and a parser of the launcher's
//! normalised text the operator's autoscaler reuses.
//!
//! Engine names mapped (first present wins; gauges summed over label sets, the KV usage
//! takes the maximum): vLLM >= 0.10 `vllm:num_requests_waiting`, `vllm:num_requests_running`,
//! `vllm:kv_cache_usage_perc`; older vLLM `vllm:gpu_cache_usage_perc`; SGLang
//! `sglang:num_queue_reqs`, `sglang:num_running_reqs`, `sglang:token_usage`; llama.cpp
//! `llamacpp:requests_deferred`, `llamacpp:requests_processing`,
//! `llamacpp:kv_cache_usage_ratio`.

use std::fmt::Write as _;

/// Requests waiting for a batch slot.
pub const QUEUE_DEPTH: &str = "dso_queue_depth";
/// Requests in the running batch.
pub const RUNNING: &str = "dso_requests_running";
/// KV cache in use, 0-1.
pub const KV_CACHE_USAGE: &str = "dso_kv_cache_usage";
/// 1 when all ranks joined and the engine is healthy (what `/readyz` answers).
pub const READY: &str = "dso_ready";
/// Ranks of the group that joined the leader's rendezvous (leader included).
pub const RANKS_JOINED: &str = "dso_ranks_joined";
/// Pods in the replica group.
pub const GROUP_SIZE: &str = "dso_group_size";
/// 1 when the launcher could scrape the engine's own `/metrics`.
pub const ENGINE_UP: &str = "dso_engine_up";
/// Seconds since the launcher last read the engine (it reads in the background, so a
/// saturated engine never slows `/metrics`); the autoscaler treats old readings as stale.
/// Absent until the first reading. Rendered and parsed apart from [`NormalisedMetrics`].
pub const METRICS_AGE: &str = "dso_metrics_age_seconds";

/// Engine names of the queue depth, in order of preference. Public so the fixture tests can
/// check every one against the pinned engines (`engine/tests/real_metrics_fixtures.rs`).
pub const QUEUE_SOURCES: [&str; 3] = [
    "vllm:num_requests_waiting",
    "sglang:num_queue_reqs",
    "llamacpp:requests_deferred",
];
/// Engine names of the running-batch size, in order of preference.
pub const RUNNING_SOURCES: [&str; 3] = [
    "vllm:num_requests_running",
    "sglang:num_running_reqs",
    "llamacpp:requests_processing",
];
/// Engine names of the KV cache usage, in order of preference.
pub const KV_SOURCES: [&str; 4] = [
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
    "llamacpp:kv_cache_usage_ratio",
];

/// One sample line of the Prometheus text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses Prometheus text exposition; comments and malformed lines are skipped.
pub fn parse_text(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    let value_text = rest.split_whitespace().next()?;
    let value = value_text.parse::<f64>().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `k="v",...}` and returns the labels and the text after `}`.
fn parse_labels(body: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut chars = body.char_indices().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|(_, c)| c.is_whitespace() || *c == ',')
        {
            chars.next();
        }
        let (start, c) = chars.next()?;
        if c == '}' {
            return Some((labels, &body[start + 1..]));
        }
        let mut key = String::from(c);
        loop {
            let (_, c) = chars.next()?;
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            let (_, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.push((key.trim().to_string(), value));
    }
}

/// Load figures read from an engine's `/metrics` (`None`: the engine does not export it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineLoad {
    pub queue_depth: Option<f64>,
    pub running: Option<f64>,
    pub kv_cache_usage: Option<f64>,
}

/// Maps any supported engine's Prometheus text to the normalised load.
pub fn map_engine_metrics(text: &str) -> EngineLoad {
    let samples = parse_text(text);
    let pick = |sources: &[&str], combine: fn(f64, f64) -> f64| {
        sources.iter().find_map(|src| {
            samples
                .iter()
                .filter(|s| s.name == *src && s.value.is_finite())
                .map(|s| s.value)
                .reduce(combine)
        })
    };
    EngineLoad {
        queue_depth: pick(&QUEUE_SOURCES, |a, b| a + b),
        running: pick(&RUNNING_SOURCES, |a, b| a + b),
        kv_cache_usage: pick(&KV_SOURCES, f64::max).map(|v| v.clamp(0.0, 1.0)),
    }
}

/// Everything the launcher's `/metrics` says.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NormalisedMetrics {
    pub load: EngineLoad,
    pub engine_up: bool,
    pub ready: bool,
    pub ranks_joined: u32,
    pub group_size: u32,
}

/// Renders the launcher's normalised text (with HELP and TYPE lines).
pub fn render_normalised(m: &NormalisedMetrics) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
    };
    let flag = |b: bool| Some(if b { 1.0 } else { 0.0 });
    gauge(
        QUEUE_DEPTH,
        "Requests waiting for a batch slot.",
        m.load.queue_depth,
    );
    gauge(RUNNING, "Requests in the running batch.", m.load.running);
    gauge(
        KV_CACHE_USAGE,
        "KV cache in use (0-1).",
        m.load.kv_cache_usage,
    );
    gauge(
        ENGINE_UP,
        "Engine metrics scrape succeeded.",
        flag(m.engine_up),
    );
    gauge(
        READY,
        "All ranks joined and the engine is healthy.",
        flag(m.ready),
    );
    gauge(
        RANKS_JOINED,
        "Ranks joined at the leader's rendezvous.",
        Some(f64::from(m.ranks_joined)),
    );
    gauge(
        GROUP_SIZE,
        "Pods in the replica group.",
        Some(f64::from(m.group_size)),
    );
    out
}

/// The age line of the launcher's text, appended after [`render_normalised`].
pub fn render_age(age_seconds: f64) -> String {
    format!(
        "# HELP {METRICS_AGE} Seconds since the engine was last read.\n# TYPE {METRICS_AGE} gauge\n{METRICS_AGE} {age_seconds}\n"
    )
}

/// The age of the reading in the launcher's text; `None` from launchers that predate it.
pub fn parse_age(text: &str) -> Option<f64> {
    parse_text(text)
        .into_iter()
        .find(|s| s.name == METRICS_AGE)
        .map(|s| s.value)
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Parses the launcher's normalised text (the autoscaler's input).
pub fn parse_normalised(text: &str) -> NormalisedMetrics {
    let mut m = NormalisedMetrics::default();
    for s in parse_text(text) {
        match s.name.as_str() {
            QUEUE_DEPTH => m.load.queue_depth = Some(s.value),
            RUNNING => m.load.running = Some(s.value),
            KV_CACHE_USAGE => m.load.kv_cache_usage = Some(s.value),
            ENGINE_UP => m.engine_up = s.value >= 1.0,
            READY => m.ready = s.value >= 1.0,
            RANKS_JOINED => m.ranks_joined = s.value.max(0.0) as u32,
            GROUP_SIZE => m.group_size = s.value.max(0.0) as u32,
            _ => {}
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes_and_timestamps() {
        let s = parse_text(
            "# HELP x y\nx{a=\"1,}\\\"2\",b=\"c\"} 3.5 1700000000\nbad line\ny 2\nz{} +Inf\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0].labels,
            vec![("a".into(), "1,}\"2".into()), ("b".into(), "c".into())]
        );
        assert_eq!(s[0].value, 3.5);
        assert_eq!(s[1].name, "y");
        assert!(s[2].value.is_infinite());
    }

    #[test]
    fn the_age_of_a_reading_round_trips_and_refuses_nonsense() {
        assert_eq!(parse_age(&render_age(1.5)), Some(1.5));
        assert_eq!(parse_age("dso_queue_depth 1\n"), None);
        assert_eq!(parse_age("dso_metrics_age_seconds -1\n"), None);
        assert_eq!(parse_age("dso_metrics_age_seconds NaN\n"), None);
    }

    #[test]
    fn normalised_text_round_trips() {
        let m = NormalisedMetrics {
            load: EngineLoad {
                queue_depth: Some(4.0),
                running: Some(2.0),
                kv_cache_usage: Some(0.25),
            },
            engine_up: true,
            ready: true,
            ranks_joined: 2,
            group_size: 2,
        };
        assert_eq!(parse_normalised(&render_normalised(&m)), m);
        let down = NormalisedMetrics {
            group_size: 3,
            ranks_joined: 1,
            ..Default::default()
        };
        let text = render_normalised(&down);
        assert!(!text.contains(QUEUE_DEPTH));
        assert_eq!(parse_normalised(&text), down);
    }

    #[test]
    fn kv_usage_takes_max_and_counts_sum() {
        let l = map_engine_metrics(
            "vllm:num_requests_waiting{engine=\"0\"} 2\nvllm:num_requests_waiting{engine=\"1\"} 3\n\
             vllm:kv_cache_usage_perc{engine=\"0\"} 0.2\nvllm:kv_cache_usage_perc{engine=\"1\"} 0.4\n",
        );
        assert_eq!(l.queue_depth, Some(5.0));
        assert_eq!(l.kv_cache_usage, Some(0.4));
        assert_eq!(l.running, None);
    }
}
