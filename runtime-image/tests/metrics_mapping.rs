//! The one engine -> normalised metrics mapping, against fixtures of each engine's /metrics.

use deepseek_engine::metrics::{
    map_engine_metrics, parse_normalised, render_normalised, EngineLoad, NormalisedMetrics,
};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

#[test]
fn maps_every_engine_format() {
    let cases = [
        ("vllm_v0.11.txt", Some(7.0), Some(12.0), Some(0.4375)),
        (
            "vllm_v0.6_legacy.txt",
            Some(0.0),
            Some(3.0),
            Some(0.0859375),
        ),
        ("sglang_v0.5.txt", Some(9.0), Some(48.0), Some(0.62)),
        ("llamacpp_b6700.txt", Some(5.0), Some(2.0), Some(0.25)),
    ];
    for (file, queue, running, kv) in cases {
        let load = map_engine_metrics(&fixture(file));
        assert_eq!(
            load,
            EngineLoad {
                queue_depth: queue,
                running,
                kv_cache_usage: kv
            },
            "{file}"
        );
    }
}

#[test]
fn missing_metrics_stay_unknown() {
    let load = map_engine_metrics("# nothing here\nprocess_cpu_seconds_total 3\n");
    assert_eq!(load, EngineLoad::default());
}

#[test]
fn sim_metrics_map_like_vllm() {
    let model = deepseek_launcher::sim::SimModel::new(deepseek_launcher::sim::SimSettings {
        served_model_name: "a \"quoted\" name".into(),
        max_model_len: 64,
        profile: deepseek_engine::SimProfile::default(),
        time_scale: 0.0,
        pd_role: None,
        load_delay: std::time::Duration::ZERO,
    });
    let load = map_engine_metrics(&deepseek_launcher::sim::prom::render(&model));
    assert_eq!(load.queue_depth, Some(0.0));
    assert_eq!(load.running, Some(0.0));
    assert_eq!(load.kv_cache_usage, Some(0.0));
}

#[test]
fn launcher_text_round_trips_for_the_autoscaler() {
    let m = NormalisedMetrics {
        load: map_engine_metrics(&fixture("sglang_v0.5.txt")),
        engine_up: true,
        ready: true,
        ranks_joined: 2,
        group_size: 2,
    };
    assert_eq!(parse_normalised(&render_normalised(&m)), m);
}
