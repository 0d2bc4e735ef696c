//! `flagger-rs plan` simulation.

mod common;

use common::{spec, spec_with};
use flagger_api::status::CanaryPhase;
use flagger_core::Settings;
use flagger_core::plan::plan;
use serde_json::json;

#[test]
fn s1_schedule_and_times() {
    let s = spec(json!({"stepWeight": 10, "maxWeight": 50, "threshold": 2}));
    let p = plan(&s, None);
    let rows: Vec<_> = p
        .steps
        .iter()
        .map(|s| {
            (
                s.tick,
                s.elapsed_seconds,
                s.phase,
                s.primary_weight,
                s.canary_weight,
            )
        })
        .collect();
    use CanaryPhase::*;
    assert_eq!(
        rows,
        [
            (0, 0, Progressing, 100, 0),
            (1, 60, Progressing, 90, 10),
            (2, 120, Progressing, 80, 20),
            (3, 180, Progressing, 70, 30),
            (4, 240, Progressing, 60, 40),
            (5, 300, Progressing, 50, 50),
            (6, 360, Promoting, 50, 50),
            (7, 420, Finalising, 100, 0),
            (8, 480, Succeeded, 100, 0),
        ]
    );
    assert_eq!(
        p.steps[2].checks,
        ["request-success-rate", "request-duration"]
    );
    assert!(p.steps[1].checks.is_empty());
    assert_eq!(p.promote_after_seconds, Some(480));
    // Tick 1 runs no checks (no pre-rollout hooks); ticks 2 and 3 fail.
    assert_eq!(p.rollback_after_seconds, Some(180));
    assert_eq!(
        (
            p.name.as_str(),
            p.namespace.as_str(),
            p.strategy.as_str(),
            p.interval_seconds
        ),
        ("podinfo", "test", "canary", 60)
    );

    let failing = plan(&s, Some(4));
    assert_eq!(failing.fail_at, Some(4));
    let last = failing.steps.last().unwrap();
    assert_eq!(
        (
            last.tick,
            last.phase,
            last.primary_weight,
            last.canary_weight
        ),
        (5, Failed, 100, 0)
    );
    assert_eq!(failing.rollback_after_seconds, Some(300));
    assert_eq!(failing.promote_after_seconds, Some(480));
}

#[test]
fn json_interface_is_stable() {
    let s = spec(
        json!({"iterations": 2, "threshold": 1, "mirror": true, "mirrorWeight": 50,
        "webhooks": [{"name": "smoke", "type": "pre-rollout", "url": "http://lt/"},
                     {"name": "notify", "type": "post-rollout", "url": "http://lt/"}]}),
    );
    let v = serde_json::to_value(plan(&s, None)).unwrap();
    for key in ["steps", "promoteAfterSeconds", "rollbackAfterSeconds"] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
    assert!(v.get("failAt").is_none());
    let step = &v["steps"][1];
    for key in [
        "tick",
        "elapsedSeconds",
        "phase",
        "canaryWeight",
        "primaryWeight",
        "mirrorWeight",
        "webhooks",
    ] {
        assert!(step.get(key).is_some(), "steps[].{key} missing");
    }
    assert_eq!(step["phase"], "Progressing");
    assert_eq!(step["mirrorWeight"], 50);
    assert_eq!(step["webhooks"], json!(["smoke"]));
    let steps = v["steps"].as_array().unwrap();
    let switch = &steps[3];
    assert_eq!(
        (
            switch["primaryWeight"].as_u64(),
            switch["canaryWeight"].as_u64(),
            switch["mirrorWeight"].as_u64()
        ),
        (Some(0), Some(100), Some(0))
    );
    assert_eq!(steps.last().unwrap()["webhooks"], json!(["notify"]));
    assert_eq!(steps.last().unwrap()["phase"], "Succeeded");
}

#[test]
fn nothing_can_fail_without_checks() {
    let s = spec(json!({"stepWeight": 50, "threshold": 1, "metrics": null}));
    let p = plan(&s, None);
    assert_eq!(p.rollback_after_seconds, None);
    assert_eq!(p.promote_after_seconds, Some(5 * 60));
}

#[test]
fn delay_and_dry_run_settings() {
    let s = spec_with(
        json!({}),
        json!({"stepWeight": 50, "threshold": 1, "delay": "90s"}),
        &Settings {
            dry_run: true,
            ..Settings::default()
        },
    );
    let p = plan(&s, None);
    // Hold set at tick 1, still held at tick 2 (120s < 150s), released at tick 3.
    assert_eq!(p.steps[3].canary_weight, 50);
    assert_eq!(p.steps[2].canary_weight, 0);
    assert_eq!(p.promote_after_seconds, Some(7 * 60));
}

