//! The Wilcoxon rank-sum (Mann–Whitney U) comparison of two samples: the Hodges–Lehmann estimate
//! of how far the canary is shifted from the primary, its confidence interval and the p-value.
//!
//! Computed the way R's `wilcox.test(canary, primary, conf.int = TRUE)` computes it with the normal
//! approximation (tie and continuity corrections): the interval's ends are the shifts at which the
//! standardised rank-sum statistic of `canary - shift` against `primary` equals the normal
//! quantiles, and the estimate is where it equals zero. The same construction works with ties,
//! which latency histograms and counters produce all the time, where the exact method does not.

use statrs::distribution::{ContinuousCDF, Normal};

use crate::root::crossing;

/// How far the canary's values lie above (positive) or below (negative) the primary's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// The Hodges–Lehmann estimate of the shift in location.
    pub estimate: f64,
    /// The confidence interval of the shift.
    pub lower: f64,
    pub upper: f64,
    /// The two-sided p-value of "no shift".
    pub p_value: f64,
}

/// The comparison of `canary` with `primary` at `confidence` (in (0, 1)). `None` when a sample is
/// empty or every value of both is the same (no ranking to test).
pub fn compare(canary: &[f64], primary: &[f64], confidence: f64) -> Option<Shift> {
    let (canary_min, canary_max) = bounds(canary)?;
    let (primary_min, primary_max) = bounds(primary)?;
    let normal = Normal::new(0.0, 1.0).ok()?;
    let alpha = 1.0 - confidence;
    if !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let quantile = normal.inverse_cdf(1.0 - alpha / 2.0);
    // At shift 0 the statistic exists unless every value is tied; the shifted ones below may tie
    // all values at an end of the range, which `standardised` answers with 0 (no evidence).
    let at_zero = standardised(canary, primary, 0.0)?;
    let statistic = |quantile: f64| {
        move |shift: f64| standardised(canary, primary, shift).unwrap_or(0.0) - quantile
    };
    let (low, high) = (canary_min - primary_max, canary_max - primary_min);
    let p_value = (2.0 * normal.cdf(-at_zero.abs())).min(1.0);
    Some(Shift {
        estimate: crossing(statistic(0.0), low, high),
        lower: crossing(statistic(quantile), low, high),
        upper: crossing(statistic(-quantile), low, high),
        p_value,
    })
}

fn bounds(sample: &[f64]) -> Option<(f64, f64)> {
    let first = *sample.first()?;
    Some(
        sample
            .iter()
            .fold((first, first), |(lo, hi), &v| (lo.min(v), hi.max(v))),
    )
}

/// The rank-sum statistic of `canary - shift` against `primary`, centred, continuity-corrected
/// and divided by its standard deviation under ties; `None` when every value is tied.
fn standardised(canary: &[f64], primary: &[f64], shift: f64) -> Option<f64> {
    let n_canary = canary.len() as f64;
    let n_primary = primary.len() as f64;
    let mut values: Vec<(f64, bool)> = canary
        .iter()
        .map(|v| (v - shift, true))
        .chain(primary.iter().map(|&v| (v, false)))
        .collect();
    values.sort_by(|a, b| a.0.total_cmp(&b.0));

    let mut canary_rank_sum = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < values.len() {
        let mut end = start + 1;
        while end < values.len() && values[end].0 == values[start].0 {
            end += 1;
        }
        // Ranks are 1-based; tied values share the average of the ranks they span.
        let average_rank = (start + 1 + end) as f64 / 2.0;
        let tied = (end - start) as f64;
        canary_rank_sum += average_rank * values[start..end].iter().filter(|v| v.1).count() as f64;
        tie_term += tied * tied * tied - tied;
        start = end;
    }

    let total = n_canary + n_primary;
    let centred = canary_rank_sum - n_canary * (n_canary + 1.0) / 2.0 - n_canary * n_primary / 2.0;
    let variance =
        (n_canary * n_primary / 12.0) * ((total + 1.0) - tie_term / (total * (total - 1.0)));
    if variance <= 0.0 || !variance.is_finite() {
        return None;
    }
    let continuity = 0.5 * centred.signum() * f64::from(u8::from(centred != 0.0));
    Some((centred - continuity) / variance.sqrt())
}

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn separated_samples_are_shifted_by_the_median_of_pairwise_differences() {
        let shift = compare(&[10.0, 20.0, 30.0, 40.0], &[1.0, 2.0, 3.0, 4.0], 0.95).unwrap();
        assert_eq!(shift.estimate, 22.5);
        assert!(shift.lower > 0.0 && shift.upper > shift.estimate);
    }

    #[test]
    fn identical_samples_have_no_shift() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let shift = compare(&a, &a, 0.95).unwrap();
        assert!(shift.lower < 0.0 && shift.upper > 0.0, "{shift:?}");
        assert!(shift.p_value > 0.9, "{shift:?}");
    }

    #[test]
    fn all_tied_or_empty_samples_cannot_be_compared() {
        assert_eq!(compare(&[1.0, 1.0], &[1.0], 0.95), None);
        assert_eq!(compare(&[], &[1.0], 0.95), None);
        assert_eq!(compare(&[1.0], &[2.0], 1.0), None);
    }
}
