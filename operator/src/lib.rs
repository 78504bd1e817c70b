//! deepseek-operator: sizes, places and scales DeepSeek models on accelerator clusters.
//!
//! Pure parts (catalog, plan, inventory, build) take plain data and return plain data;
//! the controller is the only part that talks to the API server.

pub mod api;
pub mod cli;
