//! Issue 7: per-metric `dryRun` and the `noData: hold` policy, tick by tick.

mod common;

use common::{Harness, ok, spec, spec_with};
use flagger_api::status::CanaryPhase::*;
use flagger_api::status::{CanaryStatus, CheckRecord};
use flagger_core::status::StatusExt;
use flagger_core::{MetricOutcome, NoDataPolicy, Settings, normalize};
use serde_json::{Value, json};

const SR: &str = "query request-success-rate";
const RD: &str = "query request-duration";
const START: &str = "Normal: Starting canary analysis for podinfo.test";
const NO_DATA: &str = "no values found for istio metric request-success-rate probably podinfo.test is not receiving traffic: no data";
const REFUSED: &str = "Prometheus query failed: request failed: connection refused";
const PROGRESSING: &str = "New revision detected, progressing canary analysis.";

fn adv(w: u32) -> String {
    format!("Normal: Advance podinfo.test canary weight {w}")
}

fn leak(s: String) -> &'static str {
    String::leak(s)
}

fn no_data() -> MetricOutcome {
    MetricOutcome::NoData(NO_DATA.into())
}

fn refused() -> MetricOutcome {
    MetricOutcome::QueryFailed(REFUSED.into())
}

/// The builtin success rate (min 99) with `extra` fields, then the builtin duration (max 500).
fn metrics(extra: Value) -> Value {
    let mut sr =
        json!({"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"});
    if let (Some(sr), Value::Object(extra)) = (sr.as_object_mut(), extra) {
        sr.extend(extra);
    }
    json!([sr, {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "1m"}])
}

/// S1's canary (stepWeight 10, maxWeight 50, threshold 2) with the success rate's `extra` fields.
fn canary(extra: Value) -> flagger_core::RolloutSpec {
    spec(json!({"stepWeight": 10, "maxWeight": 50, "threshold": 2, "metrics": metrics(extra)}))
}

/// Progressing at 90/10, after the first analysis tick.
fn at_ten(s: flagger_core::RolloutSpec) -> Harness {
    let mut h = Harness::progressing(s);
    h.row(
        "first step",
        ok(),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[START, "routes 90/10", &adv(10)],
    );
    h
}

fn promoted_message(s: &CanaryStatus) -> String {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Promoted")
        .and_then(|c| c.message.clone())
        .unwrap_or_default()
}

fn record<'a>(h: &'a Harness, name: &str) -> &'a CheckRecord {
    let last = h.status.records().iter().map(|r| r.iteration).max();
    h.status
        .records()
        .iter()
        .find(|r| r.name == name && Some(r.iteration) == last)
        .unwrap_or_else(|| {
            panic!(
                "no record of {name} in the last tick: {:#?}",
                h.status.records()
            )
        })
}

fn hold_event(why: &str) -> &'static str {
    leak(format!(
        "Warning: Hold podinfo.test advancement: metric request-success-rate {why}"
    ))
}

#[test]
fn the_fields_normalise_with_flaggers_behaviour_when_absent() {
    let checks = |extra: Value| canary(extra).metrics;
    let sr = &checks(json!({}))[0];
    assert_eq!((sr.dry_run, sr.no_data), (false, NoDataPolicy::Fail));
    let sr = &checks(json!({"noData": "fail", "dryRun": false}))[0];
    assert_eq!((sr.dry_run, sr.no_data), (false, NoDataPolicy::Fail));
    let sr = &checks(json!({"noData": "hold", "dryRun": true}))[0];
    assert_eq!((sr.dry_run, sr.no_data), (true, NoDataPolicy::Hold));
    let rd = &checks(json!({"noData": "hold", "dryRun": true}))[1];
    assert_eq!((rd.dry_run, rd.no_data), (false, NoDataPolicy::Fail));

    let canary: flagger_api::Canary = serde_json::from_value(common::canary_json(
        json!({}),
        json!({"stepWeight": 10, "threshold": 2, "metrics": metrics(json!({"noData": "wait"}))}),
    ))
    .expect("parses");
    let err = normalize(&canary, &Settings::default()).expect_err("unknown policy");
    assert_eq!(
        err.field,
        "spec.analysis.metrics[request-success-rate].noData"
    );
    assert!(err.message.contains("\"wait\""), "{err}");
}

