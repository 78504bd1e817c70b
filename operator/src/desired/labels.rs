//! Label keys and label sets on every child object. Selectors, orphan cleanup and the
//! scale subresource all key on these, so they live in one place.

use std::collections::BTreeMap;

pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const NAME: &str = "app.kubernetes.io/name";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "deepseek-operator";
pub const APP_NAME: &str = "deepseek-model";
pub const GROUP: &str = "inference.deepseek-operator.dev/group";
pub const GROUP_ID: &str = "inference.deepseek-operator.dev/group-id";
pub const RANK: &str = "inference.deepseek-operator.dev/rank";
pub const ROLE: &str = "inference.deepseek-operator.dev/role";
pub const TEMPLATE_HASH: &str = "inference.deepseek-operator.dev/template-hash";
pub const GROUP_SIZE: &str = "inference.deepseek-operator.dev/group-size";
pub const POOL: &str = "inference.deepseek-operator.dev/pool";

/// Annotation with the engine command a pod runs (rendered by the shared engine module).
pub const ENGINE_COMMAND: &str = "inference.deepseek-operator.dev/engine-command";
/// Annotation with the digest of a Service's desired form, to skip no-op applies.
pub const SPEC_DIGEST: &str = "inference.deepseek-operator.dev/spec-digest";

pub fn base(model: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INSTANCE.to_string(), model.to_string()),
        (NAME.to_string(), APP_NAME.to_string()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

/// Selector of every child pod of a model.
pub fn selector_string(model: &str) -> String {
    format!("{INSTANCE}={model},{MANAGED_BY}={MANAGER}")
}

/// Selector of the leader pods (the scale subresource and the API Service use it).
pub fn leader_selector_string(model: &str) -> String {
    format!("{},{ROLE}=leader", selector_string(model))
}

/// Group id: template hash and slot, unique per group generation.
pub fn group_id(hash: &str, slot: u32) -> String {
    format!("{hash}-{slot}")
}
