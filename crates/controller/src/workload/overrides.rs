//! Beyond Flagger: canary pod overrides. While the canary is scaled up its pod
//! template gets `templateVariables.nodeSelector` merged in and `templateVariables.tolerations`
//! in place of its own list; the target's own values at those paths are kept in
//! `status.podOverrides` and restored on scale-down.
//!
//! `status.podOverrides` records, per overridden path, the target's own value (`{}` / `[]` when it
//! had none); a path not overridden is absent. The own values are captured when the overrides are
//! first applied and kept until they are removed, so re-applying them every tick (after a GitOps
//! re-apply wiped them, or after the overrides changed) never mistakes an override for an own value.

use std::collections::BTreeMap;

use flagger_api::Canary;
use flagger_api::analysis::{PodOverrides, Toleration as ApiToleration};
use flagger_api::status::PodOverridesStatus;
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, Toleration};
use serde_json::{Map, Value};

/// The overrides configured on the canary, if any path is overridden.
pub fn configured(canary: &Canary) -> Option<&PodOverrides> {
    canary
        .spec
        .analysis
        .canary_analysis
        .as_ref()
        .and_then(|c| c.template_variables.as_ref())
        .filter(|o| o.node_selector.is_some() || o.tolerations.is_some())
}

fn is_applied(status: Option<&PodOverridesStatus>) -> Option<&PodOverridesStatus> {
    status.filter(|s| s.applied == Some(true))
}

/// Puts the target's own values back at the overridden paths (no-op when nothing is applied).
pub fn restore_own(spec: &mut PodSpec, status: Option<&PodOverridesStatus>) {
    let Some(status) = is_applied(status) else {
        return;
    };
    if let Some(own) = &status.node_selector {
        spec.node_selector = (!own.is_empty()).then(|| own.clone());
    }
    if let Some(own) = &status.tolerations {
        spec.tolerations = (!own.is_empty()).then(|| own.iter().map(to_k8s).collect());
    }
}

/// The template as the user wrote it: what the revision hash and the primary copy are built from,
/// so applying or removing overrides is never a new revision and never reaches the primary.
pub fn own_template(
    template: &PodTemplateSpec,
    status: Option<&PodOverridesStatus>,
) -> PodTemplateSpec {
    let mut own = template.clone();
    if let Some(spec) = own.spec.as_mut() {
        restore_own(spec, status);
    }
    own
}

/// Applies `overrides` on top of a spec that holds the own values.
pub fn overlay(spec: &mut PodSpec, overrides: &PodOverrides) {
    if let Some(ns) = &overrides.node_selector {
        let mut merged = spec.node_selector.take().unwrap_or_default();
        merged.extend(ns.iter().map(|(k, v)| (k.clone(), v.clone())));
        spec.node_selector = (!merged.is_empty()).then_some(merged);
    }
    if let Some(tolerations) = &overrides.tolerations {
        spec.tolerations =
            (!tolerations.is_empty()).then(|| tolerations.iter().map(to_k8s).collect());
    }
}

/// The status recording the own values of `own_spec` at the paths `overrides` replaces.
pub fn capture(own_spec: &PodSpec, overrides: &PodOverrides) -> PodOverridesStatus {
    PodOverridesStatus {
        node_selector: overrides
            .node_selector
            .as_ref()
            .map(|_| own_spec.node_selector.clone().unwrap_or_default()),
        tolerations: overrides.tolerations.as_ref().map(|_| {
            own_spec
                .tolerations
                .iter()
                .flatten()
                .map(from_k8s)
                .collect()
        }),
        applied: Some(true),
    }
}

/// The status after the overrides were removed.
pub fn removed() -> PodOverridesStatus {
    PodOverridesStatus {
        node_selector: None,
        tolerations: None,
        applied: Some(false),
    }
}

/// A JSON merge patch for `spec.template.spec` that turns `current` into `desired` at the paths
/// overrides (and the DaemonSet scale-to-zero selector) touch; empty when they already agree.
pub fn pod_spec_patch(current: &PodSpec, desired: &PodSpec) -> Map<String, Value> {
    let mut patch = Map::new();
    let empty = BTreeMap::new();
    let cur_ns = current.node_selector.as_ref().unwrap_or(&empty);
    let want_ns = desired.node_selector.as_ref().unwrap_or(&empty);
    if cur_ns != want_ns {
        let value = if want_ns.is_empty() {
            Value::Null
        } else {
            let mut m = Map::new();
            for k in cur_ns.keys().filter(|k| !want_ns.contains_key(*k)) {
                m.insert(k.clone(), Value::Null);
            }
            for (k, v) in want_ns.iter().filter(|(k, v)| cur_ns.get(*k) != Some(v)) {
                m.insert(k.clone(), Value::String(v.clone()));
            }
            Value::Object(m)
        };
        patch.insert("nodeSelector".into(), value);
    }
    let cur_tol = current.tolerations.as_deref().unwrap_or_default();
    let want_tol = desired.tolerations.as_deref().unwrap_or_default();
    if cur_tol != want_tol {
        // Merge patches replace lists whole, which is exactly "tolerations replace the list".
        let value = if want_tol.is_empty() {
            Value::Null
        } else {
            serde_json::to_value(want_tol).unwrap_or(Value::Null)
        };
        patch.insert("tolerations".into(), value);
    }
    patch
}

/// Wraps a pod spec patch into a workload merge patch (`spec.template.spec`), merging into `base`.
pub fn wrap_template_patch(base: &mut Map<String, Value>, pod: Map<String, Value>) {
    if pod.is_empty() {
        return;
    }
    let spec = base
        .entry("spec")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(spec) = spec {
        let template = spec
            .entry("template")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(template) = template {
            template.insert("spec".into(), Value::Object(pod));
        }
    }
}

