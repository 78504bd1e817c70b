//! The scale bench's goals (issue 12, restated by issue 26) judged on one run's figures,
//! and the run's results line. A bench that only prints numbers cannot miss; this one
//! prints PASS or FAIL per goal and, with `--check`, exits non-zero on a miss.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// One run's figures that the goals read.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Apply of every model -> every placeable model ready (s), and whether it got there
    /// before the bench's deadline.
    pub converge_s: f64,
    pub converged: bool,
    /// The leader's peak resident memory over the whole run (VmHWM, MiB).
    pub peak_rss_mib: f64,
    /// Writes by the operator's identity in the steady window, all and those to Leases.
    pub steady_writes: u64,
    pub steady_lease_writes: u64,
    /// Lease writes the window allows at the chart's renew period (0 without leader election).
    pub lease_writes_allowed: u64,
    /// Storm: models whose decision came, of how many, and the p99 decision latency (s).
    pub storm_decided: usize,
    pub storm_models: usize,
    pub storm_p99_s: f64,
}

pub struct Verdict {
    pub goal: &'static str,
    pub value: String,
    pub pass: bool,
}

pub const CONVERGE_S: f64 = 60.0;
pub const RSS_MIB: f64 = 64.0;
pub const STORM_P99_S: f64 = 5.0;

/// The goals, in the order of issue 12.
pub fn judge(f: &Figures) -> Vec<Verdict> {
    vec![
        Verdict {
            goal: "converge within 60 s",
            value: format!(
                "{:.1} s{}",
                f.converge_s,
                if f.converged {
                    ""
                } else {
                    " (deadline passed)"
                }
            ),
            pass: f.converged && f.converge_s <= CONVERGE_S,
        },
        Verdict {
            goal: "peak RSS within 64 MiB",
            value: format!("{:.1} MiB", f.peak_rss_mib),
            pass: f.peak_rss_mib <= RSS_MIB,
        },
        Verdict {
            goal: "0 steady writes besides the leader Lease",
            value: format!(
                "{} (of {} writes in all)",
                f.steady_writes - f.steady_lease_writes,
                f.steady_writes
            ),
            pass: f.steady_writes == f.steady_lease_writes,
        },
        Verdict {
            goal: "Lease writes no more than the chart's renew period allows",
            value: format!(
                "{} (allowed {})",
                f.steady_lease_writes, f.lease_writes_allowed
            ),
            pass: f.steady_lease_writes <= f.lease_writes_allowed,
        },
        Verdict {
            goal: "storm: every model decided, p99 within 5 s",
            value: format!(
                "{} of {} decided, p99 {:.2} s",
                f.storm_decided, f.storm_models, f.storm_p99_s
            ),
            pass: f.storm_models > 0
                && f.storm_decided == f.storm_models
                && f.storm_p99_s <= STORM_P99_S,
        },
    ]
}

/// Prints one line per goal; returns whether every goal passed.
pub fn print(verdicts: &[Verdict]) -> bool {
    for v in verdicts {
        println!(
            "{} {}: {}",
            if v.pass { "PASS" } else { "FAIL" },
            v.goal,
            v.value
        );
    }
    verdicts.iter().all(|v| v.pass)
}

/// Appends `line` as one JSON line to `path`.
pub fn append(path: &Path, line: &serde_json::Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(line)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The 1-, 5- and 15-minute load averages of the machine.
pub fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// The commit of the repository at `root`, with `-dirty` if tracked files of what the
/// bench runs (the operator, e2e, chart, CRDs, Cargo.lock) differ from it; docs do not count.
pub fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}
