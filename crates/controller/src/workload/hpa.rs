//! The primary HorizontalPodAutoscaler (autoscaling/v2): a copy of the target's HPA that scales
//! `<target>-primary`.

use flagger_api::Canary;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::workload::labels::{copyable_annotations, include_by_prefix, non_empty};
use crate::workload::{Settings, WorkloadError, owner_reference};

pub fn primary_name(source: &HorizontalPodAutoscaler) -> String {
    format!("{}-primary", source.name_any())
}

/// `<hpa>-primary`: min/max (overridable by `autoscalerRef.primaryScalerReplicas`), metrics and
/// behavior copied from `source`, scale target `<target>-primary` of the same kind and API version.
pub fn primary_hpa(
    source: &HorizontalPodAutoscaler,
    canary: &Canary,
    settings: &Settings,
) -> Result<HorizontalPodAutoscaler, WorkloadError> {
    let spec = source.spec.clone().unwrap_or_default();
    let overrides = canary
        .spec
        .autoscaler_ref
        .as_ref()
        .and_then(|a| a.primary_scaler_replicas.as_ref());
    let min_replicas = overrides.and_then(|o| o.min_replicas).or(spec.min_replicas);
    let max_replicas = overrides
        .and_then(|o| o.max_replicas)
        .unwrap_or(spec.max_replicas);
    Ok(HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(primary_name(source)),
            namespace: source.namespace().or_else(|| canary.namespace()),
            labels: non_empty(include_by_prefix(
                source.metadata.labels.as_ref(),
                &settings.include_label_prefixes,
            )),
            annotations: non_empty(copyable_annotations(source.metadata.annotations.as_ref())),
            owner_references: Some(vec![owner_reference(canary)?]),
            ..ObjectMeta::default()
        },
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: spec.scale_target_ref.api_version.clone(),
                kind: spec.scale_target_ref.kind.clone(),
                name: canary.spec.primary_workload_name(),
            },
            min_replicas,
            max_replicas,
            metrics: spec.metrics.clone(),
            behavior: spec.behavior.clone(),
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;
    use serde_json::json;

    fn hpa_canary(replicas: serde_json::Value) -> Canary {
        fixtures::canary_with(json!({"autoscalerRef": {
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo",
            "primaryScalerReplicas": replicas
        }}))
    }

    #[test]
    fn primary_hpa_targets_the_primary_workload() {
        let canary = hpa_canary(serde_json::Value::Null);
        let settings = Settings {
            include_label_prefixes: vec!["*".into()],
            ..Settings::default()
        };
        let got = primary_hpa(&fixtures::hpa(), &canary, &settings).unwrap();
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            json!({
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {
                    "name": "podinfo-primary",
                    "namespace": "test",
                    "labels": {"app": "podinfo"},
                    "annotations": {"note": "scale on cpu"},
                    "ownerReferences": [{
                        "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
                        "uid": fixtures::CANARY_UID, "controller": true, "blockOwnerDeletion": true
                    }]
                },
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo-primary"},
                    "minReplicas": 2,
                    "maxReplicas": 4,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 99}}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}
                }
            })
        );
    }

    #[test]
    fn primary_scaler_replicas_override_min_and_max() {
        let canary = hpa_canary(json!({"minReplicas": 3, "maxReplicas": 10}));
        let got = primary_hpa(&fixtures::hpa(), &canary, &Settings::default()).unwrap();
        let spec = got.spec.unwrap();
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(3), 10));

        let only_max = hpa_canary(json!({"maxReplicas": 6}));
        let spec = primary_hpa(&fixtures::hpa(), &only_max, &Settings::default())
            .unwrap()
            .spec
            .unwrap();
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 6));
    }

    #[test]
    fn labels_follow_the_include_prefix_flag() {
        let canary = hpa_canary(serde_json::Value::Null);
        let got = primary_hpa(&fixtures::hpa(), &canary, &Settings::default()).unwrap();
        assert_eq!(got.metadata.labels, None);
    }
}
