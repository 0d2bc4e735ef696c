//! One metric's verdict: the canary's sample against the primary's.

use serde::{Deserialize, Serialize};

use crate::counts::{self, Counts};
use crate::rank_sum;
use crate::settings::Settings;

/// Which change of a metric fails the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Higher is worse (latency, errors).
    #[default]
    Increase,
    /// Lower is worse (throughput, cache hits).
    Decrease,
    /// Any change is suspect.
    Either,
}

/// What the judge concluded about one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Classification {
    /// No change that counts in the failing direction.
    Pass,
    /// Significantly and materially higher than the primary.
    High,
    /// Significantly and materially lower than the primary.
    Low,
    /// Too little data to say either way: hold, do not pass.
    Inconclusive,
}

/// A verdict with the figures behind it, for the status, events and alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub classification: Classification,
    /// The canary's typical value: the median of a series, the error rate of counts.
    pub canary: f64,
    /// The primary's typical value, as for `canary`.
    pub primary: f64,
    /// The size of the difference: the shift relative to the typical value for a series, the rate
    /// ratio for counts.
    pub effect: f64,
    /// The confidence interval of the shift (series) or of the rate ratio (counts).
    pub lower: f64,
    pub upper: f64,
    /// The p-value of "no difference": two-sided for a series; for counts, the one-sided p-value
    /// in the direction the ratio points. NaN when no test was run.
    pub p_value: f64,
    /// How the verdict was reached, in a sentence.
    pub reason: String,
}

impl Judgement {
    fn without_test(
        classification: Classification,
        canary: f64,
        primary: f64,
        reason: String,
    ) -> Self {
        Judgement {
            classification,
            canary,
            primary,
            effect: f64::NAN,
            lower: f64::NAN,
            upper: f64::NAN,
            p_value: f64::NAN,
            reason,
        }
    }
}

/// Judges a continuous metric from samples taken over the same window on both sides.
pub fn judge_series(
    canary: &[f64],
    primary: &[f64],
    direction: Direction,
    settings: &Settings,
) -> Judgement {
    let canary = sorted_finite(canary);
    let primary = sorted_finite(primary);
    let (canary_median, primary_median) = (median(&canary), median(&primary));
    if canary.len() < settings.min_samples() || primary.len() < settings.min_samples() {
        let reason = format!(
            "{} canary and {} primary samples; {} needed on each side",
            canary.len(),
            primary.len(),
            settings.min_samples()
        );
        return Judgement::without_test(
            Classification::Inconclusive,
            canary_median,
            primary_median,
            reason,
        );
    }
    if canary == primary {
        let reason = "the canary's and the primary's samples are identical".to_string();
        return Judgement::without_test(
            Classification::Pass,
            canary_median,
            primary_median,
            reason,
        );
    }
    let Some(shift) = rank_sum::compare(&canary, &primary, settings.confidence()) else {
        let reason = "every sample of both has the same value".to_string();
        return Judgement::without_test(
            Classification::Pass,
            canary_median,
            primary_median,
            reason,
        );
    };
    let scale = canary_median.abs() / 2.0 + primary_median.abs() / 2.0;
    let relative = if scale > 0.0 {
        shift.estimate / scale
    } else if shift.estimate == 0.0 {
        0.0
    } else {
        f64::INFINITY.copysign(shift.estimate)
    };
    // Interval ends found by bisection sit within rounding of a difference of two samples; one
    // that is zero but for rounding must not decide a verdict.
    let zero = 1e-9 * scale.max(1.0);
    // With few samples a high confidence may be out of reach (the statistic cannot get that
    // extreme), and the interval search then stops at the extreme differences; the p-value still
    // says whether the evidence reaches the asked confidence.
    let significant = shift.p_value < 1.0 - settings.confidence();
    let higher = significant && shift.lower > zero && relative > settings.tolerance();
    let lower = significant && shift.upper < -zero && relative < -settings.tolerance();
    let classification = match direction {
        Direction::Increase | Direction::Either if higher => Classification::High,
        Direction::Decrease | Direction::Either if lower => Classification::Low,
        _ => Classification::Pass,
    };
    let reason = format!(
        "canary median {} vs primary {}: shift {} ({:+.1} %), {:.0} % interval [{}, {}], p = {:.3}",
        short(canary_median),
        short(primary_median),
        short(shift.estimate),
        relative * 100.0,
        settings.confidence() * 100.0,
        short(shift.lower),
        short(shift.upper),
        shift.p_value
    );
    Judgement {
        classification,
        canary: canary_median,
        primary: primary_median,
        effect: relative,
        lower: shift.lower,
        upper: shift.upper,
        p_value: shift.p_value,
        reason,
    }
}

