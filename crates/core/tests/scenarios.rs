//! Worked scenarios, tick by tick.

mod common;

use common::{Harness, ok, spec, spec_with, waiting};
use flagger_api::status::CanaryPhase::*;
use flagger_core::status::StatusExt;
use flagger_core::{Action, Readiness, Settings};
use jiff::SignedDuration;
use serde_json::json;

const SR: &str = "query request-success-rate";
const RD: &str = "query request-duration";
const SCALE_UP: [&str; 4] = [
    "Normal: New revision detected! Scaling up podinfo.test",
    "alert info: New revision detected, progressing canary analysis.",
    "resume-scaler",
    "scale-up",
];
const START: &str = "Normal: Starting canary analysis for podinfo.test";
const COPY: &str = "Normal: Copying podinfo.test template spec to podinfo-primary.test";
const TO_PRIMARY: &str = "Normal: Routing all traffic to primary";
const FINALISE: [&str; 6] = [
    "pause-scaler",
    "scale-to-zero",
    "report succeeded skipped=false",
    "Normal: Promotion completed! Scaling down podinfo.test",
    "alert info: Canary analysis completed successfully, promotion finished.",
    "",
];

fn adv(w: u32) -> String {
    format!("Normal: Advance podinfo.test canary weight {w}")
}

fn iter(i: u32, n: u32) -> String {
    format!("Normal: Advance podinfo.test canary iteration {i}/{n}")
}

fn routes(p: u32, c: u32) -> String {
    format!("routes {p}/{c}")
}

/// `a` then `b`, for rows that mix constant and computed effects.
fn cat(parts: &[&[&str]]) -> Vec<&'static str> {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .filter(|s| !s.is_empty())
        .map(|s| &*String::leak(s.to_string()))
        .collect()
}

fn leak(s: String) -> &'static str {
    String::leak(s)
}

fn rollback_tail(reason: &str) -> Vec<&'static str> {
    vec![
        "routes 100/0",
        "Warning: Canary failed! Scaling down podinfo.test",
        "pause-scaler",
        "scale-to-zero",
        leak(format!("report rollback {reason}")),
    ]
}

fn s1_spec() -> flagger_core::RolloutSpec {
    spec(json!({"stepWeight": 10, "maxWeight": 50, "threshold": 2}))
}

#[test]
fn s1_canary_promotion() {
    let mut h = Harness::new(s1_spec());
    h.row(
        "t0",
        ok().primary(waiting("waiting for rollout to finish: 0 of 1 updated replicas are available")),
        Initializing,
        (0, 0, 0),
        "100/0",
        &["ensure-primary", "Warning: podinfo-primary.test not ready: waiting for rollout to finish: 0 of 1 updated replicas are available"],
    );
    h.row(
        "t1",
        ok(),
        Initialized,
        (0, 0, 0),
        "100/0",
        &[
            "ensure-primary",
            "pause-scaler",
            "apex-to-primary",
            "scale-to-zero",
            "routes 100/0",
            "Normal: Initialization done! podinfo.test",
            "alert info: New Deployment detected, initialization completed.",
        ],
    );
    assert_eq!(h.status.last_applied_spec.as_deref(), Some("r1.6.0.0"));
    assert_eq!(h.status.last_promoted_spec.as_deref(), Some("r1.6.0.0"));
    h.revision = "r1.6.0.1".into();
    h.row("t2", ok(), Progressing, (0, 0, 0), "100/0", &SCALE_UP);
    assert_eq!(h.status.last_applied_spec.as_deref(), Some("r1.6.0.1"));
    h.row(
        "t3",
        ok(),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[START, "routes 90/10", &adv(10)],
    );
    for (t, w) in [(4, 20), (5, 30), (6, 40), (7, 50)] {
        h.row(
            &format!("t{t}"),
            ok(),
            Progressing,
            (w, 0, 0),
            &format!("{}/{w}", 100 - w),
            &[SR, RD, &routes(100 - w, w), &adv(w)],
        );
    }
    h.row(
        "t8",
        ok(),
        Promoting,
        (50, 0, 0),
        "50/50",
        &[SR, RD, COPY, "promote"],
    );
    h.row(
        "t9",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["primary-scaler", TO_PRIMARY, "routes 100/0"],
    );
    h.row(
        "t10",
        ok(),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &cat(&[&FINALISE]),
    );
    assert_eq!(h.status.last_promoted_spec.as_deref(), Some("r1.6.0.1"));
    h.row("t11", ok(), Succeeded, (0, 0, 0), "100/0", &[]);
}

#[test]
fn s1_primary_rollout_still_in_progress_delays_finalising() {
    let mut h = Harness::progressing(s1_spec());
    for _ in 3..=8 {
        h.run(ok());
    }
    assert_eq!(h.phase(), Promoting);
    h.row(
        "t9",
        ok().primary(waiting("waiting for rollout to finish")),
        Promoting,
        (50, 0, 0),
        "50/50",
        &[
            "Warning: podinfo-primary.test not ready: waiting for rollout to finish",
            "requeue when primary ready",
        ],
    );
    h.row(
        "t10",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["primary-scaler", TO_PRIMARY, "routes 100/0"],
    );
}

#[test]
fn s2_failing_metrics_roll_back_after_exactly_threshold_failures() {
    let mut h = Harness::progressing(s1_spec());
    h.row(
        "t3",
        ok(),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[START, "routes 90/10", &adv(10)],
    );
    h.row(
        "t4",
        ok().metric("request-success-rate", 95.2),
        Progressing,
        (10, 1, 0),
        "90/10",
        &[
            SR,
            "Warning: Halt podinfo.test advancement success rate 95.20% < 99%",
        ],
    );
    let mut expected = vec![
        SR,
        "Warning: Halt podinfo.test advancement success rate 96.00% < 99%",
        "Warning: Rolling back podinfo.test failed checks threshold reached 2",
        "alert error: Failed checks threshold reached 2",
    ];
    expected.extend(rollback_tail("failed_checks"));
    h.row(
        "t5",
        ok().metric("request-success-rate", 96.0),
        Failed,
        (0, 0, 0),
        "100/0",
        &expected,
    );
    let alert = h
        .last_actions
        .iter()
        .find_map(|a| match a {
            Action::Alert(al) => Some(al.clone()),
            _ => None,
        })
        .expect("rollback alert");
    let fields: Vec<&str> = alert.fields.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        fields,
        [
            "request-success-rate: 95.2 (min 99) at iteration 2",
            "request-success-rate: 96 (min 99) at iteration 3"
        ]
    );
    match alert.reason {
        Some(flagger_core::Reason::FailedChecks {
            failed_checks,
            threshold,
            last: Some(last),
            records,
        }) => {
            assert_eq!((failed_checks, threshold), (2, 2));
            assert_eq!(last.name, "request-success-rate");
            assert_eq!(last.value, Some(96.0));
            assert_eq!(last.threshold.as_deref(), Some("min 99"));
            assert_eq!(last.query.as_deref(), Some("q"));
            assert_eq!(records.len(), 2);
        }
        other => panic!("unexpected reason {other:?}"),
    }
    h.row("t6", ok(), Failed, (0, 0, 0), "100/0", &[]);
    h.row("t7 re-apply", ok(), Failed, (0, 0, 0), "100/0", &[]);
    h.revision = "r1.6.0.0".into();
    h.row(
        "t8 revert to primary",
        ok(),
        Failed,
        (0, 0, 0),
        "100/0",
        &[],
    );
    assert_eq!(h.status.last_applied_spec.as_deref(), Some("r1.6.0.0"));
    h.revision = "r1.6.0.1".into();
    h.row(
        "t9 failed version again",
        ok(),
        Progressing,
        (0, 0, 0),
        "100/0",
        &SCALE_UP,
    );
}

