//! The decision of one reconcile pass of a disaggregated model (`serving.mode:
//! disaggregated`), with no I/O: it owns no pods, only its two role models, its router
//! (desired/disaggregated.rs) and, on Ascend, the KV store. [`children`] lists what it
//! keeps; controller/reconcile_roles.rs reads each of them live; [`decide`] says which to apply (only
//! those whose digest differs, never one the model does not control) and the status,
//! from what the roles and the router report.

use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use super::ownership::{conflict, controller_uid};
use crate::api::{
    DeepSeekModel, DeepSeekModelStatus, KvTransferChoice, RoleStatus, RolesStatus, Vendor,
};
use crate::config::OperatorConfig;
use crate::decide::conditions::{self as cond, set};
use crate::decide::{refuse, Note};
use crate::desired::disaggregated::{
    kv_store_objects, role_model, role_model_name, router_objects, ROLES,
};
use crate::desired::hash::template_hash;
use crate::desired::labels;
use deepseek_engine::Engine;
use deepseek_planner::Catalog;

/// One object the model keeps, as built.
#[derive(Clone, Debug)]
pub struct Child {
    pub resource: ApiResource,
    pub name: String,
    /// The object with its digest annotation.
    pub object: Value,
    digest: String,
    /// The Ascend KV store: kept only on Ascend.
    store: bool,
    /// A role model (as built): an autoscaled role's replicas are the autoscaler's.
    role: Option<DeepSeekModel>,
    /// The router's Deployment: its readiness is reported.
    router: bool,
}

impl Child {
    fn new<K: Resource<DynamicType = ()> + Serialize>(desired: &K, store: bool) -> Child {
        let mut object = serde_json::to_value(desired).unwrap_or_default();
        let role = K::kind(&()) == DeepSeekModel::kind(&());
        let role_model = role
            .then(|| serde_json::from_value::<DeepSeekModel>(object.clone()).ok())
            .flatten();
        if let Some(o) = object.as_object_mut() {
            o.remove("status");
            o.insert("apiVersion".into(), K::api_version(&()).into());
            o.insert("kind".into(), K::kind(&()).into());
        }
        // A role model's digest covers what the operator sets on it (labels, owner and
        // spec); every other object's covers all but its status.
        let digest = if role {
            let m = desired.meta();
            template_hash(&(&m.labels, &m.owner_references, &object["spec"]))
        } else {
            template_hash(&object)
        };
        object["metadata"]["annotations"][labels::SPEC_DIGEST] = digest.clone().into();
        Child {
            resource: ApiResource::erase::<K>(&()),
            name: desired.meta().name.clone().unwrap_or_default(),
            object,
            digest,
            store,
            role: role_model,
            router: false,
        }
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.resource.kind, self.name)
    }
}

/// What the model keeps, in the order it is applied: role models, then the router's
/// ServiceAccount, Role, RoleBinding, Deployment and Service, then the KV store.
pub fn children(model: &DeepSeekModel, config: &OperatorConfig) -> Result<Vec<Child>, String> {
    let mut out = Vec::new();
    for role in ROLES {
        out.push(Child::new(&role_model(model, role)?, false));
    }
    let r = router_objects(model, &config.router_image(), &config.helper_pods)?;
    out.push(Child::new(&r.service_account, false));
    out.push(Child::new(&r.role, false));
    out.push(Child::new(&r.role_binding, false));
    out.push(Child {
        router: true,
        ..Child::new(&r.deployment, false)
    });
    out.push(Child::new(&r.service, false));
    let image = config.image_for(Vendor::Ascend, Engine::Sglang);
    let (deployment, service) = kv_store_objects(model, &image, &config.helper_pods)?;
    out.push(Child::new(&deployment, true));
    out.push(Child::new(&service, true));
    Ok(out)
}

/// One pass's decision.
pub struct Decision {
    /// The children to apply, in order.
    pub apply: Vec<Value>,
    pub apply_kinds: Vec<ApiResource>,
    /// Objects under the children's names that the model does not control.
    pub conflict: Option<String>,
    pub status: DeepSeekModelStatus,
    pub events: Vec<Note>,
}

