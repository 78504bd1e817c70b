//! Comparing an image built by `scripts/images` (an OCI archive) with the Dockerfile it
//! stands for: the final stage's user, exposed ports, entry point, command, environment
//! and the paths it copies in. The images here are assembled with buildah from Debian
//! root file systems instead of `docker build`, so nothing but this check keeps the two
//! from drifting apart.
//!
//! The archive is read with the system's `tar` (GNU tar detects layer compression), so
//! no archive crate is needed for a test helper.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

/// What the final stage of a Dockerfile promises about the image.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DockerfileFacts {
    /// `USER` (last one wins).
    pub user: Option<String>,
    /// `EXPOSE` ports, as `<port>/tcp`.
    pub ports: BTreeSet<String>,
    /// `ENTRYPOINT` in exec form.
    pub entrypoint: Option<Vec<String>>,
    /// `CMD` in exec form.
    pub cmd: Option<Vec<String>>,
    /// `ENV` values, `${VAR}` references left as written.
    pub env: BTreeMap<String, String>,
    /// Destinations of `COPY` instructions.
    pub copied: Vec<String>,
}

/// Joins continuation lines and drops comments and blank lines.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// An exec-form (JSON array) argument list; the shell form is refused because the
/// images never use it and comparing it would need a shell's word splitting.
fn exec_form(arg: &str) -> Result<Vec<String>> {
    serde_json::from_str(arg).with_context(|| format!("not an exec-form JSON array: {arg}"))
}

/// `KEY="value" KEY2=value2` pairs of an `ENV` line (quoted values may hold spaces).
fn env_pairs(arg: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = arg.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .with_context(|| format!("ENV without '=': {arg}"))?;
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .with_context(|| format!("unclosed quote in ENV {arg}"))?;
            (&q[..end], &q[end + 1..])
        } else {
            after.split_at(after.find(char::is_whitespace).unwrap_or(after.len()))
        };
        out.push((key.trim().to_string(), value.to_string()));
        rest = tail.trim_start();
    }
    Ok(out)
}

/// Paths a `RUN` line deletes with `rm` (a copied-in installer removed after use is
/// not expected in the image).
fn removed_paths(run: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_rm = false;
    for w in run.split_whitespace() {
        match w {
            "rm" => in_rm = true,
            "&&" | "||" | ";" | "|" => in_rm = false,
            _ if in_rm && !w.starts_with('-') => {
                out.insert(normalise(w.trim_end_matches(';')));
            }
            _ => {}
        }
    }
    out
}

/// The facts of a Dockerfile's final stage (everything after its last `FROM`).
pub fn dockerfile_facts(text: &str) -> Result<DockerfileFacts> {
    let all = instructions(text);
    let last_from = all
        .iter()
        .rposition(|i| i.to_ascii_uppercase().starts_with("FROM "))
        .context("no FROM instruction")?;
    let mut f = DockerfileFacts::default();
    for ins in &all[last_from + 1..] {
        let (op, arg) = ins.split_once(char::is_whitespace).unwrap_or((ins, ""));
        let arg = arg.trim();
        match op.to_ascii_uppercase().as_str() {
            "USER" => f.user = Some(arg.to_string()),
            "EXPOSE" => {
                for p in arg.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    f.ports.insert(p);
                }
            }
            "ENTRYPOINT" => f.entrypoint = Some(exec_form(arg)?),
            "CMD" => f.cmd = Some(exec_form(arg)?),
            "ENV" => f.env.extend(env_pairs(arg)?),
            "RUN" => {
                let removed = removed_paths(arg);
                f.copied.retain(|c| !removed.contains(&normalise(c)));
            }
            "COPY" => {
                let dest = arg
                    .split_whitespace()
                    .rfind(|w| !w.starts_with("--"))
                    .context("COPY without a destination")?;
                f.copied.push(dest.to_string());
            }
            _ => {}
        }
    }
    Ok(f)
}

/// An image read from an OCI archive: its config and the paths of all its layers.
#[derive(Debug)]
pub struct OciImage {
    /// The image configuration's `config` object (User, Entrypoint, ...).
    pub config: Value,
    /// Every path in any layer, without a leading `./` or `/`.
    pub paths: BTreeSet<String>,
    /// The contents of `/etc/passwd`, if a layer holds it.
    pub passwd: Option<String>,
}