#[test]
fn a_failing_dry_run_metric_is_reported_and_never_counted() {
    let mut h = at_ten(canary(json!({"dryRun": true})));
    let reported = "Warning: Dry-run metric request-success-rate failed (not counted): Halt podinfo.test advancement success rate 50.00% < 99%";
    h.row(
        "failing value",
        ok().metric("request-success-rate", 50.0),
        Progressing,
        (20, 0, 0),
        "80/20",
        // Evaluation goes on past a dry-run failure: the duration is still checked.
        &[SR, RD, reported, "routes 80/20", &adv(20)],
    );
    let rec = record(&h, "request-success-rate");
    assert!(!rec.failed);
    assert_eq!(rec.value, Some(50.0));
    assert_eq!(rec.threshold.as_deref(), Some("min 99"));
    assert_eq!(
        rec.message.as_deref(),
        Some(&*format!("{} (query: q)", &reported["Warning: ".len()..]))
    );
    // No data, a failed query and a broken configuration are reported the same way: never a hold.
    for (label, outcome, w) in [
        ("no data", no_data(), 30),
        ("query failed", refused(), 40),
        (
            "error",
            MetricOutcome::Error("MetricTemplate x not found".into()),
            50,
        ),
    ] {
        let text = match &outcome {
            MetricOutcome::NoData(m) | MetricOutcome::QueryFailed(m) | MetricOutcome::Error(m) => {
                m.clone()
            }
            MetricOutcome::Value(_) => unreachable!(),
        };
        h.row(
            label,
            ok().metric_outcome("request-success-rate", outcome),
            Progressing,
            (w, 0, 0),
            leak(format!("{}/{w}", 100 - w)),
            &[
                SR,
                RD,
                leak(format!(
                    "Warning: Dry-run metric request-success-rate failed (not counted): {text}"
                )),
                leak(format!("routes {}/{w}", 100 - w)),
                &adv(w),
            ],
        );
        assert_eq!(h.status.held_since, None, "{label}");
    }
    h.run(ok().metric("request-success-rate", 1.0));
    assert_eq!(h.phase(), Promoting, "{:#?}", h.last);
}

#[test]
fn a_dry_run_metric_does_not_shield_the_others() {
    let mut h = at_ten(canary(json!({"dryRun": true})));
    h.row(
        "duration fails",
        ok()
            .metric("request-success-rate", 50.0)
            .metric("request-duration", 900.0),
        Progressing,
        (10, 1, 0),
        "90/10",
        &[
            SR,
            RD,
            "Warning: Dry-run metric request-success-rate failed (not counted): Halt podinfo.test advancement success rate 50.00% < 99%",
            "Warning: Halt podinfo.test advancement request duration 900ms > 500ms",
        ],
    );
    assert!(record(&h, "request-duration").failed);
}

#[test]
fn flaggers_default_counts_no_data_and_failed_queries() {
    for extra in [json!({}), json!({"noData": "fail"})] {
        let mut h = at_ten(canary(extra.clone()));
        h.row(
            "no data",
            ok().metric_outcome("request-success-rate", no_data()),
            Progressing,
            (10, 1, 0),
            "90/10",
            &[SR, leak(format!("Warning: {NO_DATA}"))],
        );
        h.run(ok().metric_outcome("request-success-rate", refused()));
        assert_eq!(h.phase(), Failed, "{extra}: {:#?}", h.last);
        assert!(
            h.last.iter().any(|e| e == &format!("Warning: {REFUSED}")),
            "{extra}: {:#?}",
            h.last
        );
        assert_eq!(h.status.held_since, None);
    }
}

#[test]
fn hold_neither_advances_nor_counts_and_says_why() {
    let mut h = at_ten(canary(json!({"noData": "hold"})));
    let first = h.now;
    h.row(
        "no data",
        ok().metric_outcome("request-success-rate", no_data()),
        Progressing,
        (10, 0, 0),
        "90/10",
        // The other metrics are still evaluated.
        &[SR, RD, hold_event(&format!("no data: {NO_DATA}"))],
    );
    assert_eq!(h.status.held_since, Some(first));
    let why = format!("metric request-success-rate no data: {NO_DATA}");
    assert_eq!(
        promoted_message(&h.status),
        format!("Canary analysis held (noData: hold): {why}")
    );
    let rec = record(&h, "request-success-rate");
    assert!(!rec.failed);
    assert_eq!(rec.value, None);
    assert_eq!(
        rec.message.as_deref(),
        Some(&*format!("hold: {why} (query: q)"))
    );
    assert!(!record(&h, "request-duration").failed);
    let updated = |h: &Harness| {
        h.status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Promoted")
            .and_then(|c| c.last_update_time)
    };
    let first_update = updated(&h);
    assert_eq!(first_update, Some(first));

    h.row(
        "same again",
        ok().metric_outcome("request-success-rate", no_data()),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[SR, RD, hold_event(&format!("no data: {NO_DATA}"))],
    );
    // The same reason is not a new update of the condition.
    assert_eq!(updated(&h), first_update);

    h.row(
        "query failed",
        ok().metric_outcome("request-success-rate", refused()),
        Progressing,
        (10, 0, 0),
        "90/10",
        &[SR, RD, hold_event(&format!("query failed: {REFUSED}"))],
    );
    assert_eq!(h.status.held_since, Some(first), "one hold episode");
    assert!(promoted_message(&h.status).contains("query failed"));
    assert_ne!(updated(&h), first_update);
    assert_eq!(
        h.status.last_transition_time,
        Some(first - jiff::SignedDuration::from_mins(1))
    );

    h.row(
        "data is back",
        ok(),
        Progressing,
        (20, 0, 0),
        "80/20",
        &[SR, RD, "routes 80/20", &adv(20)],
    );
    assert_eq!(h.status.held_since, None);
    assert_eq!(promoted_message(&h.status), PROGRESSING);
}

