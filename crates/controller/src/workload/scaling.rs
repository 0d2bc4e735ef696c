//! Scale-to-zero and scale-up of the target, with the canary pod
//! overrides applied or removed in the same write.
//!
//! The target belongs to the user (kubectl, Helm, a GitOps tool), so it is changed with a JSON merge
//! patch of just the touched paths rather than a server-side apply that would take ownership of
//! them and conflict with the user's next apply.

use flagger_api::Canary;
use flagger_api::status::PodOverridesStatus;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{Map, Value, json};

use crate::workload::overrides;

/// How a DaemonSet is "scaled to zero": no node matches this selector.
pub const SCALE_TO_ZERO_KEY: &str = "flagger.app/scale-to-zero";

/// A change to the target: a merge patch and, when it changes, the `status.podOverrides` value to
/// record first (the own values must be safe in the status before the write replaces them).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetWrite {
    pub patch: Value,
    pub pod_overrides: Option<PodOverridesStatus>,
}

impl TargetWrite {
    /// Nothing to write (a target that is never scaled).
    pub fn none() -> TargetWrite {
        TargetWrite {
            patch: json!({}),
            pod_overrides: None,
        }
    }

    pub fn is_noop(&self) -> bool {
        self.pod_overrides.is_none() && self.patch.as_object().is_none_or(|m| m.is_empty())
    }
}

fn pod_spec_of(template: Option<&PodSpec>) -> PodSpec {
    template.cloned().unwrap_or_default()
}

/// Computes the pod-spec patch and status for the overrides: restores the own values, lets
/// `adjust` touch the own spec (the DaemonSet selector), then applies the overrides if `up`.
fn overrides_change(
    current: &PodSpec,
    canary: &Canary,
    up: bool,
    adjust: impl FnOnce(&mut PodSpec),
) -> (Map<String, Value>, Option<PodOverridesStatus>) {
    let status = canary
        .status
        .as_ref()
        .and_then(|s| s.pod_overrides.as_ref());
    let mut desired = current.clone();
    overrides::restore_own(&mut desired, status);
    adjust(&mut desired);
    let applied = status.is_some_and(|s| s.applied == Some(true));
    let new_status = match overrides::configured(canary).filter(|_| up) {
        Some(o) => {
            // Captured after the restore, so the values recorded are the user's, never overrides.
            let captured = overrides::capture(&desired, o);
            overrides::overlay(&mut desired, o);
            Some(captured)
        }
        None if applied => Some(overrides::removed()),
        None => None,
    };
    let new_status = new_status.filter(|s| Some(s) != status);
    (overrides::pod_spec_patch(current, &desired), new_status)
}

fn write(
    mut patch: Map<String, Value>,
    pod: Map<String, Value>,
    status: Option<PodOverridesStatus>,
) -> TargetWrite {
    overrides::wrap_template_patch(&mut patch, pod);
    TargetWrite {
        patch: Value::Object(patch),
        pod_overrides: status,
    }
}

fn deployment_pod_spec(d: &Deployment) -> PodSpec {
    pod_spec_of(d.spec.as_ref().and_then(|s| s.template.spec.as_ref()))
}

fn daemonset_pod_spec(d: &DaemonSet) -> PodSpec {
    pod_spec_of(d.spec.as_ref().and_then(|s| s.template.spec.as_ref()))
}

/// Deployment scale to zero: `replicas: 0`, overrides removed.
pub fn deployment_to_zero(target: &Deployment, canary: &Canary) -> TargetWrite {
    let (pod, status) = overrides_change(&deployment_pod_spec(target), canary, false, |_| {});
    let base = json!({"spec": {"replicas": 0}});
    write(base.as_object().cloned().unwrap_or_default(), pod, status)
}