/// Judges an error metric from error and request counts over the same window on both sides.
pub fn judge_counts(
    canary: Counts,
    primary: Counts,
    direction: Direction,
    settings: &Settings,
) -> Judgement {
    let (canary_rate, primary_rate) = (canary.rate(), primary.rate());
    let inconclusive = |reason: String| {
        Judgement::without_test(
            Classification::Inconclusive,
            canary_rate,
            primary_rate,
            reason,
        )
    };
    if canary.total < settings.min_requests() || primary.total < settings.min_requests() {
        return inconclusive(format!(
            "{} canary and {} primary requests; {} needed on each side",
            canary.total,
            primary.total,
            settings.min_requests()
        ));
    }
    let Some(ratio) = counts::compare(canary, primary, settings.confidence()) else {
        return inconclusive(format!(
            "impossible counts: canary {} errors of {}, primary {} of {}",
            canary.errors, canary.total, primary.errors, primary.total
        ));
    };
    if canary.errors == 0 && primary.errors == 0 {
        let reason = format!(
            "no errors in {} canary and {} primary requests",
            canary.total, primary.total
        );
        return Judgement::without_test(Classification::Pass, canary_rate, primary_rate, reason);
    }
    let max = settings.max_error_ratio();
    // A ratio beyond the limit fails only once the interval excludes "no difference"; until then
    // more traffic is needed, and passing would let a real regression through.
    let worse =
        matches!(direction, Direction::Increase | Direction::Either) && ratio.estimate >= max;
    let better =
        matches!(direction, Direction::Decrease | Direction::Either) && ratio.estimate <= 1.0 / max;
    let classification = match (worse, better) {
        (true, _) if ratio.lower > 1.0 => Classification::High,
        (_, true) if ratio.upper < 1.0 => Classification::Low,
        (true, _) | (_, true) => Classification::Inconclusive,
        _ => Classification::Pass,
    };
    let reason = format!(
        "canary {} errors of {} ({}) vs primary {} of {} ({}): ratio {}, {:.0} % interval [{}, {}], limit {}",
        canary.errors,
        canary.total,
        percent(canary_rate),
        primary.errors,
        primary.total,
        percent(primary_rate),
        short(ratio.estimate),
        settings.confidence() * 100.0,
        short(ratio.lower),
        short(ratio.upper),
        short(max)
    );
    Judgement {
        classification,
        canary: canary_rate,
        primary: primary_rate,
        effect: ratio.estimate,
        lower: ratio.lower,
        upper: ratio.upper,
        p_value: if ratio.estimate >= 1.0 {
            ratio.p_higher
        } else {
            ratio.p_lower
        },
        reason,
    }
}

fn sorted_finite(sample: &[f64]) -> Vec<f64> {
    let mut values: Vec<f64> = sample.iter().copied().filter(|v| v.is_finite()).collect();
    values.sort_by(f64::total_cmp);
    values
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        // Halved first so two values near f64::MAX do not overflow.
        n => sorted[n / 2 - 1] / 2.0 + sorted[n / 2] / 2.0,
    }
}

/// Four decimals, or four significant digits in scientific notation for very large and very
/// small values: enough to read, short enough for an event.
fn short(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        format!("{v}")
    } else if v.abs() >= 1e9 || v.abs() < 1e-4 {
        format!("{v:.3e}")
    } else {
        format!("{}", (v * 1e4).round() / 1e4)
    }
}

fn percent(rate: f64) -> String {
    format!("{:.2} %", rate * 100.0)
}
