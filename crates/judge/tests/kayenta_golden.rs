//! The judge against the expectations of Kayenta's own test suites (data and expected values in
//! fixtures/kayenta.json, which names its source).

use std::collections::BTreeMap;

use flagger_judge::{
    Classification, Criticality, Direction, MetricVerdict, Scoring, Settings, judge_series, score,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    classifier: Vec<ClassifierCase>,
    mann_whitney: Vec<ShiftCase>,
    scorer: Vec<ScorerCase>,
}

#[derive(Deserialize)]
struct ClassifierCase {
    name: String,
    canary: Vec<f64>,
    primary: Vec<f64>,
    direction: Direction,
    expected: Classification,
}

#[derive(Deserialize)]
struct ShiftCase {
    name: String,
    canary: Vec<f64>,
    primary: Vec<f64>,
    confidence: f64,
    lower: f64,
    upper: f64,
    estimate: f64,
    tolerance: f64,
}

#[derive(Deserialize)]
struct ScorerCase {
    name: String,
    weights: BTreeMap<String, f64>,
    metrics: Vec<(String, String, Criticality, Classification)>,
    summary: f64,
    #[serde(default)]
    tolerance: f64,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("fixtures/kayenta.json")).unwrap()
}

/// Kayenta's classifier suites run on as few as two samples a side; the counts gate is not what
/// they test.
fn settings() -> Settings {
    Settings::new(0.95, 0.1, 1.5, 1, 1).unwrap()
}

#[test]
fn classifier_suite() {
    for case in fixture().classifier {
        let judgement = judge_series(&case.canary, &case.primary, case.direction, &settings());
        assert_eq!(
            judgement.classification, case.expected,
            "{}: {}",
            case.name, judgement.reason
        );
    }
}

#[test]
fn mann_whitney_suite() {
    for case in fixture().mann_whitney {
        let settings = Settings::new(case.confidence, 0.1, 1.5, 1, 1).unwrap();
        let judgement = judge_series(&case.canary, &case.primary, Direction::Either, &settings);
        assert!(
            (judgement.lower - case.lower).abs() < case.tolerance,
            "{}: {}",
            case.name,
            judgement.reason
        );
        assert!(
            (judgement.upper - case.upper).abs() < case.tolerance,
            "{}: {}",
            case.name,
            judgement.reason
        );
        // The shift is reported relative to the typical value; the estimate itself is its numerator.
        let scale = (judgement.canary.abs() + judgement.primary.abs()) / 2.0;
        assert!(
            (judgement.effect * scale - case.estimate).abs() < case.tolerance,
            "{}: {}",
            case.name,
            judgement.reason
        );
    }
}

#[test]
fn scorer_suite() {
    for case in fixture().scorer {
        let verdicts: Vec<MetricVerdict> = case
            .metrics
            .into_iter()
            .map(|(name, group, criticality, classification)| MetricVerdict {
                name,
                group,
                criticality,
                classification,
            })
            .collect();
        let scoring = Scoring::new(95.0, 75.0, case.weights).unwrap();
        let result = score(&verdicts, &scoring);
        let tolerance = case.tolerance.max(1e-9);
        assert!(
            (result.summary - case.summary).abs() < tolerance,
            "{}: {} ({})",
            case.name,
            result.summary,
            result.reason
        );
    }
}
