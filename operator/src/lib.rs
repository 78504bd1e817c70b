//! deepseek-operator: sizes, places and scales DeepSeek models on accelerator clusters.
//!
//! Pure parts (validate, inventory, placement, build, rollout) take plain data and return
//! plain data; `controller` is the only part that talks to the API server.

pub mod api;
pub mod autoscale;
pub mod cli;
pub mod config;
pub mod controller;
pub mod decide;
pub mod desired;
pub mod inventory;
pub mod placement;
pub mod rollout;
pub mod spec_ranges;
pub mod validate;
pub mod whole_groups;
