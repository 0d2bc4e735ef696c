//! Workload adapters: the primary copy of a Deployment or DaemonSet, its Services, tracked configs and autoscalers.
//!
//! Everything here is pure: k8s-openapi objects in, the desired objects (for server-side apply) or
//! merge patches (for the user's own target) out. The controller shell reads the cluster, calls
//! these functions and writes what they return, so every rule of Flagger's workload handling can be
//! tested without an API server.
//!
//! Contract with the shell:
//! * [`primary`] objects carry a fresh `flagger-id`, so applying one rolls the primary: apply it
//!   when the primary is missing and at promotion, not on every tick.
//! * [`scaling::TargetWrite::pod_overrides`], when set, is written to `status.podOverrides`
//!   *before* the target patch, so the target's own values are never only in the target.
//! * Revision hashes ([`revision`]) take `status.podOverrides` as it was when the target was read.
//! * [`services::desired_service`] and [`configs::TrackedConfigs::primary_copies`] take the live
//!   object, because what may be applied depends on who owns it.

pub mod adoption;
pub mod checksum;
pub mod configs;
pub mod hpa;
pub mod knative;
pub mod labels;
pub mod overrides;
pub mod primary;
pub mod readiness;
pub mod revision;
pub mod scaled_object;
pub mod scaling;
pub mod selector;
pub mod service_target;
pub mod services;

#[cfg(test)]
pub(crate) mod fixtures;

use flagger_api::Canary;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

/// Controller flags that change how workloads are copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Flag `-selector-labels`, in order of preference.
    pub selector_labels: Vec<String>,
    /// Flag `-include-label-prefix`; `*` includes every label.
    pub include_label_prefixes: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            selector_labels: selector::DEFAULT_SELECTOR_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            include_label_prefixes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    #[error("{kind} {name}.{namespace} spec.selector.matchLabels must contain one of [{}]", labels.join(" "))]
    NoSelectorLabel {
        kind: &'static str,
        name: String,
        namespace: String,
        labels: Vec<String>,
    },
    #[error(
        "canary {0} has no metadata.uid: owner references need an object read from the API server"
    )]
    CanaryWithoutUid(String),
    #[error("daemonset {name}.{namespace} must have RollingUpdate strategy but have {strategy}")]
    UnsupportedUpdateStrategy {
        name: String,
        namespace: String,
        strategy: String,
    },
    #[error("canary {canary}: service.port {port} is not a port number")]
    InvalidServicePort { canary: String, port: String },
    #[error("{kind} {name}.{namespace} referenced by the pod template not found")]
    ConfigNotFound {
        kind: &'static str,
        name: String,
        namespace: String,
    },
}

pub const CANARY_KIND: &str = "Canary";

/// The controller owner reference that lets deleting the Canary garbage-collect what it generated.
pub fn owner_reference(canary: &Canary) -> Result<OwnerReference, WorkloadError> {
    let uid = canary
        .metadata
        .uid
        .clone()
        .ok_or_else(|| WorkloadError::CanaryWithoutUid(canary.name_any()))?;
    Ok(OwnerReference {
        api_version: flagger_api::API_VERSION.to_string(),
        kind: CANARY_KIND.to_string(),
        name: canary.name_any(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Whether `owners` holds this Canary as controller. Flagger compares kind and name; the uid is
/// compared too when both sides have one, so a Canary re-created under the same name does not
/// silently inherit objects a deleted one left behind mid-garbage-collection.
pub fn is_controlled_by(owners: Option<&Vec<OwnerReference>>, canary: &Canary) -> bool {
    owners.into_iter().flatten().any(|o| {
        o.controller == Some(true)
            && o.kind == CANARY_KIND
            && o.name == canary.name_any()
            && canary.metadata.uid.as_ref().is_none_or(|uid| *uid == o.uid)
    })
}

pub(crate) fn namespace_of(canary: &Canary) -> String {
    canary.namespace().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;
    use serde_json::json;

    #[test]
    fn owner_reference_is_a_blocking_controller_reference() {
        let canary = fixtures::canary();
        let owner = owner_reference(&canary).unwrap();
        assert_eq!(
            serde_json::to_value(owner).unwrap(),
            json!({
                "apiVersion": "flagger.app/v1beta1",
                "kind": "Canary",
                "name": "podinfo",
                "uid": fixtures::CANARY_UID,
                "controller": true,
                "blockOwnerDeletion": true,
            })
        );
    }

    #[test]
    fn owner_reference_needs_a_uid() {
        let mut canary = fixtures::canary();
        canary.metadata.uid = None;
        assert_eq!(
            owner_reference(&canary),
            Err(WorkloadError::CanaryWithoutUid("podinfo".into()))
        );
    }

    #[test]
    fn controlled_by_matches_kind_name_and_uid() {
        let canary = fixtures::canary();
        let mine = vec![owner_reference(&canary).unwrap()];
        assert!(is_controlled_by(Some(&mine), &canary));

        let mut other_uid = mine.clone();
        other_uid[0].uid = "another".into();
        assert!(!is_controlled_by(Some(&other_uid), &canary));

        let mut not_controller = mine.clone();
        not_controller[0].controller = Some(false);
        assert!(!is_controlled_by(Some(&not_controller), &canary));

        assert!(!is_controlled_by(None, &canary));
    }
}
