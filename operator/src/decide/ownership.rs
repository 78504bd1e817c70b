//! Never take over: whether a child's name is held by an object this model does not
//! control. Pure, so the disaggregated decision (roles.rs) and every writer under
//! controller/apply/ judge it the same way.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The uid of an object's controlling owner, if it has one.
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// The conflict to report before a model's child is first applied or deleted, if any.
/// `live` is what exists under the child's name: `None` when nothing does, else the uid of
/// its controlling owner. An object that the model (`owner`) does not control is someone
/// else's (an administrator's `deny-all` NetworkPolicy, a user's own model called
/// `<name>-prefill`): force-applying would silently rewrite it, and deleting the model
/// would garbage-collect it. It is left untouched and reported as a conflict.
pub fn conflict(what: &str, live: Option<Option<&str>>, owner: &str) -> Option<String> {
    match live {
        Some(controller) if controller != Some(owner) => Some(format!(
            "{what} already exists and does not belong to this model; rename one of them"
        )),
        _ => None,
    }
}
