//! Applies a model's front (desired/front.rs) when `autoscaling.holdRequests` is on and
//! deletes it when it is turned off. Its own module so the reconcile calls one function.
//! Read live (two GETs) for models with holding on, and for others only while the child
//! cache shows a front Service left to delete; written only when the digest annotation
//! differs, and never over an object the model does not control
//! (`apply::check_ours`: a name taken is a conflict, reported like the other children's).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{DeepSeekModel, FIELD_MANAGER};
use crate::controller::apply::{check_ours, delete};
use crate::controller::cache::children::controller_uid;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::desired::{front, hash, labels};

/// Whether `model` gets a front, and with which bounds. A disaggregated model's front
/// stands before its router and follows its prefill role's autoscaling (the role that
/// scales on the held prompts); the role models get none of their own.
pub fn holding(model: &DeepSeekModel) -> Option<crate::api::Holding> {
    if crate::desired::disaggregated::role_of(&model.spec).is_some() {
        return None;
    }
    let a = if model.spec.serving_mode() == crate::api::ServingMode::Disaggregated {
        model.spec.prefill.as_ref()?.autoscaling.as_ref()?
    } else {
        model.spec.autoscaling.as_ref()?
    };
    (a.provider == crate::api::AutoscalingProvider::Builtin)
        .then(|| a.holding())
        .flatten()
}

/// The front's image: `images.front` in the operator config, else the small `cpu`
/// runtime image, which carries the launcher.
pub fn image(config: &crate::config::OperatorConfig) -> String {
    config.images.get("front").cloned().unwrap_or_else(|| {
        let tag = config
            .runtime_image_tag
            .as_deref()
            .unwrap_or(deepseek_engine::images::TAG);
        deepseek_engine::images::default_image_tagged("cpu", deepseek_engine::Engine::Sim, tag)
    })
}

pub async fn sync(ctx: &Context, model: &DeepSeekModel) -> Result<(), Error> {
    if model.spec.autoscaling.is_none()
        && model.spec.serving_mode() != crate::api::ServingMode::Disaggregated
    {
        return Ok(());
    }
    let ns = model.namespace().ok_or(Error::MissingField("namespace"))?;
    let owner = model.meta().uid.clone().unwrap_or_default();
    let name = front::name(&model.name_any());
    // The Service is applied before the Deployment and deleted after it, so while one
    // exists the Service does: without holding and with no front Service in the child
    // cache (the operator's Services, watched), there is nothing to delete and nothing
    // is read.
    if holding(model).is_none()
        && matches!(
            ctx.children.service(&ns, &name),
            crate::controller::cache::children::Seen::Listed(None)
        )
    {
        return Ok(());
    }
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &ns);
    let services = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let (live_d, live_s) = (
        read(&deployments, &name).await?,
        read(&services, &name).await?,
    );
    for (what, live) in [
        ("deployment", live_d.as_ref()),
        ("service", live_s.as_ref()),
    ] {
        let controller = live.map(|m| controller_uid(m));
        check_ours(&format!("{what} {ns}/{name}"), controller, &owner)?;
    }
    let Some(h) = holding(model) else {
        if live_d.is_some() {
            delete::<Deployment>(ctx, &ns, &name).await?;
        }
        if live_s.is_some() {
            delete::<Service>(ctx, &ns, &name).await?;
        }
        return Ok(());
    };
    let (mut d, mut s) = front::objects(model, h, &image(&ctx.config), &ctx.config.helper_pods)
        .map_err(|_| Error::MissingField("metadata.uid"))?;
    apply_if_changed(ctx, &services, &mut s, live_s.as_ref(), "services").await?;
    apply_if_changed(ctx, &deployments, &mut d, live_d.as_ref(), "deployments").await
}

async fn read<K>(
    api: &Api<K>,
    name: &str,
) -> Result<Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map(|o| o.map(|o| o.meta().clone()))
        .map_err(|source| Error::Read {
            what: format!("front {name}"),
            source,
        })
}

async fn apply_if_changed<K>(
    ctx: &Context,
    api: &Api<K>,
    object: &mut K,
    live: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    plural: &str,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let digest = hash::template_hash(&*object);
    let live_digest = live
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(labels::SPEC_DIGEST));
    if live_digest == Some(&digest) {
        return Ok(());
    }
    object
        .meta_mut()
        .annotations
        .get_or_insert_default()
        .insert(labels::SPEC_DIGEST.into(), digest);
    let name = object.meta().name.clone().unwrap_or_default();
    ctx.metrics.write("apply", plural);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&*object),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Apply {
        what: format!("front {plural} {name}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Holding;

    fn model(autoscaling: serde_json::Value, mode: Option<&str>) -> DeepSeekModel {
        let mut spec =
            serde_json::json!({"model": "deepseek-ai/DeepSeek-R1", "autoscaling": autoscaling});
        if let Some(m) = mode {
            spec["serving"] = serde_json::json!({"mode": m});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
            "kind": "DeepSeekModel",
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": spec,
        }))
        .expect("model")
    }

    #[test]
    fn holding_is_on_by_default_at_zero_and_only_where_the_autoscaler_can_wake_the_model() {
        use serde_json::json;
        let defaults = Some(Holding {
            queue_size: 100,
            max_wait_seconds: 600,
        });
        let cases = [
            (json!({"minReplicas": 0, "maxReplicas": 2}), None, defaults),
            (json!({"minReplicas": 1, "maxReplicas": 2}), None, None),
            (
                json!({"minReplicas": 1, "maxReplicas": 2, "holdRequests": {"enabled": true, "queueSize": 20}}),
                None,
                Some(Holding {
                    queue_size: 20,
                    max_wait_seconds: 600,
                }),
            ),
            (
                json!({"minReplicas": 0, "maxReplicas": 2, "holdRequests": {"enabled": false}}),
                None,
                None,
            ),
            // KEDA would not read the held count.
            (
                json!({"minReplicas": 0, "maxReplicas": 2, "provider": "keda"}),
                None,
                None,
            ),
            // A role model: its parent's front holds for it.
            (
                json!({"minReplicas": 0, "maxReplicas": 2}),
                Some("prefill"),
                None,
            ),
        ];
        for (autoscaling, mode, want) in cases {
            let m = model(autoscaling.clone(), mode);
            assert_eq!(holding(&m), want, "{autoscaling} {mode:?}");
        }
        // A disaggregated parent: its prefill role's autoscaling decides.
        let parent = |prefill: serde_json::Value| {
            let mut m = model(json!(null), Some("disaggregated"));
            m.spec.autoscaling = None;
            m.spec.prefill = serde_json::from_value(prefill).expect("prefill");
            m
        };
        assert_eq!(
            holding(&parent(
                json!({"autoscaling": {"minReplicas": 0, "maxReplicas": 2}})
            )),
            defaults
        );
        assert_eq!(
            holding(&parent(
                json!({"autoscaling": {"minReplicas": 1, "maxReplicas": 2}})
            )),
            None
        );
        assert_eq!(holding(&parent(json!({"replicas": 1}))), None);
    }
}
