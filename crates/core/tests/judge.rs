//! The statistical judge inside a run (`analysis.judge`), tick by tick: what each decision of a
//! look does to the canary. The looks are the judge's own, over samples given here.

mod common;

use common::{Harness, Obs, ok, spec};
use flagger_api::status::CanaryPhase::*;
use flagger_core::MetricOutcome;
use flagger_core::judging::{JudgeReport, Samples, look};
use serde_json::json;

/// stepWeight 10, maxWeight 30, threshold 2; the judged latency metric has no fixed threshold.
fn canary() -> flagger_core::RolloutSpec {
    spec(json!({
        "stepWeight": 10, "maxWeight": 30, "threshold": 2,
        "judge": {"minSamples": 5},
        "metrics": [{"name": "latency", "templateRef": {"name": "latency"}, "interval": "1m",
                     "judge": {"criticality": "critical"}}],
    }))
}

fn report(h: &Harness, canary: &[f64], primary: &[f64]) -> JudgeReport {
    let samples = [Samples {
        name: "latency",
        canary,
        primary,
        ..Samples::default()
    }];
    look(&h.spec, &samples, 3).expect("the canary has a judge")
}

fn with(report: JudgeReport) -> Obs {
    Obs {
        judge: Some(report),
        ..ok()
    }
}

fn promoted_message(h: &Harness) -> String {
    h.status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Promoted")
        .and_then(|c| c.message.clone())
        .unwrap_or_default()
}

const PRIMARY: [f64; 6] = [100.0, 101.0, 102.0, 100.0, 101.0, 102.0];
const SLOWER: [f64; 6] = [120.0, 121.0, 122.0, 120.0, 121.0, 122.0];

fn at_ten() -> Harness {
    let mut h = Harness::progressing(canary());
    h.run(ok());
    assert_eq!((h.phase(), h.status.canary_weight), (Progressing, Some(10)));
    h
}

#[test]
fn the_default_baseline_is_the_primary_and_the_looks_are_planned() {
    let s = canary();
    let judge = s.judge.as_ref().expect("judge on");
    assert_eq!(judge.baseline, "podinfo-primary");
    assert_eq!(s.metrics[0].max, None, "judged without a fixed threshold");
    assert!(flagger_core::plan::checks_to_promote(&s) >= 3);
}

#[test]
fn too_little_data_holds_without_a_step_or_a_failure_and_says_so() {
    let mut h = at_ten();
    let events = h
        .run(with(report(&h, &PRIMARY[..2], &PRIMARY[..2])))
        .to_vec();
    assert_eq!(h.phase(), Progressing);
    assert_eq!(h.status.canary_weight, Some(10), "no step");
    assert_eq!(h.status.failed_checks, Some(0));
    let message = promoted_message(&h);
    assert!(
        message.starts_with(
            "Canary analysis held (judge): judge inconclusive: too little data for latency"
        ),
        "{message}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("Hold podinfo.test advancement: judge inconclusive")),
        "{events:?}"
    );
    let judge = h.status.judge.as_ref().expect("status.judge");
    assert_eq!(judge.decision, "Inconclusive");
    let metric = &judge.metrics.as_ref().expect("metrics")[0];
    assert_eq!((metric.canary_samples, metric.primary_samples), (2, 2));
}

#[test]
fn a_passing_look_steps_and_a_failing_one_counts_towards_the_threshold() {
    let mut h = at_ten();
    h.run(with(report(&h, &PRIMARY, &PRIMARY)));
    assert_eq!((h.phase(), h.status.canary_weight), (Progressing, Some(20)));
    assert!(promoted_message(&h).is_empty() || !promoted_message(&h).contains("held"));

    let events = h.run(with(report(&h, &SLOWER, &PRIMARY))).to_vec();
    assert_eq!(h.status.failed_checks, Some(1));
    assert_eq!(h.status.canary_weight, Some(20));
    let halt = events
        .iter()
        .find(|e| e.contains("the judge failed the canary against podinfo-primary"))
        .unwrap_or_else(|| panic!("no halt event: {events:?}"));
    assert!(halt.contains("critical metric latency is High"), "{halt}");
    let judge = h.status.judge.as_ref().expect("status.judge");
    let metric = &judge.metrics.as_ref().expect("metrics")[0];
    assert_eq!(
        (judge.decision.as_str(), metric.verdict.as_str()),
        ("Fail", "High")
    );
    assert!(metric.effect.is_some_and(|e| e > 0.15), "{metric:?}");
    assert!(metric.p_value.is_some_and(|p| p < 0.05), "{metric:?}");

    h.run(with(report(&h, &SLOWER, &PRIMARY)));
    assert_eq!(h.phase(), Failed, "threshold 2 reached");
}

