//! What the cluster says this tick: the target's revision and readiness, the primary's readiness,
//! tracked configs and current routes, as the core's [`Observation`].

use std::collections::BTreeMap;

use flagger_api::request;
use flagger_api::{Canary, CanaryPhase, CanaryStatus};
use flagger_core::{ManualRequest, Observation, Readiness, RolloutSpec};
use flagger_providers::router;
use kube::ResourceExt;

use super::{Workload, Workloads};
use crate::finalizer::FINALIZER;
use crate::workload::{readiness, revision, service_target};

const SKIP_ANALYSIS: &str = "flagger.app/skip-analysis";
const RESET: &str = "flagger.app/reset";

/// The manual request the Canary's annotations carry; one without an id is not a request (the
/// id is what lets it act once), and validation says so.
fn manual_request(canary: &Canary) -> Option<ManualRequest> {
    let annotations = canary.annotations();
    let action = annotations.get(request::REQUEST)?;
    let id = annotations
        .get(request::REQUEST_ID)
        .filter(|id| !id.is_empty())?;
    Some(ManualRequest {
        id: id.clone(),
        action: action.clone(),
        requested_by: annotations.get(request::REQUESTED_BY).cloned(),
    })
}

/// A request the status has not answered yet: its tick is due at once.
pub(crate) fn request_pending(canary: &Canary) -> bool {
    let answered = canary
        .status
        .as_ref()
        .and_then(|s| s.last_request.as_ref())
        .map(|r| r.id.as_str());
    manual_request(canary).is_some_and(|r| Some(r.id.as_str()) != answered)
}