/// Decides one pass from the children as built and as read (`live`, aligned with
/// `built`; `None` when absent).
pub fn decide(
    model: &DeepSeekModel,
    built: &Result<Vec<Child>, String>,
    live: &[Option<DynamicObject>],
    catalog: &Catalog,
) -> Decision {
    let previous = model.status.clone().unwrap_or_default();
    let generation = model.metadata.generation;
    let uid = model.uid().unwrap_or_default();
    let name = model.name_any();
    let built_ok = built.as_deref().unwrap_or_default();
    // The live objects of the children that are role models, and of the router.
    let pairs = || built_ok.iter().zip(live);
    let roles: Vec<Option<DeepSeekModel>> = pairs()
        .filter(|(c, _)| c.role.is_some())
        .map(|(_, o)| {
            let v = serde_json::to_value(o.as_ref()?).ok()?;
            serde_json::from_value(v).ok()
        })
        .collect();
    let router_ready = pairs()
        .filter(|(c, _)| c.router)
        .find_map(|(_, d)| d.as_ref()?.data["status"]["readyReplicas"].as_i64())
        .unwrap_or(0) as i32;
    let mut status = roles_status(&previous, generation, &name, &roles, router_ready);
    let mut events = Vec::new();
    let mut decision = Decision {
        apply: Vec::new(),
        apply_kinds: Vec::new(),
        conflict: None,
        status: DeepSeekModelStatus::default(),
        events: Vec::new(),
    };
    let built = match built {
        Ok(b) => b,
        Err(message) => {
            refuse(&previous, &mut status, &mut events, "Unsupported", message);
            decision.status = status;
            decision.events = events;
            return decision;
        }
    };
    // SGLang's `ascend` transfer meets at a config store that the roles' launch
    // configurations name. When the spec already says Ascend (the transfer, or a role's
    // vendor or product), the store goes first, so no rank starts before it; otherwise it
    // follows the first plan on Ascend, a few seconds after the roles plan.
    let chosen = model.spec.serving.as_ref().and_then(|s| s.kv_transfer);
    let store_first = chosen == Some(KvTransferChoice::Ascend)
        || (chosen.is_none()
            && built
                .iter()
                .filter_map(|c| c.role.as_ref())
                .any(|r| spec_on_ascend(catalog, r)));
    let planned_on_ascend = roles.iter().flatten().any(|m| {
        m.status
            .as_ref()
            .and_then(|s| s.plan.as_ref())
            .is_some_and(|p| p.vendor == Vendor::Ascend.as_str())
    });
    let with_store = store_first || (chosen.is_none() && planned_on_ascend);
    let mut order: Vec<usize> = (0..built.len()).filter(|i| !built[*i].store).collect();
    let stores = (0..built.len()).filter(|i| built[*i].store && with_store);
    if store_first {
        order.splice(0..0, stores);
    } else {
        order.extend(stores);
    }
    let mut conflicts = Vec::new();
    for i in order {
        let (child, live) = (&built[i], live.get(i).and_then(Option::as_ref));
        if let Some(e) = conflict(
            &child.describe(),
            live.map(|l| controller_uid(&l.metadata)),
            &uid,
        ) {
            conflicts.push(e);
            continue;
        }
        let digest = live.and_then(|l| l.annotations().get(labels::SPEC_DIGEST));
        if digest == Some(&child.digest) {
            continue;
        }
        let mut object = child.object.clone();
        // An autoscaled role's count is the autoscaler's: carried over, never reset.
        let autoscaled = child
            .role
            .as_ref()
            .is_some_and(|r| r.spec.autoscaling.is_some());
        if autoscaled {
            if let Some(l) = live {
                object["spec"]["replicas"] = l.data["spec"]["replicas"].clone();
            }
        }
        decision.apply.push(object);
        decision.apply_kinds.push(child.resource.clone());
    }
    if !conflicts.is_empty() {
        let message = conflicts.join("; ");
        refuse(
            &previous,
            &mut status,
            &mut events,
            "NameConflict",
            &message,
        );
        decision.conflict = Some(message);
        // Nothing is applied while a name is taken: the roles would run without their
        // router, or the router without its roles.
        decision.apply.clear();
        decision.apply_kinds.clear();
    }
    decision.status = status;
    decision.events = events;
    decision
}

