//! Workload readiness, read from the object status alone.
//!
//! The answer is the core's [`Readiness`]: `Waiting { since }` carries when the workload stopped
//! making progress and the core turns a wait older than the canary's `progressDeadlineSeconds`
//! into a failure, so no clock is needed here.

use flagger_api::Canary;
use flagger_core::observation::Readiness;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::ResourceExt;

const DEFAULT_THRESHOLD: i64 = 100;

/// `analysis.primaryReadyThreshold` in percent (default 100).
pub fn primary_threshold(canary: &Canary) -> i64 {
    threshold(canary.spec.analysis.primary_ready_threshold.as_ref())
}

/// `analysis.canaryReadyThreshold` in percent (default 100).
pub fn canary_threshold(canary: &Canary) -> i64 {
    threshold(canary.spec.analysis.canary_ready_threshold.as_ref())
}

fn threshold(n: Option<&flagger_api::Number>) -> i64 {
    n.and_then(|n| n.integer())
        .unwrap_or(DEFAULT_THRESHOLD)
        .clamp(0, 100)
}

/// `floor(count × threshold / 100)`, in integers so 3 × 33 % is 0, never 0.99 rounded up.
fn required(count: i32, threshold: i64) -> i64 {
    i64::from(count) * threshold / 100
}

// Messages carry no `<name>.<ns> not ready:` prefix: the core adds the one that fits the
// phase (primary, canary, deletion), so the event reads the way Flagger's does.

/// The primary Deployment.
pub fn primary_deployment(d: &Deployment, canary: &Canary) -> Readiness {
    deployment(d, primary_threshold(canary))
}

/// The target (canary) Deployment.
pub fn canary_deployment(d: &Deployment, canary: &Canary) -> Readiness {
    deployment(d, canary_threshold(canary))
}

pub fn primary_daemonset(d: &DaemonSet, canary: &Canary) -> Readiness {
    daemonset(d, primary_threshold(canary), canary)
}

pub fn canary_daemonset(d: &DaemonSet, canary: &Canary) -> Readiness {
    daemonset(d, canary_threshold(canary), canary)
}

