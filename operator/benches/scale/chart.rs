//! The chart's leader-election defaults, read from `charts/deepseek-operator/values.yaml`
//! so that the scale bench runs the operator as a default install does (issue 26: the
//! bench used to run one replica without leader election, which hid the lease writes).

use std::path::Path;

use anyhow::{Context, Result};

/// What a default `helm install` runs: how many replicas, and their lease settings.
#[derive(Debug, Clone)]
pub struct ChartLeader {
    pub replicas: u32,
    pub enabled: bool,
    pub lease_name: String,
    pub lease_seconds: u64,
}

impl ChartLeader {
    pub fn read(values: &Path) -> Result<ChartLeader> {
        let text = std::fs::read_to_string(values)
            .with_context(|| format!("reading {}", values.display()))?;
        let v: serde_yaml::Value =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", values.display()))?;
        let le = &v["leaderElection"];
        let field = |what: &str| format!("{}: no {what}", values.display());
        Ok(ChartLeader {
            replicas: v["replicaCount"]
                .as_u64()
                .with_context(|| field("replicaCount"))? as u32,
            enabled: le["enabled"]
                .as_bool()
                .with_context(|| field("leaderElection.enabled"))?,
            lease_name: le["leaseName"]
                .as_str()
                .with_context(|| field("leaderElection.leaseName"))?
                .to_string(),
            lease_seconds: le["leaseDurationSeconds"]
                .as_u64()
                .with_context(|| field("leaderElection.leaseDurationSeconds"))?,
        })
    }
}