fn tar_out(args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new("tar")
        .args(args)
        .output()
        .context("running tar")?;
    ensure!(
        out.status.success(),
        "tar {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

fn blob(archive: &str, digest: &str) -> Result<Vec<u8>> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unexpected digest {digest}"))?;
    tar_out(&["-xOf", archive, &format!("blobs/sha256/{hex}")])
}

fn normalise(p: &str) -> String {
    p.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// Reads the single image of an OCI archive written by `buildah commit oci-archive:`.
pub fn read_oci_archive(path: &Path) -> Result<OciImage> {
    let archive = path.to_str().context("archive path is not UTF-8")?;
    let index: Value = serde_json::from_slice(&tar_out(&["-xOf", archive, "index.json"])?)?;
    let Some(digest) = index["manifests"][0]["digest"].as_str() else {
        bail!("{archive}: index.json names no manifest")
    };
    let manifest: Value = serde_json::from_slice(&blob(archive, digest)?)?;
    let Some(config_digest) = manifest["config"]["digest"].as_str() else {
        bail!("{archive}: the manifest names no config")
    };
    let config: Value = serde_json::from_slice(&blob(archive, config_digest)?)?;
    let mut paths = BTreeSet::new();
    let mut passwd = None;
    let scratch = std::env::temp_dir().join(format!("dso-layer-{}", std::process::id()));
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let Some(d) = layer["digest"].as_str() else {
            bail!("{archive}: a layer without digest")
        };
        std::fs::write(&scratch, blob(archive, d)?)?;
        let s = scratch.to_str().context("temp path is not UTF-8")?;
        let listing = String::from_utf8(tar_out(&["-tf", s])?)?;
        for p in listing.lines() {
            let n = normalise(p);
            if n == "etc/passwd" {
                let member = p.to_string();
                passwd = Some(String::from_utf8(tar_out(&["-xOf", s, &member])?)?);
            }
            paths.insert(n);
        }
    }
    let _ = std::fs::remove_file(&scratch);
    Ok(OciImage {
        config: config["config"].clone(),
        paths,
        passwd,
    })
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    })
}