/// Whether a role model's spec puts it on Ascend before any plan: its vendor, or its
/// product's in the catalog.
fn spec_on_ascend(catalog: &Catalog, role: &DeepSeekModel) -> bool {
    let Some(a) = role.spec.accelerator.as_ref() else {
        return false;
    };
    a.vendor == Some(Vendor::Ascend)
        || a.product
            .as_deref()
            .and_then(|p| catalog.accelerator(p))
            .is_some_and(|acc| acc.vendor == Vendor::Ascend)
}

/// The model's status from what its roles and router report.
fn roles_status(
    previous: &DeepSeekModelStatus,
    generation: Option<i64>,
    name: &str,
    roles: &[Option<DeepSeekModel>],
    router_ready: i32,
) -> DeepSeekModelStatus {
    let mut status = DeepSeekModelStatus {
        observed_generation: generation,
        ..Default::default()
    };
    let role_status = |m: Option<&DeepSeekModel>, role| -> RoleStatus {
        let s = m.and_then(|m| m.status.clone()).unwrap_or_default();
        let blocking = [cond::PLANNED, cond::AVAILABLE]
            .iter()
            .filter_map(|t| cond::get(&s.conditions, t))
            .find(|c| c.status != "True")
            .map(|c| c.message.clone());
        RoleStatus {
            model: role_model_name(name, role),
            replicas: s.replicas,
            ready_replicas: s.ready_replicas,
            desired_replicas: s.desired_replicas,
            product: s.plan.as_ref().map(|p| p.product.clone()),
            layout: s.plan.as_ref().map(|p| p.layout.clone()),
            gpus_per_replica: s.plan.as_ref().map(|p| p.gpus_per_replica),
            pool: s.plan.as_ref().and_then(|p| p.pool.clone()),
            message: blocking,
        }
    };
    let role = |i: usize| roles.get(i).and_then(Option::as_ref);
    let prefill = role_status(role(0), ROLES[0]);
    let decode = role_status(role(1), ROLES[1]);
    status.replicas = prefill.replicas + decode.replicas;
    status.ready_replicas = prefill.ready_replicas + decode.ready_replicas;
    status.desired_replicas = prefill.desired_replicas + decode.desired_replicas;
    let is_planned = |m: Option<&DeepSeekModel>| {
        m.and_then(|m| m.status.as_ref())
            .and_then(|s| cond::get(&s.conditions, cond::PLANNED))
            .is_some_and(|c| c.status == "True")
    };
    let planned = is_planned(role(0)) && is_planned(role(1));
    let unplanned = [(&prefill, role(0)), (&decode, role(1))]
        .into_iter()
        .find(|(_, m)| !is_planned(*m))
        .map(|(r, _)| {
            let why = r
                .message
                .clone()
                .unwrap_or_else(|| "not planned yet".into());
            format!("{}: {why}", r.model)
        });
    let (reason, message) = match unplanned {
        None => (
            "RolesPlanned",
            format!(
                "prefill {} x{}, decode {} x{}",
                prefill.layout.as_deref().unwrap_or("?"),
                prefill.desired_replicas,
                decode.layout.as_deref().unwrap_or("?"),
                decode.desired_replicas
            ),
        ),
        Some(m) => ("RolePending", m),
    };
    let prev = &previous.conditions;
    set(
        prev,
        &mut status.conditions,
        cond::PLANNED,
        planned,
        reason,
        message,
        generation,
    );
    let missing: Vec<String> = [&prefill, &decode]
        .iter()
        .filter(|r| r.ready_replicas < 1)
        .map(|r| format!("{} has no ready group", r.model))
        .chain((router_ready < 1).then(|| "the router is not ready".to_string()))
        .collect();
    let (available, reason, message) = if missing.is_empty() {
        let m = format!(
            "router -> {} prefill and {} decode group(s)",
            prefill.ready_replicas, decode.ready_replicas
        );
        (true, "Serving", m)
    } else {
        (false, "RolesNotReady", missing.join("; "))
    };
    set(
        prev,
        &mut status.conditions,
        cond::AVAILABLE,
        available,
        reason,
        message,
        generation,
    );
    status.roles = Some(RolesStatus {
        prefill,
        decode,
        router_ready_replicas: router_ready,
    });
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parent() -> DeepSeekModel {
        serde_json::from_value(json!({
            "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
            "kind": "DeepSeekModel",
            "metadata": {"name": "pd", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"model": "deepseek-r1", "serving": {"mode": "disaggregated"}},
        }))
        .expect("model")
    }

    /// A child as the API server would show it once applied, with what its controller
    /// reports: role models planned with one ready group, the router ready.
    fn live(c: &Child) -> DynamicObject {
        let mut v = c.object.clone();
        if c.role.is_some() {
            let mut st = DeepSeekModelStatus {
                replicas: 1,
                ready_replicas: 1,
                desired_replicas: 1,
                plan: Some(crate::api::PlanStatus {
                    layout: "TP8".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            set(
                &[],
                &mut st.conditions,
                cond::PLANNED,
                true,
                "Planned",
                "",
                Some(1),
            );
            v["status"] = serde_json::to_value(&st).expect("status");
        }
        if c.router {
            v["status"] = json!({"readyReplicas": 1});
        }
        serde_json::from_value(v).expect("dynamic object")
    }

    #[test]
    fn a_parent_reports_its_roles_and_router_and_keeps_only_what_differs() {
        let m = parent();
        let built = children(&m, &OperatorConfig::default());
        let kids = built.as_ref().expect("built");
        assert_eq!(kids.iter().filter(|c| c.role.is_some()).count(), 2);

        // Nothing live yet: the roles and the router are applied, not the KV store (not
        // on Ascend).
        let none = vec![None; kids.len()];
        let d = decide(&m, &built, &none, Catalog::builtin());
        assert_eq!(d.apply.len(), kids.iter().filter(|c| !c.store).count());
        assert_eq!(d.apply[0]["kind"], "DeepSeekModel", "role models first");
        let planned = cond::get(&d.status.conditions, cond::PLANNED).expect("Planned");
        assert_eq!(
            (planned.status.as_str(), planned.reason.as_str()),
            ("False", "RolePending")
        );

        // All live and as built: nothing to write; the status is the roles' and router's.
        let all: Vec<Option<DynamicObject>> = kids.iter().map(|c| Some(live(c))).collect();
        let d = decide(&m, &built, &all, Catalog::builtin());
        assert!(d.apply.is_empty() && d.conflict.is_none());
        let get = |t| {
            let c = cond::get(&d.status.conditions, t).expect("condition");
            (c.status.clone(), c.reason.clone())
        };
        assert_eq!(get(cond::PLANNED), ("True".into(), "RolesPlanned".into()));
        assert_eq!(get(cond::AVAILABLE), ("True".into(), "Serving".into()));
        let roles = d.status.roles.expect("roles");
        assert_eq!(
            (roles.prefill.ready_replicas, roles.router_ready_replicas),
            (1, 1)
        );

        // A user's own model under a role's name: left alone, reported, nothing applied.
        let mut taken = all.clone();
        if let Some(o) = taken[0].as_mut() {
            o.metadata.owner_references = None;
        }
        let stale: Vec<Option<DynamicObject>> = (0..kids.len())
            .map(|i| if i == 0 { taken[0].clone() } else { None })
            .collect();
        let d = decide(&m, &built, &stale, Catalog::builtin());
        assert!(
            d.apply.is_empty(),
            "nothing is applied while a name is taken"
        );
        let message = d.conflict.expect("conflict");
        assert!(message.contains("DeepSeekModel pd-prefill"), "{message}");
        assert!(d.events.iter().any(|e| e.reason == "NameConflict"));
    }
}
