//! Many metrics' classifications folded into one score and a decision, the way Kayenta's
//! NetflixACAJudge scores a canary: per group the share of metrics that pass, groups weighted, a
//! failing critical metric fails the whole canary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::classify::Classification;

/// How much one metric's verdict weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Criticality {
    /// Counts in its group's score.
    #[default]
    Normal,
    /// Counts in its group's score, and failing it fails the canary whatever the score.
    Critical,
    /// Reported, never counted.
    ReportOnly,
}

/// One metric's classification, as the scorer needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricVerdict {
    pub name: String,
    pub group: String,
    pub criticality: Criticality,
    pub classification: Classification,
}

/// What to do with the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// The score reaches the pass threshold.
    Pass,
    /// Between the marginal and the pass threshold: not good enough to advance, not bad enough to
    /// fail at once.
    Marginal,
    /// Below the marginal threshold, or a critical metric failed.
    Fail,
    /// A counted metric had too little data: hold and say so.
    Inconclusive,
}

/// The score thresholds and group weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    pass: f64,
    marginal: f64,
    group_weights: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoringError {
    #[error(
        "score thresholds must satisfy 0 <= marginal <= pass <= 100, got marginal {marginal} and pass {pass}"
    )]
    Thresholds { pass: f64, marginal: f64 },
    #[error("group weight of {group:?} must be a finite number of at least 0, got {weight}")]
    Weight { group: String, weight: f64 },
}

impl Default for Scoring {
    /// Kayenta's customary thresholds: 95 to pass, 75 to be marginal; groups weigh the same.
    fn default() -> Self {
        Scoring {
            pass: 95.0,
            marginal: 75.0,
            group_weights: BTreeMap::new(),
        }
    }
}

impl Scoring {
    /// `group_weights` empty weighs every group the same; otherwise a group without a weight
    /// counts for nothing (so a weight of its own must be given to every group that should count).
    pub fn new(
        pass: f64,
        marginal: f64,
        group_weights: BTreeMap<String, f64>,
    ) -> Result<Self, ScoringError> {
        if !(0.0 <= marginal && marginal <= pass && pass <= 100.0) {
            return Err(ScoringError::Thresholds { pass, marginal });
        }
        if let Some((group, &weight)) = group_weights
            .iter()
            .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
        {
            return Err(ScoringError::Weight {
                group: group.clone(),
                weight,
            });
        }
        Ok(Scoring {
            pass,
            marginal,
            group_weights,
        })
    }
}

impl Scoring {
    /// The score below which a canary fails.
    pub fn marginal(&self) -> f64 {
        self.marginal
    }
}

/// The score (0–100) with each group's and the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub summary: f64,
    pub groups: BTreeMap<String, f64>,
    pub decision: Decision,
    pub reason: String,
}

pub fn score(verdicts: &[MetricVerdict], scoring: &Scoring) -> Score {
    let counted: Vec<&MetricVerdict> = verdicts
        .iter()
        .filter(|v| v.criticality != Criticality::ReportOnly)
        .collect();
    let mut tallies: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for verdict in &counted {
        let (passed, total) = tallies.entry(verdict.group.clone()).or_default();
        *total += 1;
        if verdict.classification == Classification::Pass {
            *passed += 1;
        }
    }
    let groups: BTreeMap<String, f64> = tallies
        .into_iter()
        .map(|(group, (passed, total))| (group, 100.0 * passed as f64 / total as f64))
        .collect();
    let weight = |group: &str| {
        if scoring.group_weights.is_empty() {
            1.0
        } else {
            scoring.group_weights.get(group).copied().unwrap_or(0.0)
        }
    };
    let total_weight: f64 = groups.keys().map(|g| weight(g)).sum();
    let weighted = if total_weight > 0.0 {
        groups.iter().map(|(g, s)| weight(g) * s).sum::<f64>() / total_weight
    } else {
        0.0
    };

    let failed_critical = counted.iter().find(|v| {
        v.criticality == Criticality::Critical
            && matches!(v.classification, Classification::High | Classification::Low)
    });
    let inconclusive: Vec<&str> = counted
        .iter()
        .filter(|v| v.classification == Classification::Inconclusive)
        .map(|v| v.name.as_str())
        .collect();
    let (summary, decision, reason) = if let Some(critical) = failed_critical {
        let reason = format!(
            "critical metric {} is {:?}",
            critical.name, critical.classification
        );
        (0.0, Decision::Fail, reason)
    } else if !inconclusive.is_empty() {
        let reason = format!("too little data for {}", inconclusive.join(", "));
        (weighted, Decision::Inconclusive, reason)
    } else if counted.is_empty() {
        let reason = "no metric is counted".to_string();
        (0.0, Decision::Inconclusive, reason)
    } else {
        let decision = if weighted >= scoring.pass {
            Decision::Pass
        } else if weighted >= scoring.marginal {
            Decision::Marginal
        } else {
            Decision::Fail
        };
        let reason = format!(
            "score {:.1} (pass {}, marginal {})",
            weighted, scoring.pass, scoring.marginal
        );
        (weighted, decision, reason)
    };
    Score {
        summary,
        groups,
        decision,
        reason,
    }
}
