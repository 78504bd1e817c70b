//! Building desired objects from the example manifests against fixture nodes labelled
//! the way real clusters label them: one case per vendor, single- and multi-node groups.

use std::path::Path;

use deepseek_e2e::fixtures::env_value;
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::config::OperatorConfig;
use deepseek_operator::desired::labels;
use deepseek_operator::desired::preview::{desired, Desired};
use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{Node, Pod};

fn nodes() -> Vec<Node> {
    serde_yaml::from_str(include_str!("fixtures/nodes-mixed.yaml")).expect("node fixture")
}

fn example(file: &str) -> DeepSeekModel {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("example exists");
    let mut m: DeepSeekModel = serde_yaml::from_str(&text).expect("example parses");
    m.metadata.namespace = Some("demo".into());
    m.metadata.uid = Some("uid-1".into());
    m
}

fn build(m: &DeepSeekModel) -> Desired {
    build_with(m, &OperatorConfig::default())
}

fn build_with(m: &DeepSeekModel, config: &OperatorConfig) -> Desired {
    let nodes = nodes();
    let refs: Vec<&Node> = nodes.iter().collect();
    match desired(m, &refs, config, Catalog::builtin()) {
        Ok(d) => d,
        Err((reason, msg)) => panic!("{reason}: {msg}"),
    }
}

fn limit(pod: &Pod, resource: &str) -> Option<String> {
    let c = &pod.spec.as_ref()?.containers[0];
    c.resources
        .as_ref()?
        .limits
        .as_ref()?
        .get(resource)
        .map(|q| q.0.clone())
}

fn label<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
        .unwrap_or("")
}

fn command(pod: &Pod) -> &str {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::ENGINE_COMMAND))
        .map(String::as_str)
        .unwrap_or("")
}

