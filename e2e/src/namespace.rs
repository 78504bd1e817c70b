//! A fresh namespace per test, deleted at the end.
//!
//! Call [`TestNamespace::finish`] when the test succeeded: it deletes the
//! namespace. If the value is dropped without it — a panic or an early `?`
//! return — the drop prints the [`crate::diagnostics`] report for the namespace to
//! stderr and then deletes it (set `DSO_E2E_KEEP_NAMESPACES=1` to keep it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::serde::de::DeserializeOwned;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, Resource};

use crate::cluster::{Cluster, ClusterEnv};
use crate::diagnostics;
use crate::wait::wait_for;

/// Label put on every test namespace.
pub const TEST_NAMESPACE_LABEL: &str = "e2e.deepseek.ai/test";

/// A namespace created for one test.
pub struct TestNamespace {
    name: String,
    client: Client,
    env: ClusterEnv,
    state_dir: PathBuf,
    finished: bool,
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = (nanos as u64)
        ^ (u64::from(std::process::id()) << 32)
        ^ u64::from(COUNTER.fetch_add(1, Ordering::Relaxed)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{:08x}", (mixed ^ (mixed >> 29)) as u32)
}

fn sanitize(prefix: &str) -> String {
    let mut s: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(50);
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "e2e".into()
    } else {
        s
    }
}

impl TestNamespace {
    /// Creates `<prefix>-<unique suffix>` and waits until its `default`
    /// ServiceAccount exists (pods cannot be created before that).
    pub async fn create(cluster: &Cluster, prefix: &str) -> Result<Self> {
        let name = format!("{}-{}", sanitize(prefix), unique_suffix());
        let client = cluster.client();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    TEST_NAMESPACE_LABEL.to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        let this = Self {
            name,
            client,
            env: cluster.env().clone(),
            state_dir: cluster.state_dir().to_path_buf(),
            finished: false,
        };
        let sas: Api<ServiceAccount> = this.api();
        wait_for(
            Duration::from_secs(60),
            &format!(
                "the default ServiceAccount of namespace {} exists",
                this.name
            ),
            || async { Ok(sas.get_opt("default").await?) },
        )
        .await?;
        Ok(this)
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admin client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// An API for namespaced resources of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Prints the diagnostic report for this namespace to stderr.
    pub fn dump_diagnostics(&self) {
        diagnostics::dump(&self.env, &self.state_dir, Some(&self.name));
    }

    /// Marks the test successful and deletes the namespace (without waiting for
    /// its contents to be finalised).
    pub async fn finish(mut self) -> Result<()> {
        self.finished = true;
        if keep_namespaces() {
            return Ok(());
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        match namespaces
            .delete(&self.name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting namespace {}", self.name)),
        }
    }
}

fn keep_namespaces() -> bool {
    std::env::var("DSO_E2E_KEEP_NAMESPACES").is_ok_and(|v| !v.is_empty() && v != "0")
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        eprintln!(
            "deepseek-e2e: test namespace {} dropped without finish() (test failed?)",
            self.name
        );
        self.dump_diagnostics();
        if keep_namespaces() {
            eprintln!("deepseek-e2e: keeping namespace {}", self.name);
            return;
        }
        // Synchronous: no async runtime can be relied on in drop.
        let _ = std::process::Command::new(self.env.bin_dir.join("kubectl"))
            .env("KUBECONFIG", &self.env.kubeconfig)
            .args([
                "--request-timeout=10s",
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(std::process::Stdio::null())
            .status();
    }
}
