//! flagger-rs extra `analysis.judge` and `analysis.metrics[].judge`: compare the canary with a
//! baseline (the primary by default) statistically, rather than only with fixed thresholds.
//! Absent, the analysis is Flagger's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// `analysis.judge`: turns the judge on and sets its thresholds. Only metrics with a `judge`
/// block of their own are judged.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisJudge {
    /// The workload the `{{ target }}` variable names when a metric is queried for the
    /// baseline. Default `<targetRef.name>-primary`.
    pub baseline: Option<String>,
    /// Confidence of every test over the whole run, in (0.5, 1). Default 0.95.
    pub confidence: Option<f64>,
    /// Effect-size gate: the smallest shift that fails a metric, as a fraction of its typical
    /// value. Default 0.1 (10 %).
    pub tolerance: Option<f64>,
    /// Samples needed on each side before a metric is judged; fewer hold the canary. Default 10.
    #[schemars(range(min = 1))]
    pub min_samples: Option<u32>,
    /// Score (0-100) at or above which a look passes. Default 95.
    pub pass_score: Option<f64>,
    /// Score at or above which a look holds the canary instead of failing it. Default 75.
    pub marginal_score: Option<f64>,
    /// How the confidence is corrected for judging at every tick: `bonferroni` (default) over the
    /// checks the canary's plan needs to promote, or `none`.
    #[schemars(extend("enum" = ["bonferroni", "none"]))]
    pub correction: Option<String>,
}

/// Values of `analysis.judge.correction`.
pub const CORRECTIONS: &[&str] = &["bonferroni", "none"];

/// `analysis.metrics[].judge`: this metric is queried for the canary and the baseline every
/// tick, and the judge compares the two series — or, with `totalTemplateRef`, the two sides'
/// error counts out of their request counts.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricJudge {
    /// Which change fails the canary: `increase` (default), `decrease` or `either`.
    #[schemars(extend("enum" = ["increase", "decrease", "either"]))]
    pub direction: Option<String>,
    /// `normal` (default) counts in the score; `critical` also fails the canary on its own;
    /// `reportOnly` is shown and never counted.
    #[schemars(extend("enum" = ["normal", "critical", "reportOnly"]))]
    pub criticality: Option<String>,
    /// The metric's weight in the score. Default 1.
    pub weight: Option<f64>,
    /// Judges the metric on counts: this MetricTemplate's query returns the requests over the
    /// metric's interval, and the metric's own query returns the errors among them. Both are
    /// run for the canary and the baseline every tick, and the two sides' error rates are
    /// compared with an exact rate-ratio test, which stays valid for sparse errors. Absent, the
    /// metric's values are compared as a continuous series.
    pub total_template_ref: Option<crate::analysis::CrossNamespaceRef>,
}

/// Values of `analysis.metrics[].judge.direction`.
pub const DIRECTIONS: &[&str] = &["increase", "decrease", "either"];
/// Values of `analysis.metrics[].judge.criticality`.
pub const CRITICALITIES: &[&str] = &["normal", "critical", "reportOnly"];

/// `status.judge`: the judge's last look at the run.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JudgeStatus {
    /// `Pass`, `Marginal`, `Fail` or `Inconclusive`.
    // Defaulted, as every field of the status: the schema requires no field Flagger does not.
    #[serde(default)]
    pub decision: String,
    /// The score, 0-100.
    pub score: Option<f64>,
    /// The confidence of this look after the correction for repeated looks.
    pub confidence: Option<f64>,
    /// The looks the correction divides the error rate by.
    pub looks: Option<u32>,
    pub message: Option<String>,
    pub metrics: Option<Vec<JudgeMetricStatus>>,
}

/// One metric of `status.judge`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JudgeMetricStatus {
    #[serde(default)]
    pub name: String,
    /// `Pass`, `High`, `Low` or `Inconclusive`.
    #[serde(default)]
    pub verdict: String,
    /// The canary's and the baseline's medians.
    pub canary: Option<f64>,
    pub primary: Option<f64>,
    #[serde(default)]
    pub canary_samples: u32,
    #[serde(default)]
    pub primary_samples: u32,
    /// The shift relative to the typical value (0.2 = 20 % higher).
    pub effect: Option<f64>,
    /// Confidence interval of the shift, in the metric's units.
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub p_value: Option<f64>,
}
