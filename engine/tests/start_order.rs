//! The start order of every rank (`LaunchSteps::order`), which the launcher executes as
//! is: the leader's head is up before it accepts joins, workers join before they start
//! anything, and no rank serves before the whole group has joined.

use deepseek_engine::{render, Engine, LaunchConfig, Role, Stage};

fn cfg(engine: Engine, vendor: &str, nodes: u32) -> LaunchConfig {
    let model = "deepseek-ai/DeepSeek-V3";
    LaunchConfig::new(engine, vendor, model, "deepseek-v3", "bf16", nodes, 8)
}

/// Stage names with commands reduced to their program, e.g. `prepare ray`.
fn names(stages: &[Stage]) -> Vec<String> {
    stages.iter().map(Stage::name).collect()
}

fn order(c: &LaunchConfig, rank: u32) -> Vec<String> {
    let steps = render(c, rank, "leader.group-0").expect("renders");
    names(&steps.order(Role::of_rank(rank)))
}

#[test]
fn multi_node_ranks_start_in_order() {
    // (engine, vendor, leader's stages, worker's stages)
    let cases: [(Engine, &str, &[&str], &[&str]); 4] = [
        (
            Engine::Vllm,
            "nvidia",
            &["open-rendezvous", "await-group", "serve vllm"],
            &["join-leader", "await-group", "serve vllm"],
        ),
        (
            Engine::VllmAscend,
            "ascend",
            &[
                "prepare ray",
                "open-rendezvous",
                "await-group",
                "serve vllm",
            ],
            &["join-leader", "await-group", "serve ray"],
        ),
        (
            Engine::Sglang,
            "amd",
            &["open-rendezvous", "await-group", "serve python3"],
            &["join-leader", "await-group", "serve python3"],
        ),
        (
            Engine::Sim,
            "nvidia",
            &["open-rendezvous", "await-group", "serve deepseek-launcher"],
            &["join-leader", "await-group", "serve deepseek-launcher"],
        ),
    ];
    for (engine, vendor, leader, worker) in cases {
        let c = cfg(engine, vendor, 2);
        assert_eq!(order(&c, 0), leader, "{engine} leader");
        assert_eq!(order(&c, 1), worker, "{engine} worker");
    }
}

#[test]
fn the_ray_head_is_the_leaders_prepare_step_and_workers_dial_it() {
    let c = cfg(Engine::VllmAscend, "ascend", 2);
    let leader = render(&c, 0, "leader.group-0").expect("renders");
    let stages = leader.order(Role::Leader);
    let Some(Stage::Prepare(head)) = stages.first() else {
        panic!("the leader starts with its head: {stages:?}")
    };
    assert!(head.has_arg("--head"));
    let worker = render(&c, 1, "leader.group-0").expect("renders");
    let stages = worker.order(Role::Worker);
    let Some(Stage::Serve(ray)) = stages.last() else {
        panic!("the worker ends with its Ray node: {stages:?}")
    };
    assert!(ray.has_arg("--block") && ray.args.iter().any(|a| a.contains("leader.group-0")));
}

#[test]
fn a_single_node_group_opens_and_serves() {
    for (engine, vendor) in [
        (Engine::Vllm, "nvidia"),
        (Engine::Sglang, "nvidia"),
        (Engine::Sim, "nvidia"),
    ] {
        let c = cfg(engine, vendor, 1);
        let o = order(&c, 0);
        assert_eq!(o[..2], ["open-rendezvous", "await-group"], "{engine}");
        assert!(o[2].starts_with("serve "), "{engine}: {o:?}");
    }
}
