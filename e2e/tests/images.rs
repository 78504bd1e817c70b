//! The images `scripts/images` built agree with their Dockerfiles: user, exposed ports,
//! entry point, command, environment and every path the Dockerfile copies in (see
//! `deepseek_e2e::image_check`). Reads the OCI archives in `$DSO_CACHE/images`.
//!
//! Not part of `cargo test --workspace` (it needs the images):
//! `scripts/images && cargo test -p deepseek-e2e --features images --test images`.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use deepseek_e2e::image_check::{differences, dockerfile_facts, read_oci_archive};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn archive(name: &str) -> Result<PathBuf> {
    let cache = std::env::var_os("DSO_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/deepseek-operator"))
        })
        .context("neither DSO_CACHE nor HOME is set")?;
    let version = env!("CARGO_PKG_VERSION");
    let path = cache
        .join("images")
        .join(format!("{name}-{version}.oci.tar"));
    ensure!(
        path.is_file(),
        "{} is missing: run scripts/images",
        path.display()
    );
    Ok(path)
}

fn check(dockerfile: &str, image: &str) -> Result<()> {
    let text = std::fs::read_to_string(repo().join(dockerfile))?;
    let facts = dockerfile_facts(&text).with_context(|| format!("parsing {dockerfile}"))?;
    let img = read_oci_archive(&archive(image)?)?;
    let diffs = differences(&facts, &img);
    ensure!(
        diffs.is_empty(),
        "{image} differs from {dockerfile}:\n  {}",
        diffs.join("\n  ")
    );
    Ok(())
}

#[test]
fn operator_image_matches_its_dockerfile() -> Result<()> {
    check("Dockerfile", "deepseek-operator")
}

#[test]
fn runtime_cpu_image_matches_its_dockerfile() -> Result<()> {
    check("runtime-image/Dockerfile.cpu", "runtime-cpu")
}
