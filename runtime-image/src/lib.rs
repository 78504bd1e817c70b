//! `deepseek-launcher`: the process every runtime-image pod starts. It renders the engine
//! command with `deepseek_engine::render`, checks the hardware, meets the rest of its
//! replica group, runs and drains the engine, and serves normalised metrics. It also hosts
//! the GPU-free sim engine (`deepseek-launcher sim`) and the front that holds requests
//! of a model scaled to zero (`deepseek-launcher front`).

pub mod cli;
pub mod front;
pub mod hardware;
pub mod launch;
pub mod process;
pub mod reading;
pub mod rendezvous;
pub mod server;
pub mod sim;
pub mod state;
