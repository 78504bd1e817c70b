//! What the cluster offers: Nodes grouped into pools of identical accelerators, plus the
//! declared pools that may scale from zero (from the configuration, or read from
//! Karpenter NodePools). Pure: takes Node and NodePool objects, returns pools.

pub mod karpenter;
mod pools;
pub mod taints;

pub use pools::{fingerprint, memory_gib, pools_from_nodes, Pool, CPU_EXCLUDED_LABELS};

#[cfg(test)]
mod tests;
