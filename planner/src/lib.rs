//! The accelerator planner: which accelerators, how many, in which layout (TP x PP,
//! DP attention x EP, or the hybrid of both).
//!
//! Pure functions over plain data, so the CLI (`deepseek-operator plan`) and the
//! controller give identical answers and everything here is unit- and property-tested.
//!
//! - [`Catalog`]: models and accelerators from embedded YAML, overridable from files,
//!   and [`Catalog::identify`] to map node labels to an accelerator.
//! - [`plan`]: sizes one replica from a [`PlanRequest`] into a [`Plan`] or a
//!   [`PlanError`] that says why not and what would be needed.
//! - [`plan_disaggregated`]: prefill and decode roles, each sized for its own load.
//! - [`expert_rule`]: which expert-parallel sizes each engine loads.
//! - [`rule_of_thumb`]: the seed article's `params x bytes x 1.15` estimate.
//! - [`report`]: table and JSON renderings for the CLI.

mod accelerator;
mod catalog;
mod choose;
mod disaggregated;
pub mod expert_rule;
pub mod layout;
pub mod memory;
mod model;
pub mod objective;
mod plan;
pub mod report;
mod rule_of_thumb;
mod support;
mod types;

pub use accelerator::{Accelerator, LabelMatcher};
pub use catalog::{Catalog, CatalogError};
pub use disaggregated::{
    plan_disaggregated, role_concurrency, DisaggregatedPlan, RoleError, RoleOverrides,
    PREFILL_SHARE,
};
pub use memory::MemoryBreakdown;
pub use model::{Attention, ModelArch, Moe};
pub use plan::{
    plan, ParallelOptions, Plan, PlanError, PlanRequest, Requirement, DEFAULT_CONCURRENCY,
    DEFAULT_GPU_MEMORY_UTILIZATION, DEFAULT_MAX_MODEL_LEN,
};
pub use rule_of_thumb::{compare_seed, rule_of_thumb, SeedComparison, SeedRow, SEED_TABLE};
pub use support::{
    auto_engine, auto_engine_disaggregated, check_disaggregated_engine, engine_runs_on,
};
pub use types::{KvCacheDtype, LayoutObjective, Quantization, Vendor};

pub use deepseek_engine::Engine;
