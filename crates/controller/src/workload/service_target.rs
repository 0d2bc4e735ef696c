//! Service targets (`targetRef.kind: Service`, not a Knative Service): a service-only canary, as Flagger
//! runs them for routers that route to Services (multi-cluster Gateway API setups, where the target Service
//! points at whatever serves the new version).
//!
//! There is no workload: `<target>-canary` is a copy of the target Service, refreshed on every tick so it
//! follows the target; `<target>-primary` is a copy made once and rewritten from the target at promotion. A
//! new revision is a change of the target's spec. Nothing is scaled, and both sides are always ready.

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use flagger_api::Canary;

use crate::workload::labels::{
    copyable_annotations, non_empty, with_flux_annotations, without_flux_keys,
};
use crate::workload::{WorkloadError, namespace_of, owner_reference, revision};

/// Which copy of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    Canary,
    Primary,
}

impl Copy {
    /// `<target>-canary` / `<target>-primary`: named after the target, as Flagger does.
    pub fn name(self, canary: &Canary) -> String {
        let target = &canary.spec.target_ref.name;
        match self {
            Copy::Canary => format!("{target}-canary"),
            Copy::Primary => format!("{target}-primary"),
        }
    }
}

/// The target's spec without what the cluster assigns to one Service alone: its cluster IPs and node
/// ports (a copy with the same node port would be refused) are left for the API server to fill in.
fn portable_spec(target: &Service) -> ServiceSpec {
    let mut spec = target.spec.clone().unwrap_or_default();
    spec.cluster_ip = None;
    spec.cluster_ips = None;
    spec.health_check_node_port = None;
    for port in spec.ports.iter_mut().flatten() {
        port.node_port = None;
    }
    spec
}

/// The revision of a Service target: its portable spec, so the cluster IP never counts as a change.
pub fn revision_of(target: &Service) -> String {
    revision::hash(&portable_spec(target))
}

/// The copy of `target` to apply as `copy`, owned by the Canary.
pub fn copy_of(canary: &Canary, target: &Service, copy: Copy) -> Result<Service, WorkloadError> {
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(copy.name(canary)),
            namespace: Some(namespace_of(canary)),
            labels: non_empty(without_flux_keys(target.metadata.labels.as_ref())),
            annotations: non_empty(with_flux_annotations(copyable_annotations(
                target.metadata.annotations.as_ref(),
            ))),
            owner_references: Some(vec![owner_reference(canary)?]),
            ..ObjectMeta::default()
        },
        spec: Some(portable_spec(target)),
        status: None,
    })
}

/// Whether the live primary copy already carries the target's spec (the promotion of this revision
/// happened): what adopting a status Flagger wrote needs to know.
pub fn primary_matches(target: &Service, primary: &Service) -> bool {
    portable_spec(target) == portable_spec(primary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;
    use serde_json::json;

    fn target() -> Service {
        serde_json::from_value(json!({
            "metadata": {
                "name": "podinfo", "namespace": "test", "uid": "u-1", "resourceVersion": "7",
                "labels": {"app": "podinfo", "kustomize.toolkit.fluxcd.io/name": "apps"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "team": "payments",
                },
            },
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.0.0.12", "clusterIPs": ["10.0.0.12"],
                "selector": {"app": "podinfo-v2"},
                "ports": [{"name": "http", "port": 9898, "targetPort": 9898, "nodePort": 30080, "protocol": "TCP"}],
            },
            "status": {"loadBalancer": {}},
        }))
        .unwrap()
    }

    fn canary() -> Canary {
        fixtures::canary_with(json!({
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "v1", "kind": "Service", "name": "podinfo"},
        }))
    }

    #[test]
    fn copies_are_owned_and_carry_no_cluster_assigned_fields() {
        let c = canary();
        let primary = copy_of(&c, &target(), Copy::Primary).unwrap();
        let v = serde_json::to_value(&primary).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {
                    "name": "podinfo-primary", "namespace": "test",
                    "labels": {"app": "podinfo"},
                    "annotations": {
                        "team": "payments",
                        "helm.toolkit.fluxcd.io/driftDetection": "disabled",
                        "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                    },
                    "ownerReferences": [{
                        "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
                        "uid": fixtures::CANARY_UID, "controller": true, "blockOwnerDeletion": true,
                    }],
                },
                "spec": {
                    "type": "NodePort",
                    "selector": {"app": "podinfo-v2"},
                    "ports": [{"name": "http", "port": 9898, "targetPort": 9898, "protocol": "TCP"}],
                },
            })
        );
        let canary_copy = copy_of(&c, &target(), Copy::Canary).unwrap();
        assert_eq!(canary_copy.metadata.name.as_deref(), Some("podinfo-canary"));
        assert_eq!(canary_copy.spec, primary.spec);
    }

    #[test]
    fn revision_follows_the_spec_but_not_the_cluster_ip() {
        let t = target();
        let mut moved = t.clone();
        if let Some(s) = moved.spec.as_mut() {
            s.cluster_ip = Some("10.0.0.99".into());
            s.cluster_ips = Some(vec!["10.0.0.99".into()]);
        }
        assert_eq!(revision_of(&t), revision_of(&moved));
        let mut changed = t.clone();
        if let Some(s) = changed.spec.as_mut() {
            s.selector = Some([("app".to_string(), "podinfo-v3".to_string())].into());
        }
        assert_ne!(revision_of(&t), revision_of(&changed));
        assert!(revision::is_own_format(&revision_of(&t)));
    }

    #[test]
    fn promotion_is_detected_by_spec() {
        let t = target();
        let primary = copy_of(&canary(), &t, Copy::Primary).unwrap();
        assert!(primary_matches(&t, &primary));
        let mut newer = t.clone();
        if let Some(s) = newer.spec.as_mut() {
            s.selector = Some([("app".to_string(), "podinfo-v3".to_string())].into());
        }
        assert!(!primary_matches(&newer, &primary));
    }
}
