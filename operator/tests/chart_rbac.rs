//! The Helm chart grants the operator exactly what its code calls, and ships the CRD that
//! the Rust types generate.
//!
//! The tables below are derived by reading the code; every row names its call sites. A
//! verb or resource in the chart that is not in a table fails, and so does one missing
//! from the chart. When the operator starts calling something new, add the row here (with
//! the call site) and the rule in `charts/deepseek-operator/templates/rbac.yaml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use deepseek_e2e::Cluster;
use serde_json::Value;

/// (API group, resource) -> verbs on models and their children: in the ClusterRole, or in
/// namespaced mode (`watchNamespaces`) in a Role per watched namespace. Every list and
/// watch goes through controller/scope.rs `Scope::apis`, which gives `Api::all` or one
/// `Api::namespaced` per watched namespace.
const MODEL_RULES: &[(&str, &str, &[&str])] = &[
    // controller/run.rs: `Controller::new(models, watcher::Config)` per scope Api lists and
    // watches models; autoscale/mod.rs `list_models` lists them (`api.list`) every tick.
    // controller/reconcile_roles.rs `ensure`: `api.get_opt` (get) and `api.patch(..,
    // Patch::Apply)` (create + patch) of a disaggregated model's two role models.
    (
        "inference.deepseek-operator.dev",
        "deepseekmodels",
        &["list", "watch", "get", "create", "patch"],
    ),
    // controller/apply/mod.rs `write_status`: `api.patch_status(.., Patch::Apply)`; the
    // autoscaler (autoscale/mod.rs `api.patch_status`) applies its own status fields.
    (
        "inference.deepseek-operator.dev",
        "deepseekmodels/status",
        &["patch"],
    ),
    // autoscale/mod.rs: `api.patch_scale(..)` on the scale subresource.
    (
        "inference.deepseek-operator.dev",
        "deepseekmodels/scale",
        &["patch"],
    ),
    // desired/preview.rs: children's owner reference has `block_owner_deletion: Some(true)`;
    // the OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift and some
    // distributions) then requires update on the owner's finalizers.
    (
        "inference.deepseek-operator.dev",
        "deepseekmodels/finalizers",
        &["update"],
    ),
    // list + watch: controller/cache/pods.rs `watcher(api, ..)` per scope Api (the pod
    // cache the reconcile, the autoscaler and the capacity check read); list also
    // controller/reconcile.rs `Read::Fresh` (a quorum list before deleting);
    // create + patch: controller/apply/mod.rs `apply_pod` (server-side apply; an apply that
    // creates the object is authorized as create, checked in e2e_helm.rs);
    // delete: controller/apply/mod.rs `delete::<Pod>` (reconcile.rs: orphans, old groups).
    ("", "pods", &["list", "watch", "create", "patch", "delete"]),
    // list + watch: controller/cache/children.rs `watcher(Api::<PartialObjectMeta<Service>>..)`
    // per scope Api (the child cache); list also controller/apply/pods_services.rs `sync_services`
    // before that watch has listed; create + patch: apply.rs `apply_service`; delete:
    // children.rs `delete::<Service>`.
    (
        "",
        "services",
        &["list", "watch", "create", "patch", "delete", "get"],
    ),
    // controller/reconcile_roles.rs `ensure_digested` (get_opt, then server-side apply when
    // the digest differs) of the router's ServiceAccount, Role, RoleBinding, Deployment
    // and Service (the get on services above); run.rs `.owns(deployments, ..)` lists and
    // watches Deployments. Removed by garbage collection with the model: no delete.
    ("", "serviceaccounts", &["get", "create", "patch"]),
    (
        "rbac.authorization.k8s.io",
        "roles",
        &["get", "create", "patch"],
    ),
    (
        "rbac.authorization.k8s.io",
        "rolebindings",
        &["get", "create", "patch"],
    ),
    (
        "apps",
        "deployments",
        &["get", "list", "watch", "create", "patch"],
    ),
    // controller/apply/mod.rs `event` -> kube-runtime `Recorder::publish` (events.rs): create a
    // new events.k8s.io/v1 Event, patch it when the same event repeats.
    ("events.k8s.io", "events", &["create", "patch"]),
    // controller/capacity_pending.rs `karpenter_event`: `Api::<Event>::namespaced(..).list(..)`
    // (field selector on the pod) for Karpenter's FailedScheduling Event on an unplaced
    // rank of a partly placed group.
    ("", "events", &["list"]),
    // controller/apply/scaled_object.rs `try_sync`, called by every reconcile
    // (controller/reconcile.rs): `api.get_opt` (get) while the child cache has not listed
    // them, `api.patch(.., Patch::Apply)` when provider=keda (server-side apply: create +
    // patch), `api.delete` of the operator's own otherwise. Api<DynamicObject> with
    // desired/keda.rs `api_resource()`. list + watch: controller/cache/children.rs
    // `watch_scaled_objects` (metadata only) once discovery finds KEDA's API.
    (
        "keda.sh",
        "scaledobjects",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    // controller/apply/network_policy.rs `sync`, called by every reconcile: `api.get_opt` (get)
    // only before the child cache has listed, `api.patch(.., Patch::Apply)` when the digest
    // differs (server-side apply: create + patch), `apply::delete::<NetworkPolicy>` when
    // networkPolicy.enabled is false. list + watch: controller/cache/children.rs
    // `watcher(Api::<PartialObjectMeta<NetworkPolicy>>..)` per scope Api.
    (
        "networking.k8s.io",
        "networkpolicies",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
];

/// Cluster-wide in both modes: controller/cache/nodes.rs `watcher(Api::<Node>::all(..), ..)`;
/// controller/cache/nodepools.rs `watcher(Api::<DynamicObject>::all_with(..), ..)` on Karpenter's
/// NodePools (cluster-scoped), only once discovery finds the karpenter.sh/v1 API. Nothing
/// gets a single NodePool. controller/capacity_pending.rs `autoscaler_state`: `api.list(..)` of a
/// NodePool's NodeClaims (cluster-scoped) while a group is only partly placed.
const NODE_RULES: &[(&str, &str, &[&str])] = &[
    ("", "nodes", &["list", "watch"]),
    ("karpenter.sh", "nodepools", &["list", "watch"]),
    ("karpenter.sh", "nodeclaims", &["list"]),
];

/// The leader Lease in the release namespace (controller/leader.rs `try_hold`): `api.get_opt`
/// (get), `api.create` when it does not exist, and `api.patch` (merge patch carrying the
/// read resourceVersion) to take or renew it.
const LEASE_VERBS_BY_NAME: &[&str] = &["get", "patch"];
const LEASE_VERBS_UNNAMED: &[&str] = &["create"];

/// `Api<Kind>` types the operator's code uses, mapped to the table's resources. A kind not
/// listed here fails `every_api_kind_in_the_code_is_in_the_table`.
const KINDS: &[(&str, &str)] = &[
    ("DeepSeekModel", "deepseekmodels"),
    ("Pod", "pods"),
    ("Service", "services"),
    ("Node", "nodes"),
    // The Node watch's compact Node (inventory/node_facts.rs): list + watch of nodes.
    ("NodeFacts", "nodes"),
    ("ScaledObject", "scaledobjects"),
    ("NetworkPolicy", "networkpolicies"),
    ("Deployment", "deployments"),
    ("ServiceAccount", "serviceaccounts"),
    ("Role", "roles"),
    ("RoleBinding", "rolebindings"),
    // Core events (read: Karpenter's FailedScheduling; the operator's own go through the
    // Recorder, events.k8s.io).
    ("Event", "events"),
    // The leader Lease: its verbs are the lease Role's, checked by
    // `lease_role_is_namespaced_and_limited_to_the_lease`.
    ("Lease", ""),
    // Generic parameters and dynamic objects (ScaledObjects, Karpenter NodePools and
    // NodeClaims without compiled types; all have rows).
    ("K", ""),
    // Metadata-only watches (controller/cache/children.rs) of Services, NetworkPolicies and
    // ScaledObjects, whose rows hold their list + watch.
    ("PartialObjectMeta", ""),
    ("DynamicObject", "scaledobjects"),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts").join("deepseek-operator")
}

/// `helm template` of the chart, one JSON value per document.
async fn render(args: &[&str]) -> Result<Vec<Value>> {
    let cluster = Cluster::ensure().await?;
    let out = cluster
        .helm()
        .args(["template", "rbac-test"])
        .arg(chart_dir())
        .args(["--namespace", "dso-system", "--kube-version", "1.35.0"])
        .args(args)
        .output()
        .context("running helm template")?;
    ensure!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

type Grants = BTreeMap<(String, String, Vec<String>), BTreeSet<String>>;

/// (group, resource, resourceNames) -> verbs, merged over every rule of a role.
fn grants(role: &Value) -> Result<Grants> {
    let mut out = Grants::new();
    for rule in role["rules"].as_array().context("role has rules")? {
        ensure!(
            rule.get("nonResourceURLs").is_none(),
            "non-resource URLs granted: {rule}"
        );
        let names = strings(&rule["resourceNames"]);
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.entry((group.clone(), resource, names.clone()))
                    .or_default()
                    .extend(strings(&rule["verbs"]));
            }
        }
    }
    Ok(out)
}

fn expected_grants(tables: &[&[(&str, &str, &[&str])]]) -> Grants {
    tables
        .iter()
        .flat_map(|t| t.iter())
        .map(|(g, r, verbs)| {
            (
                (g.to_string(), r.to_string(), Vec::new()),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

fn no_wildcards(doc: &Value) -> Result<()> {
    let text = serde_json::to_string(&doc["rules"])?;
    ensure!(
        !text.contains('*'),
        "wildcard in {}",
        doc["metadata"]["name"]
    );
    Ok(())
}

fn diff(want: &Grants, got: &Grants) -> String {
    let mut lines = Vec::new();
    for (k, v) in got {
        match want.get(k) {
            None => lines.push(format!("extra in chart: {k:?} {v:?}")),
            Some(w) if w != v => lines.push(format!("{k:?}: chart {v:?}, code {w:?}")),
            _ => {}
        }
    }
    for (k, v) in want {
        if !got.contains_key(k) {
            lines.push(format!("missing from chart: {k:?} {v:?}"));
        }
    }
    lines.join("\n")
}

#[tokio::test]
async fn cluster_role_grants_exactly_what_the_code_calls() -> Result<()> {
    let docs = render(&[]).await?;
    let roles = of_kind(&docs, "ClusterRole");
    ensure!(roles.len() == 1, "one ClusterRole, got {}", roles.len());
    no_wildcards(roles[0])?;
    let got = grants(roles[0])?;
    let want = expected_grants(&[NODE_RULES, MODEL_RULES]);
    ensure!(
        got == want,
        "ClusterRole differs from the code:\n{}",
        diff(&want, &got)
    );
    ensure!(
        !got.keys().any(|(_, r, _)| r == "secrets"),
        "the operator reads no Secrets"
    );
    Ok(())
}

#[tokio::test]
async fn lease_role_is_namespaced_and_limited_to_the_lease() -> Result<()> {
    let docs = render(&[]).await?;
    let roles = of_kind(&docs, "Role");
    ensure!(roles.len() == 1, "one Role, got {}", roles.len());
    let role = roles[0];
    no_wildcards(role)?;
    ensure!(role["metadata"]["namespace"] == "dso-system");
    let got = grants(role)?;
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let want: Grants = [
        (
            (
                "coordination.k8s.io".to_string(),
                "leases".to_string(),
                vec!["deepseek-operator".to_string()],
            ),
            set(LEASE_VERBS_BY_NAME),
        ),
        (
            (
                "coordination.k8s.io".to_string(),
                "leases".to_string(),
                Vec::new(),
            ),
            set(LEASE_VERBS_UNNAMED),
        ),
    ]
    .into_iter()
    .collect();
    ensure!(got == want, "lease Role differs:\n{}", diff(&want, &got));

    // Both bindings name the chart's ServiceAccount in the release namespace.
    let sa = of_kind(&docs, "ServiceAccount");
    ensure!(sa.len() == 1);
    let sa_name = sa[0]["metadata"]["name"].clone();
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let b = of_kind(&docs, kind);
        ensure!(b.len() == 1, "one {kind}");
        let subjects = b[0]["subjects"].as_array().context("subjects")?;
        ensure!(
            subjects.len() == 1
                && subjects[0]["kind"] == "ServiceAccount"
                && subjects[0]["name"] == sa_name
                && subjects[0]["namespace"] == "dso-system",
            "{kind} subjects: {subjects:?}"
        );
    }
    Ok(())
}

/// Namespaced mode: the ClusterRole keeps only Nodes, each watched namespace gets a Role
/// with the model rules (bound to the chart's ServiceAccount), the lease Role stays in the
/// release namespace, and the operator is told which namespaces to watch.
#[tokio::test]
async fn namespaced_mode_grants_roles_in_the_watched_namespaces_only() -> Result<()> {
    let docs = render(&["--set", "watchNamespaces={team-b,team-a}"]).await?;
    let cluster_roles = of_kind(&docs, "ClusterRole");
    ensure!(cluster_roles.len() == 1, "one ClusterRole");
    let got = grants(cluster_roles[0])?;
    let want = expected_grants(&[NODE_RULES]);
    ensure!(
        got == want,
        "namespaced mode's ClusterRole:\n{}",
        diff(&want, &got)
    );

    let roles = of_kind(&docs, "Role");
    let mut model_roles: Vec<&str> = Vec::new();
    for role in &roles {
        no_wildcards(role)?;
        let ns = role["metadata"]["namespace"]
            .as_str()
            .context("namespace")?;
        let got = grants(role)?;
        if got.keys().any(|(g, _, _)| g == "coordination.k8s.io") {
            ensure!(ns == "dso-system", "the lease Role is in {ns}");
            continue;
        }
        let want = expected_grants(&[MODEL_RULES]);
        ensure!(got == want, "Role in {ns}:\n{}", diff(&want, &got));
        model_roles.push(ns);
    }
    model_roles.sort();
    ensure!(model_roles == ["team-a", "team-b"], "{model_roles:?}");

    let sa_name = of_kind(&docs, "ServiceAccount")[0]["metadata"]["name"].clone();
    let bindings = of_kind(&docs, "RoleBinding");
    let mut bound: Vec<&str> = Vec::new();
    for b in &bindings {
        let subjects = b["subjects"].as_array().context("subjects")?;
        ensure!(
            subjects.len() == 1
                && subjects[0]["name"] == sa_name
                && subjects[0]["namespace"] == "dso-system",
            "{subjects:?}"
        );
        let ns = b["metadata"]["namespace"].as_str().context("namespace")?;
        let role = roles
            .iter()
            .find(|r| {
                r["metadata"]["name"] == b["roleRef"]["name"] && r["metadata"]["namespace"] == ns
            })
            .with_context(|| format!("RoleBinding in {ns} names a Role in {ns}"))?;
        if ns != "dso-system" || !role["metadata"]["name"].to_string().contains("leader") {
            bound.push(ns);
        }
    }
    bound.sort();
    ensure!(
        bound == ["team-a", "team-b"],
        "model RoleBindings in {bound:?}"
    );

    let args = strings(
        &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    ensure!(
        args.iter().any(|a| a == "--namespaces=team-b,team-a"),
        "{args:?}"
    );
    Ok(())
}

#[tokio::test]
async fn no_lease_role_without_leader_election() -> Result<()> {
    let docs = render(&["--set", "leaderElection.enabled=false"]).await?;
    ensure!(of_kind(&docs, "Role").is_empty());
    ensure!(of_kind(&docs, "RoleBinding").is_empty());
    let args = strings(
        &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    ensure!(!args.iter().any(|a| a == "--leader-election"), "{args:?}");
    Ok(())
}

/// Every `Api<Kind>` / `Api::<Kind>` in operator/src names a kind the table covers, so a
/// new kind of call (say `Api<Secret>`) cannot slip in without a row and an RBAC rule.
#[test]
fn every_api_kind_in_the_code_is_in_the_table() -> Result<()> {
    let mut found = BTreeSet::new();
    let mut stack = vec![repo_root().join("operator").join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)?;
                for marker in ["Api::<", "Api<"] {
                    for (i, _) in text.match_indices(marker) {
                        // Skip identifiers that merely end in "Api" (e.g. `MyApi<`).
                        let before = text[..i].chars().next_back();
                        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                            continue;
                        }
                        let rest = &text[i + marker.len()..];
                        let kind: String = rest
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                            .collect();
                        let kind = kind.rsplit("::").next().unwrap_or_default().to_string();
                        if !kind.is_empty() {
                            found.insert((kind, path.display().to_string()));
                        }
                    }
                }
            }
        }
    }
    ensure!(
        found.iter().any(|(k, _)| k == "Pod"),
        "the scan found no Api<Pod>: is it still reading operator/src?"
    );
    let known: BTreeMap<&str, &str> = KINDS.iter().copied().collect();
    let resources: BTreeSet<&str> = MODEL_RULES
        .iter()
        .chain(NODE_RULES)
        .map(|(_, r, _)| *r)
        .collect();
    for (kind, file) in &found {
        let resource = known
            .get(kind.as_str())
            .ok_or_else(|| anyhow!("{file} uses Api<{kind}>: add its verbs to the tables in this test and to the chart's rules"))?;
        if !resource.is_empty() && !resources.contains(resource) {
            bail!("{file}: Api<{kind}> maps to {resource}, which has no row");
        }
    }
    Ok(())
}

/// The chart's CRD must be byte-identical to crds/ (itself checked against the Rust types
/// by crd_drift.rs).
#[test]
fn chart_crd_is_identical_to_crds_dir() -> Result<()> {
    let src = repo_root().join("crds");
    let dst = chart_dir().join("crds");
    let names = |d: &Path| -> Result<BTreeSet<String>> {
        Ok(std::fs::read_dir(d)
            .with_context(|| format!("reading {}", d.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    };
    let (a, b) = (names(&src)?, names(&dst)?);
    ensure!(a == b, "crds/ has {a:?}, the chart's crds/ has {b:?}");
    for name in &a {
        let x = std::fs::read(src.join(name))?;
        let y = std::fs::read(dst.join(name))?;
        ensure!(
            x == y,
            "charts/deepseek-operator/crds/{name} drifted from crds/{name}: copy it (cp crds/{name} charts/deepseek-operator/crds/)"
        );
    }
    Ok(())
}
