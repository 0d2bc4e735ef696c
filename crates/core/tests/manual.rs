//! Manual requests tick by tick: each is acted on once, in the phases where it means something.

mod common;

use common::{Harness, Obs, ok, spec};
use flagger_api::status::CanaryPhase::*;
use flagger_core::ManualRequest;
use serde_json::json;

const SR: &str = "query request-success-rate";
const RD: &str = "query request-duration";

fn asking(action: &str, id: &str) -> Obs {
    Obs {
        request: Some(ManualRequest {
            id: id.into(),
            action: action.into(),
            requested_by: Some("alice".into()),
        }),
        ..ok()
    }
}

fn harness() -> Harness {
    let mut h = Harness::progressing(spec(
        json!({"stepWeight": 10, "maxWeight": 50, "threshold": 3}),
    ));
    h.run(ok());
    h.run(ok());
    assert_eq!((h.phase(), h.routes().as_str()), (Progressing, "80/20"));
    h
}

fn answered(h: &Harness) -> (String, bool, String) {
    let r = h.status.last_request.as_ref().expect("answered");
    (r.id.clone(), r.accepted, r.message.clone())
}

#[test]
fn promote_skips_the_analysis_once_and_a_second_promote_changes_nothing() {
    let mut h = harness();
    h.row(
        "promote",
        asking("promote", "p1"),
        Promoting,
        (20, 0, 0),
        "80/20",
        &[
            "Normal: podinfo.test: Promotion requested by alice: the rest of the analysis is skipped",
            "alert info: Promotion requested by alice: the rest of the analysis is skipped",
            "Normal: Copying podinfo.test template spec to podinfo-primary.test",
            "promote",
        ],
    );
    assert!(answered(&h).1);
    // The annotation stays (GitOps never removes it); its id is answered, so nothing repeats.
    h.row(
        "promoting",
        asking("promote", "p1"),
        Finalising,
        (0, 0, 0),
        "100/0",
        &[
            "primary-scaler",
            "Normal: Routing all traffic to primary",
            "routes 100/0",
        ],
    );
    h.run(asking("promote", "p1"));
    assert_eq!(h.phase(), Succeeded);
    let before = h.status.clone();
    h.row(
        "second promote",
        asking("promote", "p2"),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &[
            "Warning: podinfo.test: Refused \"promote\" from alice (phase Succeeded): the canary is already promoted: no run to promote",
        ],
    );
    assert_eq!(
        answered(&h),
        (
            "p2".into(),
            false,
            "Refused \"promote\" from alice (phase Succeeded): the canary is already promoted: no run to promote".into()
        )
    );
    let mut same = h.status.clone();
    same.last_request = before.last_request.clone();
    assert_eq!(same, before, "a refused request changes nothing else");
}

#[test]
fn abort_rolls_back_once_naming_who_asked() {
    let mut h = harness();
    h.row(
        "abort",
        asking("abort", "a1"),
        Failed,
        (0, 0, 0),
        "100/0",
        &[
            "Normal: podinfo.test: Rollback requested by alice: the run is aborted",
            "alert error: Rollback requested by alice: the run is aborted",
            "routes 100/0",
            "Warning: Canary failed! Scaling down podinfo.test",
            "pause-scaler",
            "scale-to-zero",
            "report rollback aborted",
        ],
    );
    h.row(
        "still failed",
        asking("abort", "a1"),
        Failed,
        (0, 0, 0),
        "100/0",
        &[],
    );
}

#[test]
fn pause_holds_the_weight_while_checks_run_and_resume_steps_again() {
    let mut h = harness();
    h.row(
        "pause",
        asking("pause", "x1"),
        Progressing,
        (20, 0, 0),
        "80/20",
        &[
            SR,
            RD,
            "Normal: podinfo.test: Pause requested by alice: weights hold, checks keep running",
            "alert info: Pause requested by alice: weights hold, checks keep running",
        ],
    );
    assert_eq!(h.status.paused_by.as_deref(), Some("alice"));
    h.row(
        "held",
        asking("pause", "x1"),
        Progressing,
        (20, 0, 0),
        "80/20",
        &[SR, RD],
    );
    // A failing check still counts while paused.
    h.row(
        "held, failing",
        asking("pause", "x1").metric("request-success-rate", 50.0),
        Progressing,
        (20, 1, 0),
        "80/20",
        &[
            SR,
            "Warning: Halt podinfo.test advancement success rate 50.00% < 99%",
        ],
    );
    h.row(
        "resume",
        asking("resume", "x2"),
        Progressing,
        (30, 1, 0),
        "70/30",
        &[
            SR,
            RD,
            "Normal: podinfo.test: Resume requested by alice: the run takes steps again",
            "alert info: Resume requested by alice: the run takes steps again",
            "routes 70/30",
            "Normal: Advance podinfo.test canary weight 30",
        ],
    );
    assert_eq!(h.status.paused_by, None);
    h.row(
        "second resume",
        asking("resume", "x3"),
        Progressing,
        (40, 1, 0),
        "60/40",
        &[
            SR,
            RD,
            "Warning: podinfo.test: Refused \"resume\" from alice (phase Progressing): the canary is not paused",
            "routes 60/40",
            "Normal: Advance podinfo.test canary weight 40",
        ],
    );
}

#[test]
fn retry_runs_a_failed_revision_again_and_only_a_failed_one() {
    let mut h = harness();
    h.run(asking("abort", "a1"));
    assert_eq!(h.phase(), Failed);
    h.row(
        "retry",
        asking("retry", "r1"),
        Progressing,
        (0, 0, 0),
        "100/0",
        &[
            "Normal: podinfo.test: Retry requested by alice: the failed revision is analysed again",
            "alert info: Retry requested by alice: the failed revision is analysed again",
            "Normal: New revision detected! Scaling up podinfo.test",
            "alert info: New revision detected, progressing canary analysis.",
            "resume-scaler",
            "scale-up",
        ],
    );
    h.run(asking("retry", "r1"));
    assert_eq!((h.phase(), h.routes().as_str()), (Progressing, "90/10"));
    h.row(
        "retry while progressing",
        asking("retry", "r2"),
        Progressing,
        (20, 0, 0),
        "80/20",
        &[
            SR,
            RD,
            "Warning: podinfo.test: Refused \"retry\" from alice (phase Progressing): only a failed canary can be retried",
            "routes 80/20",
            "Normal: Advance podinfo.test canary weight 20",
        ],
    );
}

#[test]
fn an_unknown_request_is_refused_by_name() {
    let mut h = harness();
    h.run(asking("promot", "u1"));
    let (_, accepted, message) = answered(&h);
    assert!(!accepted);
    assert_eq!(
        message,
        "Refused \"promot\" from alice (phase Progressing): unknown request \"promot\": expected one of promote, abort, pause, resume, retry"
    );
    assert_eq!(h.routes(), "70/30", "the run goes on");
}