/// A simulated failure must really break each kind of bound: a minimum-only and a maximum-only
/// metric both roll the canary back once checks fail.
#[test]
fn failing_values_break_minimum_and_maximum_bounds() {
    for metric in [
        json!({"name": "request-success-rate", "thresholdRange": {"min": 99}}),
        json!({"name": "request-duration", "thresholdRange": {"max": 500}}),
    ] {
        let s =
            spec(json!({"stepWeight": 50, "threshold": 1, "interval": "1m", "metrics": [metric]}));
        let p = plan(&s, Some(2));
        assert!(p.rollback_after_seconds.is_some(), "{metric}: no rollback");
        assert_eq!(
            p.steps.last().map(|s| s.phase),
            Some(CanaryPhase::Failed),
            "{metric}"
        );
        let healthy = plan(&s, None);
        assert_eq!(
            healthy.steps.last().map(|s| s.phase),
            Some(CanaryPhase::Succeeded),
            "{metric}"
        );
    }
}

/// Without metrics, the simulated failure comes from the pre-rollout and rollout hooks.
#[test]
fn failing_hooks_roll_back_a_canary_without_metrics() {
    for kind in ["pre-rollout", "rollout"] {
        let s = spec(json!({"stepWeight": 50, "threshold": 2, "metrics": null,
            "webhooks": [{"name": "check", "type": kind, "url": "http://lt/"}]}));
        let p = plan(&s, Some(1));
        assert_eq!(
            p.steps.last().map(|s| s.phase),
            Some(CanaryPhase::Failed),
            "{kind}"
        );
        assert!(p.rollback_after_seconds.is_some(), "{kind}");
    }
}

#[test]
fn steps_carry_their_events() {
    let p = plan(
        &spec(json!({"stepWeight": 10, "maxWeight": 50, "threshold": 2})),
        None,
    );
    assert_eq!(
        p.steps[1].events,
        [
            "Starting canary analysis for podinfo.test",
            "Advance podinfo.test canary weight 10"
        ]
    );
}

#[test]
fn a_mirrored_canary_shadows_once_then_steps() {
    let p = plan(
        &spec(json!({"stepWeight": 20, "maxWeight": 40, "threshold": 1,
            "mirror": true, "mirrorWeight": 50})),
        None,
    );
    let rows: Vec<_> = p
        .steps
        .iter()
        .map(|s| (s.phase, s.canary_weight, s.mirror_weight))
        .collect();
    use CanaryPhase::*;
    assert_eq!(
        rows,
        [
            (Progressing, 0, 0),
            (Progressing, 0, 50),
            (Progressing, 20, 0),
            (Progressing, 40, 0),
            (Promoting, 40, 0),
            (Finalising, 0, 0),
            (Succeeded, 0, 0),
        ]
    );
}

#[test]
fn a_threshold_beyond_the_horizon_never_rolls_back_and_still_plans_the_promotion() {
    // Found by the fuzzer: with a threshold in the quintillions the failing run used to be simulated
    // to the horizon on every plan; it cannot end by checks, and the healthy schedule is unchanged.
    let huge =
        spec(json!({"stepWeight": 10, "maxWeight": 50, "threshold": 9223372036854775807u64}));
    let p = plan(&huge, None);
    assert_eq!(p.rollback_after_seconds, None);
    assert_eq!(p.promote_after_seconds, Some(480));
    // Asked for explicitly, the failing schedule is still simulated (and never ends).
    let failing = plan(&huge, Some(3));
    assert_eq!(failing.rollback_after_seconds, None);
    assert!(failing.steps.len() > 100);
}

/// A run under way continues from its status: the ticks left to promotion, counted from the next
/// tick one interval away.
#[test]
fn time_to_promotion_starts_from_the_status() {
    use flagger_api::status::CanaryStatus;
    use flagger_core::plan::time_to_promotion;
    use jiff::Timestamp;
    let progressive = spec(json!({"stepWeight": 10, "maxWeight": 50, "threshold": 2}));
    let blue_green = spec(json!({"iterations": 5, "threshold": 2}));
    let status = |phase: CanaryPhase, weight: i32, iterations: i32| CanaryStatus {
        phase: Some(phase),
        canary_weight: Some(weight),
        iterations: Some(iterations),
        failed_checks: Some(1),
        last_applied_spec: Some("abc".into()),
        last_promoted_spec: Some("old".into()),
        ..CanaryStatus::default()
    };
    use CanaryPhase::*;
    let now = Timestamp::UNIX_EPOCH;
    for (spec, status, eta) in [
        // Weight 10 → 20, 30, 40, 50, promote, finalise, succeed.
        (&progressive, status(Progressing, 10, 0), Some(420)),
        (&progressive, status(Progressing, 30, 0), Some(300)),
        (&progressive, status(Progressing, 50, 0), Some(180)),
        (&progressive, status(Promoting, 50, 0), Some(120)),
        (&progressive, status(Finalising, 0, 0), Some(60)),
        (&progressive, status(Succeeded, 0, 0), None),
        (&progressive, status(Failed, 0, 0), None),
        (&progressive, status(Initialized, 0, 0), None),
        // Iterations 3, 4, 5, then the traffic switch, promote, finalise, succeed.
        (&blue_green, status(Progressing, 0, 2), Some(420)),
        (&blue_green, status(Progressing, 0, 4), Some(300)),
    ] {
        assert_eq!(
            time_to_promotion(spec, &status, now),
            eta,
            "{:?} at weight {:?}, iteration {:?}",
            status.phase,
            status.canary_weight,
            status.iterations
        );
    }
}
