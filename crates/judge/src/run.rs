//! The judge as a running canary consults it: every tick, over every sample gathered so far in the
//! run, with the confidence corrected for looking again and again.
//!
//! A test at 95 % confidence, repeated at each of a run's K ticks over growing data, raises a false
//! alarm far more often than 5 % of the time: each look is another chance for noise to cross the
//! line. The run is therefore judged at a per-look confidence of `1 - (1 - confidence) / K`
//! (Bonferroni over the planned looks), which keeps the chance of any false alarm in the whole run
//! at most `1 - confidence` whatever the dependence between looks — and looks over accumulating
//! samples are strongly dependent, which is exactly what the exact group-sequential boundaries
//! (Pocock, O'Brien–Fleming) need tables or numerical integration for. Bonferroni costs some power
//! at the first looks; the effect-size gate, not the p-value, is what usually decides a real
//! regression, so the price is small.

use serde::{Deserialize, Serialize};

use crate::classify::{Direction, Judgement, judge_counts, judge_series};
use crate::counts::Counts;
use crate::score::{Criticality, MetricVerdict, Score, Scoring, score};
use crate::settings::Settings;

/// How the confidence is corrected for the repeated looks of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Correction {
    /// Each of the planned looks is tested at `1 - (1 - confidence) / looks`.
    #[default]
    Bonferroni,
    /// Every look at the configured confidence (more false alarms over a run).
    None,
}

impl Correction {
    /// The confidence each look is tested at, for `looks` planned looks (at least 1).
    pub fn per_look(self, confidence: f64, looks: u32) -> f64 {
        match self {
            Correction::Bonferroni => 1.0 - (1.0 - confidence) / f64::from(looks.max(1)),
            Correction::None => confidence,
        }
    }
}

/// One metric's evidence over the run so far, and how it counts.
#[derive(Debug, Clone, Copy)]
pub struct MetricSeries<'a> {
    pub name: &'a str,
    pub direction: Direction,
    pub criticality: Criticality,
    pub evidence: Evidence<'a>,
}

/// What a metric is judged from: samples of a continuous metric, or error and request counts
/// (sparse error metrics, where a rank test sees mostly tied zeros).
#[derive(Debug, Clone, Copy)]
pub enum Evidence<'a> {
    Samples {
        canary: &'a [f64],
        primary: &'a [f64],
    },
    Counts {
        canary: Counts,
        primary: Counts,
    },
}

/// The verdict of one look.
#[derive(Debug, Clone)]
pub struct Look {
    pub metrics: Vec<(String, Judgement)>,
    pub score: Score,
    /// The confidence this look was tested at, after the correction.
    pub confidence: f64,
}

/// Judges each metric at the corrected confidence and scores them, each metric a group of its own
/// (weighted by `scoring`).
pub fn look(
    series: &[MetricSeries<'_>],
    settings: &Settings,
    scoring: &Scoring,
    correction: Correction,
    looks: u32,
) -> Look {
    let confidence = correction.per_look(settings.confidence(), looks);
    let settings = settings.with_confidence(confidence);
    let metrics: Vec<(String, Judgement)> = series
        .iter()
        .map(|m| {
            let judgement = match m.evidence {
                Evidence::Samples { canary, primary } => {
                    judge_series(canary, primary, m.direction, &settings)
                }
                Evidence::Counts { canary, primary } => {
                    judge_counts(canary, primary, m.direction, &settings)
                }
            };
            (m.name.to_string(), judgement)
        })
        .collect();
    let verdicts: Vec<MetricVerdict> = series
        .iter()
        .zip(&metrics)
        .map(|(m, (_, judgement))| MetricVerdict {
            name: m.name.to_string(),
            group: m.name.to_string(),
            criticality: m.criticality,
            classification: judgement.classification,
        })
        .collect();
    Look {
        score: score(&verdicts, scoring),
        metrics,
        confidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::Decision;

    fn series<'a>(canary: &'a [f64], primary: &'a [f64]) -> MetricSeries<'a> {
        MetricSeries {
            name: "latency",
            direction: Direction::Increase,
            criticality: Criticality::Normal,
            evidence: Evidence::Samples { canary, primary },
        }
    }

    fn counts(canary_errors: u64, primary_errors: u64, total: u64) -> Decision {
        let series = MetricSeries {
            name: "errors",
            direction: Direction::Increase,
            criticality: Criticality::Critical,
            evidence: Evidence::Counts {
                canary: Counts {
                    errors: canary_errors,
                    total,
                },
                primary: Counts {
                    errors: primary_errors,
                    total,
                },
            },
        };
        look(
            &[series],
            &Settings::default(),
            &Scoring::default(),
            Correction::Bonferroni,
            5,
        )
        .score
        .decision
    }

    #[test]
    fn twice_the_error_rate_fails_and_an_equal_rate_passes_on_counts() {
        // 1 000 requests a side at the corrected confidence of five looks.
        assert_eq!(counts(100, 50, 1000), Decision::Fail);
        assert_eq!(counts(50, 50, 1000), Decision::Pass);
        assert_eq!(counts(0, 0, 1000), Decision::Pass);
        // Twice the errors but too few of them to tell yet: held, never passed.
        assert_eq!(counts(2, 1, 1000), Decision::Inconclusive);
        assert_eq!(
            counts(10, 5, 50),
            Decision::Inconclusive,
            "under minRequests"
        );
    }

    #[test]
    fn bonferroni_divides_the_error_rate_by_the_looks() {
        let c = Correction::Bonferroni.per_look(0.95, 5);
        assert!((c - 0.99).abs() < 1e-12, "{c}");
        assert_eq!(Correction::Bonferroni.per_look(0.95, 0), 0.95);
        assert_eq!(Correction::None.per_look(0.95, 5), 0.95);
    }

    #[test]
    fn a_twenty_percent_slower_canary_fails_and_an_equal_one_passes() {
        let primary: Vec<f64> = (0..10).map(|i| 100.0 + f64::from(i % 3)).collect();
        let slower: Vec<f64> = primary.iter().map(|v| v * 1.2).collect();
        let run = |canary: &[f64]| {
            look(
                &[series(canary, &primary)],
                &Settings::default(),
                &Scoring::default(),
                Correction::Bonferroni,
                5,
            )
        };
        let slow = run(&slower);
        assert_eq!(slow.score.decision, Decision::Fail, "{:?}", slow);
        assert!((slow.confidence - 0.99).abs() < 1e-12);
        assert_eq!(run(&primary).score.decision, Decision::Pass);
        assert_eq!(run(&slower[..3]).score.decision, Decision::Inconclusive);
    }

    #[test]
    fn more_looks_need_more_evidence() {
        // Five samples a side, fully separated: significant at 95 % once, not at 99.9 %.
        let primary = [100.0, 101.0, 102.0, 103.0, 104.0];
        let canary = [130.0, 131.0, 132.0, 133.0, 134.0];
        let settings = Settings::new(0.95, 0.1, 1.5, 5, 100).unwrap();
        let decide = |looks| {
            look(
                &[series(&canary, &primary)],
                &settings,
                &Scoring::default(),
                Correction::Bonferroni,
                looks,
            )
            .score
            .decision
        };
        assert_eq!(decide(1), Decision::Fail);
        assert_eq!(decide(50), Decision::Pass);
    }
}
