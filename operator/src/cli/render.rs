//! `deepseek-operator render`: the pods, Services and NetworkPolicy the operator would create for a
//! manifest against a set of Nodes, without a cluster (for a disaggregated model: both roles'
//! children, the router's objects and, on Ascend, the KV store). For reviewing what a manifest
//! turns into, and for feeding policy scanners (CI runs checkov on this output).

use std::path::PathBuf;

use clap::Args;
use k8s_openapi::api::core::v1::Node;

use deepseek_planner::Catalog;

use crate::api::{DeepSeekModel, ServingMode, Vendor};
use crate::config::OperatorConfig;
use crate::desired::disaggregated::{kv_store_objects, role_model, router_objects, ROLES};
use crate::desired::preview::{desired, Desired};

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The DeepSeekModel manifest (YAML).
    #[arg(long)]
    pub model: PathBuf,
    /// Nodes to place against: a YAML list of Node objects, or a `kind: List`.
    #[arg(long)]
    pub nodes: PathBuf,
    /// Operator configuration file (as `run --config`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Namespace to render into when the manifest names none.
    #[arg(long, default_value = "default")]
    pub namespace: String,
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Nodes from a plain YAML list or a `kind: List` document.
fn parse_nodes(text: &str) -> Result<Vec<Node>, String> {
    #[derive(serde::Deserialize)]
    struct List {
        items: Vec<Node>,
    }
    serde_yaml::from_str::<Vec<Node>>(text)
        .or_else(|_| serde_yaml::from_str::<List>(text).map(|l| l.items))
        .map_err(|e| format!("nodes must be a YAML list of Node objects or a kind: List: {e}"))
}

pub fn run(args: &RenderArgs) -> Result<String, String> {
    let mut model: DeepSeekModel = serde_yaml::from_str(&read(&args.model)?)
        .map_err(|e| format!("invalid DeepSeekModel manifest: {e}"))?;
    if model.metadata.namespace.is_none() {
        model.metadata.namespace = Some(args.namespace.clone());
    }
    let nodes = parse_nodes(&read(&args.nodes)?)?;
    let config = match &args.config {
        Some(p) => OperatorConfig::from_yaml(&read(p)?)?,
        None => OperatorConfig::default(),
    };
    let refs: Vec<&Node> = nodes.iter().collect();
    let mut docs: Vec<Result<String, serde_yaml::Error>> = Vec::new();
    if model.spec.serving_mode() == ServingMode::Disaggregated {
        // What the controller keeps for it: both role models' children, the router and,
        // on Ascend, the KV store.
        if model.metadata.uid.is_none() {
            model.metadata.uid = Some("rendered-offline".into());
        }
        let router = router_objects(&model, &config.router_image(), &config.helper_pods)?;
        docs.push(serde_yaml::to_string(&router.service_account));
        docs.push(serde_yaml::to_string(&router.role));
        docs.push(serde_yaml::to_string(&router.role_binding));
        docs.push(serde_yaml::to_string(&router.deployment));
        docs.push(serde_yaml::to_string(&router.service));
        let mut ascend = false;
        for role in ROLES {
            let role_model = role_model(&model, role)?;
            let d = desired(&role_model, &refs, &config, Catalog::builtin())
                .map_err(|(reason, msg)| format!("{role} role: {reason}: {msg}"))?;
            ascend |= d.workload.launch.vendor == Vendor::Ascend.as_str();
            push_desired(&mut docs, &d);
        }
        if ascend {
            let image = config.image_for(Vendor::Ascend, deepseek_engine::Engine::Sglang);
            let (deployment, service) = kv_store_objects(&model, &image, &config.helper_pods)?;
            docs.push(serde_yaml::to_string(&deployment));
            docs.push(serde_yaml::to_string(&service));
        }
    } else {
        let d = desired(&model, &refs, &config, Catalog::builtin())
            .map_err(|(reason, msg)| format!("{reason}: {msg}"))?;
        push_desired(&mut docs, &d);
    }
    let mut out = String::new();
    for doc in docs {
        let yaml = doc.map_err(|e| format!("cannot render YAML: {e}"))?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}

fn push_desired(docs: &mut Vec<Result<String, serde_yaml::Error>>, d: &Desired) {
    docs.extend(d.services.iter().map(serde_yaml::to_string));
    docs.extend(d.pods.iter().map(serde_yaml::to_string));
}