impl Workloads {
    pub async fn observe(
        &self,
        canary: &Canary,
        spec: &RolloutSpec,
    ) -> Result<Observation, kube::Error> {
        let pod_overrides = canary
            .status
            .as_ref()
            .and_then(|s| s.pod_overrides.as_ref());
        let (revision, canary_ready) = match &self.target {
            Workload::Deployment(d) => (
                revision::of_deployment(d, pod_overrides),
                readiness::canary_deployment(d, canary),
            ),
            Workload::DaemonSet(d) => (
                revision::of_daemonset(d, pod_overrides),
                readiness::canary_daemonset(d, canary),
            ),
            Workload::Service(s) => (service_target::revision_of(s), Readiness::Ready),
        };
        let primary_ready = primary_readiness(self.primary.as_ref(), canary);
        let annotations = canary.annotations();
        let reset_token = annotations.get(RESET).cloned();
        let configs = self.tracked.checksums();
        let routes = if idle_and_unchanged(canary, &revision, &configs, reset_token.as_ref()) {
            // The core ends such a tick before it looks at routes; reading the routing object
            // (a GET for every provider but kubernetes) would be a request per idle tick. An
            // error, not a guess, in case it ever did look.
            Err("routes not read: idle canary with nothing new".to_string())
        } else {
            match router::for_provider(&spec.provider, self.client.clone(), &self.router) {
                Ok(r) => r.get_routes(canary).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        Ok(observation(
            canary,
            revision,
            configs,
            (primary_ready, canary_ready),
            routes,
        ))
    }
}

fn primary_readiness(primary: Option<&Workload>, canary: &Canary) -> Readiness {
    match primary {
        Some(Workload::Deployment(d)) => readiness::primary_deployment(d, canary),
        Some(Workload::DaemonSet(d)) => readiness::primary_daemonset(d, canary),
        Some(Workload::Service(_)) => Readiness::Ready,
        // The core names the primary around this message ("<name>-primary.<ns> not ready: …").
        None => Readiness::Waiting {
            message: "primary not created yet".to_string(),
            since: None,
        },
    }
}

/// What every target's observation takes from the Canary itself (its annotations, deletion and
/// finalizer), around what the target and router said; the shell fills in hook and metric results.
pub(crate) fn observation(
    canary: &Canary,
    revision: String,
    configs: BTreeMap<String, String>,
    (primary, canary_ready): (Readiness, Readiness),
    routes: Result<flagger_core::RouteState, String>,
) -> Observation {
    let annotations = canary.annotations();
    Observation {
        revision,
        configs,
        primary,
        canary: canary_ready,
        routes,
        skip_analysis_annotation: annotations.get(SKIP_ANALYSIS).is_some_and(|v| v == "true"),
        reset_token: annotations.get(RESET).cloned(),
        request: manual_request(canary),
        deleting: canary.metadata.deletion_timestamp.is_some(),
        has_finalizer: canary.finalizers().iter().any(|f| f == FINALIZER),
        webhooks: Vec::new(),
        metrics: Vec::new(),
        judge: None,
        fresh_cookies: crate::cookies::fresh(),
    }
}

/// An Initialized, Succeeded or Failed canary whose revision, configs and reset token are the
/// ones its status already records: a conservative reading of the core's "nothing new" test
/// under which a tick ends before routes are consulted.
fn idle_and_unchanged(
    canary: &Canary,
    revision: &str,
    configs: &BTreeMap<String, String>,
    reset_token: Option<&String>,
) -> bool {
    let Some(status) = canary.status.as_ref() else {
        return false;
    };
    let idle = matches!(
        status.phase.unwrap_or_default(),
        CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed
    );
    idle && canary.metadata.deletion_timestamp.is_none()
        && !revision.is_empty()
        && records_revision(status, revision, configs)
        && (reset_token.is_none() || reset_token == status.last_handled_reset.as_ref())
}

/// Whether the status already records this revision of the target and these tracked configs: no
/// new revision to run (an absent `trackedConfigs` records none).
pub fn records_revision(
    status: &CanaryStatus,
    revision: &str,
    configs: &BTreeMap<String, String>,
) -> bool {
    status.last_applied_spec.as_deref() == Some(revision)
        && status
            .tracked_configs
            .as_ref()
            .map_or(configs.is_empty(), |t| t == configs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;

    fn canary(phase: CanaryPhase) -> Canary {
        let mut canary = fixtures::canary();
        canary.status = Some(CanaryStatus {
            phase: Some(phase),
            last_applied_spec: Some("rev-1".into()),
            tracked_configs: Some([("configmap/app".to_string(), "c1".to_string())].into()),
            last_handled_reset: Some("t1".into()),
            ..Default::default()
        });
        canary
    }

    #[test]
    fn a_missing_primary_is_waited_for_without_naming_it_twice() {
        let canary = fixtures::canary();
        let Readiness::Waiting { message, .. } = primary_readiness(None, &canary) else {
            panic!("a missing primary is waited for");
        };
        // The core's event puts the primary's name in front: "<name>-primary.<ns> not ready: …".
        assert_eq!(message, "primary not created yet");
    }

    #[test]
    fn routes_are_skipped_only_for_an_idle_canary_with_nothing_new() {
        let configs: BTreeMap<String, String> =
            [("configmap/app".to_string(), "c1".to_string())].into();
        let t1 = "t1".to_string();
        for phase in [
            CanaryPhase::Initialized,
            CanaryPhase::Succeeded,
            CanaryPhase::Failed,
        ] {
            let c = canary(phase);
            assert!(idle_and_unchanged(&c, "rev-1", &configs, None), "{phase:?}");
            assert!(
                idle_and_unchanged(&c, "rev-1", &configs, Some(&t1)),
                "handled reset"
            );
            assert!(
                !idle_and_unchanged(&c, "rev-2", &configs, None),
                "new revision"
            );
            assert!(
                !idle_and_unchanged(&c, "rev-1", &BTreeMap::new(), None),
                "configs changed"
            );
            assert!(
                !idle_and_unchanged(&c, "rev-1", &configs, Some(&"t2".to_string())),
                "new reset token"
            );
        }
        for phase in [
            CanaryPhase::New,
            CanaryPhase::Initializing,
            CanaryPhase::Progressing,
            CanaryPhase::Waiting,
            CanaryPhase::WaitingPromotion,
            CanaryPhase::Promoting,
            CanaryPhase::Finalising,
        ] {
            assert!(
                !idle_and_unchanged(&canary(phase), "rev-1", &configs, None),
                "{phase:?}"
            );
        }
        let mut deleting = canary(CanaryPhase::Succeeded);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        assert!(!idle_and_unchanged(&deleting, "rev-1", &configs, None));

        let mut untracked = canary(CanaryPhase::Succeeded);
        if let Some(s) = untracked.status.as_mut() {
            s.tracked_configs = None;
        }
        assert!(idle_and_unchanged(
            &untracked,
            "rev-1",
            &BTreeMap::new(),
            None
        ));
        assert!(!idle_and_unchanged(&untracked, "rev-1", &configs, None));
        assert!(
            !idle_and_unchanged(&fixtures::canary(), "rev-1", &configs, None),
            "no status"
        );
    }
}
