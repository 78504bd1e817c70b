//! `deepseek-operator render`: the pods, Services and NetworkPolicy the operator would create for a
//! manifest against a set of Nodes, without a cluster. For reviewing what a manifest
//! turns into, and for feeding policy scanners (CI runs checkov on this output).

use std::path::PathBuf;

use clap::Args;
use k8s_openapi::api::core::v1::Node;

use crate::api::DeepSeekModel;
use crate::build::desired::desired;
use crate::config::OperatorConfig;

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
    let d = desired(&model, &refs, &config, deepseek_planner::Catalog::builtin())
        .map_err(|(reason, msg)| format!("{reason}: {msg}"))?;
    let mut out = String::new();
    for doc in d
        .services
        .iter()
        .map(serde_yaml::to_string)
        .chain(d.pods.iter().map(serde_yaml::to_string))
    {
        let yaml = doc.map_err(|e| format!("cannot render YAML: {e}"))?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}
