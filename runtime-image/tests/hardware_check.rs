//! The hardware check runs before anything starts: too few devices -> non-zero exit with a
//! clear message; enough -> `check` passes.

mod common;

use std::process::Command;

use common::*;
use deepseek_engine::SimProfile;

fn nvidia_vllm() -> deepseek_engine::LaunchConfig {
    let mut cfg = sim_config(1, SimProfile::default());
    cfg.engine = deepseek_engine::Engine::Vllm;
    cfg
}

fn empty_dev() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dso-hw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn too_few_gpus_fails_clearly() {
    let dev = empty_dev();
    let port = free_port().to_string();
    let out = Command::new(BIN)
        .arg("--config-json")
        .arg(nvidia_vllm().to_json())
        .args(["--bind", "127.0.0.1", "--launcher-port", &port])
        .arg("--dev-dir")
        .arg(&dev)
        .env("CUDA_VISIBLE_DEVICES", "0,1")
        .env_remove("NVIDIA_VISIBLE_DEVICES")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("hardware check failed: the plan needs 8 nvidia accelerators per node but 2 are visible"),
        "{err}"
    );
}

#[test]
fn check_passes_with_enough_device_nodes() {
    let dev = empty_dev().join("ok");
    std::fs::create_dir_all(&dev).expect("mkdir");
    for i in 0..8 {
        std::fs::write(dev.join(format!("nvidia{i}")), b"").expect("touch");
    }
    std::fs::write(dev.join("nvidiactl"), b"").expect("touch");
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config-json")
        .arg(nvidia_vllm().to_json())
        .arg("--dev-dir")
        .arg(&dev)
        .env_remove("CUDA_VISIBLE_DEVICES")
        .env_remove("NVIDIA_VISIBLE_DEVICES")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("8 visible"));
}

#[test]
fn render_prints_the_shared_rendering() {
    let mut cfg = nvidia_vllm();
    cfg.nodes = 2;
    cfg.tensor_parallel = 16;
    let out = Command::new(BIN)
        .args([
            "render", "--rank", "0", "--leader", "leader-0", "--bind", "10.0.0.9",
        ])
        .arg("--config-json")
        .arg(cfg.to_json())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.starts_with("VLLM_HOST_IP=10.0.0.9 vllm serve deepseek-ai/DeepSeek-V3"),
        "{text}"
    );
    assert!(
        text.contains(
            "--distributed-executor-backend mp --nnodes 2 --node-rank 0 --master-addr leader-0"
        ),
        "{text}"
    );
}
