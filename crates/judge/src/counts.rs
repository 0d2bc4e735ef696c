//! Error counts out of request counts: the ratio of the canary's error rate to the primary's, with
//! an exact confidence interval and one-sided p-values.
//!
//! Conditioned on the total number of errors `k`, the canary's share of them is binomial with
//! probability `n_canary / (n_canary + n_primary)` when both rates are equal (the standard exact
//! test for two Poisson rates). That stays exact for the sparse counts error metrics have — a
//! handful of errors in thousands of requests — where a rank test or a normal approximation does
//! not.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, Binomial, ContinuousCDF, DiscreteCDF};

/// Events (errors) out of trials (requests) over one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub errors: u64,
    pub total: u64,
}

impl Counts {
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        self.errors as f64 / self.total as f64
    }
}

/// The canary's error rate divided by the primary's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRatio {
    /// The observed ratio (infinite when only the canary had errors, NaN when neither had any).
    pub estimate: f64,
    /// The exact (Clopper–Pearson) confidence interval of the ratio.
    pub lower: f64,
    pub upper: f64,
    /// P(the canary has at least this many of the errors | equal rates): small means "higher".
    pub p_higher: f64,
    /// P(the canary has at most this many of the errors | equal rates): small means "lower".
    pub p_lower: f64,
}

/// The largest counts the beta quantiles are computed on: with shape parameters in the billions
/// their iteration stops converging in reasonable time. Larger counts are scaled down on both
/// sides by the same factor, which keeps the rates and only widens the interval, already narrow
/// at a million errors.
const LARGEST_TOTAL: u64 = 1 << 40;
const LARGEST_ERRORS: u64 = 1 << 20;

/// `None` when a side has no requests or more errors than requests, or `confidence` is not in
/// (0, 1).
pub fn compare(canary: Counts, primary: Counts, confidence: f64) -> Option<RateRatio> {
    if canary.total == 0 || primary.total == 0 {
        return None;
    }
    if canary.errors > canary.total || primary.errors > primary.total {
        return None;
    }
    let factor = canary
        .total
        .max(primary.total)
        .div_ceil(LARGEST_TOTAL)
        .max(canary.errors.max(primary.errors).div_ceil(LARGEST_ERRORS))
        .max(1);
    let scale = |c: Counts| Counts {
        errors: c.errors / factor,
        total: (c.total / factor).max(1),
    };
    let (canary, primary) = (scale(canary), scale(primary));
    let alpha = 1.0 - confidence;
    if !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let errors = canary.errors + primary.errors;
    // Rates per request: odds of the canary's share, rescaled by the traffic each side had.
    let exposure = primary.total as f64 / canary.total as f64;
    let to_ratio = |share: f64| {
        if share >= 1.0 {
            f64::INFINITY
        } else {
            share / (1.0 - share) * exposure
        }
    };
    let share_lower = if canary.errors == 0 {
        0.0
    } else {
        Beta::new(canary.errors as f64, (errors - canary.errors + 1) as f64)
            .ok()?
            .inverse_cdf(alpha / 2.0)
    };
    let share_upper = if canary.errors == errors {
        1.0
    } else {
        Beta::new((canary.errors + 1) as f64, (errors - canary.errors) as f64)
            .ok()?
            .inverse_cdf(1.0 - alpha / 2.0)
    };
    let estimate = if errors == 0 {
        f64::NAN
    } else {
        to_ratio(canary.errors as f64 / errors as f64)
    };
    let share_if_equal = canary.total as f64 / (canary.total + primary.total) as f64;
    let binomial = Binomial::new(share_if_equal, errors).ok()?;
    let p_higher = if canary.errors == 0 {
        1.0
    } else {
        binomial.sf(canary.errors - 1)
    };
    Some(RateRatio {
        estimate,
        lower: to_ratio(share_lower),
        upper: to_ratio(share_upper),
        p_higher,
        p_lower: binomial.cdf(canary.errors),
    })
}

#[cfg(test)]
mod tests {
    use super::{Counts, compare};

    fn counts(errors: u64, total: u64) -> Counts {
        Counts { errors, total }
    }

    #[test]
    fn equal_rates_are_not_significant_and_the_interval_covers_one() {
        let r = compare(counts(20, 1000), counts(20, 1000), 0.95).unwrap();
        assert_eq!(r.estimate, 1.0);
        assert!(r.lower < 1.0 && r.upper > 1.0, "{r:?}");
        assert!(r.p_higher > 0.4 && r.p_lower > 0.4, "{r:?}");
    }

    #[test]
    fn five_times_the_errors_is_significant() {
        let r = compare(counts(50, 1000), counts(10, 1000), 0.95).unwrap();
        assert!((r.estimate - 5.0).abs() < 1e-9);
        assert!(r.lower > 1.0, "{r:?}");
        assert!(r.p_higher < 1e-6, "{r:?}");
    }

    #[test]
    fn the_ratio_accounts_for_unequal_traffic() {
        // 10 % of the traffic and 10 % of the errors: the same rate.
        let r = compare(counts(5, 100), counts(45, 900), 0.95).unwrap();
        assert!((r.estimate - 1.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn errors_only_on_the_canary_give_an_unbounded_ratio() {
        let r = compare(counts(3, 1000), counts(0, 1000), 0.95).unwrap();
        assert!(r.estimate.is_infinite() && r.upper.is_infinite());
        assert!(r.lower > 0.0);
    }

    #[test]
    fn impossible_counts_are_refused() {
        assert_eq!(compare(counts(2, 1), counts(0, 10), 0.95), None);
        assert_eq!(compare(counts(0, 0), counts(0, 10), 0.95), None);
        assert_eq!(compare(counts(0, 10), counts(0, 10), f64::NAN), None);
    }
}