/// The differences between an image and its Dockerfile; empty when they agree.
/// `ENV` values that extend a variable (`/app:${PATH}`) must be a prefix of the image's.
pub fn differences(docker: &DockerfileFacts, image: &OciImage) -> Vec<String> {
    let mut diffs = Vec::new();
    let cfg = &image.config;
    let user = cfg["User"].as_str().unwrap_or("").to_string();
    if docker.user.clone().unwrap_or_default() != user {
        diffs.push(format!(
            "user: Dockerfile {:?}, image {user:?}",
            docker.user
        ));
    }
    let ports: BTreeSet<String> = cfg["ExposedPorts"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if docker.ports != ports {
        diffs.push(format!(
            "ports: Dockerfile {:?}, image {ports:?}",
            docker.ports
        ));
    }
    let entrypoint = strings(&cfg["Entrypoint"]);
    if docker.entrypoint != entrypoint {
        diffs.push(format!(
            "entry point: Dockerfile {:?}, image {entrypoint:?}",
            docker.entrypoint
        ));
    }
    let cmd = strings(&cfg["Cmd"]);
    if docker.cmd != cmd {
        diffs.push(format!("cmd: Dockerfile {:?}, image {cmd:?}", docker.cmd));
    }
    let env: BTreeMap<String, String> = strings(&cfg["Env"])
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for (k, want) in &docker.env {
        let got = env.get(k).map(String::as_str).unwrap_or("");
        let ok = match want.split_once("${") {
            Some((prefix, _)) => got.starts_with(prefix),
            None => got == want,
        };
        if !ok {
            diffs.push(format!("env {k}: Dockerfile {want:?}, image {got:?}"));
        }
    }
    for dest in &docker.copied {
        if !image.paths.contains(&normalise(dest)) {
            diffs.push(format!("COPY destination {dest} is missing from the image"));
        }
    }
    // A numeric USER needs no passwd entry, but the Dockerfiles create one (useradd or
    // distroless's nonroot); the image should have it too so tools show a name.
    if let Some(uid) = user.split(':').next().filter(|u| !u.is_empty()) {
        let known = image.passwd.as_deref().is_some_and(|p| {
            p.lines()
                .any(|l| l.split(':').nth(2) == Some(uid) || l.split(':').next() == Some(uid))
        });
        if !known {
            diffs.push(format!("user {uid} has no /etc/passwd entry in the image"));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATOR: &str = r#"
FROM rust:1.95-alpine AS build
USER 0
COPY . .
RUN cargo build \
 && install -m 0755 x /y

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /deepseek-operator /usr/local/bin/deepseek-operator
USER 65532:65532
# metrics
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/deepseek-operator"]
CMD ["run"]
"#;

    #[test]
    fn final_stage_only() {
        let f = dockerfile_facts(OPERATOR).unwrap();
        assert_eq!(f.user.as_deref(), Some("65532:65532"));
        assert_eq!(f.ports, BTreeSet::from(["9090/tcp".to_string()]));
        assert_eq!(
            f.entrypoint,
            Some(vec!["/usr/local/bin/deepseek-operator".to_string()])
        );
        assert_eq!(f.cmd, Some(vec!["run".to_string()]));
        assert_eq!(
            f.copied,
            vec!["/usr/local/bin/deepseek-operator".to_string()]
        );
    }

    #[test]
    fn env_with_quotes_and_references() {
        let f = dockerfile_facts(
            "FROM x\nENV PATH=\"/app:/opt/v/bin:${PATH}\" LD_LIBRARY_PATH=\"/app\" A=b\nEXPOSE 8000 8080/udp\n",
        )
        .unwrap();
        assert_eq!(f.env["PATH"], "/app:/opt/v/bin:${PATH}");
        assert_eq!(f.env["LD_LIBRARY_PATH"], "/app");
        assert_eq!(f.env["A"], "b");
        assert_eq!(
            f.ports,
            BTreeSet::from(["8000/tcp".to_string(), "8080/udp".to_string()])
        );
    }

    #[test]
    fn copied_then_removed_is_not_expected() {
        let f = dockerfile_facts(
            "FROM x\nCOPY a /tmp/inst\nCOPY b /app\nRUN /tmp/inst/run /opt \\\n && rm -rf /tmp/inst\n",
        )
        .unwrap();
        assert_eq!(f.copied, vec!["/app".to_string()]);
    }

    #[test]
    fn shell_form_entrypoint_is_refused() {
        assert!(dockerfile_facts("FROM x\nENTRYPOINT /bin/app run\n").is_err());
    }

    fn image(user: &str, ports: &[&str], paths: &[&str], passwd: &str) -> OciImage {
        let ports: serde_json::Map<String, Value> = ports
            .iter()
            .map(|p| (p.to_string(), serde_json::json!({})))
            .collect();
        OciImage {
            config: serde_json::json!({
                "User": user,
                "ExposedPorts": ports,
                "Entrypoint": ["/usr/local/bin/deepseek-operator"],
                "Cmd": ["run"],
            }),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            passwd: Some(passwd.to_string()),
        }
    }

    #[test]
    fn agreement_and_each_kind_of_drift() {
        let f = dockerfile_facts(OPERATOR).unwrap();
        let passwd = "root:x:0:0::/root:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/bin/sh\n";
        let good = image(
            "65532:65532",
            &["9090/tcp"],
            &["usr/local/bin/deepseek-operator"],
            passwd,
        );
        assert_eq!(differences(&f, &good), Vec::<String>::new());

        let wrong_user = image(
            "0",
            &["9090/tcp"],
            &["usr/local/bin/deepseek-operator"],
            passwd,
        );
        assert_eq!(differences(&f, &wrong_user).len(), 1);
        let no_port = image(
            "65532:65532",
            &[],
            &["usr/local/bin/deepseek-operator"],
            passwd,
        );
        assert!(differences(&f, &no_port)[0].starts_with("ports"));
        let no_binary = image("65532:65532", &["9090/tcp"], &["usr/local/bin"], passwd);
        assert!(differences(&f, &no_binary)[0].contains("missing"));
        let no_user = image(
            "65532:65532",
            &["9090/tcp"],
            &["usr/local/bin/deepseek-operator"],
            "root:x:0:0::/root:/bin/sh\n",
        );
        assert!(differences(&f, &no_user)[0].contains("passwd"));
    }
}