fn to_k8s(t: &ApiToleration) -> Toleration {
    Toleration {
        key: t.key.clone(),
        operator: t.operator.clone(),
        value: t.value.clone(),
        effect: t.effect.clone(),
        toleration_seconds: t.toleration_seconds,
    }
}

fn from_k8s(t: &Toleration) -> ApiToleration {
    ApiToleration {
        key: t.key.clone(),
        operator: t.operator.clone(),
        value: t.value.clone(),
        effect: t.effect.clone(),
        toleration_seconds: t.toleration_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;
    use serde_json::json;

    fn spot() -> PodOverrides {
        serde_json::from_value(json!({
            "nodeSelector": {"node-type": "spot"},
            "tolerations": [
                {"key": "node-type", "value": "spot", "effect": "NoSchedule"},
                {"key": "spot-instance", "operator": "Exists", "effect": "NoSchedule"}
            ]
        }))
        .unwrap()
    }

    fn on_demand_spec() -> PodSpec {
        let mut spec = fixtures::deployment().spec.unwrap().template.spec.unwrap();
        spec.node_selector = Some(
            [
                ("node-type".to_string(), "on-demand".to_string()),
                ("disk".to_string(), "ssd".to_string()),
            ]
            .into(),
        );
        spec.tolerations = Some(vec![
            serde_json::from_value(json!({"key": "dedicated", "operator": "Exists"})).unwrap(),
        ]);
        spec
    }

    #[test]
    fn configured_reads_template_variables() {
        assert!(configured(&fixtures::canary()).is_none());
        let canary = fixtures::canary_with(
            json!({"analysis": {"canaryAnalysis": {"templateVariables": {
                "nodeSelector": {"node-type": "spot"}
            }}}}),
        );
        assert_eq!(
            configured(&canary).unwrap().node_selector.as_ref().unwrap()["node-type"],
            "spot"
        );
        let empty = fixtures::canary_with(
            json!({"analysis": {"canaryAnalysis": {"templateVariables": {}}}}),
        );
        assert!(configured(&empty).is_none());
    }

    #[test]
    fn overlay_merges_node_selector_and_replaces_tolerations() {
        let mut spec = on_demand_spec();
        overlay(&mut spec, &spot());
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v["nodeSelector"],
            json!({"disk": "ssd", "node-type": "spot"})
        );
        assert_eq!(
            v["tolerations"],
            json!([
                {"key": "node-type", "value": "spot", "effect": "NoSchedule"},
                {"key": "spot-instance", "operator": "Exists", "effect": "NoSchedule"}
            ])
        );
    }

    #[test]
    fn capture_then_restore_round_trips_the_own_values() {
        let own = on_demand_spec();
        let status = capture(&own, &spot());
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({
                "nodeSelector": {"disk": "ssd", "node-type": "on-demand"},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "applied": true
            })
        );
        let mut spec = own.clone();
        overlay(&mut spec, &spot());
        assert_ne!(spec, own);
        restore_own(&mut spec, Some(&status));
        assert_eq!(spec, own);
    }

    #[test]
    fn own_values_absent_are_recorded_empty_and_restored_absent() {
        let mut own = on_demand_spec();
        own.node_selector = None;
        own.tolerations = None;
        let status = capture(&own, &spot());
        assert_eq!(status.node_selector, Some(BTreeMap::new()));
        assert_eq!(status.tolerations, Some(vec![]));
        let mut spec = own.clone();
        overlay(&mut spec, &spot());
        restore_own(&mut spec, Some(&status));
        assert_eq!(spec, own);
    }

    #[test]
    fn paths_not_overridden_are_neither_captured_nor_restored() {
        let only_ns: PodOverrides =
            serde_json::from_value(json!({"nodeSelector": {"node-type": "spot"}})).unwrap();
        let own = on_demand_spec();
        let status = capture(&own, &only_ns);
        assert_eq!(status.tolerations, None);
        let mut spec = own.clone();
        overlay(&mut spec, &only_ns);
        // A user change to the tolerations while applied survives the restore.
        spec.tolerations = None;
        restore_own(&mut spec, Some(&status));
        assert_eq!(spec.node_selector, own.node_selector);
        assert_eq!(spec.tolerations, None);
    }

    #[test]
    fn nothing_is_restored_when_not_applied() {
        let mut spec = on_demand_spec();
        overlay(&mut spec, &spot());
        let before = spec.clone();
        let mut status = capture(&on_demand_spec(), &spot());
        status.applied = Some(false);
        restore_own(&mut spec, Some(&status));
        assert_eq!(spec, before);
        restore_own(&mut spec, None);
        assert_eq!(spec, before);
    }

    #[test]
    fn patch_nulls_removed_keys_and_replaces_tolerations() {
        let current = on_demand_spec();
        let mut desired = current.clone();
        desired.node_selector = Some([("node-type".to_string(), "spot".to_string())].into());
        desired.tolerations = None;
        assert_eq!(
            Value::Object(pod_spec_patch(&current, &desired)),
            json!({"nodeSelector": {"disk": null, "node-type": "spot"}, "tolerations": null})
        );
        assert!(pod_spec_patch(&current, &current).is_empty());
        let mut none = current.clone();
        none.node_selector = None;
        assert_eq!(
            Value::Object(pod_spec_patch(&current, &none)),
            json!({"nodeSelector": null})
        );
    }
}