/// Replicas for a scale-up: the target's own count if set; else, without an autoscaler, what the
/// primary runs; with one, its minimum (`autoscaler_min`: HPA `minReplicas` or ScaledObject
/// `minReplicaCount`) when above 1; otherwise 1.
pub fn scale_up_replicas(
    target: &Deployment,
    canary: &Canary,
    primary: Option<&Deployment>,
    autoscaler_min: Option<i32>,
) -> i32 {
    let own = target
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .filter(|r| *r > 0);
    let fallback = if canary.spec.autoscaler_ref.is_none() {
        primary
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.replicas)
            .filter(|r| *r > 0)
    } else {
        autoscaler_min.filter(|m| *m > 1)
    };
    own.or(fallback).unwrap_or(1)
}

/// Deployment scale up, with the canary pod overrides applied in the same write.
pub fn deployment_scale_up(
    target: &Deployment,
    canary: &Canary,
    primary: Option<&Deployment>,
    autoscaler_min: Option<i32>,
) -> TargetWrite {
    let replicas = scale_up_replicas(target, canary, primary, autoscaler_min);
    let (pod, status) = overrides_change(&deployment_pod_spec(target), canary, true, |_| {});
    let base = json!({"spec": {"replicas": replicas}});
    write(base.as_object().cloned().unwrap_or_default(), pod, status)
}

/// DaemonSet scale to zero: the scale-to-zero node selector added, overrides removed.
pub fn daemonset_to_zero(target: &DaemonSet, canary: &Canary) -> TargetWrite {
    let (pod, status) = overrides_change(&daemonset_pod_spec(target), canary, false, |spec| {
        spec.node_selector
            .get_or_insert_with(Default::default)
            .insert(SCALE_TO_ZERO_KEY.to_string(), "true".to_string());
    });
    write(Map::new(), pod, status)
}

/// DaemonSet scale up: the scale-to-zero node selector removed, overrides applied.
pub fn daemonset_scale_up(target: &DaemonSet, canary: &Canary) -> TargetWrite {
    let (pod, status) = overrides_change(
        &daemonset_pod_spec(target),
        canary,
        true,
        remove_scale_to_zero,
    );
    write(Map::new(), pod, status)
}

fn remove_scale_to_zero(spec: &mut PodSpec) {
    if let Some(ns) = spec.node_selector.as_mut() {
        ns.remove(SCALE_TO_ZERO_KEY);
        if ns.is_empty() {
            spec.node_selector = None;
        }
    }
}

/// Every tick while the canary is scaled up: puts the overrides back if something (a GitOps
/// re-apply) removed them, follows a change of the overrides, and restores the own values if the
/// overrides were deleted from the Canary. `None` when the target is already as it should be.
pub fn ensure_overrides(target_pod_spec: Option<&PodSpec>, canary: &Canary) -> Option<TargetWrite> {
    let current = pod_spec_of(target_pod_spec);
    let (pod, status) = overrides_change(&current, canary, true, |_| {});
    let w = write(Map::new(), pod, status);
    (!w.is_noop()).then_some(w)
}

