//! The statistical judge inside a run (`analysis.judge`): its settings as the machine runs them,
//! the pure look the shell asks for once it has gathered both sides' samples, and what a look
//! means for the tick — Pass goes on, Fail is a failed check, Marginal and Inconclusive hold.

use std::collections::BTreeMap;

use flagger_api::analysis::{CanaryAnalysis, CanaryMetric, CrossNamespaceRef};
use flagger_api::judge::{JudgeMetricStatus, JudgeStatus};
use flagger_api::status::CheckKind;
use flagger_judge::{
    Classification, Correction, Counts, Criticality, Decision, Direction, Evidence, Judgement,
    MetricSeries, Scoring, Settings,
};

use crate::action::FailedCheck;
use crate::normalize::{RolloutSpec, SpecError, invalid};

/// `analysis.judge`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeSpec {
    /// What `{{ target }}` names when a metric is queried for the baseline.
    pub baseline: String,
    pub settings: Settings,
    pub scoring: Scoring,
    pub correction: Correction,
}

/// `analysis.metrics[].judge`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricJudging {
    pub direction: Direction,
    pub criticality: Criticality,
    pub weight: f64,
    /// `totalTemplateRef`: the metric's values are errors, judged on counts out of the requests
    /// this template returns.
    pub total: Option<CrossNamespaceRef>,
}

/// The outcome of one look, as the shell hands it to the machine.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeReport {
    pub decision: Decision,
    /// What `status.judge` shows.
    pub status: JudgeStatus,
}

const BASE: &str = "spec.analysis.judge";

pub(crate) fn judge_spec(a: &CanaryAnalysis, target: &str) -> Result<Option<JudgeSpec>, SpecError> {
    let Some(j) = a.judge.as_ref() else {
        return Ok(None);
    };
    let defaults = Settings::default();
    let settings = Settings::new(
        j.confidence.unwrap_or(defaults.confidence()),
        j.tolerance.unwrap_or(defaults.tolerance()),
        defaults.max_error_ratio(),
        j.min_samples.map_or(defaults.min_samples(), |n| n as usize),
        defaults.min_requests(),
    )
    .map_err(|e| invalid(BASE, e.to_string()))?;
    let mut weights = BTreeMap::new();
    for m in a.metrics.iter().flatten() {
        if let Some(judging) = metric_judging(m)? {
            weights.insert(m.name.clone(), judging.weight);
        }
    }
    let scoring = Scoring::new(
        j.pass_score.unwrap_or(95.0),
        j.marginal_score.unwrap_or(75.0),
        weights,
    )
    .map_err(|e| invalid(BASE, e.to_string()))?;
    let correction = match j.correction.as_deref() {
        None | Some("bonferroni") => Correction::Bonferroni,
        Some("none") => Correction::None,
        Some(other) => {
            return Err(invalid(
                &format!("{BASE}.correction"),
                format!("unsupported value {other:?} (bonferroni or none)"),
            ));
        }
    };
    let baseline = j
        .baseline
        .clone()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| format!("{target}-primary"));
    Ok(Some(JudgeSpec {
        baseline,
        settings,
        scoring,
        correction,
    }))
}

pub(crate) fn metric_judging(m: &CanaryMetric) -> Result<Option<MetricJudging>, SpecError> {
    let Some(j) = m.judge.as_ref() else {
        return Ok(None);
    };
    let field = format!("spec.analysis.metrics[{}].judge", m.name);
    let direction = match j.direction.as_deref() {
        None | Some("increase") => Direction::Increase,
        Some("decrease") => Direction::Decrease,
        Some("either") => Direction::Either,
        Some(other) => {
            return Err(invalid(
                &format!("{field}.direction"),
                format!("unsupported value {other:?}"),
            ));
        }
    };
    let criticality = match j.criticality.as_deref() {
        None | Some("normal") => Criticality::Normal,
        Some("critical") => Criticality::Critical,
        Some("reportOnly") => Criticality::ReportOnly,
        Some(other) => {
            return Err(invalid(
                &format!("{field}.criticality"),
                format!("unsupported value {other:?}"),
            ));
        }
    };
    Ok(Some(MetricJudging {
        direction,
        criticality,
        weight: j.weight.unwrap_or(1.0),
        total: j
            .total_template_ref
            .clone()
            .filter(|total| !total.name.is_empty()),
    }))
}

/// Both sides' samples of one judged metric over the run so far, one per tick with a value.
#[derive(Clone, Copy, Debug, Default)]
pub struct Samples<'a> {
    pub name: &'a str,
    pub canary: &'a [f64],
    pub primary: &'a [f64],
    /// For a metric judged on counts: the requests each of the side's ticks had, in step with
    /// the errors in `canary` and `primary`. Empty otherwise.
    pub canary_totals: &'a [f64],
    pub primary_totals: &'a [f64],
}

impl Samples<'_> {
    /// The run's errors out of its requests, per side: each tick's counts summed.
    fn counts(&self) -> (Counts, Counts) {
        (
            summed(self.canary, self.canary_totals),
            summed(self.primary, self.primary_totals),
        )
    }
}