#[test]
fn hold_never_hides_a_real_failure_nor_a_broken_configuration() {
    let halt_sr = "Warning: Halt podinfo.test advancement success rate 50.00% < 99%";
    let rows: [(&str, common::Obs, &[&str]); 3] = [
        (
            "value out of range",
            ok().metric("request-success-rate", 50.0),
            &[SR, halt_sr],
        ),
        (
            "configuration error",
            ok().metric_outcome(
                "request-success-rate",
                MetricOutcome::Error("MetricTemplate x not found".into()),
            ),
            &[SR, "Warning: MetricTemplate x not found"],
        ),
        (
            "held, then a later metric fails",
            ok().metric_outcome("request-success-rate", no_data())
                .metric("request-duration", 900.0),
            &[
                SR,
                RD,
                "Warning: Halt podinfo.test advancement request duration 900ms > 500ms",
            ],
        ),
    ];
    for (label, obs, effects) in rows {
        let mut h = at_ten(canary(json!({"noData": "hold"})));
        h.row(label, obs, Progressing, (10, 1, 0), "90/10", effects);
        assert_eq!(promoted_message(&h.status), PROGRESSING, "{label}");
    }
}

#[test]
fn dry_run_wins_over_hold() {
    let mut h = at_ten(canary(json!({"noData": "hold", "dryRun": true})));
    h.run(ok().metric_outcome("request-success-rate", no_data()));
    assert_eq!((h.status.weight(), h.status.failed()), (20, 0));
    assert_eq!(h.status.held_since, None);
}

#[test]
fn a_hold_ends_on_the_progress_deadline() {
    let s = spec_with(
        json!({"progressDeadlineSeconds": 120}),
        json!({"stepWeight": 10, "maxWeight": 50, "threshold": 2, "metrics": metrics(json!({"noData": "hold"}))}),
        &Settings::default(),
    );
    let mut h = at_ten(s);
    let held = || ok().metric_outcome("request-success-rate", no_data());
    // Interval 1m: held at 0s, 60s and 120s (not longer than the deadline yet).
    for label in ["0s", "60s", "120s"] {
        h.row(
            label,
            held(),
            Progressing,
            (10, 0, 0),
            "90/10",
            &[SR, RD, hold_event(&format!("no data: {NO_DATA}"))],
        );
    }
    let expired = leak(format!(
        "Warning: {NO_DATA} (noData: hold for longer than the progress deadline of 120s)"
    ));
    h.row(
        "180s",
        held(),
        Progressing,
        (10, 1, 0),
        "90/10",
        &[SR, expired],
    );
    h.run(held());
    assert_eq!(h.phase(), Failed, "{:#?}", h.last);

    // A new run starts without the old episode.
    h.revision = "r1.6.0.2".into();
    h.run(ok());
    assert_eq!(h.phase(), Progressing);
    assert_eq!(h.status.held_since, None);
}

#[test]
fn data_in_between_starts_a_new_hold_episode() {
    let s = spec_with(
        json!({"progressDeadlineSeconds": 90}),
        json!({"stepWeight": 10, "maxWeight": 50, "threshold": 2, "metrics": metrics(json!({"noData": "hold"}))}),
        &Settings::default(),
    );
    let mut h = at_ten(s);
    let held = || ok().metric_outcome("request-success-rate", refused());
    h.run(held());
    h.run(held());
    assert_eq!((h.status.weight(), h.status.failed()), (10, 0));
    h.run(ok());
    assert_eq!(h.status.weight(), 20);
    let second = h.now;
    h.run(held());
    h.run(held());
    // 60s into the second episode: within the 90s deadline although 120s after the first began.
    assert_eq!(
        (h.status.weight(), h.status.failed()),
        (20, 0),
        "{:#?}",
        h.last
    );
    assert_eq!(h.status.held_since, Some(second));
}

#[test]
fn hold_on_blue_green_keeps_the_iteration() {
    let s = spec(
        json!({"iterations": 3, "threshold": 2, "metrics": metrics(json!({"noData": "hold"}))}),
    );
    let mut h = Harness::progressing(s);
    h.run(ok());
    assert_eq!(h.status.iter(), 1);
    h.row(
        "held",
        ok().metric_outcome("request-success-rate", refused()),
        Progressing,
        (0, 0, 1),
        "100/0",
        &[SR, RD, hold_event(&format!("query failed: {REFUSED}"))],
    );
}

#[test]
fn hold_at_the_maximum_weight_does_not_promote() {
    let mut h = at_ten(canary(json!({"noData": "hold"})));
    for w in [20, 30, 40, 50] {
        h.run(ok());
        assert_eq!(h.status.weight(), w);
    }
    h.row(
        "held at max",
        ok().metric_outcome("request-success-rate", no_data()),
        Progressing,
        (50, 0, 0),
        "50/50",
        &[SR, RD, hold_event(&format!("no data: {NO_DATA}"))],
    );
    h.run(ok());
    assert_eq!(h.phase(), Promoting);
}