/// Whether a DaemonSet target is currently scaled to zero.
pub fn daemonset_is_scaled_to_zero(d: &DaemonSet) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.node_selector.as_ref())
        .is_some_and(|ns| ns.contains_key(SCALE_TO_ZERO_KEY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;

    fn with_overrides() -> Canary {
        fixtures::canary_with(
            json!({"analysis": {"canaryAnalysis": {"templateVariables": {
                "nodeSelector": {"node-type": "spot"},
                "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
            }}}}),
        )
    }

    fn with_status(mut canary: Canary, status: serde_json::Value) -> Canary {
        canary.status = Some(serde_json::from_value(json!({"podOverrides": status})).unwrap());
        canary
    }

    #[test]
    fn deployment_to_zero_without_overrides_is_just_replicas() {
        let w = deployment_to_zero(&fixtures::deployment(), &fixtures::canary());
        assert_eq!(
            w,
            TargetWrite {
                patch: json!({"spec": {"replicas": 0}}),
                pod_overrides: None
            }
        );
    }

    #[test]
    fn scale_up_replicas_rules() {
        let canary = fixtures::canary();
        let target = fixtures::deployment();
        assert_eq!(scale_up_replicas(&target, &canary, None, None), 2);

        let zero = fixtures::deployment_with(json!({"spec": {"replicas": 0}}));
        let primary = fixtures::deployment_with(json!({"spec": {"replicas": 3}}));
        assert_eq!(scale_up_replicas(&zero, &canary, Some(&primary), None), 3);
        assert_eq!(scale_up_replicas(&zero, &canary, None, None), 1);

        let hpa = fixtures::canary_with(
            json!({"autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"}}),
        );
        // With an autoscaler the primary's count (driven by its own HPA) is not a guide.
        assert_eq!(scale_up_replicas(&zero, &hpa, Some(&primary), Some(2)), 2);
        assert_eq!(scale_up_replicas(&zero, &hpa, Some(&primary), Some(1)), 1);
        assert_eq!(scale_up_replicas(&zero, &hpa, Some(&primary), None), 1);
    }

    #[test]
    fn deployment_scale_up_applies_overrides_and_records_own_values() {
        let canary = with_overrides();
        let target = fixtures::deployment_with(
            json!({"spec": {"replicas": 0, "template": {"spec": {"nodeSelector": {"node-type": "on-demand"}}}}}),
        );
        let w = deployment_scale_up(&target, &canary, None, None);
        assert_eq!(
            w.patch,
            json!({"spec": {"replicas": 1, "template": {"spec": {
                "nodeSelector": {"node-type": "spot"},
                "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
            }}}})
        );
        assert_eq!(
            serde_json::to_value(w.pod_overrides.unwrap()).unwrap(),
            json!({"nodeSelector": {"node-type": "on-demand"}, "tolerations": [], "applied": true})
        );
    }

    #[test]
    fn deployment_to_zero_restores_own_values() {
        let canary = with_status(
            with_overrides(),
            json!({"nodeSelector": {"node-type": "on-demand"}, "tolerations": [], "applied": true}),
        );
        let target = fixtures::deployment_with(json!({"spec": {"template": {"spec": {
            "nodeSelector": {"node-type": "spot"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
        }}}}));
        let w = deployment_to_zero(&target, &canary);
        assert_eq!(
            w.patch,
            json!({"spec": {"replicas": 0, "template": {"spec": {"nodeSelector": {"node-type": "on-demand"}, "tolerations": null}}}})
        );
        assert_eq!(w.pod_overrides, Some(overrides::removed()));
    }

    #[test]
    fn ensure_overrides_is_a_noop_when_applied_and_present() {
        let canary = with_status(
            with_overrides(),
            json!({"nodeSelector": {"node-type": "on-demand"}, "tolerations": [], "applied": true}),
        );
        let target = fixtures::deployment_with(json!({"spec": {"template": {"spec": {
            "nodeSelector": {"node-type": "spot"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
        }}}}));
        let spec = target.spec.unwrap().template.spec;
        assert_eq!(ensure_overrides(spec.as_ref(), &canary), None);
    }

    #[test]
    fn ensure_overrides_puts_them_back_after_a_gitops_reapply() {
        let canary = with_status(
            with_overrides(),
            json!({"nodeSelector": {"node-type": "on-demand"}, "tolerations": [], "applied": true}),
        );
        // The user's manifest re-applied: own values back in the template.
        let target = fixtures::deployment_with(
            json!({"spec": {"template": {"spec": {"nodeSelector": {"node-type": "on-demand"}}}}}),
        );
        let spec = target.spec.unwrap().template.spec;
        let w = ensure_overrides(spec.as_ref(), &canary).unwrap();
        assert_eq!(
            w.patch,
            json!({"spec": {"template": {"spec": {
                "nodeSelector": {"node-type": "spot"},
                "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
            }}}})
        );
        // The own values recorded are unchanged, so no status write is needed.
        assert_eq!(w.pod_overrides, None);
    }

    #[test]
    fn ensure_overrides_follows_changed_overrides_without_recapturing() {
        // Overrides changed mid-run from node selector + tolerations to another node selector only.
        let canary = with_status(
            fixtures::canary_with(
                json!({"analysis": {"canaryAnalysis": {"templateVariables": {
                    "nodeSelector": {"node-type": "preemptible"}
                }}}}),
            ),
            json!({"nodeSelector": {"node-type": "on-demand"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}], "applied": true}),
        );
        let target = fixtures::deployment_with(json!({"spec": {"template": {"spec": {
            "nodeSelector": {"node-type": "spot"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
        }}}}));
        let spec = target.spec.unwrap().template.spec;
        let w = ensure_overrides(spec.as_ref(), &canary).unwrap();
        assert_eq!(
            w.patch,
            json!({"spec": {"template": {"spec": {
                "nodeSelector": {"node-type": "preemptible"},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}]
            }}}})
        );
        // The own node selector is still the user's, not the previous override.
        assert_eq!(
            serde_json::to_value(w.pod_overrides.unwrap()).unwrap(),
            json!({"nodeSelector": {"node-type": "on-demand"}, "applied": true})
        );
    }

    #[test]
    fn ensure_overrides_restores_when_they_were_deleted_from_the_canary() {
        let canary = with_status(
            fixtures::canary(),
            json!({"nodeSelector": {"node-type": "on-demand"}, "applied": true}),
        );
        let target = fixtures::deployment_with(
            json!({"spec": {"template": {"spec": {"nodeSelector": {"node-type": "spot"}}}}}),
        );
        let spec = target.spec.unwrap().template.spec;
        let w = ensure_overrides(spec.as_ref(), &canary).unwrap();
        assert_eq!(
            w.patch,
            json!({"spec": {"template": {"spec": {"nodeSelector": {"node-type": "on-demand"}}}}})
        );
        assert_eq!(w.pod_overrides, Some(overrides::removed()));
    }

    #[test]
    fn daemonset_scale_to_zero_and_up_use_the_node_selector() {
        let canary = fixtures::canary();
        let ds = fixtures::daemonset();
        let down = daemonset_to_zero(&ds, &canary);
        assert_eq!(
            down.patch,
            json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_KEY: "true"}}}}})
        );
        assert!(!daemonset_is_scaled_to_zero(&ds));

        let zero = fixtures::daemonset_with(
            json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_KEY: "true", "disk": "ssd"}}}}}),
        );
        assert!(daemonset_is_scaled_to_zero(&zero));
        let up = daemonset_scale_up(&zero, &canary);
        assert_eq!(
            up.patch,
            json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_KEY: null}}}}})
        );
        assert!(daemonset_to_zero(&zero, &canary).is_noop());
    }

    #[test]
    fn daemonset_scale_up_never_records_the_scale_to_zero_key_as_own() {
        let canary = with_overrides();
        let zero = fixtures::daemonset_with(
            json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_KEY: "true"}}}}}),
        );
        let up = daemonset_scale_up(&zero, &canary);
        assert_eq!(
            up.patch["spec"]["template"]["spec"]["nodeSelector"],
            json!({SCALE_TO_ZERO_KEY: null, "node-type": "spot"})
        );
        assert_eq!(
            up.pod_overrides.unwrap().node_selector,
            Some(Default::default())
        );

        // And scaling back down restores the own (empty) selector plus the scale-to-zero key.
        let status = json!({"nodeSelector": {}, "tolerations": [], "applied": true});
        let canary = with_status(with_overrides(), status);
        let running = fixtures::daemonset_with(json!({"spec": {"template": {"spec": {
            "nodeSelector": {"node-type": "spot"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
        }}}}));
        let down = daemonset_to_zero(&running, &canary);
        assert_eq!(
            down.patch,
            json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_KEY: "true", "node-type": null}, "tolerations": null}}}})
        );
    }
}
