//! `deepseek-operator crd`: the CRD YAML generated from the Rust types.

use kube::CustomResourceExt;

use crate::api::DeepSeekModel;

pub fn render() -> Result<String, String> {
    serde_yaml::to_string(&DeepSeekModel::crd()).map_err(|e| format!("failed to render CRD: {e}"))
}
