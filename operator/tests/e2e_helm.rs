//! The Helm chart on the real local control plane: it lints clean, every rendered object
//! passes a server-side dry-run (default values and every option on), and a release
//! installs, runs the operator as its own ServiceAccount, upgrades and uninstalls cleanly.
//!
//! The chart's Deployment pods land on KWOK nodes and run nothing. The operator that
//! reconciles is a child process authenticated with a token issued (TokenRequest) for the
//! chart's ServiceAccount, so any permission the chart forgot fails the scenario.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::helm::*;
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::{Cluster, TestNamespace};
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::config::OperatorConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(90);
const MODEL: &str = "r1-distill-1-5b";

/// A minimal stand-in for the Prometheus Operator's ServiceMonitor CRD, so the all-on
/// dry-run validates the ServiceMonitor document too. Installed only when absent (a real
/// one is left alone) and kept: other runs of this test may be using it.
async fn ensure_service_monitor_crd(cluster: &Cluster) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    let name = "servicemonitors.monitoring.coreos.com";
    if crds.get_opt(name).await?.is_none() {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList",
                          "plural": "servicemonitors", "singular": "servicemonitor"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "required": ["spec"],
                        "properties": {"spec": {
                            "type": "object",
                            "required": ["selector", "endpoints"],
                            "x-kubernetes-preserve-unknown-fields": true,
                            "properties": {
                                "selector": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                                "endpoints": {"type": "array", "items": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": true,
                                    "properties": {
                                        "port": {"type": "string"},
                                        "path": {"type": "string"},
                                        "interval": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                                        "scrapeTimeout": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
                                    }
                                }}
                            }
                        }}
                    }}
                }]
            }
        }))?;
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let ar = kube::api::ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    };
    let sms: Api<kube::api::DynamicObject> = Api::all_with(cluster.client(), &ar);
    wait_for(T, "the ServiceMonitor CRD is served", || async {
        Ok(sms
            .list(&ListParams::default().limit(1))
            .await
            .ok()
            .map(|_| ()))
    })
    .await
}

