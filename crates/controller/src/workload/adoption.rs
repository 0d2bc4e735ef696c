//! Taking over canaries whose status Flagger wrote, so that switching from Flagger to flagger-rs
//! starts no rollout.
//!
//! Flagger's `lastAppliedSpec`/`lastPromotedSpec` hold its revision hash of the pod template (e.g.
//! `5974fdb97c`): fnv32a over a deep print of the Go `PodTemplateSpec` struct (every field of
//! every nested type, nil pointers included, in Go's declaration order, as the vendored
//! k8s.io/api version lays them out), then encoded. Reproducing that means re-implementing Go's
//! struct printing for the whole pod API of one Kubernetes release, and the hash changes whenever
//! Flagger vendors a release that adds a field, so no reproduction stays right. Instead such a
//! value is recognised (ours carry the `r1.` prefix) and replaced once by ours, deciding from what
//! the cluster shows: the primary runs what Flagger last promoted, so if a promotion of the current
//! target would give the primary the template it already has (ignoring the per-promotion
//! `flagger-id`), the target is the promoted revision and nothing is new.
//!
//! | phase found | primary runs the target | otherwise |
//! |---|---|---|
//! | Initialized, Succeeded | applied = promoted = current | both unknown: the next tick starts a run |
//! | Failed | applied = promoted = current | applied = current, promoted unknown: the failed revision is not re-run |
//! | a run in progress | applied = promoted = current | applied = current, promoted unknown: the run continues at its iteration and weight |
//! | New, Initializing, Terminating, Terminated | normal handling | normal handling |
//!
//! `trackedConfigs` need nothing: Flagger's checksums of ConfigMaps and Secrets are what
//! `checksum` computes.

use flagger_api::{CanaryPhase, CanaryStatus};

use crate::workload::revision::is_own_format;

/// The revision recorded when the one Flagger meant cannot be known: in our format, so it is
/// adopted once, and equal to no hash, so the current target counts as new against it.
pub const UNKNOWN_REVISION: &str = "r1.unknown";

/// Whether the status holds a revision hash that flagger-rs did not compute.
pub fn written_by_flagger(status: &CanaryStatus) -> bool {
    let foreign = |h: Option<&String>| h.is_some_and(|h| !h.is_empty() && !is_own_format(h));
    foreign(status.last_applied_spec.as_ref()) || foreign(status.last_promoted_spec.as_ref())
}

