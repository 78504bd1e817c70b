//! `deepseek-operator plan` shows what the operator deploys: for every example manifest,
//! the layout `plan --output json` prints for the manifest's settings on the pool the
//! operator chose equals the layout of the pods `deepseek-operator render` builds (both
//! roles of a disaggregated model included). Issue 26, item 9: the CLI once planned
//! disaggregated roles for throughput while the operator planned them cheapest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use deepseek_operator::inventory::{pools_from_nodes, Pool};
use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::Node;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn operator(args: &[String]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_deepseek-operator"))
        .args(args)
        .output()
        .expect("run deepseek-operator");
    assert!(
        o.status.success(),
        "deepseek-operator {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

/// Every YAML file under examples/, subdirectories included.
fn example_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read examples/")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            example_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The leader pod's launch config and pool of each role ("aggregated" for one role).
fn rendered_leaders(render: &str) -> BTreeMap<String, (Value, String)> {
    let mut out = BTreeMap::new();
    for doc in yaml_docs(render) {
        if doc["kind"] != "Pod" {
            continue;
        }
        let labels = &doc["metadata"]["labels"];
        if labels["inference.deepseek-operator.dev/rank"] != "0" {
            continue;
        }
        let env = doc["spec"]["containers"][0]["env"]
            .as_array()
            .expect("container env");
        let launch = env
            .iter()
            .find(|e| e["name"] == "DSO_LAUNCH_CONFIG")
            .and_then(|e| e["value"].as_str())
            .expect("DSO_LAUNCH_CONFIG on a leader");
        let launch: Value = serde_json::from_str(launch).expect("launch config JSON");
        let role = launch["disaggregation"]["role"]
            .as_str()
            .unwrap_or("aggregated")
            .to_string();
        let pool = labels["inference.deepseek-operator.dev/pool"]
            .as_str()
            .expect("pool label")
            .to_string();
        out.entry(role).or_insert((launch, pool));
    }
    out
}

/// The pool a pod was placed in, narrowed as placement narrows it by the manifest's
/// nodeSelector (its node count bounds the replica).
fn pool(pools: &[Pool], name: &str, accelerator: &Value) -> Pool {
    let selector: BTreeMap<String, String> =
        serde_json::from_value(accelerator["nodeSelector"].clone()).unwrap_or_default();
    pools
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("pool {name} among the fixture's pools"))
        .narrowed(&selector)
        .expect("the manifest's nodeSelector picks nodes of the pool")
}

fn push(args: &mut Vec<String>, flag: &str, v: &Value) {
    let text = match v {
        Value::Null => return,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    args.push(flag.to_string());
    args.push(text);
}

/// `plan` flags for the pool: product, node size, node count and, for CPU, node memory.
fn pool_flags(args: &mut Vec<String>, p: &Pool) {
    push(args, "--accelerator", &Value::from(p.accelerator.clone()));
    push(args, "--gpus-per-node", &Value::from(p.per_node));
    push(args, "--max-nodes", &Value::from(p.max_nodes));
    if p.resource_name.is_empty() {
        if let Some(gib) = p.node_memory_gib {
            push(args, "--memory-gib", &Value::from(gib));
        }
    }
}

/// `plan` flags for the manifest's model-wide fields.
fn spec_flags(args: &mut Vec<String>, spec: &Value) {
    push(args, "--model", &spec["model"]);
    push(args, "--quantization", &spec["quantization"]);
    push(args, "--engine", &spec["engine"]);
    let s = &spec["serving"];
    push(args, "--max-model-len", &s["maxModelLen"]);
    push(args, "--concurrency", &s["concurrency"]);
    push(args, "--gpu-memory-utilization", &s["gpuMemoryUtilization"]);
    push(args, "--kv-cache-dtype", &s["kvCacheDtype"]);
}

/// `plan` flags for a `parallelism` block that applies to the whole plan.
fn parallel_flags(args: &mut Vec<String>, p: &Value) {
    push(args, "--tensor-parallel", &p["tensor"]);
    push(args, "--pipeline-parallel", &p["pipeline"]);
    push(args, "--data-parallel", &p["data"]);
    push(args, "--layout-objective", &p["objective"]);
    push(args, "--redundant-experts", &p["redundantExperts"]);
    if p["speculativeMtp"] == true {
        args.push("--speculative-mtp".into());
    }
}

/// The layout fields both sides name, from a `plan --output json` plan.
fn from_plan(p: &Value) -> Value {
    let ep = p["expertParallel"].as_u64().expect("expertParallel");
    serde_json::json!({
        "engine": p["engine"],
        "quantization": p["quantization"],
        "tensorParallel": p["tensorParallel"],
        "pipelineParallel": p["pipelineParallel"],
        "nodes": p["nodesPerReplica"],
        "gpusPerNode": p["gpusPerNode"],
        "maxModelLen": p["maxModelLen"],
        "dataParallel": if ep > 1 { p["dataParallel"].clone() } else { Value::Null },
        "expertParallel": if ep > 1 { p["expertParallel"].clone() } else { Value::Null },
        "redundantExperts": if ep > 1 { p["redundantExperts"].clone() } else { Value::Null },
    })
}

/// The same fields from a rendered leader's launch config.
fn from_launch(l: &Value) -> Value {
    let e = &l["expert"];
    serde_json::json!({
        "engine": l["engine"],
        "quantization": l["quantization"],
        "tensorParallel": l["tensorParallel"],
        "pipelineParallel": l["pipelineParallel"],
        "nodes": l["nodes"],
        "gpusPerNode": l["gpusPerNode"],
        "maxModelLen": l["maxModelLen"],
        "dataParallel": e["dataParallel"],
        "expertParallel": e["expertParallel"],
        "redundantExperts": e["redundantExperts"],
    })
}

#[test]
fn plan_shows_the_layout_render_deploys_for_every_example() {
    let root = root();
    let fixtures = root.join("operator/tests/fixtures");
    // As scripts/scan renders them: the AMD example runs as root with a node cache, which
    // the operator refuses unless the administrator opts in.
    let config = std::env::temp_dir().join(format!("cli-plan-render-{}.yaml", std::process::id()));
    std::fs::write(&config, "allowRootHostPathCache: true\n").expect("write the config");
    let mut files = Vec::new();
    example_files(&root.join("examples"), &mut files);
    let mut compared = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read example");
        let manifest: Value = serde_yaml::from_str(&text).expect("example parses");
        let kind = manifest["kind"].as_str().unwrap_or_default();
        if kind == "NodePool" {
            continue; // Karpenter's, not a model: nothing to plan.
        }
        assert_eq!(
            kind,
            "DeepSeekModel",
            "{}: an example of an unknown kind",
            file.display()
        );
        let spec = &manifest["spec"];
        let disaggregated = spec["serving"]["mode"] == "disaggregated";
        // As scripts/scan renders them: each role on its own node group of one product.
        let nodes_file = fixtures.join(if disaggregated {
            "nodes-pd.yaml"
        } else {
            "nodes-mixed.yaml"
        });
        let nodes: Vec<Node> =
            serde_yaml::from_str(&std::fs::read_to_string(&nodes_file).expect("read node fixture"))
                .expect("fixture nodes");
        let refs: Vec<&Node> = nodes.iter().collect();
        let pools = pools_from_nodes(&refs, Catalog::builtin(), &[]);

        let render = operator(&[
            "render".into(),
            "--model".into(),
            file.display().to_string(),
            "--nodes".into(),
            nodes_file.display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ]);
        let leaders = rendered_leaders(&render);
        let name = file.display();

        let mut args: Vec<String> = vec!["plan".into(), "--output".into(), "json".into()];
        spec_flags(&mut args, spec);
        if disaggregated {
            let (prefill_launch, prefill_pool) = leaders.get("prefill").expect("a prefill leader");
            let (decode_launch, decode_pool) = leaders.get("decode").expect("a decode leader");
            let pp = pool(&pools, prefill_pool, &spec["prefill"]["accelerator"]);
            let dp = pool(&pools, decode_pool, &spec["decode"]["accelerator"]);
            // The CLI sizes both roles on one node size and node count (decode may name
            // its own product): the examples keep to that.
            assert_eq!(
                (pp.per_node, pp.max_nodes),
                (dp.per_node, dp.max_nodes),
                "{name}: the roles' node groups differ in size, which plan cannot express"
            );
            args.push("--mode".into());
            args.push("disaggregated".into());
            pool_flags(&mut args, &pp);
            if dp.accelerator != pp.accelerator {
                push(
                    &mut args,
                    "--decode-accelerator",
                    &Value::from(dp.accelerator.clone()),
                );
            }
            let pre = &spec["prefill"]["parallelism"];
            let dec = &spec["decode"]["parallelism"];
            for key in [
                "pipeline",
                "objective",
                "redundantExperts",
                "speculativeMtp",
            ] {
                assert_eq!(
                    pre[key], dec[key],
                    "{name}: roles differ in parallelism.{key}, which plan takes for both"
                );
            }
            push(&mut args, "--prefill-tensor-parallel", &pre["tensor"]);
            push(&mut args, "--prefill-data-parallel", &pre["data"]);
            push(&mut args, "--decode-tensor-parallel", &dec["tensor"]);
            push(&mut args, "--decode-data-parallel", &dec["data"]);
            push(&mut args, "--pipeline-parallel", &pre["pipeline"]);
            push(&mut args, "--layout-objective", &pre["objective"]);
            push(&mut args, "--redundant-experts", &pre["redundantExperts"]);
            if pre["speculativeMtp"] == true {
                args.push("--speculative-mtp".into());
            }
            let planned: Value = serde_json::from_str(&operator(&args)).expect("plan JSON");
            assert_eq!(
                from_plan(&planned["prefill"]),
                from_launch(prefill_launch),
                "{name}: prefill as planned by `{}` vs rendered",
                args.join(" ")
            );
            assert_eq!(
                from_plan(&planned["decode"]),
                from_launch(decode_launch),
                "{name}: decode as planned by `{}` vs rendered",
                args.join(" ")
            );
        } else {
            assert_eq!(leaders.len(), 1, "{name}: one kind of group");
            let (launch, pool_name) = leaders.get("aggregated").expect("a leader");
            let p = pool(&pools, pool_name, &spec["accelerator"]);
            pool_flags(&mut args, &p);
            parallel_flags(&mut args, &spec["parallelism"]);
            let planned: Value = serde_json::from_str(&operator(&args)).expect("plan JSON");
            assert_eq!(
                from_plan(&planned),
                from_launch(launch),
                "{name}: as planned by `{}` vs rendered",
                args.join(" ")
            );
        }
        compared += 1;
    }
    assert!(compared >= 10, "compared {compared} example models");
}
