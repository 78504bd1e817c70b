//! Which taints a model's pods may tolerate without being told to.
//!
//! Pods tolerate only the taints that mean "this node has accelerators" (device plugins and
//! cloud GPU node pools put them there to keep ordinary pods off) and the taints of pools
//! the administrator declared. Any other taint, such as `dedicated=team-b:NoSchedule`,
//! marks nodes reserved for someone: a model lands there only if its manifest tolerates
//! the taint itself. Control-plane nodes are never a pool at all.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::node_facts::NodeFacts;

/// Accelerator taints: `(key, value)`; `None` tolerates any value of the key.
pub const ACCELERATOR_TAINTS: &[(&str, Option<&str>)] = &[
    ("nvidia.com/gpu", None),
    ("amd.com/gpu", None),
    ("huawei.com/Ascend910", None),
    ("huawei.com/Ascend310", None),
    ("huawei.com/npu", None),
    // AKS GPU node pools.
    ("sku", Some("gpu")),
];

/// Labels and taint keys that mark a control-plane node.
pub const CONTROL_PLANE_KEYS: &[&str] = &[
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// Whether a node belongs to the control plane (by role label or taint).
pub fn is_control_plane(node: &NodeFacts) -> bool {
    let labelled = CONTROL_PLANE_KEYS.iter().any(|k| node.label(k).is_some());
    let tainted = node
        .taints()
        .iter()
        .any(|t| CONTROL_PLANE_KEYS.contains(&t.key.as_str()));
    labelled || tainted
}

/// Whether a taint is one of the accelerator taints pods tolerate by default.
pub fn is_accelerator_taint(t: &Taint) -> bool {
    ACCELERATOR_TAINTS
        .iter()
        .any(|(k, v)| t.key == *k && v.is_none_or(|v| t.value.as_deref() == Some(v)))
}

/// The tolerations every accelerator pod gets.
pub fn accelerator_tolerations() -> Vec<Toleration> {
    ACCELERATOR_TAINTS
        .iter()
        .map(|(k, v)| Toleration {
            key: Some((*k).to_string()),
            operator: Some(if v.is_some() { "Equal" } else { "Exists" }.into()),
            value: v.map(str::to_string),
            effect: None,
            toleration_seconds: None,
        })
        .collect()
}

/// A toleration for exactly this taint (declared pools' taints).
pub fn toleration_for(t: &Taint) -> Toleration {
    Toleration {
        key: Some(t.key.clone()),
        operator: Some(if t.value.is_some() { "Equal" } else { "Exists" }.into()),
        value: t.value.clone(),
        effect: Some(t.effect.clone()),
        toleration_seconds: None,
    }
}

/// Kubernetes' toleration semantics: does `tol` tolerate `taint`?
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect_ok = tol
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let exists = tol.operator.as_deref() == Some("Exists");
    let key_ok = match tol.key.as_deref() {
        None | Some("") => exists,
        Some(k) => k == taint.key,
    };
    let value_ok =
        exists || tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
    effect_ok && key_ok && value_ok
}

/// Taints of a pool that the model's pods would not tolerate: neither accelerator taints
/// nor tolerated by the manifest. `PreferNoSchedule` never blocks.
pub fn untolerated<'a>(taints: &'a [Taint], manifest: &[Toleration]) -> Vec<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect != "PreferNoSchedule")
        .filter(|t| !is_accelerator_taint(t))
        .filter(|t| !manifest.iter().any(|tol| tolerates(tol, t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn only_accelerator_taints_are_tolerated_by_default() {
        let gpu = taint("nvidia.com/gpu", Some("present"), "NoSchedule");
        let team = taint("dedicated", Some("team-b"), "NoSchedule");
        let aks = taint("sku", Some("gpu"), "NoSchedule");
        let aks_other = taint("sku", Some("storage"), "NoSchedule");
        assert!(untolerated(std::slice::from_ref(&gpu), &[]).is_empty());
        assert!(untolerated(std::slice::from_ref(&aks), &[]).is_empty());
        assert_eq!(untolerated(std::slice::from_ref(&team), &[]), vec![&team]);
        assert_eq!(untolerated(std::slice::from_ref(&aks_other), &[]).len(), 1);
        let tol = Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("team-b".into()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        };
        assert!(untolerated(std::slice::from_ref(&team), std::slice::from_ref(&tol)).is_empty());
        let wrong = Toleration {
            value: Some("team-a".into()),
            ..tol.clone()
        };
        assert_eq!(untolerated(std::slice::from_ref(&team), &[wrong]).len(), 1);
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(untolerated(std::slice::from_ref(&team), &[everything]).is_empty());
        assert!(
            untolerated(&[taint("x", None, "PreferNoSchedule")], &[]).is_empty(),
            "a preference never blocks scheduling"
        );
    }

    #[test]
    fn default_tolerations_cover_exactly_the_accelerator_taints() {
        let tols = accelerator_tolerations();
        for (k, v) in ACCELERATOR_TAINTS {
            let t = taint(k, Some(v.unwrap_or("anything")), "NoSchedule");
            assert!(tols.iter().any(|tol| tolerates(tol, &t)), "{k}");
        }
        let team = taint("dedicated", Some("team-b"), "NoSchedule");
        assert!(!tols.iter().any(|tol| tolerates(tol, &team)));
        let cp = taint("node-role.kubernetes.io/control-plane", None, "NoSchedule");
        assert!(!tols.iter().any(|tol| tolerates(tol, &cp)));
    }
}
