//! Reconcile errors, one variant per step, each with a category for metrics and Events.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("failed to read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to apply {what}: {source}")]
    Apply {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete {what}: {source}")]
    Delete {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to write status: {0}")]
    Status(#[source] kube::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// An object the model would create exists and belongs to someone else.
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    /// Short label for the errors metric.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Apply { .. } => "apply",
            Error::Delete { .. } => "delete",
            Error::Status(_) => "status",
            Error::MissingField(_) => "invalid-object",
            Error::Conflict(_) => "conflict",
        }
    }
}