#[test]
fn s3_failed_checks_are_cumulative() {
    let mut h = Harness::progressing(s1_spec());
    h.run(ok());
    let bad = || ok().metric("request-success-rate", 90.0);
    let halt = "Warning: Halt podinfo.test advancement success rate 90.00% < 99%";
    h.row("t4", bad(), Progressing, (10, 1, 0), "90/10", &[SR, halt]);
    h.row(
        "t5",
        ok(),
        Progressing,
        (20, 1, 0),
        "80/20",
        &[SR, RD, "routes 80/20", &adv(20)],
    );
    h.row(
        "t6",
        ok(),
        Progressing,
        (30, 1, 0),
        "70/30",
        &[SR, RD, "routes 70/30", &adv(30)],
    );
    let mut expected = vec![
        SR,
        halt,
        "Warning: Rolling back podinfo.test failed checks threshold reached 2",
        "alert error: Failed checks threshold reached 2",
    ];
    expected.extend(rollback_tail("failed_checks"));
    h.row("t7", bad(), Failed, (0, 0, 0), "100/0", &expected);
}

#[test]
fn s4_pre_rollout_and_rollout_hook_failures() {
    let s = spec(
        json!({"stepWeight": 10, "maxWeight": 50, "threshold": 3, "webhooks": [
            {"name": "acceptance", "type": "pre-rollout", "url": "http://lt/"},
            {"name": "load", "type": "rollout", "url": "http://lt/"}
        ]}),
    );
    let mut h = Harness::progressing(s);
    let ask = "ask pre-rollout acceptance (Progressing)";
    let halt =
        "Warning: Halt podinfo.test advancement pre-rollout check acceptance failed 500 failed";
    h.row(
        "t3",
        ok().fail("acceptance"),
        Progressing,
        (0, 1, 0),
        "100/0",
        &[ask, START, halt],
    );
    h.row(
        "t4",
        ok().fail("acceptance"),
        Progressing,
        (0, 2, 0),
        "100/0",
        &[ask, START, halt],
    );
    h.row(
        "t5",
        ok(),
        Progressing,
        (10, 2, 0),
        "90/10",
        &[
            ask,
            START,
            "Normal: Pre-rollout check acceptance passed",
            "routes 90/10",
            &adv(10),
        ],
    );
    let mut expected = vec![
        "ask rollout load (Progressing)",
        "Warning: Halt podinfo.test advancement external check load failed 500 failed",
        "Warning: Rolling back podinfo.test failed checks threshold reached 3",
        "alert error: Failed checks threshold reached 3",
    ];
    expected.extend(rollback_tail("failed_checks"));
    h.row(
        "t6 metrics not queried",
        ok().fail("load"),
        Failed,
        (0, 0, 0),
        "100/0",
        &expected,
    );
}

#[test]
fn s4_hooks_of_one_type_are_answered_by_name() {
    let s = spec(
        json!({"stepWeight": 10, "maxWeight": 50, "threshold": 3, "webhooks": [
            {"name": "smoke", "type": "pre-rollout", "url": "http://lt/"},
            {"name": "acceptance", "type": "pre-rollout", "url": "http://lt/"}
        ]}),
    );
    let mut h = Harness::progressing(s);
    // The passing first hook's answer says nothing about the second.
    h.row(
        "t3",
        ok().fail("acceptance"),
        Progressing,
        (0, 1, 0),
        "100/0",
        &[
            "ask pre-rollout smoke (Progressing)",
            "ask pre-rollout acceptance (Progressing)",
            START,
            "Normal: Pre-rollout check smoke passed",
            "Warning: Halt podinfo.test advancement pre-rollout check acceptance failed 500 failed",
        ],
    );
}

#[test]
fn s5_ab_testing() {
    let s = spec(
        json!({"iterations": 10, "threshold": 5, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}),
    );
    let mut h = Harness::progressing(s);
    h.row(
        "t3",
        ok(),
        Progressing,
        (0, 0, 1),
        "0/100",
        &[START, "routes 0/100", &iter(1, 10)],
    );
    for i in 2..=10 {
        h.row(
            &format!("t{}", i + 2),
            ok(),
            Progressing,
            (0, 0, i),
            "0/100",
            &[SR, RD, "routes 0/100", &iter(i, 10)],
        );
    }
    h.row(
        "t13",
        ok(),
        Promoting,
        (0, 0, 10),
        "0/100",
        &[SR, RD, COPY, "promote"],
    );
    h.row(
        "t14",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["primary-scaler", TO_PRIMARY, "routes 100/0"],
    );
    h.row(
        "t15",
        ok(),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &cat(&[&FINALISE]),
    );
}

#[test]
fn s6_blue_green() {
    let mut h = Harness::progressing(spec(json!({"iterations": 5, "threshold": 2})));
    h.row(
        "t3",
        ok(),
        Progressing,
        (0, 0, 1),
        "100/0",
        &[START, &iter(1, 5)],
    );
    for i in 2..=5 {
        h.row(
            &format!("t{}", i + 2),
            ok(),
            Progressing,
            (0, 0, i),
            "100/0",
            &[SR, RD, &iter(i, 5)],
        );
    }
    h.row(
        "t8",
        ok(),
        Progressing,
        (0, 0, 6),
        "0/100",
        &[
            SR,
            RD,
            "Normal: Routing all traffic to canary",
            "routes 0/100",
        ],
    );
    h.row(
        "t9",
        ok(),
        Promoting,
        (0, 0, 6),
        "0/100",
        &[SR, RD, COPY, "promote"],
    );
    h.row(
        "t10",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["primary-scaler", TO_PRIMARY, "routes 100/0"],
    );
    h.row(
        "t11",
        ok(),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &cat(&[&FINALISE]),
    );
}

#[test]
fn s6b_blue_green_with_the_kubernetes_provider_never_moves_routes() {
    let s = spec_with(
        json!({"provider": "kubernetes"}),
        json!({"iterations": 3, "threshold": 2}),
        &Settings::default(),
    );
    let mut h = Harness::progressing(s);
    h.row(
        "t3",
        ok(),
        Progressing,
        (0, 0, 1),
        "100/0",
        &[START, &iter(1, 3)],
    );
    h.row(
        "t4",
        ok(),
        Progressing,
        (0, 0, 2),
        "100/0",
        &[SR, RD, &iter(2, 3)],
    );
    h.row(
        "t5",
        ok(),
        Progressing,
        (0, 0, 3),
        "100/0",
        &[SR, RD, &iter(3, 3)],
    );
    h.row("t6", ok(), Progressing, (0, 0, 4), "100/0", &[SR, RD]);
    h.row(
        "t7",
        ok(),
        Promoting,
        (0, 0, 4),
        "100/0",
        &[SR, RD, COPY, "promote"],
    );
    h.row(
        "t8",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["primary-scaler"],
    );
    h.row(
        "t9",
        ok(),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &cat(&[&FINALISE]),
    );
}