#[test]
fn a_judged_metric_without_data_is_no_failed_check_but_no_sample() {
    let mut h = at_ten();
    let o = Obs {
        metrics: vec![(
            "latency",
            MetricOutcome::NoData("no values found for custom metric: latency".into()),
        )],
        ..with(report(&h, &[], &PRIMARY))
    };
    h.run(o);
    assert_eq!(h.status.failed_checks, Some(0));
    assert_eq!(h.phase(), Progressing);
    assert!(
        promoted_message(&h).contains("judge inconclusive"),
        "{}",
        promoted_message(&h)
    );
}

/// A critical error metric judged on counts: its query returns the errors of an interval, the
/// `requests` template the requests.
fn counted() -> flagger_core::RolloutSpec {
    spec(json!({
        "stepWeight": 10, "maxWeight": 30, "threshold": 2,
        "judge": {},
        "metrics": [{"name": "errors", "templateRef": {"name": "errors"}, "interval": "1m",
                     "judge": {"criticality": "critical", "totalTemplateRef": {"name": "requests"}}}],
    }))
}

/// Canary errors per tick, primary errors per tick, requests per tick and side; the decision and
/// the verdict expected.
type CountsCase = (
    &'static [f64],
    &'static [f64],
    f64,
    &'static str,
    &'static str,
);

#[test]
fn a_counts_metric_is_judged_on_the_summed_errors_out_of_the_summed_requests() {
    let s = counted();
    let total = s.metrics[0].judge.as_ref().and_then(|j| j.total.as_ref());
    assert_eq!(total.map(|t| t.name.as_str()), Some("requests"));
    // Five ticks a side.
    let cases: &[CountsCase] = &[
        (&[20.0; 5], &[10.0; 5], 300.0, "Fail", "High"),
        (&[10.0; 5], &[10.0; 5], 300.0, "Pass", "Pass"),
        (&[0.0; 5], &[0.0; 5], 300.0, "Pass", "Pass"),
        (&[5.0; 5], &[10.0; 5], 300.0, "Pass", "Pass"),
        // Twice the rate but too few errors to tell: held, never passed.
        (&[0.4; 5], &[0.2; 5], 300.0, "Inconclusive", "Inconclusive"),
        // Under minRequests (100) a side.
        (&[2.0; 5], &[1.0; 5], 10.0, "Inconclusive", "Inconclusive"),
    ];
    for (canary, primary, requests, decision, verdict) in cases {
        let totals = [*requests; 5];
        let samples = [Samples {
            name: "errors",
            canary,
            primary,
            canary_totals: &totals,
            primary_totals: &totals,
        }];
        let report = look(&s, &samples, 3).expect("the canary has a judge");
        let metric = &report.status.metrics.as_ref().expect("metrics")[0];
        let case = format!("{canary:?} vs {primary:?} of {requests}: {report:?}");
        assert_eq!(report.status.decision, *decision, "{case}");
        assert_eq!(metric.verdict, *verdict, "{case}");
        assert_eq!((metric.canary_samples, metric.primary_samples), (5, 5));
        let rate = canary.iter().sum::<f64>() / (requests * 5.0);
        assert!(
            metric.canary.is_some_and(|r| (r - rate).abs() < 1e-3),
            "the canary's figure is its error rate: {case}"
        );
    }
}

#[test]
fn a_counts_metric_without_totals_holds_instead_of_passing() {
    let s = counted();
    let samples = [Samples {
        name: "errors",
        canary: &[50.0; 5],
        primary: &[1.0; 5],
        ..Samples::default()
    }];
    let report = look(&s, &samples, 3).expect("the canary has a judge");
    assert_eq!(report.status.decision, "Inconclusive");
    let message = report.status.message.unwrap_or_default();
    assert!(
        message.contains("0 canary and 0 primary requests"),
        "{message}"
    );
}
