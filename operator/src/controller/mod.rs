//! The part that talks to the API server: watches, reconcile, status, leader election,
//! health and metrics endpoints. Decisions are delegated to the pure modules.

pub mod apply;
pub mod backoff;
pub mod busy_requeue;
pub mod capacity_pending;
pub mod child_cache;
pub mod children;
pub mod context;
pub mod crash_backoff;
pub mod decide;
pub mod decide_roles;
pub mod disaggregated;
pub mod error;
pub mod events;
pub mod expect;
pub mod front;
pub mod groups;
pub mod heap_trim;
pub mod http;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod network_policy;
pub mod nodepools;
pub mod nodes;
pub mod pod_cache;
pub mod reconcile;
pub mod run;
pub mod scaled_object;
pub mod scope;
pub mod status;
pub mod status_memo;
pub mod watch;

pub use run::{run, RunOptions};
