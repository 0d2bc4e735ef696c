//! The status fields users and tools read besides the phase: the `Promoted` condition,
//! the check records of `status.canaryAnalysis` and `mirrorWeight`.

mod common;

use common::{Harness, Obs, ok, spec, spec_with, waiting};
use flagger_api::status::CanaryPhase::{self, *};
use flagger_core::Settings;
use jiff::Timestamp;
use serde_json::json;

/// `(status, reason, message, lastUpdateTime, lastTransitionTime)` of the only condition.
fn promoted(h: &Harness) -> (String, String, String, Timestamp, Timestamp) {
    let conditions = h.status.conditions.as_deref().unwrap_or_default();
    assert_eq!(conditions.len(), 1, "{conditions:#?}");
    let c = &conditions[0];
    assert_eq!(c.type_, "Promoted");
    (
        c.status.clone(),
        c.reason.clone(),
        c.message.clone().unwrap_or_default(),
        c.last_update_time.unwrap_or_default(),
        c.last_transition_time.unwrap_or_default(),
    )
}

fn deleting() -> Obs {
    let mut o = ok();
    o.deleting = true;
    o
}

/// An observation, the target revision if it changes, then the expected phase, condition status
/// and message, and the rows (indexes into the table) whose tick time `lastUpdateTime` and
/// `lastTransitionTime` must hold.
type ConditionRow = (
    Obs,
    Option<&'static str>,
    CanaryPhase,
    &'static str,
    &'static str,
    usize,
    usize,
);

#[test]
fn the_promoted_condition_follows_the_phase() {
    let s = spec_with(
        json!({"revertOnDeletion": true}),
        json!({"stepWeight": 50, "maxWeight": 50, "threshold": 1, "webhooks": [
            {"name": "rollout-gate", "type": "confirm-rollout", "url": "http://lt/"},
            {"name": "promotion-gate", "type": "confirm-promotion", "url": "http://lt/"}
        ]}),
        &Settings::default(),
    );
    let mut h = Harness::new(s);
    let table: Vec<ConditionRow> = vec![
        (
            ok().primary(waiting("0 of 1 updated replicas are available")),
            None,
            Initializing,
            "Unknown",
            "New Deployment detected, starting initialization.",
            0,
            0,
        ),
        (
            ok(),
            None,
            Initialized,
            "True",
            "Deployment initialization completed.",
            1,
            1,
        ),
        (
            ok().fail("rollout-gate"),
            Some("r2"),
            Waiting,
            "Unknown",
            "Waiting for approval.",
            2,
            2,
        ),
        (
            ok().fail("rollout-gate"),
            None,
            Waiting,
            "Unknown",
            "Waiting for approval.",
            2,
            2,
        ),
        // Same status, new reason: updated, not a transition.
        (
            ok(),
            None,
            Progressing,
            "Unknown",
            "New revision detected, progressing canary analysis.",
            4,
            2,
        ),
        (
            ok(),
            None,
            Progressing,
            "Unknown",
            "New revision detected, progressing canary analysis.",
            4,
            2,
        ),
        (
            ok().fail("promotion-gate"),
            None,
            WaitingPromotion,
            "Unknown",
            "Waiting for approval.",
            6,
            2,
        ),
        (
            ok().fail("promotion-gate"),
            None,
            WaitingPromotion,
            "Unknown",
            "Waiting for approval.",
            6,
            2,
        ),
        (
            ok(),
            None,
            Promoting,
            "Unknown",
            "Canary analysis completed, starting primary rolling update.",
            8,
            2,
        ),
        (
            ok(),
            None,
            Finalising,
            "Unknown",
            "Canary analysis completed, routing all traffic to primary.",
            9,
            2,
        ),
        (
            ok(),
            None,
            Succeeded,
            "True",
            "Canary analysis completed successfully, promotion finished.",
            10,
            10,
        ),
        (
            ok(),
            Some("r3"),
            Progressing,
            "Unknown",
            "New revision detected, progressing canary analysis.",
            11,
            11,
        ),
        (
            ok(),
            None,
            Progressing,
            "Unknown",
            "New revision detected, progressing canary analysis.",
            11,
            11,
        ),
        // A restart writes Progressing again: same status and reason, left alone.
        (
            ok(),
            Some("r4"),
            Progressing,
            "Unknown",
            "New revision detected, progressing canary analysis.",
            11,
            11,
        ),
        (
            ok(),
            None,
            Progressing,
            "Unknown",
            "New revision detected, progressing canary analysis.",
            11,
            11,
        ),
        (
            ok().metric("request-success-rate", 50.0),
            None,
            Failed,
            "False",
            "Canary analysis failed, Deployment scaled to zero.",
            15,
            15,
        ),
        (
            ok(),
            None,
            Failed,
            "False",
            "Canary analysis failed, Deployment scaled to zero.",
            15,
            15,
        ),
        (
            deleting(),
            None,
            Terminating,
            "Unknown",
            "Canary is being finalized.",
            17,
            17,
        ),
        (
            deleting(),
            None,
            Terminated,
            "Unknown",
            "Canary finalized.",
            18,
            17,
        ),
    ];
    let mut times = Vec::new();
    for (i, (o, revision, phase, state, message, updated, transitioned)) in
        table.into_iter().enumerate()
    {
        if let Some(r) = revision {
            h.revision = r.into();
        }
        times.push(h.now);
        h.run(o);
        assert_eq!(h.phase(), phase, "row {i}: {:#?}", h.last);
        assert_eq!(
            promoted(&h),
            (
                state.to_string(),
                phase.as_str().to_string(),
                message.to_string(),
                times[updated],
                times[transitioned]
            ),
            "row {i}"
        );
    }
}