#[test]
fn s6b_step_weight_with_kubernetes_runs_ten_iterations_and_warns_once_per_run() {
    let s = spec_with(
        json!({"provider": "kubernetes"}),
        json!({"stepWeight": 10, "threshold": 2}),
        &Settings::default(),
    );
    let mut h = Harness::initialized(s);
    let mut expected = SCALE_UP[..2].to_vec();
    expected.extend([
        "Warning: Progressive traffic is not supported when using the kubernetes provider",
        "Warning: Setting canaryAnalysis.iterations: 10",
    ]);
    expected.extend(&SCALE_UP[2..]);
    h.row("t2", ok(), Progressing, (0, 0, 0), "100/0", &expected);
    h.row(
        "t3",
        ok(),
        Progressing,
        (0, 0, 1),
        "100/0",
        &[START, &iter(1, 10)],
    );
    h.row(
        "t4",
        ok(),
        Progressing,
        (0, 0, 2),
        "100/0",
        &[SR, RD, &iter(2, 10)],
    );
}

#[test]
fn s7_canary_with_mirroring() {
    let s = spec(
        json!({"stepWeight": 20, "maxWeight": 40, "threshold": 2, "mirror": true, "mirrorWeight": 50}),
    );
    let mut h = Harness::progressing(s);
    h.row(
        "t3 mirror on",
        ok(),
        Progressing,
        (0, 0, 0),
        "100/0 +m50",
        &[START, "routes 100/0 +m50", &adv(0)],
    );
    assert_eq!(h.status.mirror(), 50);
    h.row(
        "t4 mirror off",
        ok(),
        Progressing,
        (20, 0, 0),
        "80/20",
        &[SR, RD, "routes 80/20", &adv(20)],
    );
    assert_eq!(h.status.mirror(), 0);
    h.row(
        "t5",
        ok(),
        Progressing,
        (40, 0, 0),
        "60/40",
        &[SR, RD, "routes 60/40", &adv(40)],
    );
    h.row(
        "t6",
        ok(),
        Promoting,
        (40, 0, 0),
        "60/40",
        &[SR, RD, COPY, "promote"],
    );
    h.row(
        "t7",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["primary-scaler", TO_PRIMARY, "routes 100/0"],
    );
    h.row(
        "t8",
        ok(),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &cat(&[&FINALISE]),
    );
}

#[test]
fn s7_mirror_on_a_router_that_cannot_mirror_is_ignored() {
    let s = spec_with(
        json!({"provider": "linkerd"}),
        json!({"stepWeight": 20, "maxWeight": 40, "threshold": 2, "mirror": true}),
        &Settings::default(),
    );
    assert!(s.mirror.is_none());
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("MirrorUnsupported"))
    );
    let mut h = Harness::progressing(s);
    h.row(
        "t3",
        ok(),
        Progressing,
        (20, 0, 0),
        "80/20",
        &[START, "routes 80/20", &adv(20)],
    );
}

#[test]
fn s7b_blue_green_with_mirroring() {
    let s = spec(json!({"iterations": 3, "threshold": 2, "mirror": true, "mirrorWeight": 0}));
    let mut h = Harness::progressing(s);
    h.row(
        "t3",
        ok(),
        Progressing,
        (0, 0, 1),
        "100/0 +m100",
        &[START, "routes 100/0 +m100", &iter(1, 3)],
    );
    h.row(
        "t4",
        ok(),
        Progressing,
        (0, 0, 2),
        "100/0 +m100",
        &[SR, RD, &iter(2, 3)],
    );
    h.row(
        "t5",
        ok(),
        Progressing,
        (0, 0, 3),
        "100/0 +m100",
        &[SR, RD, &iter(3, 3)],
    );
    h.row(
        "t6",
        ok(),
        Progressing,
        (0, 0, 4),
        "0/100",
        &[
            SR,
            RD,
            "Normal: Stop traffic mirroring and route all traffic to canary",
            "routes 0/100",
        ],
    );
    h.row(
        "t7",
        ok(),
        Promoting,
        (0, 0, 4),
        "0/100",
        &[SR, RD, COPY, "promote"],
    );
    h.row(
        "t8",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["primary-scaler", TO_PRIMARY, "routes 100/0"],
    );
    h.row(
        "t9",
        ok(),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &cat(&[&FINALISE]),
    );
}

#[test]
fn s8_weight_ladders() {
    let cases = [
        (
            json!({"stepWeights": [1, 2, 10, 80]}),
            vec![1, 2, 10, 80],
            7,
        ),
        (
            json!({"stepWeights": [1, 2, 10, 200]}),
            vec![1, 2, 10, 100],
            7,
        ),
        (
            json!({"stepWeight": 20, "maxWeight": 50}),
            vec![20, 40, 60],
            6,
        ),
        (
            json!({"stepWeight": 50, "maxWeight": 100}),
            vec![50, 100],
            5,
        ),
        (
            json!({"stepWeights": [10, 20, 30, 40, 50, 60], "maxWeight": 50}),
            vec![10, 20, 30, 40, 50, 60],
            9,
        ),
    ];
    for (analysis, ladder, promotion_tick) in cases {
        let mut a = analysis.clone();
        a["threshold"] = json!(2);
        let mut h = Harness::progressing(spec(a));
        for (k, w) in ladder.iter().enumerate() {
            h.run(ok());
            assert_eq!(
                (h.phase(), h.status.weight()),
                (Progressing, *w),
                "{analysis} tick {}",
                k + 3
            );
            assert_eq!(h.routes(), format!("{}/{w}", 100 - w), "{analysis}");
        }
        let mut tick = 2 + ladder.len() as u32;
        while h.phase() == Progressing {
            h.run(ok());
            tick += 1;
        }
        assert_eq!((h.phase(), tick), (Promoting, promotion_tick), "{analysis}");
    }
}

fn s9_spec() -> flagger_core::RolloutSpec {
    spec(json!({"stepWeight": 25, "maxWeight": 50, "stepWeightPromotion": 20, "threshold": 2}))
}

#[test]
fn s9_gradual_promotion() {
    let mut h = Harness::progressing(s9_spec());
    h.row(
        "t3",
        ok(),
        Progressing,
        (25, 0, 0),
        "75/25",
        &[START, "routes 75/25", &adv(25)],
    );
    h.row(
        "t4",
        ok(),
        Progressing,
        (50, 0, 0),
        "50/50",
        &[SR, RD, "routes 50/50", &adv(50)],
    );
    h.row(
        "t5",
        ok(),
        Promoting,
        (50, 0, 0),
        "50/50",
        &[SR, RD, COPY, "promote"],
    );
    let primary = |p: u32| leak(format!("Normal: Advance podinfo.test primary weight {p}"));
    h.row(
        "t6",
        ok(),
        Promoting,
        (30, 0, 0),
        "70/30",
        &["primary-scaler", primary(70), "routes 70/30"],
    );
    h.row(
        "t7",
        ok(),
        Promoting,
        (10, 0, 0),
        "90/10",
        &["primary-scaler", primary(90), "routes 90/10"],
    );
    h.row(
        "t8",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["primary-scaler", primary(100), "routes 100/0"],
    );
    h.row(
        "t9",
        ok(),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &cat(&[&FINALISE]),
    );
}