fn affinity_keys(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|sel| {
            sel.node_selector_terms
                .iter()
                .flat_map(|t| t.match_expressions.iter().flatten())
                .map(|e| (e.key.clone(), e.operator.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn r1_fp8_on_h100_is_one_group_of_two_pods_on_distinct_nodes() {
    let d = build(&example("r1-fp8-h100-multinode.yaml"));
    assert_eq!(d.placement.plan.nodes_per_replica, 2);
    assert_eq!(d.placement.plan.gpus_per_replica, 16);
    assert_eq!(d.pods.len(), 2);
    let (leader, worker) = (&d.pods[0], &d.pods[1]);
    assert_eq!(label(leader, labels::ROLE), "leader");
    assert_eq!(label(worker, labels::ROLE), "worker");
    assert_eq!(
        label(leader, labels::GROUP_ID),
        label(worker, labels::GROUP_ID)
    );
    for pod in &d.pods {
        assert_eq!(limit(pod, "nvidia.com/gpu").as_deref(), Some("8"));
        let spec = pod.spec.as_ref().expect("spec");
        let anti = spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .expect("anti-affinity");
        let term = &anti
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .expect("required")[0];
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        let together = spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|p| {
                p.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .expect("a multi-node group prefers one zone");
        assert_eq!(
            together[0].pod_affinity_term.topology_key,
            "topology.kubernetes.io/zone"
        );
        let tol = spec.tolerations.as_ref().expect("tolerations");
        assert!(tol
            .iter()
            .any(|t| t.key.as_deref() == Some("nvidia.com/gpu")));
        assert!(affinity_keys(pod).contains(&("nvidia.com/gpu.product".into(), "In".into())));
    }
    let cmd = command(leader);
    assert!(cmd.contains("--tensor-parallel-size 8"), "{cmd}");
    assert!(cmd.contains("--pipeline-parallel-size 2"), "{cmd}");
    // vLLM multi-node without Ray: every rank runs vllm serve; workers are headless.
    assert!(
        cmd.contains("--distributed-executor-backend mp --nnodes 2 --node-rank 0"),
        "{cmd}"
    );
    assert!(
        command(worker).contains("--node-rank 1") && command(worker).contains("--headless"),
        "{}",
        command(worker)
    );
}

#[test]
fn amd_example_requests_amd_gpus_with_a_rocm_image() {
    // AMD pods run as root without amdRenderGroups: the node cache needs the opt-in.
    let refused = {
        let nodes = nodes();
        let refs: Vec<&Node> = nodes.iter().collect();
        desired(
            &example("v3-fp8-mi300x.yaml"),
            &refs,
            &OperatorConfig::default(),
            Catalog::builtin(),
        )
        .err()
        .map(|(reason, _)| reason)
    };
    assert_eq!(refused, Some("RootHostPathCache"));
    let d = build_with(
        &example("v3-fp8-mi300x.yaml"),
        &OperatorConfig {
            allow_root_host_path_cache: true,
            ..Default::default()
        },
    );
    assert_eq!(d.placement.pool.accelerator, "mi300x");
    assert_eq!(d.pods.len(), 1);
    // 671 GB of FP8 weights fit four 192 GiB devices: half a node per replica.
    assert_eq!(d.placement.plan.gpus_per_replica, 4);
    assert_eq!(limit(&d.pods[0], "amd.com/gpu").as_deref(), Some("4"));
    let image = d.pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default();
    assert!(image.contains("rocm"), "{image}");
    assert!(command(&d.pods[0]).contains("--tensor-parallel-size 4"));
}

#[test]
fn ascend_example_uses_vllm_ascend_on_910b_across_nodes() {
    let d = build(&example("r1-int8-ascend.yaml"));
    assert_eq!(d.placement.pool.accelerator, "ascend-910b");
    assert_eq!(d.placement.plan.engine.as_str(), "vllm-ascend");
    for pod in &d.pods {
        assert_eq!(limit(pod, "huawei.com/Ascend910").as_deref(), Some("8"));
    }
    assert!(
        command(&d.pods[0]).contains("HCCL"),
        "{}",
        command(&d.pods[0])
    );
}

#[test]
fn cpu_example_runs_llama_cpp_away_from_gpu_nodes() {
    let d = build(&example("r1-distill-7b-cpu-gguf.yaml"));
    let pod = &d.pods[0];
    assert_eq!(d.placement.pool.accelerator, "cpu");
    assert!(command(pod).contains("llama-server"), "{}", command(pod));
    assert_eq!(limit(pod, "nvidia.com/gpu"), None);
    let requests = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].resources.as_ref())
        .and_then(|r| r.requests.clone());
    assert!(requests.is_some_and(|r| r.contains_key("memory")));
    assert!(affinity_keys(pod).contains(&("nvidia.com/gpu.product".into(), "DoesNotExist".into())));
}

#[test]
fn vllm_on_cpu_is_planned_when_asked_with_the_planned_kv_cache_and_batch() {
    let mut m = example("r1-distill-7b-cpu-gguf.yaml");
    m.spec.quantization = Some(deepseek_operator::api::Quantization::Bf16);
    m.spec.engine = deepseek_operator::api::EngineChoice::Vllm;
    m.spec.source = None;
    let d = build(&m);
    let pod = &d.pods[0];
    assert_eq!(d.placement.pool.accelerator, "cpu");
    assert_eq!(d.placement.plan.engine, deepseek_engine::Engine::Vllm);
    let cmd = command(pod);
    assert!(cmd.starts_with("vllm serve"), "{cmd}");
    // The example's concurrency (4) is the batch, and the KV cache is what the plan sized
    // for it, not a share of the node's memory.
    assert!(cmd.contains("--max-num-seqs 4"), "{cmd}");
    let kv_gib = d.placement.plan.memory.kv_cache_gib;
    let kv: u64 = cmd
        .split("--kv-cache-memory-bytes ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no --kv-cache-memory-bytes: {cmd}"));
    assert_eq!(kv, (kv_gib * f64::from(1u32 << 30)).ceil() as u64);
    assert!(
        d.workload.image.contains("runtime-cpu-vllm:"),
        "{}",
        d.workload.image
    );
    assert_eq!(limit(pod, "nvidia.com/gpu"), None);
    // The same manifest with the engine left open stays llama.cpp's (and bf16 is refused).
    m.spec.engine = deepseek_operator::api::EngineChoice::Auto;
    let nodes = nodes();
    let refs: Vec<&Node> = nodes.iter().collect();
    let refused = desired(&m, &refs, &OperatorConfig::default(), Catalog::builtin());
    assert!(
        refused.is_err(),
        "bf16 on cpu without engine vllm must be refused"
    );
}

#[test]
fn small_models_fit_one_l4_and_70b_picks_the_fewest_gpus() {
    for file in ["r1-distill-qwen-1.5b-l4.yaml", "r1-distill-qwen-7b-l4.yaml"] {
        let d = build(&example(file));
        assert_eq!(d.placement.plan.gpus_per_replica, 1, "{file}");
        assert_eq!(limit(&d.pods[0], "nvidia.com/gpu").as_deref(), Some("1"));
    }
    let d70 = build(&example("r1-distill-llama-70b-nvidia.yaml"));
    // 141 GB of BF16 weights: two H200s beat four H100s.
    assert_eq!(d70.placement.pool.accelerator, "h200");
    assert_eq!(d70.placement.plan.gpus_per_replica, 2);
    let d32 = build(&example("r1-distill-qwen-32b-h100.yaml"));
    assert_eq!(d32.placement.pool.accelerator, "h100-80gb");
}

#[test]
fn services_expose_leaders_and_a_headless_rendezvous() {
    let d = build(&example("r1-fp8-h100-multinode.yaml"));
    assert_eq!(d.services.len(), 2);
    let api = d
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("r1"))
        .expect("api svc");
    let sel = api
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    assert_eq!(sel.get(labels::ROLE).map(String::as_str), Some("leader"));
    let ranks = d
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("r1--ranks"))
        .expect("headless");
    let spec = ranks.spec.as_ref().expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    // Every pod resolves its leader through that Service.
    let sub = d.pods[1].spec.as_ref().and_then(|s| s.subdomain.clone());
    assert_eq!(sub.as_deref(), Some("r1--ranks"));
}

