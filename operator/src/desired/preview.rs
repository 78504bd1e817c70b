//! The whole pure path from a manifest to its desired objects, as the reconciler takes
//! it: validate, pools, placement, workload, pods and Services. Used by fixture tests and
//! anywhere a preview of what the operator would create is wanted.

use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::{pods, services, workload, Workload};
use crate::api::DeepSeekModel;
use crate::config::OperatorConfig;
use crate::inventory::pools_from_nodes;
use crate::placement::{place, Placement};
use crate::validate::validate;

pub struct Desired {
    pub placement: Placement,
    pub workload: Workload,
    /// Pods of every desired group, group by group.
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
}

/// Why no desired state exists: (condition reason, message).
pub type Refusal = (&'static str, String);

pub fn desired(
    model: &DeepSeekModel,
    nodes: &[&Node],
    config: &OperatorConfig,
    catalog: &Catalog,
) -> Result<Desired, Refusal> {
    let name = model.metadata.name.clone().unwrap_or_default();
    let namespace = model
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let v = validate(&model.spec, catalog, config).map_err(|i| (i.reason, i.message))?;
    let pools = pools_from_nodes(nodes, catalog, &config.declared_pools);
    let placement = place(&v, &namespace, &pools, catalog).map_err(|u| (u.reason, u.message))?;
    let owner = OwnerReference {
        api_version: "inference.deepseek-operator.dev/v1alpha1".into(),
        kind: "DeepSeekModel".into(),
        name: name.clone(),
        uid: model.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let w = workload::workload(&workload::WorkloadInputs {
        model_name: &name,
        namespace: &namespace,
        owner,
        spec: &model.spec,
        validated: &v,
        placement: &placement,
        config,
        catalog,
        previous: model.status.as_ref().and_then(|s| s.resolved.as_ref()),
    });
    let pods = (0..v.replicas)
        .flat_map(|slot| pods::group_pods(&w, slot))
        .collect();
    let services = services::services(&w);
    Ok(Desired {
        placement,
        workload: w,
        pods,
        services,
    })
}