#[test]
fn s10_promotion_gate_closed_then_opened() {
    let s = spec(
        json!({"stepWeight": 25, "maxWeight": 50, "threshold": 5, "webhooks": [
            {"name": "promotion-gate", "type": "confirm-promotion", "url": "http://lt/gate/check"}
        ]}),
    );
    let mut h = Harness::progressing(s);
    h.run(ok());
    h.row(
        "t4",
        ok(),
        Progressing,
        (50, 0, 0),
        "50/50",
        &[SR, RD, "routes 50/50", &adv(50)],
    );
    let ask = "ask confirm-promotion promotion-gate (Progressing)";
    h.row(
        "t5",
        ok().fail("promotion-gate"),
        WaitingPromotion,
        (50, 0, 0),
        "50/50",
        &[
            SR,
            RD,
            ask,
            "Warning: Halt podinfo.test advancement waiting for promotion approval promotion-gate",
            "alert warn: Canary promotion is waiting for approval.",
        ],
    );
    h.row(
        "t6",
        ok().fail("promotion-gate"),
        WaitingPromotion,
        (50, 0, 0),
        "50/50",
        &[SR, RD, ask],
    );
    h.row(
        "t7",
        ok().fail("promotion-gate")
            .metric("request-success-rate", 97.0),
        WaitingPromotion,
        (50, 1, 0),
        "50/50",
        &[
            SR,
            "Warning: Halt podinfo.test advancement success rate 97.00% < 99%",
        ],
    );
    h.row(
        "t8",
        ok(),
        Promoting,
        (50, 1, 0),
        "50/50",
        &[
            SR,
            RD,
            ask,
            "Normal: Confirm-promotion check promotion-gate passed",
            COPY,
            "promote",
        ],
    );
    h.row(
        "t9",
        ok(),
        Finalising,
        (0, 1, 0),
        "100/0",
        &["primary-scaler", TO_PRIMARY, "routes 100/0"],
    );
    h.row(
        "t10",
        ok(),
        Succeeded,
        (0, 1, 0),
        "100/0",
        &cat(&[&FINALISE]),
    );
}

#[test]
fn s10_promotion_gate_on_blue_green_holds_at_n_then_n_plus_one() {
    let s = spec(json!({"iterations": 2, "threshold": 5, "webhooks": [
        {"name": "g", "type": "confirm-promotion", "url": "http://lt/gate/check"}
    ]}));
    let mut h = Harness::progressing(s);
    h.run(ok());
    h.run(ok());
    assert_eq!(h.status.iter(), 2);
    let ask = "ask confirm-promotion g (Progressing)";
    h.row(
        "gate closed at N",
        ok().fail("g"),
        WaitingPromotion,
        (0, 0, 2),
        "100/0",
        &[
            SR,
            RD,
            ask,
            "Warning: Halt podinfo.test advancement waiting for promotion approval g",
            "alert warn: Canary promotion is waiting for approval.",
        ],
    );
    h.row(
        "gate open: all traffic to the canary",
        ok(),
        WaitingPromotion,
        (0, 0, 3),
        "0/100",
        &[
            SR,
            RD,
            ask,
            "Normal: Confirm-promotion check g passed",
            "Normal: Routing all traffic to canary",
            "routes 0/100",
        ],
    );
    h.row(
        "promote",
        ok(),
        Promoting,
        (0, 0, 3),
        "0/100",
        &[
            SR,
            RD,
            ask,
            "Normal: Confirm-promotion check g passed",
            COPY,
            "promote",
        ],
    );
}

#[test]
fn s11_manual_rollback_through_a_rollback_webhook() {
    let s = spec(json!({"stepWeight": 10, "threshold": 5, "webhooks": [
        {"name": "rollback", "type": "rollback", "url": "http://lt/rollback/check"}
    ]}));
    let mut h = Harness::progressing(s);
    let ask = "ask rollback rollback (Progressing)";
    let not = "Normal: Rollback hook rollback not signaling a rollback";
    h.row(
        "t3",
        ok(),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[ask, not, START, "routes 90/10", &adv(10)],
    );
    h.row(
        "t4",
        ok(),
        Progressing,
        (20, 0, 0),
        "80/20",
        &[ask, not, SR, RD, "routes 80/20", &adv(20)],
    );
    let mut expected = vec![
        ask,
        "Normal: Rollback check rollback passed",
        "Warning: Rolling back podinfo.test manual webhook invoked",
        "alert error: Rolling back manual webhook invoked",
    ];
    expected.extend(rollback_tail("manual_webhook"));
    h.row(
        "t5",
        ok().rollback("rollback"),
        Failed,
        (0, 0, 0),
        "100/0",
        &expected,
    );
}

#[test]
fn s12_progress_deadline() {
    let s = spec_with(
        json!({"progressDeadlineSeconds": 60}),
        json!({"interval": "15s", "stepWeight": 10, "threshold": 2}),
        &Settings::default(),
    );
    let mut h = Harness::initialized(s);
    let t2 = h.now;
    h.row("t2 (0s)", ok(), Progressing, (0, 0, 0), "100/0", &SCALE_UP);
    let msg = "waiting for rollout to finish: 0 of 1 (readyThreshold 100%) updated replicas are available";
    let stuck = || {
        ok().canary(Readiness::Waiting {
            message: msg.into(),
            since: Some(t2),
        })
    };
    for s in [15, 30, 45, 60] {
        h.row(
            &format!("{s}s"),
            stuck(),
            Progressing,
            (0, 0, 0),
            "100/0",
            &[
                leak(format!(
                    "Warning: canary deployment podinfo.test not ready: {msg}"
                )),
                "requeue when canary ready",
            ],
        );
    }
    let mut expected = vec![
        leak(format!(
            "Warning: Rolling back podinfo.test progress deadline exceeded {msg}: exceeded its progress deadline"
        )),
        leak(format!(
            "alert error: Progress deadline exceeded {msg}: exceeded its progress deadline"
        )),
    ];
    expected.extend(rollback_tail("progress_deadline"));
    h.row("75s", stuck(), Failed, (0, 0, 0), "100/0", &expected);
}

#[test]
fn s12_deployment_deadline_exceeded_rolls_back_at_once() {
    let mut h = Harness::progressing(s1_spec());
    h.run(ok());
    h.run(ok().canary(Readiness::Failed {
        message: "exceeded its progress deadline".into(),
    }));
    assert_eq!(h.phase(), Failed);
    assert_eq!(h.status.failed(), 0);
    assert!(
        h.last
            .contains(&"report rollback progress_deadline".to_string())
    );
}

