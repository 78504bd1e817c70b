//! The controller's view of the cluster, kept current by watches instead of reads per
//! reconcile: pods (indexed by model and by node), the operator's other children
//! (metadata only), Nodes (only what planning reads) and Karpenter's NodePools. A reconcile
//! reads these and asks the API server only where a module's docs say why.

pub mod children;
pub mod nodepools;
pub mod nodes;
pub mod pods;
pub mod watch;