/// The status with Flagger's revision hashes replaced by ours (see the table above), or `None`
/// when there is nothing to adopt. `revision` is the target's revision now; `primary_runs_target`
/// whether the live primary's template is what promoting the target would write.
pub fn adopt(
    status: &CanaryStatus,
    revision: &str,
    primary_runs_target: bool,
) -> Option<CanaryStatus> {
    if !written_by_flagger(status) {
        return None;
    }
    let current = revision.to_string();
    let unknown = UNKNOWN_REVISION.to_string();
    let promoted_if_same = if primary_runs_target {
        current.clone()
    } else {
        unknown.clone()
    };
    let (applied, promoted) = match status.phase.unwrap_or_default() {
        CanaryPhase::New
        | CanaryPhase::Initializing
        | CanaryPhase::Terminating
        | CanaryPhase::Terminated => return None,
        CanaryPhase::Initialized | CanaryPhase::Succeeded if !primary_runs_target => {
            (unknown.clone(), unknown)
        }
        CanaryPhase::Initialized
        | CanaryPhase::Succeeded
        | CanaryPhase::Failed
        | CanaryPhase::Waiting
        | CanaryPhase::Progressing
        | CanaryPhase::WaitingPromotion
        | CanaryPhase::Promoting
        | CanaryPhase::Finalising => (current, promoted_if_same),
    };
    let mut adopted = status.clone();
    adopted.last_applied_spec = Some(applied);
    adopted.last_promoted_spec = Some(promoted);
    Some(adopted)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use flagger_api::Canary;
    use flagger_core::{Action, Observation, RouteState, Settings as CoreSettings};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use serde_json::{Value, json};

    use super::*;
    use crate::target::records_revision;
    use crate::workload::Settings;
    use crate::workload::configs::{self, TrackedConfigs};
    use crate::workload::primary::{PrimaryInputs, PrimaryWrite, primary_deployment};
    use crate::workload::revision::{self, same_primary_template};

    const VECTORS: &str =
        include_str!("../../../../tests/fixtures/flagger-1.44-status-vectors.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn canary(name: &str, status: Value) -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": name, "namespace": "test", "uid": format!("uid-{name}")},
            "spec": {
                "provider": "kubernetes",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "service": {"port": 9898},
                "analysis": {"interval": "15s", "threshold": 2, "iterations": 6}
            },
            "status": status
        }))
        .unwrap()
    }

    fn deployment(name: &str, template: &Value) -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "test"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template}
        }))
        .unwrap()
    }

    /// The primary template as Flagger leaves it, written from Flagger's rules rather than ours:
    /// the selector label names the primary, a `flagger-id` annotation is added, and references
    /// to tracked configs name their `-primary` copies.
    fn flaggers_primary_template(name: &str, target: &Value, tracked: &BTreeSet<String>) -> Value {
        let mut t = target.clone();
        t["metadata"]["labels"]["app"] = json!(format!("{name}-primary"));
        t["metadata"]["annotations"]["flagger-id"] = json!("0b3c5f1e-flagger-wrote-this");
        let rename = |holder: &mut Value, field: &str, kind: &str| {
            let Some(name) = holder.get_mut(field).and_then(|r| r.get_mut("name")) else {
                return;
            };
            if let Some(n) = name.as_str()
                && tracked.contains(&format!("{kind}/{n}"))
            {
                *name = json!(format!("{n}-primary"));
            }
        };
        for c in t["spec"]["containers"].as_array_mut().unwrap() {
            for from in c["envFrom"].as_array_mut().into_iter().flatten() {
                rename(from, "configMapRef", "configmap");
                rename(from, "secretRef", "secret");
            }
        }
        if let Some(volumes) = t["spec"].get_mut("volumes").and_then(Value::as_array_mut) {
            for v in volumes {
                rename(v, "configMap", "configmap");
            }
        }
        t
    }

    fn tracked(canary: &Canary, target: &Deployment, configs: &Value) -> TrackedConfigs {
        let pod = target
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        let cms: BTreeMap<String, ConfigMap> = [(
            "app-config".to_string(),
            serde_json::from_value(
                json!({"metadata": {"name": "app-config", "namespace": "test"},
                "data": configs["configmap/app-config"]}),
            )
            .unwrap(),
        )]
        .into();
        let encoded: BTreeMap<String, Value> = configs["secret/app-secret"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!(k8s_openapi::ByteString(v.as_str().unwrap().into())),
                )
            })
            .collect();
        let secrets: BTreeMap<String, Secret> = [(
            "app-secret".to_string(),
            serde_json::from_value(
                json!({"metadata": {"name": "app-secret", "namespace": "test"},
                "type": "Opaque", "data": encoded}),
            )
            .unwrap(),
        )]
        .into();
        TrackedConfigs::resolve(canary, &configs::referenced(pod), &cms, &secrets).unwrap()
    }

    /// What the controller decides for a canary Flagger left: the adopted status, the revision.
    fn take_over(
        canary: &Canary,
        target: &Deployment,
        primary: &Value,
        tracked: &TrackedConfigs,
    ) -> (Option<CanaryStatus>, String) {
        let revision = revision::of_deployment(target, None);
        let keys = tracked.keys();
        let inputs = PrimaryInputs {
            canary,
            settings: &Settings::default(),
            tracked_configs: &keys,
            flagger_id: "ours",
            write: PrimaryWrite::Promote,
        };
        let computed = primary_deployment(target, &inputs)
            .unwrap()
            .spec
            .unwrap()
            .template;
        let live = serde_json::from_value(primary.clone()).unwrap();
        let same = same_primary_template(&computed, &live);
        (
            adopt(canary.status.as_ref().unwrap(), &revision, same),
            revision,
        )
    }

    #[test]
    fn every_canary_flagger_left_initialised_is_up_to_date() {
        let v = vectors();
        let canaries = v["canaries"].as_array().unwrap();
        assert_eq!(canaries.len(), 5);
        for c in canaries {
            let name = c["canary"].as_str().unwrap();
            let status = json!({
                "phase": c["phase"], "lastAppliedSpec": c["lastAppliedSpec"],
                "lastPromotedSpec": c["lastPromotedSpec"], "trackedConfigs": c["trackedConfigs"]
            });
            let canary = canary(name, status);
            let target = deployment(name, &c["targetPodTemplate"]);
            let tracked = tracked(&canary, &target, &v["configs"]);
            // Flagger's checksums are ours: nothing to convert there.
            let checksums = tracked.checksums();
            let flaggers: BTreeMap<String, String> =
                serde_json::from_value(c["trackedConfigs"].clone()).unwrap();
            assert_eq!(checksums, flaggers, "{name}: trackedConfigs");

            let primary = flaggers_primary_template(name, &c["targetPodTemplate"], &tracked.keys());
            let (adopted, revision) = take_over(&canary, &target, &primary, &tracked);
            let adopted = adopted.unwrap_or_else(|| panic!("{name}: Flagger's status not adopted"));
            assert_eq!(
                adopted.last_applied_spec.as_deref(),
                Some(revision.as_str()),
                "{name}"
            );
            assert_eq!(
                adopted.last_promoted_spec.as_deref(),
                Some(revision.as_str()),
                "{name}"
            );
            assert!(
                records_revision(&adopted, &revision, &checksums),
                "{name}: looks new"
            );
            assert_eq!(adopted.phase, Some(CanaryPhase::Initialized));
            // Adopted once: our own hashes are never converted again.
            assert_eq!(adopt(&adopted, &revision, false), None, "{name}");

            // A new image while no controller ran is still a new revision.
            let mut bumped = c["targetPodTemplate"].clone();
            bumped["spec"]["containers"][0]["image"] = json!("ghcr.io/stefanprodan/podinfo:6.9.9");
            let bumped = deployment(name, &bumped);
            let (adopted, revision) = take_over(&canary, &bumped, &primary, &tracked);
            let adopted = adopted.unwrap();
            assert!(
                !records_revision(&adopted, &revision, &checksums),
                "{name}: change missed"
            );
        }
    }

    #[test]
    fn a_failed_canary_does_not_rerun_its_failed_revision() {
        let status: CanaryStatus = serde_json::from_value(json!({
            "phase": "Failed", "lastAppliedSpec": "6fc7664b76", "lastPromotedSpec": "5974fdb97c"
        }))
        .unwrap();
        let adopted = adopt(&status, "r1.new", false).unwrap();
        assert_eq!(adopted.last_applied_spec.as_deref(), Some("r1.new"));
        assert_eq!(
            adopted.last_promoted_spec.as_deref(),
            Some(UNKNOWN_REVISION)
        );
        let adopted = adopt(&status, "r1.same", true).unwrap();
        assert_eq!(adopted.last_promoted_spec.as_deref(), Some("r1.same"));
    }

    #[test]
    fn initialising_and_unwritten_statuses_are_left_to_normal_handling() {
        for status in [
            json!({"phase": "Initializing", "lastAppliedSpec": "5974fdb97c"}),
            json!({"phase": ""}),
            json!({"phase": "Initialized", "lastAppliedSpec": "r1.abc", "lastPromotedSpec": "r1.abc"}),
        ] {
            let status: CanaryStatus = serde_json::from_value(status.clone()).unwrap();
            assert_eq!(adopt(&status, "r1.x", true), None, "{status:?}");
        }
    }

    /// Flagger was stopped while the canary ran (blue/green, iteration 2 of 6, its hash in the
    /// status): flagger-rs carries on with iteration 3 rather than starting again.
    #[test]
    fn a_run_caught_mid_analysis_resumes_at_its_iteration() {
        let v = vectors();
        let plain = v["canaries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["canary"] == "plain")
            .unwrap();
        let status = json!({
            "phase": "Progressing", "iterations": 2, "canaryWeight": 0, "failedChecks": 0,
            "lastAppliedSpec": "6d4f8b7c9", "lastPromotedSpec": plain["lastPromotedSpec"],
            "trackedConfigs": {},
            "lastTransitionTime": "2026-12-04T20:00:00Z"
        });
        let canary = canary("plain", status);
        let mut new_version = plain["targetPodTemplate"].clone();
        new_version["spec"]["containers"][0]["image"] = json!("ghcr.io/stefanprodan/podinfo:6.0.1");
        let target = deployment("plain", &new_version);
        let tracked = tracked(&canary, &target, &v["configs"]);
        let primary =
            flaggers_primary_template("plain", &plain["targetPodTemplate"], &tracked.keys());
        let (adopted, revision) = take_over(&canary, &target, &primary, &tracked);
        let adopted = adopted.unwrap();
        assert_eq!(
            adopted.last_applied_spec.as_deref(),
            Some(revision.as_str())
        );
        assert_eq!(
            adopted.last_promoted_spec.as_deref(),
            Some(UNKNOWN_REVISION)
        );
        assert_eq!(
            (adopted.phase, adopted.iterations),
            (Some(CanaryPhase::Progressing), Some(2))
        );

        let spec = flagger_core::normalize(&canary, &CoreSettings::default()).unwrap();
        let observation = Observation::ready(revision, RouteState::PRIMARY);
        let now = "2026-12-04T20:00:20Z".parse().unwrap();
        let (next, actions) = flagger_core::advance(&spec, &adopted, &observation, now);
        assert_eq!(next.phase, Some(CanaryPhase::Progressing));
        assert_eq!(next.iterations, Some(3), "{actions:?}");
        assert!(
            !actions.iter().any(|a| matches!(a, Action::ScaleTargetUp)),
            "{actions:?}"
        );
    }
}
