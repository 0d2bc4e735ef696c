//! A Knative Service target, read from the objects Knative keeps: the Service's latest created
//! revision is the revision to analyse, the revision named by `flagger.app/primary-revision` serves
//! as primary, and a revision is ready when Knative says so (its `Ready` condition). Pure: JSON of
//! the live objects in, observations and apply bodies out.

use flagger_api::Canary;
use flagger_core::{Readiness, Routes};
use flagger_providers::router::knative::{PRIMARY_REVISION, traffic, traffic_body};
use serde_json::Value;

/// `status.latestCreatedRevisionName`: empty until Knative has created the first revision.
pub fn latest_created(service: &Value) -> &str {
    service["status"]["latestCreatedRevisionName"]
        .as_str()
        .unwrap_or_default()
}

pub fn primary_revision(service: &Value) -> Option<&str> {
    service["metadata"]["annotations"][PRIMARY_REVISION]
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Whether the revision `name` (the live object, if any) is ready to serve.
pub fn revision_readiness(name: &str, namespace: &str, revision: Option<&Value>) -> Readiness {
    let waiting = |why: &str| Readiness::Waiting {
        message: format!("Knative Revision {name}.{namespace} {why}"),
        since: None,
    };
    let Some(revision) = revision else {
        return waiting("not found");
    };
    let ready = revision["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready");
    match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => Readiness::Ready,
        Some("False") => Readiness::Failed {
            message: format!(
                "Knative Revision {name}.{namespace} failed: {}",
                ready
                    .and_then(|c| c["message"].as_str())
                    .unwrap_or("not ready")
            ),
        },
        _ => waiting("is not ready"),
    }
}

/// Initialisation: the latest created revision becomes the primary and gets all the traffic.
pub fn initialise(canary: &Canary, latest: &str) -> Value {
    traffic_body(canary, latest, traffic(latest, Routes::PRIMARY))
}

/// Promotion: the annotation moves to the latest created revision; the traffic is left to the
/// router, which sends it all there next.
pub fn promote(canary: &Canary, latest: &str, live_traffic: &Value) -> Value {
    traffic_body(canary, latest, live_traffic.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary() -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "provider": "knative",
                "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
                "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 40, "stepWeight": 20},
            },
        }))
        .unwrap()
    }

    #[test]
    fn initialise_then_promote() {
        let c = canary();
        let init = initialise(&c, "podinfo-00001");
        assert_eq!(
            init["metadata"]["annotations"][PRIMARY_REVISION],
            "podinfo-00001"
        );
        assert_eq!(
            init["spec"]["traffic"],
            json!([
                {"latestRevision": true, "percent": 0},
                {"revisionName": "podinfo-00001", "percent": 100},
            ])
        );
        let live = json!([{"latestRevision": true, "percent": 40}, {"revisionName": "podinfo-00001", "percent": 60}]);
        let promoted = promote(&c, "podinfo-00002", &live);
        assert_eq!(
            promoted["metadata"]["annotations"][PRIMARY_REVISION],
            "podinfo-00002"
        );
        assert_eq!(promoted["spec"]["traffic"], live);
        let service = json!({"metadata": {"annotations": {PRIMARY_REVISION: "podinfo-00002"}},
            "status": {"latestCreatedRevisionName": "podinfo-00003"}});
        assert_eq!(primary_revision(&service), Some("podinfo-00002"));
        assert_eq!(latest_created(&service), "podinfo-00003");
    }

    #[test]
    fn readiness_from_the_ready_condition() {
        let rev = |status: &str| json!({"status": {"conditions": [{"type": "Ready", "status": status, "message": "boom"}]}});
        assert_eq!(
            revision_readiness("r", "ns", Some(&rev("True"))),
            Readiness::Ready
        );
        assert!(matches!(
            revision_readiness("r", "ns", Some(&rev("Unknown"))),
            Readiness::Waiting { .. }
        ));
        assert_eq!(
            revision_readiness("r", "ns", Some(&rev("False"))),
            Readiness::Failed {
                message: "Knative Revision r.ns failed: boom".into()
            }
        );
        assert!(matches!(
            revision_readiness("r", "ns", None),
            Readiness::Waiting { .. }
        ));
    }
}