#[test]
fn s13_target_changed_during_the_analysis() {
    let mut h = Harness::progressing(spec(
        json!({"stepWeight": 10, "maxWeight": 50, "threshold": 2}),
    ));
    h.row(
        "t3",
        ok(),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[START, "routes 90/10", &adv(10)],
    );
    h.row(
        "t4",
        ok().metric("request-success-rate", 97.0),
        Progressing,
        (10, 1, 0),
        "90/10",
        &[
            SR,
            "Warning: Halt podinfo.test advancement success rate 97.00% < 99%",
        ],
    );
    h.revision = "r1.6.0.2".into();
    h.row(
        "t5",
        ok(),
        Progressing,
        (0, 0, 0),
        "100/0",
        &[
            "Normal: New revision detected! Restarting analysis for podinfo.test",
            "routes 100/0",
        ],
    );
    assert_eq!(h.status.last_applied_spec.as_deref(), Some("r1.6.0.2"));
    h.row(
        "t6",
        ok().canary(waiting("waiting for rollout to finish")),
        Progressing,
        (0, 0, 0),
        "100/0",
        &[
            "Warning: canary deployment podinfo.test not ready: waiting for rollout to finish",
            "requeue when canary ready",
        ],
    );
    h.row(
        "t7",
        ok(),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[START, "routes 90/10", &adv(10)],
    );
}

#[test]
fn s13_a_tracked_config_change_restarts_the_same_way() {
    let mut h = Harness::progressing(s1_spec());
    h.run(ok());
    h.configs.insert("configmap/podinfo".into(), "abc".into());
    h.row(
        "t4",
        ok(),
        Progressing,
        (0, 0, 0),
        "100/0",
        &[
            "Normal: New revision detected! Restarting analysis for podinfo.test",
            "routes 100/0",
        ],
    );
    assert_eq!(h.status.tracked_configs.as_ref().map(|c| c.len()), Some(1));
}

#[test]
fn s13_reverting_to_the_promoted_revision_rolls_back() {
    let mut h = Harness::progressing(s1_spec());
    h.run(ok());
    h.revision = "r1.6.0.0".into();
    let mut expected = vec![
        "Warning: Rolling back podinfo.test: target reverted to the promoted revision",
        "alert error: Rolling back podinfo.test: target reverted to the promoted revision",
    ];
    expected.extend(rollback_tail("reverted"));
    h.row("t4", ok(), Failed, (0, 0, 0), "100/0", &expected);
}

#[test]
fn s13_a_change_while_promoting_starts_a_new_run_after_succeeded() {
    let mut h = Harness::progressing(spec(json!({"stepWeight": 50, "threshold": 2})));
    while h.phase() != Promoting {
        h.run(ok());
    }
    h.revision = "r1.6.0.2".into();
    h.row(
        "promoting",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["primary-scaler", TO_PRIMARY, "routes 100/0"],
    );
    h.row(
        "finalising",
        ok(),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &cat(&[&FINALISE]),
    );
    h.row("next run", ok(), Progressing, (0, 0, 0), "100/0", &SCALE_UP);
}

fn skip_tail() -> Vec<&'static str> {
    vec![
        "routes 100/0",
        COPY,
        "promote",
        "primary-scaler",
        "pause-scaler",
        "scale-to-zero",
        "report succeeded skipped=true",
        "Normal: Promotion completed! Canary analysis was skipped for podinfo.test",
        "alert info: Canary analysis was skipped, promotion finished.",
    ]
}

#[test]
fn s14_skip_analysis() {
    let s = spec_with(
        json!({"skipAnalysis": true}),
        json!({"stepWeight": 10, "threshold": 2}),
        &Settings::default(),
    );
    let mut h = Harness::new(s);
    h.row(
        "t0",
        ok().primary(waiting("waiting for rollout to finish")),
        Initializing,
        (0, 0, 0),
        "100/0",
        &[
            "ensure-primary",
            "Warning: podinfo-primary.test not ready: waiting for rollout to finish",
        ],
    );
    h.run(ok());
    assert_eq!(h.phase(), Initialized);
    h.revision = "r1.6.0.1".into();
    h.row("t2", ok(), Progressing, (0, 0, 0), "100/0", &SCALE_UP);
    h.row("t3", ok(), Succeeded, (0, 0, 0), "100/0", &skip_tail());
    assert_eq!(h.status.last_promoted_spec.as_deref(), Some("r1.6.0.1"));
}

#[test]
fn s14_skip_analysis_with_a_bad_image_rolls_back_on_the_deadline() {
    let s = spec_with(
        json!({"skipAnalysis": true}),
        json!({"stepWeight": 10, "threshold": 2}),
        &Settings::default(),
    );
    let mut h = Harness::progressing(s);
    h.run(ok().canary(Readiness::Failed {
        message: "exceeded its progress deadline".into(),
    }));
    assert_eq!(h.phase(), Failed);
    assert_eq!(h.status.last_promoted_spec.as_deref(), Some("r1.6.0.0"));
}

#[test]
fn s14_skip_annotation_in_waiting_promotion_bypasses_the_gate() {
    let s = spec(
        json!({"stepWeight": 50, "maxWeight": 50, "threshold": 2, "webhooks": [
            {"name": "g", "type": "confirm-promotion", "url": "http://lt/"}
        ]}),
    );
    let mut h = Harness::progressing(s);
    h.run(ok());
    h.run(ok().fail("g"));
    assert_eq!(h.phase(), WaitingPromotion);
    let mut o = ok().fail("g");
    o.skip_annotation = true;
    h.row("annotated", o, Succeeded, (0, 0, 0), "100/0", &skip_tail());
}

#[test]
fn s15_rollout_gate() {
    let s = spec(json!({"stepWeight": 10, "threshold": 2, "webhooks": [
        {"name": "gate", "type": "confirm-rollout", "url": "http://lt/gate/check"},
        {"name": "rollback", "type": "rollback", "url": "http://lt/rollback/check"}
    ]}));
    let mut h = Harness::initialized(s.clone());
    h.row(
        "t2",
        ok().fail("gate"),
        Waiting,
        (0, 0, 0),
        "100/0",
        &[
            "ask confirm-rollout gate (Initialized)",
            "Warning: Halt podinfo.test advancement waiting for approval gate",
            "alert warn: Canary is waiting for approval.",
        ],
    );
    let rb = "ask rollback rollback (Waiting)";
    let not = "Normal: Rollback hook rollback not signaling a rollback";
    h.row(
        "t3",
        ok().fail("gate"),
        Waiting,
        (0, 0, 0),
        "100/0",
        &[rb, not, "ask confirm-rollout gate (Waiting)"],
    );
    let mut expected = vec![
        rb,
        not,
        "ask confirm-rollout gate (Waiting)",
        "Normal: Confirm-rollout check gate passed",
    ];
    expected.extend(SCALE_UP);
    h.row("t4", ok(), Progressing, (0, 0, 0), "100/0", &expected);

    // Variant: the rollback gate opens instead (rollback hooks are asked in `Waiting` too).
    let mut h = Harness::initialized(s);
    h.run(ok().fail("gate"));
    let mut expected = vec![
        rb,
        "Normal: Rollback check rollback passed",
        "Warning: Rolling back podinfo.test manual webhook invoked",
        "alert error: Rolling back manual webhook invoked",
    ];
    expected.extend(rollback_tail("manual_webhook"));
    h.row(
        "t4 rollback",
        ok().fail("gate").rollback("rollback"),
        Failed,
        (0, 0, 0),
        "100/0",
        &expected,
    );
}