/// `(iteration, name, failed)` of a check record.
type Record = (i32, String, bool);

/// Every check record, in order.
fn records(h: &Harness) -> Vec<Record> {
    h.status
        .canary_analysis
        .iter()
        .flat_map(|a| a.iterations.iter().flatten())
        .map(|r| (r.iteration, r.name.clone(), r.failed))
        .collect()
}

#[test]
fn check_records_keep_the_latest_tick_and_every_failure_of_the_run() {
    let mut h = Harness::progressing(spec(json!({
        "stepWeight": 10, "maxWeight": 50, "threshold": 5,
        "webhooks": [{"name": "smoke", "type": "pre-rollout", "url": "http://lt/"}]
    })));
    let sr = "request-success-rate";
    let rd = "request-duration";
    let rec = |i: i32, name: &str, failed: bool| (i, name.to_string(), failed);
    let rows: Vec<(Obs, Vec<Record>)> = vec![
        // The first analysis tick runs only the pre-rollout hooks; it is tick 1 of the run.
        (ok(), vec![rec(1, "smoke", false)]),
        (ok(), vec![rec(2, sr, false), rec(2, rd, false)]),
        (ok().metric(sr, 50.0), vec![rec(3, sr, true)]),
        (
            ok(),
            vec![rec(3, sr, true), rec(4, sr, false), rec(4, rd, false)],
        ),
        (
            ok().metric(rd, 900.0),
            vec![rec(3, sr, true), rec(5, sr, false), rec(5, rd, true)],
        ),
        (
            ok(),
            vec![
                rec(3, sr, true),
                rec(5, rd, true),
                rec(6, sr, false),
                rec(6, rd, false),
            ],
        ),
    ];
    for (i, (o, want)) in rows.into_iter().enumerate() {
        h.run(o);
        assert_eq!(records(&h), want, "row {i}: {:#?}", h.last);
    }
}

#[test]
fn mirror_weight_is_written_only_by_canaries_that_mirror() {
    let mut h = Harness::progressing(spec(json!({"stepWeight": 25, "maxWeight": 50})));
    for _ in 0..10 {
        h.run(ok());
        assert_eq!(h.status.mirror_weight, None, "{:#?}", h.last);
    }
    assert_eq!(h.phase(), Succeeded);
    let mut h = Harness::progressing(spec(
        json!({"stepWeight": 25, "maxWeight": 50, "mirror": true, "mirrorWeight": 30}),
    ));
    h.run(ok());
    assert_eq!(h.status.mirror_weight, Some(30));
    for _ in 0..10 {
        h.run(ok());
    }
    assert_eq!(h.phase(), Succeeded);
    assert_eq!(h.status.mirror_weight, Some(0));
}
