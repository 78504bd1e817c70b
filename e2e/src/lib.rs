//! Test support for end-to-end tests of the DeepSeek operator.
//!
//! The tests run against a real control plane on loopback — etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler — with KWOK simulating
//! the kubelets of GPU/NPU nodes. `e2e/cluster up` starts it (building the
//! binaries from the Go module proxy on first use); this crate drives that script
//! and gives tests a [`kube::Client`], fresh namespaces, polling helpers and a
//! diagnostic dump on failure.
//!
//! ```no_run
//! use deepseek_e2e::{Cluster, fixtures, wait};
//! use k8s_openapi::api::core::v1::Pod;
//! use kube::api::PostParams;
//! use std::time::Duration;
//!
//! # async fn example() -> anyhow::Result<()> {
//! let cluster = Cluster::ensure().await?;          // starts the cluster if needed
//! let ns = cluster.namespace("my-test").await?;    // fresh namespace
//! let pod = fixtures::accelerator_pod(
//!     "p", "nvidia.com/gpu", 8,
//!     &[("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")],
//! );
//! ns.api::<Pod>().create(&PostParams::default(), &pod).await?;
//! let pod = wait::pod_running(&ns.api(), "p", Duration::from_secs(60)).await?;
//! # let _ = pod;
//! ns.finish().await?;                              // success: delete the namespace
//! # Ok(())
//! # }
//! ```
//!
//! A [`TestNamespace`] dropped without [`TestNamespace::finish`] (a panic, or an
//! early `?` return) prints [`diagnostics`] to stderr before it is deleted.
//!
//! Never dial a ClusterIP and never use `kubectl logs/exec/port-forward` against
//! simulated pods: nothing runs behind them. Pod IPs are in 127.1.0.0/16, node
//! InternalIPs in 127.3.0.0/16 and ClusterIPs in 127.2.0.0/16.

pub mod cluster;
pub mod diagnostics;
pub mod fixtures;
pub mod image_check;
pub mod namespace;
pub mod sim;
pub mod sim_router;
pub mod wait;

pub use cluster::{Cluster, ClusterEnv};
pub use namespace::TestNamespace;
pub use wait::wait_for;
