//! What the cluster offers: Nodes grouped into pools of identical accelerators, plus the
//! declared pools that may scale from zero (from the configuration, or read from
//! Karpenter NodePools). Pure: takes Node and NodePool objects (or the operator's
//! compact form of Nodes, node_facts.rs), returns pools.

pub mod karpenter;
pub mod node_facts;
mod pools;
pub mod taints;

pub use node_facts::NodeFacts;
pub use pools::{
    fingerprint, memory_gib, pools_from_facts, pools_from_nodes, Pool, CPU_EXCLUDED_LABELS,
};

#[cfg(test)]
mod tests;
