//! `llama-server` (flags of llama.cpp 0c1e57098, from llama-cpp-python 0.3.36) for GGUF models on CPU.
//!
//! `-c` is the total context shared by `--parallel` slots, so it is
//! `max_model_len * slots` to give each slot `max_model_len` tokens. Slots are
//! `max_num_seqs` up to llama.cpp's own bound of [`MAX_SLOTS`] sequences: a plan for a
//! large CPU node allows thousands, and llama-server refuses to start with more
//! ("n_seq_max must be <= 256", seen on a real node). A model ending
//! in `.gguf` or starting with `/` is a local file (`-m`); otherwise it is a Hugging Face
//! repo fetched with `-hf <repo>:<QUANT>`.

use crate::render::Ctx;
use crate::{CommandLine, LaunchSteps, Quantization};

/// llama.cpp's `LLAMA_MAX_SEQ`: the most sequences one context holds.
pub const MAX_SLOTS: u32 = 256;

pub fn steps(ctx: &Ctx) -> LaunchSteps {
    let cfg = ctx.cfg;
    let local = cfg.model.ends_with(".gguf") || cfg.model.starts_with('/');
    let mut cmd = CommandLine::new("llama-server");
    cmd = match (local, ctx.quant) {
        (false, Quantization::Gguf(q)) => cmd.flag("-hf", format!("{}:{q}", cfg.model)),
        _ => cmd.flag("-m", &cfg.model),
    };
    let slots = cfg.max_num_seqs.clamp(1, MAX_SLOTS);
    let total_ctx = u64::from(cfg.max_model_len) * u64::from(slots);
    cmd = cmd
        .flag("--host", "0.0.0.0")
        .flag("--port", ctx.port)
        .flag("-c", total_ctx)
        .flag("--parallel", slots)
        .arg("--metrics")
        .flag("--alias", &cfg.served_model_name);
    cmd.args.extend(cfg.extra_args.iter().cloned());
    LaunchSteps {
        prepare: Vec::new(),
        serve: Some(cmd),
    }
}