#[tokio::test]
async fn chart_lints_clean() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    for values in [None, Some(all_on_values())] {
        let mut cmd = cluster.helm();
        cmd.args(["lint", "--strict"]).arg(chart_dir());
        if let Some(v) = &values {
            cmd.arg("-f").arg(v);
        }
        let out = run(cmd, "helm lint")?;
        ensure!(
            out.contains("0 chart(s) failed") && !out.contains("[WARNING]"),
            "helm lint ({values:?}):\n{out}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn rendered_chart_passes_server_side_dry_run() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    ensure_service_monitor_crd(&cluster).await?;
    let ns = cluster.namespace("helm-dry-run").await?;
    // Namespaced mode puts Roles into the watched namespaces, which must exist.
    let watch = format!("watchNamespaces={{{}}}", ns.name());
    for (label, values, extra) in [
        ("default values", None, &[][..]),
        ("every option on", Some(all_on_values()), &[]),
        ("namespaced mode", None, &["--set", watch.as_str()]),
    ] {
        let yaml = template(&cluster, "dry", ns.name(), values.as_deref(), extra)?;
        let docs = documents(&yaml)?;
        let kinds: Vec<String> = docs
            .iter()
            .filter_map(|d| d["kind"].as_str().map(String::from))
            .collect();
        if values.is_some() {
            ensure!(
                kinds.iter().any(|k| k == "ServiceMonitor"),
                "{label}: {kinds:?}"
            );
        } else {
            ensure!(
                !kinds.iter().any(|k| k == "ServiceMonitor"),
                "off by default"
            );
        }
        let path = cluster
            .state_dir()
            .join(format!("helm-dry-run-{}.yaml", ns.name()));
        std::fs::write(&path, &yaml)?;
        let mut cmd = cluster.kubectl();
        cmd.args([
            "apply",
            "--dry-run=server",
            "--server-side",
            "--force-conflicts",
            "--field-manager=helm-dry-run",
            "-f",
        ])
        .arg(&path);
        let out = run(cmd, &format!("kubectl apply --dry-run=server ({label})"));
        let _ = std::fs::remove_file(&path);
        let out = out?;
        let accepted = out
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        ensure!(
            accepted == docs.len(),
            "{label}: {} documents, {accepted} accepted:\n{out}",
            docs.len()
        );
    }
    ns.finish().await
}

#[tokio::test]
async fn values_schema_rejects_malformed_values() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let cases: [(&[&str], &str); 6] = [
        (&["--set", "replicaCount=two"], "/replicaCount"),
        (
            &["--set-json", r#"config.declaredPools=[{"name":"a"}]"#],
            "missing properties 'product', 'acceleratorsPerNode'",
        ),
        (&["--set", "config.unknownKey=1"], "unknownKey"),
        (
            &["--set", "metrics.serviceMonitor.interval=soon"],
            "/metrics/serviceMonitor/interval",
        ),
        (&["--set", "watchNamespaces={Team_A}"], "/watchNamespaces/0"),
        (
            // An empty selector would select every namespace.
            &[
                "--set-json",
                "networkPolicy.models.allowFromNamespaces=[{}]",
            ],
            "/networkPolicy/models/allowFromNamespaces/0",
        ),
    ];
    for (args, want) in cases {
        let out = cluster
            .helm()
            .args(["template", "schema"])
            .arg(chart_dir())
            .args(["--kube-version", "1.35.0"])
            .args(args)
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains(want),
            "{args:?} should be refused mentioning {want}: {err}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn deployment_is_hardened() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let docs = documents(&template(&cluster, "hard", "dso-system", None, &[])?)?;
    let dep = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .context("a Deployment")?;
    ensure!(dep["spec"]["replicas"] == 2);
    let pod = &dep["spec"]["template"]["spec"];
    ensure!(pod["securityContext"]["runAsNonRoot"] == true);
    ensure!(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    ensure!(sc["readOnlyRootFilesystem"] == true, "{sc}");
    ensure!(sc["allowPrivilegeEscalation"] == false, "{sc}");
    ensure!(sc["capabilities"]["drop"] == json!(["ALL"]), "{sc}");
    ensure!(sc["runAsNonRoot"] == true, "{sc}");
    ensure!(c["livenessProbe"]["httpGet"]["path"] == "/healthz");
    ensure!(c["readinessProbe"]["httpGet"]["path"] == "/readyz");
    ensure!(c["resources"]["requests"]["cpu"].is_string());
    ensure!(c["resources"]["requests"]["memory"].is_string());
    let args: Vec<&str> = c["args"]
        .as_array()
        .context("args")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "run",
        "--leader-election",
        "--lease-namespace=dso-system",
        "--config=/etc/deepseek-operator/config.yaml",
        "--metrics-bind=0.0.0.0:9090",
    ] {
        ensure!(args.contains(&want), "args lack {want}: {args:?}");
    }
    let pod_name = c["env"]
        .as_array()
        .context("env")?
        .iter()
        .find(|e| e["name"] == "POD_NAME")
        .context("POD_NAME env")?;
    ensure!(pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name");
    let pdb = docs
        .iter()
        .find(|d| d["kind"] == "PodDisruptionBudget")
        .context("a PodDisruptionBudget")?;
    ensure!(pdb["spec"]["minAvailable"] == 1);

    // The operator's pods admit only the metrics port, only from the release namespace.
    let np = docs
        .iter()
        .find(|d| d["kind"] == "NetworkPolicy")
        .context("the operator's NetworkPolicy")?;
    ensure!(
        np["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"],
        "{np}"
    );
    ensure!(np["spec"]["policyTypes"] == json!(["Ingress"]), "{np}");
    let want = json!([{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dso-system"}}}],
        "ports": [{"port": 9090, "protocol": "TCP"}],
    }]);
    ensure!(np["spec"]["ingress"] == want, "{}", np["spec"]["ingress"]);
    let off = documents(&template(
        &cluster,
        "hard",
        "dso-system",
        None,
        &["--set", "networkPolicy.operator.enabled=false"],
    )?)?;
    ensure!(
        !off.iter().any(|d| d["kind"] == "NetworkPolicy"),
        "switched off"
    );
    Ok(())
}

/// The operator config in the rendered chart's ConfigMap.
fn rendered_config(
    cluster: &Cluster,
    values: Option<&std::path::Path>,
    extra: &[&str],
) -> Result<OperatorConfig> {
    let docs = documents(&template(cluster, "np", "dso-system", values, extra)?)?;
    let text = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["config.yaml"].as_str())
        .context("config.yaml")?;
    OperatorConfig::from_yaml(text).map_err(anyhow::Error::msg)
}

/// The model NetworkPolicy values reach the operator's config: on by default, the release
/// namespace as the operator's, the administrator's namespace selectors.
#[tokio::test]
async fn network_policy_values_reach_the_operator_config() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let all_on = all_on_values();
    for (values, allowed) in [(None, 0), (Some(all_on.as_path()), 1)] {
        let np = rendered_config(&cluster, values, &[])?.network_policy;
        ensure!(np.enabled, "{np:?}");
        ensure!(
            np.operator_namespace.as_deref() == Some("dso-system"),
            "{np:?}"
        );
        ensure!(np.allow_from_namespaces.len() == allowed, "{np:?}");
    }
    let off = rendered_config(
        &cluster,
        None,
        &["--set", "networkPolicy.models.enabled=false"],
    )?;
    ensure!(!off.network_policy.enabled, "{off:?}");
    Ok(())
}

/// The controller scenario under the ServiceAccount: create, become Available, scale via
/// the scale subresource, delete and see the children garbage-collected.
async fn model_scenario(models_ns: &TestNamespace, op: &Operator) -> Result<()> {
    let models: Api<DeepSeekModel> = models_ns.api();
    let pods: Api<Pod> = models_ns.api();
    let svcs: Api<Service> = models_ns.api();
    apply_model(&models, &example("r1-distill-qwen-1.5b-l4.yaml")?).await?;
    wait_groups(&pods, MODEL, 1, 1, T).await?;
    wait_condition(&models, MODEL, "Available", "True", T).await?;
    let lp = ListParams::default().labels(SELECTOR_MANAGED);
    ensure!(
        !svcs.list(&lp).await?.items.is_empty(),
        "the model's Services were created"
    );

    models
        .patch_scale(
            MODEL,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .context("scaling through the scale subresource")?;
    wait_groups(&pods, MODEL, 2, 1, T).await?;
    wait_for(T, "status.readyReplicas == 2", || async {
        let m = models.get(MODEL).await?;
        Ok((m.status.map(|s| s.ready_replicas) == Some(2)).then_some(()))
    })
    .await?;

    // The operator's Events were written with its own credentials.
    let events: Api<Event> = models_ns.api();
    wait_for(T, "a GroupCreated event from the operator", || async {
        let found = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .any(|e| {
                e.reason.as_deref() == Some("GroupCreated")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(MODEL)
            });
        Ok(found.then_some(()))
    })
    .await?;

    check_network_policy(models_ns, MODEL).await?;

    models.delete(MODEL, &DeleteParams::default()).await?;
    wait_for(
        T,
        "the model's pods and Services are garbage-collected",
        || async {
            let p = pods.list(&lp).await?.items.len();
            let s = svcs.list(&lp).await?.items.len();
            Ok((p == 0 && s == 0).then_some(()))
        },
    )
    .await?;
    no_forbidden(op)
}

/// The model's NetworkPolicy exists (the default config enables it), is owned by the
/// model, and selects its pods.
async fn check_network_policy(models_ns: &TestNamespace, model: &str) -> Result<()> {
    let nps: Api<NetworkPolicy> = models_ns.api();
    let np = wait_for(T, "the model's NetworkPolicy", || async {
        Ok(nps.get_opt(model).await?)
    })
    .await?;
    let owner = np
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .context("an owner reference")?;
    ensure!(
        owner.kind == "DeepSeekModel" && owner.name == model,
        "{owner:?}"
    );
    let spec = np.spec.context("policy spec")?;
    let selector = spec.pod_selector.and_then(|s| s.match_labels);
    ensure!(
        selector
            .as_ref()
            .and_then(|m| m.get("app.kubernetes.io/instance"))
            == Some(&model.to_string()),
        "{selector:?}"
    );
    Ok(())
}

/// Under the ServiceAccount: a model with `autoscaling.provider: keda` gets a ScaledObject
/// (server-side apply creates it), and switching to the built-in autoscaler deletes it.
async fn keda_scenario(models_ns: &TestNamespace, op: &Operator) -> Result<()> {
    let models: Api<DeepSeekModel> = models_ns.api();
    let sos: Api<kube::api::DynamicObject> = Api::namespaced_with(
        models_ns.client(),
        models_ns.name(),
        &deepseek_operator::desired::keda::api_resource(),
    );
    let mut v = serde_json::to_value(example("r1-distill-qwen-1.5b-l4.yaml")?)?;
    v["metadata"]["name"] = json!("keda-model");
    v["spec"]["autoscaling"] = json!({"minReplicas": 1, "maxReplicas": 1, "provider": "keda"});
    let model: DeepSeekModel = serde_json::from_value(v.clone())?;
    apply_model(&models, &model).await?;
    wait_for(
        T,
        "the operator applied the model's ScaledObject",
        || async { Ok(sos.get_opt("keda-model").await?.map(|_| ())) },
    )
    .await?;
    v["spec"]["autoscaling"]["provider"] = json!("builtin");
    apply_model(&models, &serde_json::from_value(v)?).await?;
    wait_for(T, "the operator deleted the ScaledObject", || async {
        Ok(sos.get_opt("keda-model").await?.is_none().then_some(()))
    })
    .await?;
    models
        .delete("keda-model", &DeleteParams::default())
        .await?;
    no_forbidden(op)
}

/// Objects still carrying the release's instance label, namespaced and cluster-scoped.
fn leftovers(cluster: &Cluster, ns: &str, release: &str) -> Result<Vec<String>> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let mut cmd = cluster.kubectl();
    cmd.args([
        "get",
        // Every namespaced kind the chart creates with default values (no ServiceMonitor),
        // and what the Deployment creates from its template.
        "deployments,replicasets,pods,services,configmaps,serviceaccounts,roles,rolebindings,poddisruptionbudgets,networkpolicies",
        "-n",
        ns,
        "-l",
        &selector,
        "-o",
        "name",
        "--ignore-not-found",
    ]);
    let mut names: Vec<String> = run(cmd, "kubectl get (namespaced)")?
        .lines()
        .map(String::from)
        .collect();
    let mut cmd = cluster.kubectl();
    cmd.args([
        "get",
        "clusterroles,clusterrolebindings",
        "-l",
        &selector,
        "-o",
        "name",
        "--ignore-not-found",
    ]);
    names.extend(
        run(cmd, "kubectl get (cluster-scoped)")?
            .lines()
            .map(String::from),
    );
    Ok(names)
}

#[tokio::test]
async fn install_run_as_service_account_upgrade_uninstall() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("helm").await?;
    let models_ns = cluster.namespace("helm-models").await?;
    let release = ns.name().to_string();
    let fullname = format!("{release}-deepseek-operator");

    // Install.
    let mut cmd = cluster.helm();
    cmd.args(["install", &release])
        .arg(chart_dir())
        .args(["--namespace", ns.name()]);
    let notes = run(cmd, "helm install")?;
    ensure!(
        notes.contains("kubectl apply -f examples/"),
        "NOTES:\n{notes}"
    );
    let deps: Api<Deployment> = ns.api();
    let before = wait_rolled_out(&deps, &fullname, 2).await?;

    // The operator as the chart's ServiceAccount, with the chart's rendered config.
    let cms: Api<ConfigMap> = ns.api();
    let (config_text, _) = release_config(&cms, &fullname).await?;
    let dir = cluster.state_dir().join(format!("helm-{release}"));
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, &config_text)?;
    let kubeconfig = dir.join("sa.kubeconfig");
    service_account_kubeconfig(&cluster, ns.name(), &fullname, &kubeconfig).await?;

    // The token really is the ServiceAccount's, and it reads no Secrets.
    let mut cmd = cluster.kubectl();
    cmd.env("KUBECONFIG", &kubeconfig).args([
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    let who = run(cmd, "kubectl auth whoami")?;
    ensure!(
        who == format!("system:serviceaccount:{}:{fullname}", ns.name()),
        "whoami: {who}"
    );
    let mut cmd = cluster.kubectl();
    cmd.env("KUBECONFIG", &kubeconfig).args([
        "auth",
        "can-i",
        "get",
        "secrets",
        "--all-namespaces",
    ]);
    let out = cmd.output()?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim() == "no",
        "the ServiceAccount can read Secrets"
    );

    let mut op = Operator::start(
        &cluster,
        OperatorOptions {
            leader_election: Some((ns.name(), "helm-e2e-0")),
            kubeconfig: Some(&kubeconfig),
            config_file: Some(&config_path),
            ..Default::default()
        },
    )
    .await?;
    model_scenario(&models_ns, &op)
        .await
        .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    // KEDA's real ScaledObject CRD, from its Go module; left installed (harmless to others).
    install_keda_crds(&cluster).await?;
    keda_scenario(&models_ns, &op)
        .await
        .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    let log = std::fs::read_to_string(&op.log)?;
    ensure!(
        log.contains("acquired the leader lease"),
        "{}",
        op.log_tail()
    );
    op.kill();

    // Upgrade: a declared pool and an image override reach the ConfigMap, the Deployment
    // rolls (config checksum), and an operator started with the new config plans on the
    // declared pool although no such node exists.
    let upgrade_values = dir.join("upgrade-values.yaml");
    std::fs::write(
        &upgrade_values,
        r#"config:
  declaredPools:
    - name: declared-a100
      product: a100-80gb
      acceleratorsPerNode: 8
      maxNodes: 2
      nodeSelector:
        e2e.deepseek.ai/pool: declared-a100-helm
  images:
    nvidia/vllm: registry.example.com/vllm:upgraded
"#,
    )?;
    let mut cmd = cluster.helm();
    cmd.args(["upgrade", &release])
        .arg(chart_dir())
        .args(["--namespace", ns.name(), "-f"])
        .arg(&upgrade_values);
    run(cmd, "helm upgrade")?;
    let (config_text, cfg) = release_config(&cms, &fullname).await?;
    ensure!(
        cfg.declared_pools.len() == 1 && cfg.declared_pools[0].name == "declared-a100",
        "{config_text}"
    );
    ensure!(
        cfg.images.get("nvidia/vllm").map(String::as_str)
            == Some("registry.example.com/vllm:upgraded"),
        "{config_text}"
    );
    let after = wait_rolled_out(&deps, &fullname, 2).await?;
    let checksum = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("checksum/config").cloned())
    };
    ensure!(
        checksum(&before).is_some() && checksum(&before) != checksum(&after),
        "the pod template's config checksum did not change"
    );
    std::fs::write(&config_path, &config_text)?;
    let op = Operator::start(
        &cluster,
        OperatorOptions {
            leader_election: Some((ns.name(), "helm-e2e-1")),
            kubeconfig: Some(&kubeconfig),
            config_file: Some(&config_path),
            ..Default::default()
        },
    )
    .await?;
    let upgraded = async {
        let models: Api<DeepSeekModel> = models_ns.api();
        let mut m = example("r1-distill-qwen-1.5b-l4.yaml")?;
        m.metadata.name = Some("on-declared-pool".into());
        m.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
            product: Some("a100-80gb".into()),
            ..Default::default()
        });
        apply_model(&models, &m).await?;
        wait_condition(&models, "on-declared-pool", "Planned", "True", T).await?;
        let pods: Api<Pod> = models_ns.api();
        let pod = wait_for(T, "a pod for the declared pool", || async {
            Ok(model_pods(&pods, "on-declared-pool")
                .await?
                .into_iter()
                .next())
        })
        .await?;
        let spec = pod.spec.context("pod spec")?;
        // The pool is selected through required node affinity on its labels.
        let affinity = serde_json::to_string(&spec.affinity)?;
        ensure!(
            affinity.contains("e2e.deepseek.ai/pool") && affinity.contains("declared-a100-helm"),
            "pod affinity does not select the declared pool: {affinity}"
        );
        ensure!(
            spec.containers[0].image.as_deref() == Some("registry.example.com/vllm:upgraded"),
            "image {:?}",
            spec.containers[0].image
        );
        models
            .delete("on-declared-pool", &DeleteParams::default())
            .await?;
        no_forbidden(&op)
    }
    .await;
    upgraded.with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    drop(op);

    // Uninstall: nothing of the release is left but the CRD. First, the check sees the
    // release's objects while it is installed (so an empty result below means something).
    let present = leftovers(&cluster, ns.name(), &release)?;
    for prefix in [
        "deployment.apps/",
        "pod/",
        "configmap/",
        "serviceaccount/",
        "role.rbac.authorization.k8s.io/",
        "clusterrole.rbac.authorization.k8s.io/",
        "clusterrolebinding.rbac.authorization.k8s.io/",
        "poddisruptionbudget.policy/",
        "networkpolicy.networking.k8s.io/",
    ] {
        ensure!(
            present.iter().any(|n| n.starts_with(prefix)),
            "no {prefix}* of the release found before uninstall: {present:?}"
        );
    }
    let mut cmd = cluster.helm();
    cmd.args([
        "uninstall",
        &release,
        "--namespace",
        ns.name(),
        "--wait",
        "--timeout",
        "90s",
    ]);
    run(cmd, "helm uninstall")?;
    wait_for(T, "no object of the release is left", || async {
        let left = leftovers(&cluster, ns.name(), &release)?;
        Ok(left.is_empty().then_some(()))
    })
    .await
    .with_context(|| format!("left: {:?}", leftovers(&cluster, ns.name(), &release)))?;
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    ensure!(
        crds.get_opt("deepseekmodels.inference.deepseek-operator.dev")
            .await?
            .is_some(),
        "the CRD is kept on uninstall"
    );
    let _ = std::fs::remove_dir_all(&dir);
    models_ns.finish().await?;
    ns.finish().await
}
