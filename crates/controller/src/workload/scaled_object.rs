//! KEDA `ScaledObject` as `autoscalerRef`: the `<so>-primary` copy that scales the primary, and the
//! annotation that pauses the target's ScaledObject while the canary is scaled to zero.
//!
//! Only the fields Flagger copies to the primary are typed; the rest of a trigger (authentication,
//! metric type, ...) is carried through as it is, and `advanced`/`fallback` as plain JSON.

use std::collections::BTreeMap;

use flagger_api::Canary;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::workload::labels::{include_by_prefix, non_empty};
use crate::workload::{Settings, WorkloadError, owner_reference};

pub const KIND: &str = "ScaledObject";

/// KEDA reads this annotation: while present, the ScaledObject holds its target at that many
/// replicas instead of scaling it. "0" keeps the canary at zero between analyses.
pub const PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "keda.sh",
    version = "v1alpha1",
    kind = "ScaledObject",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    pub scale_target_ref: ScaleTarget,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_period: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_replica_count: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_replica_count: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replica_count: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advanced: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Value>,
    #[serde(default)]
    pub triggers: Vec<Trigger>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTarget {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_source_container_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// `authenticationRef`, `metricType`, `useCachedMetrics` and whatever KEDA adds next.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

pub fn primary_name(source_name: &str) -> String {
    format!("{source_name}-primary")
}

/// `<so>-primary`: the settings and triggers of `source`, scaling the primary workload. Each
/// trigger's query is the one `primaryScalerQueries` names for the trigger, or else the source's
/// query rewritten to the primary's pods ([`primary_query`]); `primaryScalerReplicas` overrides
/// the bounds. No annotation is copied: the pause annotation of the target's ScaledObject would
/// freeze the primary.
pub fn primary_scaled_object(
    source: &ScaledObject,
    canary: &Canary,
    settings: &Settings,
) -> Result<ScaledObject, WorkloadError> {
    let autoscaler = canary.spec.autoscaler_ref.as_ref();
    let queries = autoscaler.and_then(|a| a.primary_scaler_queries.as_ref());
    let overrides = autoscaler.and_then(|a| a.primary_scaler_replicas.as_ref());
    let target = &canary.spec.target_ref.name;
    let spec = &source.spec;
    let triggers = spec
        .triggers
        .iter()
        .map(|trigger| {
            let mut trigger = trigger.clone();
            let given = trigger
                .name
                .as_ref()
                .and_then(|n| queries.and_then(|q| q.get(n)));
            if let Some(query) = trigger.metadata.get_mut("query") {
                *query = match given {
                    Some(q) => q.clone(),
                    None => primary_query(query, target),
                };
            }
            trigger
        })
        .collect();
    Ok(ScaledObject {
        metadata: ObjectMeta {
            name: Some(primary_name(&source.name_any())),
            namespace: source.namespace().or_else(|| canary.namespace()),
            labels: non_empty(include_by_prefix(
                source.metadata.labels.as_ref(),
                &settings.include_label_prefixes,
            )),
            owner_references: Some(vec![owner_reference(canary)?]),
            ..ObjectMeta::default()
        },
        spec: ScaledObjectSpec {
            scale_target_ref: ScaleTarget {
                name: canary.spec.primary_workload_name(),
                ..spec.scale_target_ref.clone()
            },
            min_replica_count: overrides
                .and_then(|o| o.min_replicas)
                .or(spec.min_replica_count),
            max_replica_count: overrides
                .and_then(|o| o.max_replicas)
                .or(spec.max_replica_count),
            advanced: spec.advanced.clone().map(primary_advanced),
            triggers,
            ..spec.clone()
        },
    })
}

/// The source's query for the primary's pods, as Flagger rewrites it: every `<target>-canary` and
/// every other `<target>` becomes `<target>-primary`. Best effort on the text of the query; a
/// query it gets wrong is set per trigger with `primaryScalerQueries`.
pub fn primary_query(query: &str, target: &str) -> String {
    if target.is_empty() {
        return query.to_string();
    }
    let primary = format!("{target}-primary");
    // Splitting on the canary's name first keeps `<target>-canary` from becoming
    // `<target>-primary-canary` when `<target>` is replaced inside it.
    query
        .split(&format!("{target}-canary"))
        .map(|part| part.replace(target, &primary))
        .collect::<Vec<_>>()
        .join(&primary)
}

/// An HPA name set in `advanced` is KEDA's name for the HPA it creates: the primary's needs its
/// own, or both ScaledObjects would claim one HPA.
fn primary_advanced(mut advanced: Value) -> Value {
    if let Some(name) = advanced.pointer_mut("/horizontalPodAutoscalerConfig/name")
        && let Some(n) = name.as_str().filter(|n| !n.is_empty())
    {
        *name = Value::String(primary_name(n));
    }
    advanced
}

/// The merge patch that pauses (`true`: KEDA holds the target at zero) or resumes `object`,
/// `None` when it is so already. Resuming removes the annotation whatever its value, as Flagger
/// does; the other annotations are the user's and stay.
pub fn pause_patch(object: &ScaledObject, paused: bool) -> Option<Value> {
    let current = object
        .annotations()
        .get(PAUSED_REPLICAS)
        .map(String::as_str);
    let (done, value) = if paused {
        (current == Some("0"), json!("0"))
    } else {
        (current.is_none(), Value::Null)
    };
    (!done).then(|| json!({"metadata": {"annotations": {PAUSED_REPLICAS: value}}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;

    fn source() -> ScaledObject {
        serde_json::from_value(json!({
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {
                "name": "podinfo-so",
                "namespace": "test",
                "labels": {"app": "podinfo"},
                "annotations": {PAUSED_REPLICAS: "0", "note": "user's"}
            },
            "spec": {
                "scaleTargetRef": {"name": "podinfo", "envSourceContainerName": "podinfod"},
                "pollingInterval": 10,
                "cooldownPeriod": 20,
                "minReplicaCount": 1,
                "maxReplicaCount": 3,
                "fallback": {"failureThreshold": 3, "replicas": 2},
                "advanced": {"restoreToOriginalReplicaCount": true, "horizontalPodAutoscalerConfig": {"name": "podinfo-hpa", "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}},
                "triggers": [
                    {"type": "prometheus", "name": "requests", "metricType": "AverageValue", "authenticationRef": {"name": "prom"},
                     "metadata": {"serverAddress": "http://prometheus:9090", "threshold": "5",
                                  "query": "sum(rate(http_requests_total{ app=\"podinfo\" }[30s]))"}},
                    {"type": "prometheus", "name": "latency",
                     "metadata": {"serverAddress": "http://prometheus:9090", "threshold": "1",
                                  "query": "histogram_quantile(0.99, rate(latency_bucket{pod=~\"podinfo-canary-.*\"}[1m]))"}},
                    {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}
                ]
            }
        }))
        .unwrap()
    }

    fn keda_canary(autoscaler: Value) -> Canary {
        let mut reference =
            json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "podinfo-so"});
        fixtures::merge(&mut reference, autoscaler);
        fixtures::canary_with(json!({ "autoscalerRef": reference }))
    }

    fn primary(autoscaler: Value) -> ScaledObject {
        let settings = Settings {
            include_label_prefixes: vec!["*".into()],
            ..Settings::default()
        };
        primary_scaled_object(&source(), &keda_canary(autoscaler), &settings).unwrap()
    }

    fn queries(object: &ScaledObject) -> Vec<Option<&str>> {
        object
            .spec
            .triggers
            .iter()
            .map(|t| t.metadata.get("query").map(String::as_str))
            .collect()
    }

    #[test]
    fn primary_scaled_object_scales_the_primary_with_rewritten_queries() {
        let got = primary(json!({}));
        insta::assert_yaml_snapshot!(got);
    }

    #[test]
    fn primary_scaler_queries_replace_the_named_triggers_only() {
        let got = primary(
            json!({"primaryScalerQueries": {"latency": "vector(0.1)", "absent": "vector(9)"}}),
        );
        assert_eq!(
            queries(&got),
            [
                Some("sum(rate(http_requests_total{ app=\"podinfo-primary\" }[30s]))"),
                Some("vector(0.1)"),
                None
            ]
        );
    }

    #[test]
    fn primary_scaler_replicas_override_the_bounds() {
        let got = primary(json!({"primaryScalerReplicas": {"minReplicas": 2, "maxReplicas": 10}}));
        assert_eq!(
            (got.spec.min_replica_count, got.spec.max_replica_count),
            (Some(2), Some(10))
        );
        let only_max = primary(json!({"primaryScalerReplicas": {"maxReplicas": 6}}));
        assert_eq!(
            (
                only_max.spec.min_replica_count,
                only_max.spec.max_replica_count
            ),
            (Some(1), Some(6))
        );
    }

    #[test]
    fn the_pause_annotation_and_other_annotations_stay_on_the_target() {
        let got = primary(json!({}));
        assert_eq!(got.metadata.annotations, None);
    }

    #[test]
    fn labels_follow_the_include_prefix_flag() {
        let got = primary_scaled_object(&source(), &keda_canary(json!({})), &Settings::default())
            .unwrap();
        assert_eq!(got.metadata.labels, None);
    }

    #[test]
    fn queries_name_the_primary_for_the_target_and_its_canary() {
        for (query, want) in [
            ("up{app=\"podinfo\"}", "up{app=\"podinfo-primary\"}"),
            ("up{svc=\"podinfo-canary\"}", "up{svc=\"podinfo-primary\"}"),
            (
                "a{d=\"podinfo\"} + b{s=\"podinfo-canary\"}",
                "a{d=\"podinfo-primary\"} + b{s=\"podinfo-primary\"}",
            ),
            // Flagger's rewrite is textual: a name already naming the primary is suffixed again,
            // which is why primaryScalerQueries exists.
            (
                "up{d=\"podinfo-primary\"}",
                "up{d=\"podinfo-primary-primary\"}",
            ),
            ("vector(1)", "vector(1)"),
        ] {
            assert_eq!(primary_query(query, "podinfo"), want, "{query}");
        }
    }

    #[test]
    fn pause_and_resume_patch_only_the_annotation_and_only_when_needed() {
        let paused = source();
        let mut running = source();
        running.metadata.annotations = Some(BTreeMap::from([("note".into(), "user's".into())]));
        let mut held_at_two = source();
        held_at_two
            .annotations_mut()
            .insert(PAUSED_REPLICAS.into(), "2".into());

        assert_eq!(pause_patch(&paused, true), None);
        assert_eq!(
            pause_patch(&running, true),
            Some(
                json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": "0"}}})
            )
        );
        assert_eq!(
            pause_patch(&held_at_two, true),
            Some(
                json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": "0"}}})
            )
        );
        let resume = Some(
            json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": null}}}),
        );
        assert_eq!(pause_patch(&paused, false), resume);
        assert_eq!(pause_patch(&held_at_two, false), resume);
        assert_eq!(pause_patch(&running, false), None);
    }

    #[test]
    fn fields_keda_adds_survive_in_triggers() {
        let got = primary(json!({}));
        let first = &got.spec.triggers[0];
        assert_eq!(first.other["authenticationRef"], json!({"name": "prom"}));
        assert_eq!(first.other["metricType"], json!("AverageValue"));
    }
}