#[test]
fn s15_muted_gate_sends_no_alert() {
    let s = spec(json!({"stepWeight": 10, "threshold": 2, "webhooks": [
        {"name": "gate", "type": "confirm-rollout", "url": "http://lt/", "muteAlert": true}
    ]}));
    let mut h = Harness::initialized(s);
    h.row(
        "t2",
        ok().fail("gate"),
        Waiting,
        (0, 0, 0),
        "100/0",
        &[
            "ask confirm-rollout gate (Initialized)",
            "Warning: Halt podinfo.test advancement waiting for approval gate",
        ],
    );
}

#[test]
fn s16_failed_promotion_keeps_the_canary_serving() {
    let mut h = Harness::progressing(s9_spec());
    for _ in 0..3 {
        h.run(ok());
    }
    assert_eq!(h.phase(), Promoting);
    h.row(
        "t6",
        ok().primary(waiting("waiting for rollout to finish")),
        Promoting,
        (50, 0, 0),
        "50/50",
        &[
            "Warning: podinfo-primary.test not ready: waiting for rollout to finish",
            "requeue when primary ready",
        ],
    );
    h.row(
        "t7",
        ok().primary(Readiness::Failed { message: "exceeded its progress deadline".into() }),
        Failed,
        (100, 0, 0),
        "0/100",
        &[
            "Warning: Promotion of podinfo.test failed, primary not ready: exceeded its progress deadline",
            "alert error: Promotion failed, primary not ready: exceeded its progress deadline",
            "routes 0/100",
            "report promotion-failed",
        ],
    );
    assert!(!h.last_actions.contains(&Action::ScaleTargetToZero));
}

#[test]
fn s16_primary_failing_during_the_analysis_rolls_back() {
    let mut h = Harness::progressing(s1_spec());
    h.run(ok());
    let mut expected = vec![
        "Warning: Rolling back podinfo.test primary not ready: crash loop",
        "alert error: Rolling back, primary not ready: crash loop",
    ];
    expected.extend(rollback_tail("primary_not_ready"));
    h.row(
        "t4",
        ok().primary(Readiness::Failed {
            message: "crash loop".into(),
        }),
        Failed,
        (0, 0, 0),
        "100/0",
        &expected,
    );
}

#[test]
fn s18_progressive_mirroring() {
    let s = spec(json!({
        "stepWeight": 50, "maxWeight": 50, "threshold": 2, "mirror": true, "mirrorWeight": 10,
        "canaryAnalysis": {"stepWeightPromotion": 30, "maxMirrorWeight": 100, "iterations": 4}
    }));
    let mut h = Harness::progressing(s);
    h.row(
        "t3",
        ok(),
        Progressing,
        (0, 0, 1),
        "100/0 +m10",
        &[START, "routes 100/0 +m10", &adv(0)],
    );
    assert_eq!(h.status.mirror(), 10);
    for (t, i, m) in [(4, 2, 40), (5, 3, 70), (6, 4, 100)] {
        h.row(
            &format!("t{t}"),
            ok(),
            Progressing,
            (0, 0, i),
            &format!("100/0 +m{m}"),
            &[
                SR,
                RD,
                &format!("routes 100/0 +m{m}"),
                &format!("Normal: Advance podinfo.test mirror weight {m}"),
            ],
        );
        assert_eq!(h.status.mirror(), m);
    }
    h.row(
        "t7",
        ok(),
        Progressing,
        (50, 0, 4),
        "50/50",
        &[SR, RD, "routes 50/50", &adv(50)],
    );
    assert_eq!(h.status.mirror(), 0);
    h.row(
        "t8",
        ok(),
        Promoting,
        (50, 0, 4),
        "50/50",
        &[SR, RD, COPY, "promote"],
    );
    h.row(
        "t9",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["primary-scaler", TO_PRIMARY, "routes 100/0"],
    );
    h.row(
        "t10",
        ok(),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &cat(&[&FINALISE]),
    );
}

#[test]
fn s18_a_failing_check_holds_the_mirror_percentage() {
    let s = spec(json!({
        "stepWeight": 50, "threshold": 3, "mirror": true, "mirrorWeight": 10,
        "canaryAnalysis": {"stepWeightPromotion": 30}
    }));
    let mut h = Harness::progressing(s);
    h.run(ok());
    h.row(
        "t4",
        ok().metric("request-success-rate", 50.0),
        Progressing,
        (0, 1, 1),
        "100/0 +m10",
        &[
            SR,
            "Warning: Halt podinfo.test advancement success rate 50.00% < 99%",
        ],
    );
    h.row(
        "t5",
        ok(),
        Progressing,
        (0, 1, 2),
        "100/0 +m40",
        &[
            SR,
            RD,
            "routes 100/0 +m40",
            "Normal: Advance podinfo.test mirror weight 40",
        ],
    );
}

#[test]
fn s18_progressive_mirroring_on_blue_green_follows_the_ramp() {
    let s = spec(json!({
        "iterations": 4, "threshold": 2, "mirror": true, "mirrorWeight": 20,
        "canaryAnalysis": {"stepWeightPromotion": 40}
    }));
    let mut h = Harness::progressing(s);
    h.row(
        "t3",
        ok(),
        Progressing,
        (0, 0, 1),
        "100/0 +m20",
        &[START, "routes 100/0 +m20", &iter(1, 4)],
    );
    h.row(
        "t4",
        ok(),
        Progressing,
        (0, 0, 2),
        "100/0 +m60",
        &[SR, RD, "routes 100/0 +m60", &iter(2, 4)],
    );
    h.row(
        "t5",
        ok(),
        Progressing,
        (0, 0, 3),
        "100/0 +m100",
        &[SR, RD, "routes 100/0 +m100", &iter(3, 4)],
    );
    h.row(
        "t6",
        ok(),
        Progressing,
        (0, 0, 4),
        "100/0 +m100",
        &[SR, RD, &iter(4, 4)],
    );
}

#[test]
fn s19_warm_up_delay() {
    let mut h = Harness::progressing(spec(
        json!({"delay": "90s", "stepWeight": 10, "threshold": 2}),
    ));
    let t3 = h.now;
    h.row("t3", ok(), Progressing, (0, 0, 0), "100/0", &[]);
    assert_eq!(
        h.status.delay_until,
        Some(t3 + SignedDuration::from_secs(90))
    );
    h.row("t4 hold", ok(), Progressing, (0, 0, 0), "100/0", &[]);
    h.row(
        "t5",
        ok(),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[START, "routes 90/10", &adv(10)],
    );
}

#[test]
fn s19_deadlines_and_rollback_hooks_still_apply_during_the_hold() {
    let s = spec(
        json!({"delay": "5m", "stepWeight": 10, "threshold": 2, "webhooks": [
            {"name": "rb", "type": "rollback", "url": "http://lt/"}
        ]}),
    );
    let mut h = Harness::progressing(s);
    h.run(ok());
    assert!(h.status.delay_until.is_some());
    h.run(ok().rollback("rb"));
    assert_eq!(h.phase(), Failed);
}

