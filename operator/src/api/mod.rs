//! The `DeepSeekModel` custom resource: the one object users write.
//!
//! The Rust types here are the source of truth for the CRD schema (`deepseek-operator crd`,
//! committed under `crds/`). Validation that the API server can do itself (enums, ranges,
//! CEL rules) lives here so bad manifests are refused at `kubectl apply`, not in reconcile.

mod spec;
mod status;

pub use spec::*;
pub use status::*;

/// API group, on a domain the project owns.
pub const GROUP: &str = "inference.deepseek-operator.dev";
/// The one field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "deepseek-operator";
