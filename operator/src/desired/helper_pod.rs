//! What a model's helper pods (its front, router and KV store) share: they run no engine
//! and need no accelerator, so they run as a fixed non-root user with the restricted
//! security profile, preferably away from accelerator nodes, where the administrator's
//! `helperPods` puts them.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

use crate::config::HelperPods;

/// The user and group of every helper pod (no root needed: they only serve TCP). The
/// engines' 10001 rather than 1000: a low uid is likely to be a real user of the node,
/// whose files a process that escaped its container could then reach.
pub const UID: i64 = 10001;

/// Places a helper pod: the preference for nodes without accelerators
/// (`affinity::general_nodes`), and the administrator's node selector and tolerations.
pub fn place(spec: &mut PodSpec, helpers: &HelperPods) {
    spec.affinity = Some(super::affinity::general_nodes());
    spec.node_selector = (!helpers.node_selector.is_empty()).then(|| helpers.node_selector.clone());
    spec.tolerations = (!helpers.tolerations.is_empty()).then(|| helpers.tolerations.clone());
}

/// The container's half of the restricted profile.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_non_root: Some(true),
        ..Default::default()
    }
}

/// The pod's half: non-root as [`UID`], the runtime's default seccomp profile.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(UID),
        run_as_group: Some(UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Toleration;

    #[test]
    fn the_administrators_placement_is_added_to_the_preference() {
        let mut spec = PodSpec::default();
        place(&mut spec, &HelperPods::default());
        assert_eq!(spec.affinity, Some(super::super::affinity::general_nodes()));
        assert_eq!(
            (spec.node_selector.clone(), spec.tolerations.clone()),
            (None, None)
        );

        let helpers = HelperPods {
            node_selector: [("pool".to_string(), "system".to_string())].into(),
            tolerations: vec![Toleration {
                key: Some("CriticalAddonsOnly".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }],
        };
        place(&mut spec, &helpers);
        assert_eq!(spec.affinity, Some(super::super::affinity::general_nodes()));
        assert_eq!(spec.node_selector, Some(helpers.node_selector.clone()));
        assert_eq!(spec.tolerations, Some(helpers.tolerations.clone()));
    }
}