#[test]
fn s20_reset_annotation() {
    let mut h = Harness::progressing(s1_spec());
    h.run(ok());
    h.run(ok().metric("request-success-rate", 1.0));
    h.run(ok().metric("request-success-rate", 1.0));
    assert_eq!(h.phase(), Failed);
    let reset = |token| {
        let mut o = ok();
        o.reset = Some(token);
        o
    };
    h.row(
        "annotate",
        reset("true"),
        Progressing,
        (0, 0, 0),
        "100/0",
        &SCALE_UP,
    );
    assert_eq!(h.status.last_handled_reset.as_deref(), Some("true"));
    h.row(
        "same token",
        reset("true"),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[START, "routes 90/10", &adv(10)],
    );
    h.row(
        "new token mid-run",
        reset("2"),
        Progressing,
        (0, 0, 0),
        "100/0",
        &[
            "Normal: New revision detected! Restarting analysis for podinfo.test",
            "routes 100/0",
        ],
    );
    assert_eq!(h.status.last_handled_reset.as_deref(), Some("2"));
}

#[test]
fn s20_a_token_present_at_initialisation_is_history() {
    let mut h = Harness::new(s1_spec());
    let mut o = ok();
    o.reset = Some("old");
    h.run(o.clone());
    assert_eq!(h.phase(), Initialized);
    h.row("next tick", o, Initialized, (0, 0, 0), "100/0", &[]);
}

#[test]
fn s21_deletion_with_revert_on_deletion() {
    let s = spec_with(
        json!({"revertOnDeletion": true}),
        json!({"stepWeight": 10, "threshold": 2}),
        &Settings::default(),
    );
    let mut h = Harness::new(s);
    h.run(ok());
    assert_eq!(h.last[0], "add-finalizer");
    assert!(h.has_finalizer);
    h.row("steady", ok(), Initialized, (0, 0, 0), "100/0", &[]);
    let deleting = || {
        let mut o = ok();
        o.deleting = true;
        o
    };
    h.row(
        "delete",
        deleting(),
        Terminating,
        (0, 0, 0),
        "100/0",
        &[
            "Normal: Terminating canary podinfo.test",
            "resume-scaler",
            "restore-target",
        ],
    );
    h.row(
        "target not ready yet",
        deleting().canary(waiting("0 of 1 updated replicas are available")),
        Terminating,
        (0, 0, 0),
        "100/0",
        &["Warning: podinfo.test not ready: 0 of 1 updated replicas are available"],
    );
    h.row(
        "target ready",
        deleting(),
        Terminated,
        (0, 0, 0),
        "100/0",
        &[
            "revert-routing",
            "remove-finalizer",
            "Normal: Terminated canary podinfo.test",
        ],
    );
    assert!(!h.has_finalizer);
    // The finalizer removal did not reach the API server; the retry only removes it again.
    let mut retry = deleting();
    retry.finalizer = Some(true);
    h.row(
        "finalizer still there",
        retry,
        Terminated,
        (0, 0, 0),
        "100/0",
        &["remove-finalizer"],
    );
}

#[test]
fn s21_deletion_without_revert_does_nothing_and_drops_a_stale_finalizer() {
    let mut h = Harness::new(s1_spec());
    h.run(ok());
    let mut o = ok();
    o.deleting = true;
    h.row(
        "no finalizer",
        o.clone(),
        Initialized,
        (0, 0, 0),
        "100/0",
        &[],
    );
    o.finalizer = Some(true);
    h.row(
        "stale finalizer",
        o,
        Initialized,
        (0, 0, 0),
        "100/0",
        &["remove-finalizer"],
    );
}

#[test]
fn s22_suspend_during_a_run() {
    let mut h = Harness::progressing(s1_spec());
    for _ in 3..=5 {
        h.run(ok());
    }
    assert_eq!(h.status.weight(), 30);
    let before = h.status.clone();
    h.spec.suspend = true;
    for t in 6..=8 {
        h.row(
            &format!("t{t}"),
            ok().canary(Readiness::Failed {
                message: "ignored".into(),
            }),
            Progressing,
            (30, 0, 0),
            "70/30",
            &["Normal: skipping canary run as object is suspended"],
        );
    }
    assert_eq!(h.status, before);
    h.spec.suspend = false;
    h.row(
        "t9",
        ok(),
        Progressing,
        (40, 0, 0),
        "60/40",
        &[SR, RD, "routes 60/40", &adv(40)],
    );
}

#[test]
fn d28_last_transition_time_moves_only_on_transitions() {
    let mut h = Harness::progressing(spec(
        json!({"stepWeight": 10, "maxWeight": 20, "threshold": 3}),
    ));
    let t2 = h.status.last_transition_time;
    assert!(t2.is_some());
    // Weight change.
    let t3 = h.now;
    h.run(ok());
    assert_eq!(h.status.last_transition_time, Some(t3));
    // Failed-check change only.
    let t4 = h.now;
    h.run(ok().metric("request-success-rate", 1.0));
    assert_eq!(h.status.last_transition_time, Some(t4));
    // Nothing changes while waiting for the canary.
    h.run(ok().canary(waiting("rolling")));
    assert_eq!(h.status.last_transition_time, Some(t4));
    // Phase change only (weight kept at promotion).
    h.run(ok());
    let t7 = h.now;
    h.run(ok());
    assert_eq!(h.phase(), Promoting);
    assert_eq!(h.status.last_transition_time, Some(t7));
}

#[test]
fn d28_iteration_changes_move_the_transition_time() {
    let mut h = Harness::progressing(spec(json!({"iterations": 3, "threshold": 1})));
    let t3 = h.now;
    h.run(ok());
    assert_eq!(h.status.iter(), 1);
    assert_eq!(h.status.last_transition_time, Some(t3));
    let t4 = h.now;
    h.run(ok());
    assert_eq!(h.status.last_transition_time, Some(t4));
}

#[test]
fn dry_run_decides_as_usual_and_only_logs_effects() {
    let s = spec_with(
        json!({}),
        json!({"stepWeight": 25, "maxWeight": 50, "threshold": 2, "webhooks": [
            {"name": "gate", "type": "confirm-rollout", "url": "http://lt/"},
            {"name": "rb", "type": "rollback", "url": "http://lt/"},
            {"name": "notify", "type": "post-rollout", "url": "http://lt/"}
        ]}),
        &Settings {
            dry_run: true,
            ..Settings::default()
        },
    );
    let mut h = Harness::new(s);
    h.run(ok());
    assert_eq!(h.phase(), Initialized);
    h.revision = "r1.6.0.1".into();
    // Gates count as open without being called; the router is never written, so the harness's
    // router stays at 100/0 and the weights come from the status.
    h.row(
        "t2",
        ok().fail("gate"),
        Progressing,
        (0, 0, 0),
        "100/0",
        &[
            "dry-run call confirm-rollout (Initialized): gate",
            "Normal: Confirm-rollout check gate passed",
            "Normal: New revision detected! Scaling up podinfo.test",
            "dry-run alert info: New revision detected, progressing canary analysis.",
            "dry-run resume-scaler",
            "dry-run scale-up",
        ],
    );
    h.row(
        "t3",
        ok().rollback("rb"),
        Progressing,
        (25, 0, 0),
        "100/0",
        &[
            "dry-run call rollback (Progressing): rb",
            "Normal: Rollback hook rb not signaling a rollback",
            START,
            "dry-run routes 75/25",
            &adv(25),
        ],
    );
    h.row(
        "t4",
        ok(),
        Progressing,
        (50, 0, 0),
        "100/0",
        &[
            "dry-run call rollback (Progressing): rb",
            "Normal: Rollback hook rb not signaling a rollback",
            SR,
            RD,
            "dry-run routes 50/50",
            &adv(50),
        ],
    );
    h.row(
        "t5",
        ok(),
        Promoting,
        (50, 0, 0),
        "100/0",
        &[
            "dry-run call rollback (Progressing): rb",
            "Normal: Rollback hook rb not signaling a rollback",
            SR,
            RD,
            COPY,
            "dry-run promote",
        ],
    );
    h.row(
        "t6",
        ok(),
        Finalising,
        (0, 0, 0),
        "100/0",
        &["dry-run primary-scaler", TO_PRIMARY, "dry-run routes 100/0"],
    );
    h.row(
        "t7",
        ok(),
        Succeeded,
        (0, 0, 0),
        "100/0",
        &[
            "dry-run pause-scaler",
            "dry-run scale-to-zero",
            "report succeeded skipped=false",
            "dry-run call post-rollout (Succeeded): notify",
            "Normal: Promotion completed! Scaling down podinfo.test",
            "dry-run alert info: Canary analysis completed successfully, promotion finished.",
        ],
    );
}

