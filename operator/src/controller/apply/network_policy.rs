//! Keeping a model's NetworkPolicy in line with the operator configuration (called by the
//! reconcile before any pod is created): enabled, the policy is applied with server-side
//! apply when the live one's digest (read from the child cache) differs, so a steady state writes nothing; disabled,
//! the operator's policy is deleted if it exists. A failure fails the reconcile: pods of a
//! model are not started without the isolation the administrator asked for. A policy of
//! that name that the model does not control (an administrator's `deny-all`) is never
//! applied over nor deleted: the reconcile reports the conflict (`apply::check_ours`).

use k8s_openapi::api::networking::v1::NetworkPolicy;

use kube::{Api, Resource, ResourceExt};

use crate::api::{DeepSeekModel, ServingMode};
use crate::controller::apply;
use crate::controller::cache::children::{Child, ChildKind, Seen};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::desired::labels;
use crate::desired::network_policy::{network_policy, network_policy_name};

pub async fn sync(ctx: &Context, model: &DeepSeekModel) -> Result<(), Error> {
    let ns = model
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let model_name = model.name_any();
    let name = network_policy_name(&model_name);
    let api = Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns);
    let uid = model.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let what = format!("NetworkPolicy {ns}/{name}");
    let cfg = &ctx.config.network_policy;
    // The cache watches only the operator's own policies: a policy it does not show may
    // still exist (an administrator's), so it is read before the first apply.
    let live = match ctx.children.network_policy(&ns, &name) {
        Seen::Listed(Some(live)) => Some(live),
        Seen::Listed(None) if !cfg.enabled => None,
        Seen::Listed(None) | Seen::Unknown | Seen::Absent => {
            Child::read(&api, &name, &what).await?
        }
    };
    if !cfg.enabled {
        if live
            .as_ref()
            .is_some_and(|l| l.managed && l.controlled_by(&uid))
        {
            apply::delete::<NetworkPolicy>(ctx, &ns, &name).await?;
            ctx.children.deleted(ChildKind::NetworkPolicy, &ns, &name);
        }
        return Ok(());
    }
    apply::check_ours(
        &what,
        live.as_ref().map(|l| l.controller_uid.as_deref()),
        &uid,
    )?;
    let owner = model
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    // A disaggregated model's own pods (router, KV store) take its roles' pods as peers,
    // as a role's do.
    let parent = match model.spec.serving_mode() {
        ServingMode::Disaggregated => Some(model_name.clone()),
        _ => model
            .labels()
            .get(crate::desired::disaggregated::DISAGGREGATED)
            .filter(|_| crate::desired::disaggregated::role_of(&model.spec).is_some())
            .cloned(),
    };
    let desired = network_policy(&model_name, &ns, owner, cfg, parent.as_deref());
    if live.as_ref().and_then(|l| l.digest.as_ref())
        == desired.annotations().get(labels::SPEC_DIGEST)
    {
        return Ok(());
    }
    apply::apply(ctx, &api, "networkpolicies", &name, &desired)
        .await
        .map(|p| ctx.children.applied(ChildKind::NetworkPolicy, &p.metadata))
        .map_err(|source| Error::Apply { what, source })
}
