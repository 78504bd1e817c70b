//! The part that talks to the API server: watches, reconcile, status, leader election,
//! health and metrics endpoints. Decisions are delegated to the pure modules.

pub mod apply;
pub mod busy_requeue;
pub mod cache;
pub mod capacity_pending;
pub mod context;
pub mod error;
pub mod events;
pub mod expect;
pub mod heap_trim;
pub mod http;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod reconcile;
pub mod reconcile_roles;
pub mod run;
pub mod scope;
pub mod status_memo;

pub use run::{run, RunOptions};