#[test]
fn routes_that_cannot_be_read_end_the_tick() {
    let mut h = Harness::progressing(s1_spec());
    let before = h.status.clone();
    let mut o = ok();
    o.routes_error = Some("connection refused".into());
    h.row(
        "t3",
        o,
        Progressing,
        (0, 0, 0),
        "100/0",
        &["Warning: Error reading routes of podinfo.test: connection refused"],
    );
    assert_eq!(h.status, before);
}

#[test]
fn traffic_increase_gate_holds_and_alerts_once_per_episode() {
    let s = spec(json!({"stepWeight": 10, "threshold": 2, "webhooks": [
        {"name": "ti", "type": "confirm-traffic-increase", "url": "http://lt/"}
    ]}));
    let mut h = Harness::progressing(s);
    let ask = "ask confirm-traffic-increase ti (Progressing)";
    let halt = "Warning: Halt podinfo.test advancement waiting for traffic increase approval ti";
    let alert = "alert warn: Canary traffic increase is waiting for approval.";
    h.row(
        "t3 closed",
        ok().fail("ti"),
        Progressing,
        (0, 0, 0),
        "100/0",
        &[ask, START, halt, alert],
    );
    h.row(
        "t4 still closed",
        ok().fail("ti"),
        Progressing,
        (0, 0, 0),
        "100/0",
        &[ask, START, halt],
    );
    h.row(
        "t5 open",
        ok(),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[
            ask,
            START,
            "Normal: Confirm-traffic-increase check ti passed",
            "routes 90/10",
            &adv(10),
        ],
    );
    h.row(
        "t6 closed again",
        ok().fail("ti"),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[SR, RD, ask, halt, alert],
    );
    h.row(
        "t7",
        ok().fail("ti"),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[SR, RD, ask, halt],
    );
}

#[test]
fn the_threshold_lowered_mid_run_rolls_back_before_analysis() {
    let mut h = Harness::progressing(spec(json!({"stepWeight": 10, "threshold": 3})));
    h.run(ok());
    h.run(ok().metric("request-success-rate", 1.0));
    h.run(ok().metric("request-success-rate", 1.0));
    assert_eq!(h.status.failed(), 2);
    h.spec.threshold = 2;
    let mut expected = vec![
        "Warning: Rolling back podinfo.test failed checks threshold reached 2",
        "alert error: Failed checks threshold reached 2",
    ];
    expected.extend(rollback_tail("failed_checks"));
    h.row("t6", ok(), Failed, (0, 0, 0), "100/0", &expected);
}

#[test]
fn initializing_primary_failure_never_scales_the_target_down() {
    let mut h = Harness::new(s1_spec());
    h.row(
        "t0",
        ok().primary(Readiness::Failed {
            message: "crash".into(),
        }),
        Initializing,
        (0, 0, 0),
        "100/0",
        &[
            "ensure-primary",
            "Warning: podinfo-primary.test not ready: crash",
        ],
    );
    assert!(!h.last_actions.contains(&Action::ScaleTargetToZero));
}

#[test]
fn idle_canary_with_a_failing_primary_only_warns() {
    let mut h = Harness::initialized(s1_spec());
    h.row(
        "t2",
        ok().primary(Readiness::Failed {
            message: "crash".into(),
        }),
        Initialized,
        (0, 0, 0),
        "100/0",
        &["Warning: podinfo-primary.test not ready: crash"],
    );
}

#[test]
fn terminated_canaries_do_nothing_more() {
    for phase in [Terminating, Terminated] {
        let mut h = Harness::initialized(s1_spec());
        h.status.phase = Some(phase);
        h.row("tick", ok(), phase, (0, 0, 0), "100/0", &[]);
    }
}

#[test]
fn s19_the_hold_ends_exactly_at_delay_until() {
    let mut h = Harness::progressing(spec(
        json!({"delay": "60s", "stepWeight": 10, "threshold": 2}),
    ));
    h.row("t3 hold set", ok(), Progressing, (0, 0, 0), "100/0", &[]);
    h.row(
        "t4 = delayUntil",
        ok(),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[START, "routes 90/10", &adv(10)],
    );
}

#[test]
fn tracked_configs_absent_from_the_status_count_as_none() {
    let mut h = Harness::initialized(s1_spec());
    h.revision = "r1.6.0.0".into();
    h.status.tracked_configs = None;
    h.row(
        "no configs on either side",
        ok(),
        Initialized,
        (0, 0, 0),
        "100/0",
        &[],
    );
    h.configs.insert("secret/db".into(), "123".into());
    h.row(
        "a config appears",
        ok(),
        Progressing,
        (0, 0, 0),
        "100/0",
        &SCALE_UP,
    );
}

/// A threshold no run reaches (a canary meant to hold on failures rather than roll back): each
/// failing tick keeps its record for the alerts, but the status stays bounded however long it fails.
#[test]
fn failed_check_records_stay_bounded_when_the_threshold_is_out_of_reach() {
    let mut h = Harness::progressing(spec(
        json!({"stepWeight": 10, "maxWeight": 50, "threshold": 2_147_483_647}),
    ));
    for _ in 0..200 {
        h.run(ok().metric("request-success-rate", 90.0));
    }
    assert_eq!(h.status.phase, Some(Progressing));
    // Many more failures than are kept (the first tick of the harness run only detects).
    assert!(
        h.status.failed_checks.unwrap_or(0) >= 199,
        "{:?}",
        h.status.failed_checks
    );
    let records = h
        .status
        .canary_analysis
        .as_ref()
        .and_then(|a| a.iterations.as_ref())
        .expect("failed checks are recorded");
    let failed: Vec<i32> = records
        .iter()
        .filter(|r| r.failed)
        .map(|r| r.iteration)
        .collect();
    assert_eq!(failed.len(), 32, "{failed:?}");
    let last = *failed.last().expect("a failure");
    assert_eq!(
        failed.first(),
        Some(&(last - 31)),
        "the latest failures are the ones kept"
    );
}
