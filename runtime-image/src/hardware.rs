//! Counting the accelerators visible to this container, checked against the plan before
//! any engine starts.

use std::path::Path;

use deepseek_engine::{Engine, LaunchConfig};

/// Visible-device environment variables per vendor, most specific first.
fn visible_env(vendor: &str) -> &'static [&'static str] {
    match vendor {
        "nvidia" => &["CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"],
        "amd" => &["HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"],
        "ascend" => &["ASCEND_RT_VISIBLE_DEVICES", "ASCEND_VISIBLE_DEVICES"],
        _ => &[],
    }
}

/// Counts device nodes under `dev` for a vendor: `/dev/nvidia<N>`, `/dev/dri/renderD<N>`,
/// `/dev/davinci<N>` (control nodes such as `nvidiactl` or `davinci_manager` excluded).
pub fn count_device_nodes(vendor: &str, dev: &Path) -> u32 {
    let (dir, prefix) = match vendor {
        "nvidia" => (dev.to_path_buf(), "nvidia"),
        "amd" => (dev.join("dri"), "renderD"),
        "ascend" => (dev.to_path_buf(), "davinci"),
        _ => return 0,
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.strip_prefix(prefix).is_some_and(|rest| {
                    !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
                })
            })
        })
        .count() as u32
}

/// Counts devices a visible-devices list names; `None` when it defers to the device nodes
/// (`all`) or is unset.
pub fn count_visible_list(value: &str) -> Option<u32> {
    let v = value.trim();
    match v {
        "all" => None,
        "" | "none" | "void" | "NoDevFiles" => Some(0),
        _ => Some(v.split(',').filter(|s| !s.trim().is_empty()).count() as u32),
    }
}

/// Devices visible to the engine: an explicit visible-devices list wins, else device nodes.
pub fn visible_devices(vendor: &str, dev: &Path, env: &dyn Fn(&str) -> Option<String>) -> u32 {
    visible_env(vendor)
        .iter()
        .find_map(|k| env(k).and_then(|v| count_visible_list(&v)))
        .unwrap_or_else(|| count_device_nodes(vendor, dev))
}

/// Why this container cannot run its share of the plan.
#[derive(Debug, thiserror::Error)]
#[error("hardware check failed: the plan needs {needed} {vendor} accelerators per node but {found} are visible (checked {checked}); is the pod scheduled on the right node with the device plugin's resource requested?")]
pub struct HardwareError {
    pub vendor: String,
    pub needed: u32,
    pub found: u32,
    pub checked: String,
}

/// Fails when fewer devices are visible than `gpus_per_node` (sim and cpu are not checked).
pub fn check(
    cfg: &LaunchConfig,
    dev: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<u32, HardwareError> {
    if cfg.engine == Engine::Sim || cfg.vendor == "cpu" || cfg.engine == Engine::Llamacpp {
        return Ok(0);
    }
    let found = visible_devices(&cfg.vendor, dev, env);
    if found < cfg.gpus_per_node {
        let mut checked: Vec<String> = visible_env(&cfg.vendor)
            .iter()
            .map(|s| s.to_string())
            .collect();
        checked.push(format!("device nodes under {}", dev.display()));
        return Err(HardwareError {
            vendor: cfg.vendor.clone(),
            needed: cfg.gpus_per_node,
            found,
            checked: checked.join(", "),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dev(files: &[&str]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dso-dev-{}-{}",
            std::process::id(),
            files.join("_").replace('/', "-")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for f in files {
            let p = dir.join(f);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(&p, b"").expect("touch");
        }
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn counts_device_nodes_per_vendor() {
        let dev = temp_dev(&[
            "nvidia0",
            "nvidia1",
            "nvidiactl",
            "nvidia-uvm",
            "dri/renderD128",
            "dri/card0",
            "davinci0",
            "davinci_manager",
        ]);
        assert_eq!(count_device_nodes("nvidia", &dev), 2);
        assert_eq!(count_device_nodes("amd", &dev), 1);
        assert_eq!(count_device_nodes("ascend", &dev), 1);
        assert_eq!(count_device_nodes("cpu", &dev), 0);
        let _ = std::fs::remove_dir_all(dev);
    }

    #[test]
    fn visible_lists_override_nodes() {
        let dev = temp_dev(&["nvidia0"]);
        let env = |k: &str| (k == "CUDA_VISIBLE_DEVICES").then(|| "0,1,2,3".to_string());
        assert_eq!(visible_devices("nvidia", &dev, &env), 4);
        let all = |k: &str| (k == "NVIDIA_VISIBLE_DEVICES").then(|| "all".to_string());
        assert_eq!(visible_devices("nvidia", &dev, &all), 1);
        let none = |k: &str| (k == "ROCR_VISIBLE_DEVICES").then(|| "".to_string());
        assert_eq!(visible_devices("amd", &dev, &none), 0);
        let _ = std::fs::remove_dir_all(dev);
    }
}
