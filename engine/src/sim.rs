//! The GPU-free sim engine: its command line (`deepseek-launcher sim ...`) and the
//! default timing profile derived from hardware numbers.
//!
//! Unlike real engines (which bind 0.0.0.0 in their own pod network namespace), the sim
//! binds the pod IP it is given: in tests, simulated pods share the host and get 127.x IPs.

use crate::env::POD_IP_PLACEHOLDER;
use crate::render::Ctx;
use crate::{CommandLine, LaunchSteps, Role, SimProfile};

/// Program name of the launcher; the launcher resolves it to its own executable.
pub const LAUNCHER_PROGRAM: &str = "deepseek-launcher";
/// Subcommand of the launcher that runs the sim engine.
pub const SIM_SUBCOMMAND: &str = "sim";

/// Fraction of peak memory bandwidth decode reaches in practice.
const BANDWIDTH_EFFICIENCY: f64 = 0.6;
/// Prefill is compute-bound and batches a prompt's tokens: this many times decode.
const PREFILL_OVER_DECODE: f64 = 40.0;

impl SimProfile {
    /// A plausible profile for `gpus` devices of `bandwidth_tbps` TB/s each serving a
    /// model with `active_params_billions` active parameters at `bytes_per_param`: decode is
    /// memory-bound (every step reads the active weights once), prefill a multiple of it.
    pub fn from_hardware(
        bandwidth_tbps: f64,
        active_params_billions: f64,
        bytes_per_param: f64,
        gpus: u32,
    ) -> SimProfile {
        let bytes_per_token = (active_params_billions * 1e9 * bytes_per_param).max(1.0);
        let bandwidth = bandwidth_tbps.max(0.0) * 1e12 * f64::from(gpus.max(1));
        let decode = (bandwidth * BANDWIDTH_EFFICIENCY / bytes_per_token).max(1.0);
        SimProfile {
            prefill_tokens_per_s: decode * PREFILL_OVER_DECODE,
            decode_tokens_per_s: decode,
            max_running: 64 * gpus.max(1),
        }
    }
}

impl Default for SimProfile {
    /// One H100 (3.35 TB/s) serving DeepSeek-V3's 37B active parameters in FP8.
    fn default() -> Self {
        SimProfile::from_hardware(3.35, 37.0, 1.0, 1)
    }
}

/// Every rank runs the sim: the leader serves HTTP and, in a multi-node group, listens
/// for its workers on `--dist-init-addr`; a worker holds a connection to it, like a real
/// engine's rank holds its collective-communication links. Losing one breaks the group.
pub(crate) fn steps(ctx: &Ctx) -> LaunchSteps {
    let cfg = ctx.cfg;
    let p = cfg.sim.unwrap_or_default();
    let mut cmd = CommandLine::new(LAUNCHER_PROGRAM)
        .arg(SIM_SUBCOMMAND)
        .flag("--host", POD_IP_PLACEHOLDER)
        .flag("--port", ctx.port)
        .flag("--served-model-name", &cfg.served_model_name)
        .flag("--max-model-len", cfg.max_model_len)
        .flag("--prefill-tokens-per-s", p.prefill_tokens_per_s)
        .flag("--decode-tokens-per-s", p.decode_tokens_per_s)
        .flag("--max-running", p.max_running);
    if let Some(d) = &cfg.disaggregation {
        cmd = cmd.flag("--pd-role", d.role.as_str());
        if d.role == crate::PdRole::Prefill {
            cmd = cmd.flag("--bootstrap-port", crate::pd::BOOTSTRAP_PORT);
        }
    }
    if ctx.multi_node() {
        let dist_host = match ctx.role {
            Role::Leader => POD_IP_PLACEHOLDER,
            Role::Worker => ctx.leader,
        };
        cmd = cmd
            .flag("--nnodes", cfg.nodes)
            .flag("--node-rank", ctx.rank)
            .flag("--dist-init-addr", format!("{dist_host}:{}", ctx.dist_port));
    }
    LaunchSteps {
        prepare: Vec::new(),
        serve: Some(cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_scales_with_bandwidth_and_inverse_weight_bytes() {
        let one = SimProfile::from_hardware(3.35, 37.0, 1.0, 1);
        let eight = SimProfile::from_hardware(3.35, 37.0, 1.0, 8);
        let bf16 = SimProfile::from_hardware(3.35, 37.0, 2.0, 1);
        assert!((eight.decode_tokens_per_s / one.decode_tokens_per_s - 8.0).abs() < 1e-9);
        assert!((one.decode_tokens_per_s / bf16.decode_tokens_per_s - 2.0).abs() < 1e-9);
        assert!(one.prefill_tokens_per_s > one.decode_tokens_per_s);
        // ~54 tok/s for 37 GB of active weights on one H100 at 60% of peak.
        assert!((one.decode_tokens_per_s - 54.3).abs() < 0.1);
    }

    #[test]
    fn degenerate_inputs_stay_positive() {
        let p = SimProfile::from_hardware(0.0, 0.0, 0.0, 0);
        assert!(p.decode_tokens_per_s >= 1.0 && p.max_running >= 1);
    }
}