#[test]
fn a_one_node_group_gets_no_headless_service_and_keeps_its_subdomain() {
    let d = build(&example("r1-distill-qwen-1.5b-l4.yaml"));
    assert_eq!(d.placement.plan.nodes_per_replica, 1);
    let names: Vec<_> = d
        .services
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["r1-distill-1-5b"], "the API Service only");
    // Unchanged pods: a plan that turns multi-node later adds the Service, no restart.
    let sub = d.pods[0].spec.as_ref().and_then(|s| s.subdomain.clone());
    assert_eq!(sub.as_deref(), Some("r1-distill-1-5b--ranks"));
}

#[test]
fn template_hash_follows_pod_inputs_only() {
    let base = example("r1-distill-qwen-1.5b-l4.yaml");
    let h = |m: &DeepSeekModel| build(m).workload.template_hash;
    let mut scaled = base.clone();
    scaled.spec.replicas = Some(3);
    assert_eq!(h(&base), h(&scaled), "scaling must not restart pods");
    let mut reimaged = base.clone();
    reimaged.spec.image = Some("example.com/custom:2".into());
    assert_ne!(h(&base), h(&reimaged));
    assert_eq!(build(&scaled).pods.len(), 3);
}

#[test]
fn impossible_manifest_names_the_shortfall() {
    let mut m = example("r1-fp8-h100-multinode.yaml");
    m.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
        product: Some("l4".into()),
        ..Default::default()
    });
    let nodes = nodes();
    let refs: Vec<&Node> = nodes.iter().collect();
    let err = desired(&m, &refs, &OperatorConfig::default(), Catalog::builtin())
        .err()
        .expect("refused");
    assert_eq!(err.0, "InsufficientAccelerators");
    assert!(
        err.1.contains("largest matching pool: 2 nodes of 1 x"),
        "{}",
        err.1
    );
}

#[test]
fn unknown_model_and_vendor_mismatch_are_refused_with_reasons() {
    let mut m = example("r1-distill-qwen-1.5b-l4.yaml");
    m.spec.model = "deepseek-r9".into();
    let nodes = nodes();
    let refs: Vec<&Node> = nodes.iter().collect();
    let err = desired(&m, &refs, &OperatorConfig::default(), Catalog::builtin())
        .err()
        .expect("refused");
    assert_eq!(err.0, "UnknownModel");
    let mut m = example("r1-fp8-h100-multinode.yaml");
    m.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
        vendor: Some(deepseek_operator::api::Vendor::Ascend),
        ..Default::default()
    });
    let err = desired(&m, &refs, &OperatorConfig::default(), Catalog::builtin())
        .err()
        .expect("refused");
    assert_eq!(err.0, "UnsupportedCombination", "{}", err.1);
    assert!(
        err.1.contains("int8") || err.1.contains("bf16"),
        "suggests an alternative: {}",
        err.1
    );
}

#[test]
fn every_rank_of_a_group_gets_the_groups_token_and_the_group_port() {
    let d = build(&example("r1-fp8-h100-multinode.yaml"));
    assert!(d.pods.len() >= 2, "a multi-node group");
    let tokens: Vec<Option<String>> = d
        .pods
        .iter()
        .map(|p| env_value(p, deepseek_engine::env::GROUP_TOKEN))
        .collect();
    let first = tokens[0].clone().expect("the leader has a group token");
    assert_eq!(first.len(), 64);
    assert!(tokens.iter().all(|t| t.as_deref() == Some(first.as_str())));
    let gid = label(&d.pods[0], labels::GROUP_ID).to_string();
    assert_eq!(
        first,
        deepseek_operator::desired::pods::group_token("uid-1", &gid)
    );
    for p in &d.pods {
        let ports: Vec<i32> = p.spec.as_ref().expect("spec").containers[0]
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .collect();
        assert!(
            ports.contains(&i32::from(deepseek_engine::GROUP_PORT)),
            "{ports:?}"
        );
    }
}

#[test]
fn the_leader_drains_before_stopping_and_the_grace_period_covers_the_group() {
    let d = build(&example("r1-fp8-h100-multinode.yaml"));
    let (leader, worker) = (&d.pods[0], &d.pods[1]);
    let pre_stop = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.containers[0].lifecycle.clone())
            .and_then(|l| l.pre_stop)
    };
    // The drain is on the group port with the group token: the hook runs the launcher's
    // own `drain` in the container, never an HTTP GET to the public launcher port.
    let hook = pre_stop(leader).expect("the leader has a preStop hook");
    assert!(hook.http_get.is_none(), "{hook:?}");
    let command = hook.exec.and_then(|e| e.command).unwrap_or_default();
    assert_eq!(command, deepseek_engine::DRAIN_COMMAND);
    assert!(
        pre_stop(worker).is_none(),
        "workers wait for the leader instead"
    );
    for p in &d.pods {
        assert_eq!(
            p.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds),
            Some(deepseek_engine::TERMINATION_GRACE_PERIOD_SECONDS)
        );
    }
}
