//! What the cluster offers: Nodes grouped into pools of identical accelerators, plus the
//! declared pools that may scale from zero. Pure: takes Node objects, returns pools.

mod pools;
pub mod taints;

pub use pools::{fingerprint, memory_gib, pools_from_nodes, Pool, CPU_EXCLUDED_LABELS};

#[cfg(test)]
mod tests;
