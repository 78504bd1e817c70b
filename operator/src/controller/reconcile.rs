//! Reconcile: read the world -> validate -> plan -> build -> apply -> write status.
//! Only the first and last two steps touch the API server.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::apply::{self, event};
use super::context::Context;
use super::error::Error;
use super::groups::{find_groups, unschedulable};
use super::metrics::{ModelLabels, Timer};
use super::status::{self as cond, set};
use crate::api::{DeepSeekModel, DeepSeekModelStatus, MemoryStatus, PlanStatus};
use crate::build::{labels, pods, services, workload};
use crate::inventory::pools_from_nodes;
use crate::placement::{place, Placement};
use crate::rollout::{self, RolloutLimits};
use crate::validate::validate;

const BUSY_REQUEUE: Duration = Duration::from_secs(5);
const IDLE_REQUEUE: Duration = Duration::from_secs(300);

pub async fn reconcile(model: Arc<DeepSeekModel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = Timer::start(ctx.metrics.clone());
    let ns = model
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = model.name_any();
    let previous = model.status.clone().unwrap_or_default();
    let generation = model.metadata.generation;
    // queueDepth and lastScale* belong to the autoscaler's field manager; reconcile
    // neither writes nor compares them.
    let mut status = DeepSeekModelStatus {
        observed_generation: generation,
        selector: Some(labels::leader_selector_string(&name)),
        ..Default::default()
    };

    // Read the world.
    let pod_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let lp = ListParams::default().labels(&labels::selector_string(&name));
    let pods = pod_api
        .list(&lp)
        .await
        .map_err(|source| Error::Read {
            what: format!("pods of {ns}/{name}"),
            source,
        })?
        .items;
    let (groups, orphans) = find_groups(&pods);
    status.replicas = groups.iter().filter(|g| !g.observed.broken).count() as i32;
    status.ready_replicas = groups.iter().filter(|g| g.observed.ready).count() as i32;

    // Validate.
    let validated = match validate(&model.spec, &ctx.catalog) {
        Ok(v) => v,
        Err(invalid) => {
            set(
                &previous.conditions,
                &mut status.conditions,
                cond::PLANNED,
                false,
                invalid.reason,
                &invalid.message,
                generation,
            );
            status.plan = previous.plan.clone();
            finish(
                &ctx,
                &model,
                &previous,
                status,
                Some((invalid.reason, invalid.message)),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    status.desired_replicas = validated.replicas as i32;

    // Plan.
    let nodes = ctx.nodes.state();
    let node_refs: Vec<&k8s_openapi::api::core::v1::Node> =
        nodes.iter().map(|n| n.as_ref()).collect();
    let pools = pools_from_nodes(&node_refs, &ctx.catalog, &ctx.config.declared_pools);
    let placement = match place(&validated, &pools, &ctx.catalog) {
        Ok(p) => p,
        Err(u) => {
            // Groups already serving keep serving; only new placement is impossible.
            set(
                &previous.conditions,
                &mut status.conditions,
                cond::PLANNED,
                false,
                u.reason,
                &u.message,
                generation,
            );
            set(
                &previous.conditions,
                &mut status.conditions,
                cond::AVAILABLE,
                status.ready_replicas > 0,
                if status.ready_replicas > 0 {
                    "ServingExistingGroups"
                } else {
                    "NotPlanned"
                },
                format!(
                    "{} of {} replica groups ready",
                    status.ready_replicas, status.desired_replicas
                ),
                generation,
            );
            status.plan = previous.plan.clone();
            finish(&ctx, &model, &previous, status, Some((u.reason, u.message))).await?;
            return Ok(Action::requeue(IDLE_REQUEUE));
        }
    };
    let plan_status = plan_status(&placement);
    let plan_msg = format!(
        "{} x {} per replica ({} node(s) x {}), TP{} x PP{}, {} on pool {}",
        plan_status.gpus_per_replica,
        placement.plan.accelerator,
        plan_status.nodes_per_replica,
        plan_status.gpus_per_node,
        plan_status.tensor_parallel,
        plan_status.pipeline_parallel,
        plan_status.engine,
        placement.pool.name
    );
    set(
        &previous.conditions,
        &mut status.conditions,
        cond::PLANNED,
        true,
        "Planned",
        &plan_msg,
        generation,
    );
    if previous.plan.as_ref() != Some(&plan_status) {
        event(&ctx, &model, false, "Planned", plan_msg.clone()).await;
    }
    status.plan = Some(plan_status);

    // Build.
    let owner = model
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let w = workload::workload(&workload::WorkloadInputs {
        model_name: &name,
        namespace: &ns,
        owner,
        validated: &validated,
        placement: &placement,
        config: &ctx.config,
        catalog: &ctx.catalog,
    });
    let desired_services = services::services(&w);

    // Apply: Services (skipped when the live digest matches), then groups.
    let svc_api = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let live_services = svc_api
        .list(&lp)
        .await
        .map_err(|source| Error::Read {
            what: format!("services of {ns}/{name}"),
            source,
        })?
        .items;
    for svc in &desired_services {
        let digest = svc.annotations().get(labels::SPEC_DIGEST);
        let live = live_services
            .iter()
            .find(|l| l.name_any() == svc.name_any());
        if live.and_then(|l| l.annotations().get(labels::SPEC_DIGEST)) != digest {
            apply::apply_service(&ctx, svc).await?;
        }
    }
    for orphan in live_services.iter().filter(|l| {
        !desired_services
            .iter()
            .any(|d| d.name_any() == l.name_any())
    }) {
        apply::delete::<Service>(&ctx, &ns, &orphan.name_any()).await?;
    }
    // KEDA ScaledObject when autoscaling.provider=keda; removed otherwise (if it exists).
    crate::autoscale::scaled_object::sync(&ctx, &model).await;
    for orphan in orphans
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        apply::delete::<Pod>(&ctx, &ns, &orphan.name_any()).await?;
    }

    let observed: Vec<_> = groups.iter().map(|g| g.observed.clone()).collect();
    let room = surge_room(&placement, validated.replicas);
    let limits = RolloutLimits::resolve(
        validated.rollout.max_surge,
        validated.rollout.max_unavailable,
        room,
    );
    let actions = rollout::step(validated.replicas, &w.template_hash, &observed, limits);
    for (slot, hash) in &actions.delete {
        let Some(group) = groups
            .iter()
            .find(|g| g.observed.slot == *slot && &g.observed.hash == hash)
        else {
            continue;
        };
        for pod in group
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            apply::delete::<Pod>(&ctx, &ns, &pod.name_any()).await?;
        }
        let why = if group.observed.broken {
            "a rank failed or is missing; recreating the group"
        } else {
            "replaced or scaled down"
        };
        event(
            &ctx,
            &model,
            group.observed.broken,
            "GroupDeleted",
            format!("group {hash}-{slot}: {why}"),
        )
        .await;
    }
    for slot in &actions.create {
        for pod in pods::group_pods(&w, *slot) {
            apply::apply_pod(&ctx, &pod).await?;
        }
        event(
            &ctx,
            &model,
            false,
            "GroupCreated",
            format!(
                "group {}-{slot} ({} pod(s)) on pool {}",
                w.template_hash, w.nodes_per_group, placement.pool.name
            ),
        )
        .await;
    }

    // Status.
    let current_pods: Vec<&Pod> = groups
        .iter()
        .filter(|g| g.observed.hash == w.template_hash)
        .flat_map(|g| g.pods.iter().copied())
        .collect();
    let blocked = unschedulable(&current_pods);
    match &blocked {
        Some(msg) => set(
            &previous.conditions,
            &mut status.conditions,
            cond::SCHEDULED,
            false,
            "Unschedulable",
            msg,
            generation,
        ),
        None => set(
            &previous.conditions,
            &mut status.conditions,
            cond::SCHEDULED,
            true,
            "Scheduled",
            "every pod is placed",
            generation,
        ),
    }
    let (ready, desired) = (status.ready_replicas, status.desired_replicas);
    let available = desired > 0 && ready >= desired;
    let avail_reason = if desired == 0 {
        "ScaledToZero"
    } else if available {
        "ReplicasReady"
    } else {
        "ReplicasNotReady"
    };
    set(
        &previous.conditions,
        &mut status.conditions,
        cond::AVAILABLE,
        available,
        avail_reason,
        format!("{ready} of {desired} replica groups ready"),
        generation,
    );
    let converged = actions.is_empty()
        && groups
            .iter()
            .all(|g| g.observed.hash == w.template_hash && g.observed.ready)
        && groups.len() as u32 == validated.replicas;
    let progress_reason = if converged {
        "Complete"
    } else if groups.iter().any(|g| g.observed.hash != w.template_hash) {
        "RollingOut"
    } else {
        "Scaling"
    };
    set(
        &previous.conditions,
        &mut status.conditions,
        cond::PROGRESSING,
        !converged,
        progress_reason,
        format!(
            "{} of {} groups at template {}",
            groups
                .iter()
                .filter(|g| g.observed.hash == w.template_hash)
                .count(),
            validated.replicas,
            w.template_hash
        ),
        generation,
    );
    let broken = groups.iter().filter(|g| g.observed.broken).count();
    let (degraded, deg_reason, deg_msg) = if broken > 0 {
        (
            true,
            "GroupFailed",
            format!("{broken} group(s) lost a rank and are being recreated"),
        )
    } else if blocked.is_some() {
        (
            true,
            "Unschedulable",
            "pods are waiting for accelerators".to_string(),
        )
    } else {
        (false, "AsExpected", String::new())
    };
    set(
        &previous.conditions,
        &mut status.conditions,
        cond::DEGRADED,
        degraded,
        deg_reason,
        deg_msg,
        generation,
    );

    let labels_m = ModelLabels {
        namespace: ns.clone(),
        model: name.clone(),
    };
    ctx.metrics
        .desired_replicas
        .get_or_create(&labels_m)
        .set(desired.into());
    ctx.metrics
        .ready_replicas
        .get_or_create(&labels_m)
        .set(ready.into());

    finish(&ctx, &model, &previous, status, None).await?;
    Ok(Action::requeue(if converged {
        IDLE_REQUEUE
    } else {
        BUSY_REQUEUE
    }))
}

/// Whether the pool can hold one more group than `replicas` (ignoring other tenants),
/// so a rollout can surge instead of taking a group down.
fn surge_room(p: &Placement, replicas: u32) -> bool {
    if p.pool.declared || p.pool.resource_name.is_empty() {
        return true;
    }
    let per_node_groups = p.pool.per_node / p.plan.gpus_per_node.max(1);
    let capacity = if p.plan.nodes_per_replica > 1 {
        p.pool.max_nodes / p.plan.nodes_per_replica
    } else {
        p.pool.max_nodes * per_node_groups
    };
    capacity > replicas
}

fn plan_status(p: &Placement) -> PlanStatus {
    let plan = &p.plan;
    let gib = |x: f64| format!("{x:.1}");
    PlanStatus {
        vendor: plan.vendor.as_str().to_string(),
        product: plan.accelerator.clone(),
        resource_name: p.pool.resource_name.clone(),
        engine: plan.engine.as_str().to_string(),
        gpus_per_replica: plan.gpus_per_replica,
        nodes_per_replica: plan.nodes_per_replica,
        gpus_per_node: plan.gpus_per_node,
        tensor_parallel: plan.tensor_parallel,
        pipeline_parallel: plan.pipeline_parallel,
        layout: format!("{}x{}", plan.tensor_parallel, plan.pipeline_parallel),
        max_model_len: plan.max_model_len,
        max_concurrency: plan.max_concurrency,
        pool: Some(p.pool.name.clone()),
        memory: MemoryStatus {
            weights_gib: gib(plan.memory.weights_gib),
            kv_cache_gib: gib(plan.memory.kv_cache_gib),
            overhead_gib: gib(plan.memory.overhead_gib),
            per_gpu_gib: gib(plan.memory.per_gpu_gib),
            usable_per_gpu_gib: gib(plan.memory.usable_per_gpu_gib),
        },
    }
}

/// Writes status only when it changed, and an Event when a refusal is new.
async fn finish(
    ctx: &Context,
    model: &DeepSeekModel,
    previous: &DeepSeekModelStatus,
    status: DeepSeekModelStatus,
    refusal: Option<(&str, String)>,
) -> Result<(), Error> {
    if let Some((reason, message)) = refusal {
        let was = cond::get(&previous.conditions, cond::PLANNED);
        if was.is_none_or(|c| c.reason != reason || c.message != message) {
            event(ctx, model, true, reason, message).await;
        }
    }
    let mut comparable = status.clone();
    // Conditions of other field managers (e.g. the autoscaler's) are theirs to keep.
    let own = [
        cond::PLANNED,
        cond::SCHEDULED,
        cond::AVAILABLE,
        cond::PROGRESSING,
        cond::DEGRADED,
    ];
    comparable.conditions.extend(
        previous
            .conditions
            .iter()
            .filter(|c| !own.contains(&c.type_.as_str()))
            .cloned(),
    );
    comparable.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    let mut previous_sorted = previous.clone();
    previous_sorted
        .conditions
        .sort_by(|a, b| a.type_.cmp(&b.type_));
    let previous = &previous_sorted;
    comparable.queue_depth = previous.queue_depth;
    comparable.last_scale_time = previous.last_scale_time.clone();
    comparable.last_scale_reason = previous.last_scale_reason.clone();
    if &comparable != previous {
        apply::write_status(ctx, model, &status).await?;
    }
    Ok(())
}

pub fn error_policy(model: Arc<DeepSeekModel>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(model = %model.name_any(), error = %err, "reconcile failed");
    ctx.metrics
        .errors
        .get_or_create(&super::metrics::ErrorLabels {
            kind: err.category().into(),
        })
        .inc();
    Action::requeue(Duration::from_secs(10))
}