/// Deployment readiness with `threshold` percent of the updated replicas required available.
pub fn deployment(d: &Deployment, threshold: i64) -> Readiness {
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if generation > status.observed_generation.unwrap_or(0) {
        return waiting(
            "waiting for rollout to finish: observed deployment generation less than desired generation",
            None,
        );
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let condition = |t: &str| conditions.iter().find(|c| c.type_ == t);
    if condition("Progressing")
        .is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
    {
        return Readiness::Failed {
            message: format!(
                "deployment {:?} exceeded its progress deadline",
                d.name_any()
            ),
        };
    }
    // Stuck below the minimum since this condition's last update: the core fails the workload once
    // that is older than the canary's progress deadline.
    let since = condition("Available")
        .filter(|c| {
            c.status == "False" && c.reason.as_deref() == Some("MinimumReplicasUnavailable")
        })
        .and_then(|c| c.last_update_time.as_ref())
        .map(|t| t.0);
    let updated = status.updated_replicas.unwrap_or(0);
    let desired = d.spec.as_ref().and_then(|s| s.replicas);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let needed = required(updated, threshold);
    if let Some(desired) = desired.filter(|want| updated < *want) {
        return waiting(
            &format!(
                "waiting for rollout to finish: {updated} out of {desired} new replicas have been updated"
            ),
            since,
        );
    }
    if replicas > updated {
        return waiting(
            &format!(
                "waiting for rollout to finish: {} old replicas are pending termination",
                replicas - updated
            ),
            since,
        );
    }
    if i64::from(available) < needed {
        return waiting(
            &format!(
                "waiting for rollout to finish: {available} of {needed} (readyThreshold {threshold}%) updated replicas are available"
            ),
            since,
        );
    }
    Readiness::Ready
}

/// DaemonSet readiness. A DaemonSet has no progress condition, so a wait counts from the canary's
/// `status.lastTransitionTime`, as in Flagger.
pub fn daemonset(d: &DaemonSet, threshold: i64, canary: &Canary) -> Readiness {
    let status = d.status.clone().unwrap_or_default();
    if d.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return waiting(
            "waiting for rollout to finish: observed daemonset generation less than desired generation",
            None,
        );
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    let needed = required(desired, threshold);
    let since = canary.status.as_ref().and_then(|s| s.last_transition_time);
    if updated < desired {
        return waiting(
            &format!(
                "waiting for rollout to finish: {updated} out of {desired} new pods have been updated"
            ),
            since,
        );
    }
    if i64::from(available) < needed {
        return waiting(
            &format!(
                "waiting for rollout to finish: {available} of {needed} (readyThreshold {threshold}%) updated pods are available"
            ),
            since,
        );
    }
    Readiness::Ready
}

fn waiting(message: &str, since: Option<k8s_openapi::jiff::Timestamp>) -> Readiness {
    Readiness::Waiting {
        message: message.to_string(),
        since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;
    use serde_json::json;

    fn ts(s: &str) -> k8s_openapi::jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn rolled_out_deployment_is_ready() {
        assert_eq!(deployment(&fixtures::deployment(), 100), Readiness::Ready);
        assert_eq!(
            primary_deployment(&fixtures::deployment(), &fixtures::canary()),
            Readiness::Ready
        );
    }

    #[test]
    fn unobserved_generation_waits() {
        let d = fixtures::deployment_with(json!({"metadata": {"generation": 4}}));
        assert_eq!(
            primary_deployment(&d, &fixtures::canary()),
            Readiness::Waiting {
                message: "waiting for rollout to finish: observed deployment generation less than desired generation".into(),
                since: None
            }
        );
    }

    #[test]
    fn progress_deadline_exceeded_fails_at_once() {
        let d = fixtures::deployment_with(json!({"status": {"conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ]}}));
        assert_eq!(
            canary_deployment(&d, &fixtures::canary()),
            Readiness::Failed {
                message: "deployment \"podinfo\" exceeded its progress deadline".into()
            }
        );
    }

    #[test]
    fn updating_replicas_wait_with_flaggers_messages() {
        let d = fixtures::deployment_with(json!({"status": {"updatedReplicas": 1}}));
        assert_eq!(
            deployment(&d, 100),
            Readiness::Waiting {
                message: "waiting for rollout to finish: 1 out of 2 new replicas have been updated"
                    .into(),
                since: None
            }
        );
        let d = fixtures::deployment_with(json!({"status": {"replicas": 3}}));
        assert_eq!(
            deployment(&d, 100),
            Readiness::Waiting {
                message: "waiting for rollout to finish: 1 old replicas are pending termination"
                    .into(),
                since: None
            }
        );
        let d = fixtures::deployment_with(json!({"status": {"availableReplicas": 1}}));
        assert_eq!(
            deployment(&d, 100),
            Readiness::Waiting {
                message: "waiting for rollout to finish: 1 of 2 (readyThreshold 100%) updated replicas are available".into(),
                since: None
            }
        );
    }

    #[test]
    fn ready_threshold_floors_the_required_count() {
        let d = fixtures::deployment_with(
            json!({"spec": {"replicas": 3}, "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}}),
        );
        // floor(3 × 50 / 100) = 1 available is enough; 100 % needs all 3.
        assert_eq!(deployment(&d, 50), Readiness::Ready);
        assert!(matches!(deployment(&d, 100), Readiness::Waiting { .. }));
        assert_eq!(deployment(&d, 33), Readiness::Ready);
        let canary = fixtures::canary_with(
            json!({"analysis": {"canaryReadyThreshold": 50, "primaryReadyThreshold": 100}}),
        );
        assert_eq!(canary_deployment(&d, &canary), Readiness::Ready);
        assert!(matches!(
            primary_deployment(&d, &canary),
            Readiness::Waiting { .. }
        ));
    }

    #[test]
    fn minimum_replicas_unavailable_starts_the_deadline_clock() {
        let d = fixtures::deployment_with(
            json!({"status": {"availableReplicas": 0, "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "lastUpdateTime": "2024-05-01T10:00:00Z"},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
            ]}}),
        );
        match deployment(&d, 100) {
            Readiness::Waiting { since, .. } => assert_eq!(since, Some(ts("2024-05-01T10:00:00Z"))),
            other => panic!("expected waiting, got {other:?}"),
        }
    }

    #[test]
    fn primary_with_zero_replicas_is_ready() {
        let d = fixtures::deployment_with(
            json!({"spec": {"replicas": 0}, "status": {"replicas": 0, "updatedReplicas": 0, "availableReplicas": 0}}),
        );
        assert_eq!(deployment(&d, 100), Readiness::Ready);
    }

    #[test]
    fn daemonset_readiness() {
        let canary = fixtures::canary();
        assert_eq!(
            daemonset(&fixtures::daemonset(), 100, &canary),
            Readiness::Ready
        );

        let mut canary = fixtures::canary();
        canary.status = Some(
            serde_json::from_value(json!({"lastTransitionTime": "2024-05-01T10:00:00Z"})).unwrap(),
        );
        let ds = fixtures::daemonset_with(json!({"status": {"updatedNumberScheduled": 1}}));
        assert_eq!(
            canary_daemonset(&ds, &canary),
            Readiness::Waiting {
                message: "waiting for rollout to finish: 1 out of 3 new pods have been updated"
                    .into(),
                since: Some(ts("2024-05-01T10:00:00Z"))
            }
        );
        let ds = fixtures::daemonset_with(json!({"status": {"numberAvailable": 1}}));
        assert_eq!(
            daemonset(&ds, 100, &canary),
            Readiness::Waiting {
                message: "waiting for rollout to finish: 1 of 3 (readyThreshold 100%) updated pods are available".into(),
                since: Some(ts("2024-05-01T10:00:00Z"))
            }
        );
        assert_eq!(daemonset(&ds, 50, &canary), Readiness::Ready);
        let unobserved = fixtures::daemonset_with(json!({"metadata": {"generation": 3}}));
        assert!(matches!(
            daemonset(&unobserved, 100, &canary),
            Readiness::Waiting { since: None, .. }
        ));
    }

    #[test]
    fn thresholds_default_to_100_and_are_clamped() {
        assert_eq!(primary_threshold(&fixtures::canary()), 100);
        let c = fixtures::canary_with(
            json!({"analysis": {"primaryReadyThreshold": 150, "canaryReadyThreshold": 60}}),
        );
        assert_eq!(primary_threshold(&c), 100);
        assert_eq!(canary_threshold(&c), 60);
    }
}