/// Backends return counts as floats (`increase()` extrapolates); the sums are rounded, and
/// anything not a count (negative, NaN) is left out.
fn summed(errors: &[f64], totals: &[f64]) -> Counts {
    let sum = |values: &[f64]| {
        values
            .iter()
            .filter(|v| v.is_finite() && **v >= 0.0)
            .sum::<f64>()
            .round() as u64
    };
    Counts {
        errors: sum(errors),
        total: sum(totals),
    }
}

/// One look over the run's samples, `looks` being how many the run is planned to take. `None`
/// when the canary has no judge.
pub fn look(spec: &RolloutSpec, samples: &[Samples<'_>], looks: u32) -> Option<JudgeReport> {
    let judge = spec.judge.as_ref()?;
    let judged: Vec<(MetricSeries<'_>, Samples<'_>)> = spec
        .metrics
        .iter()
        .filter_map(|m| {
            let judging = m.judge.as_ref()?;
            let found = samples
                .iter()
                .find(|s| s.name == m.name)
                .copied()
                .unwrap_or_default();
            let evidence = if judging.total.is_some() {
                let (canary, primary) = found.counts();
                Evidence::Counts { canary, primary }
            } else {
                Evidence::Samples {
                    canary: found.canary,
                    primary: found.primary,
                }
            };
            let series = MetricSeries {
                name: &m.name,
                direction: judging.direction,
                criticality: judging.criticality,
                evidence,
            };
            Some((series, found))
        })
        .collect();
    let series: Vec<MetricSeries<'_>> = judged.iter().map(|(s, _)| *s).collect();
    let look = flagger_judge::look(
        &series,
        &judge.settings,
        &judge.scoring,
        judge.correction,
        looks,
    );
    let metrics: Vec<JudgeMetricStatus> = judged
        .iter()
        .zip(&look.metrics)
        .map(|((_, s), (name, j))| metric_status(name, j, s))
        .collect();
    let details: Vec<String> = look
        .metrics
        .iter()
        .map(|(name, j)| format!("{name} {:?} ({})", j.classification, j.reason))
        .collect();
    let message = format!("{}; {}", look.score.reason, details.join("; "));
    Some(JudgeReport {
        decision: look.score.decision,
        status: JudgeStatus {
            decision: format!("{:?}", look.score.decision),
            score: finite(look.score.summary),
            confidence: finite(look.confidence),
            looks: Some(looks.max(1)),
            message: Some(message),
            metrics: Some(metrics),
        },
    })
}

fn metric_status(name: &str, j: &Judgement, s: &Samples<'_>) -> JudgeMetricStatus {
    let count =
        |v: &[f64]| u32::try_from(v.iter().filter(|x| x.is_finite()).count()).unwrap_or(u32::MAX);
    JudgeMetricStatus {
        name: name.to_string(),
        verdict: format!("{:?}", j.classification),
        canary: finite(j.canary),
        primary: finite(j.primary),
        canary_samples: count(s.canary),
        primary_samples: count(s.primary),
        effect: finite(j.effect),
        lower: finite(j.lower),
        upper: finite(j.upper),
        p_value: finite(j.p_value),
    }
}

/// JSON has no NaN or infinity: a figure that is not a number is left out of the status.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The failed check a failing look counts, worded for the event, the alert and the records.
pub(crate) fn failed_check(spec: &RolloutSpec, report: &JudgeReport) -> FailedCheck {
    let message = report.status.message.clone().unwrap_or_default();
    FailedCheck {
        kind: CheckKind::Metric,
        name: "judge".to_string(),
        value: report.status.score,
        threshold: spec
            .judge
            .as_ref()
            .map(|j| format!("marginal {}", j.scoring.marginal())),
        query: None,
        message: format!(
            "Halt {} advancement: the judge failed the canary against {}: {message}",
            spec.key(),
            spec.judge.as_ref().map_or("", |j| j.baseline.as_str())
        ),
    }
}

/// What a look that neither passes nor fails holds the canary with.
pub(crate) fn hold_reason(report: &JudgeReport) -> String {
    let message = report.status.message.clone().unwrap_or_default();
    match report.decision {
        Decision::Inconclusive => format!("judge inconclusive: {message}"),
        _ => format!("judge marginal: {message}"),
    }
}

/// A look the plan assumes: every judged metric passes, or every one fails.
pub(crate) fn simulated(spec: &RolloutSpec, fails: bool) -> JudgeReport {
    let classification = if fails {
        Classification::High
    } else {
        Classification::Pass
    };
    let decision = if fails {
        Decision::Fail
    } else {
        Decision::Pass
    };
    JudgeReport {
        decision,
        status: JudgeStatus {
            decision: format!("{decision:?}"),
            message: Some(format!(
                "simulated: every judged metric {classification:?} against {}",
                spec.judge.as_ref().map_or("", |j| j.baseline.as_str())
            )),
            ..JudgeStatus::default()
        },
    }
}
