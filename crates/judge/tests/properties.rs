//! Properties the judge must keep for every input, not only for the golden cases.

use flagger_judge::{
    Classification, Correction, Counts, Criticality, Direction, Evidence, MetricSeries, Scoring,
    Settings, judge_counts, judge_series, look,
};
use proptest::prelude::*;

fn settings() -> Settings {
    Settings::default()
}

/// Integer-valued samples keep the arithmetic exact, so swapping the sides mirrors it exactly.
fn sample() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec((0u32..60).prop_map(f64::from), 10..40)
}

proptest! {
    #[test]
    fn swapping_canary_and_primary_mirrors_the_verdict(a in sample(), b in sample()) {
        let forward = judge_series(&a, &b, Direction::Either, &settings()).classification;
        let backward = judge_series(&b, &a, Direction::Either, &settings()).classification;
        let mirrored = match forward {
            Classification::High => Classification::Low,
            Classification::Low => Classification::High,
            other => other,
        };
        prop_assert_eq!(backward, mirrored);
    }

    #[test]
    fn swapping_the_sides_of_counts_mirrors_the_verdict(
        e0 in 0u64..300, n0 in 100u64..5_000, e1 in 0u64..300, n1 in 100u64..5_000,
    ) {
        prop_assume!(e0 <= n0 && e1 <= n1);
        let (a, b) = (Counts { errors: e0, total: n0 }, Counts { errors: e1, total: n1 });
        let forward = judge_counts(a, b, Direction::Either, &settings());
        let backward = judge_counts(b, a, Direction::Either, &settings());
        // A ratio exactly at the limit is a tie the rounding of its inverse may break either way.
        let max = settings().max_error_ratio();
        prop_assume!(((forward.effect - max).abs() > 1e-9) && ((forward.effect - 1.0 / max).abs() > 1e-9));
        let mirrored = match forward.classification {
            Classification::High => Classification::Low,
            Classification::Low => Classification::High,
            other => other,
        };
        prop_assert_eq!(backward.classification, mirrored, "{} / {}", forward.reason, backward.reason);
    }

    #[test]
    fn more_planned_looks_never_make_a_failure_more_likely(
        a in sample(), b in sample(), looks in 1u32..40, more in 1u32..40,
    ) {
        let decide = |looks| {
            let series = [MetricSeries {
                name: "m", direction: Direction::Either, criticality: Criticality::Critical,
                evidence: Evidence::Samples { canary: &a, primary: &b },
            }];
            look(&series, &settings(), &Scoring::default(), Correction::Bonferroni, looks).metrics[0].1.classification
        };
        let fewer = decide(looks);
        let after = decide(looks + more);
        prop_assert!(after == Classification::Pass || after == fewer, "{fewer:?} at {looks} looks, {after:?} at {}", looks + more);
    }

    #[test]
    fn a_sample_against_itself_passes(a in sample()) {
        prop_assert_eq!(judge_series(&a, &a, Direction::Either, &settings()).classification, Classification::Pass);
    }

    #[test]
    fn twice_the_primarys_error_rate_never_passes(
        primary_total in 1_000u64..200_000,
        canary_total in 1_000u64..200_000,
        primary_per_mille in 0u64..200,
        factor in 2.0f64..50.0,
    ) {
        let primary_errors = primary_total * primary_per_mille / 1000;
        let primary_rate = primary_errors as f64 / primary_total as f64;
        // At least one error: a canary with none is not worse, whatever the primary had.
        let canary_errors = ((primary_rate * factor * canary_total as f64).ceil() as u64).clamp(1, canary_total);
        prop_assume!(canary_errors as f64 / canary_total as f64 >= 2.0 * primary_rate);
        let judgement = judge_counts(
            Counts { errors: canary_errors, total: canary_total },
            Counts { errors: primary_errors, total: primary_total },
            Direction::Increase,
            &settings(),
        );
        prop_assert_ne!(judgement.classification, Classification::Pass, "{}", judgement.reason);
    }

    #[test]
    fn never_panics_on_any_numbers(
        a in prop::collection::vec(any::<f64>(), 0..30),
        b in prop::collection::vec(any::<f64>(), 0..30),
        e0 in any::<u64>(), n0 in any::<u64>(), e1 in any::<u64>(), n1 in any::<u64>(),
    ) {
        let loose = Settings::new(0.9, 0.0, 1.01, 1, 1).unwrap();
        for direction in [Direction::Increase, Direction::Decrease, Direction::Either] {
            judge_series(&a, &b, direction, &loose);
            judge_counts(Counts { errors: e1, total: n1 }, Counts { errors: e0, total: n0 }, direction, &loose);
        }
    }
}

#[test]
fn too_little_data_is_inconclusive_not_a_pass() {
    let few = [1.0, 2.0, 3.0];
    let judgement = judge_series(&few, &few, Direction::Increase, &settings());
    assert_eq!(judgement.classification, Classification::Inconclusive);
    let judgement = judge_counts(
        Counts {
            errors: 0,
            total: 10,
        },
        Counts {
            errors: 0,
            total: 10_000,
        },
        Direction::Increase,
        &settings(),
    );
    assert_eq!(judgement.classification, Classification::Inconclusive);
}

#[test]
fn a_twenty_percent_slower_canary_is_high_an_equal_one_passes() {
    // Latencies around 100 ms with a little spread; the canary's 20 % higher.
    let primary: Vec<f64> = (0..60).map(|i| 100.0 + f64::from(i % 10)).collect();
    let slower: Vec<f64> = primary.iter().map(|v| v * 1.2).collect();
    let same: Vec<f64> = primary.iter().rev().copied().collect();
    assert_eq!(
        judge_series(&slower, &primary, Direction::Increase, &settings()).classification,
        Classification::High
    );
    assert_eq!(
        judge_series(&same, &primary, Direction::Increase, &settings()).classification,
        Classification::Pass
    );
}

#[test]
fn sparse_errors_are_judged_on_counts() {
    // 5 errors in 10 000 against 1 in 10 000: a rank test on per-interval rates sees mostly zeros.
    let canary = Counts {
        errors: 50,
        total: 10_000,
    };
    let primary = Counts {
        errors: 10,
        total: 10_000,
    };
    assert_eq!(
        judge_counts(canary, primary, Direction::Increase, &settings()).classification,
        Classification::High
    );
    let equal = Counts {
        errors: 10,
        total: 10_000,
    };
    assert_eq!(
        judge_counts(equal, primary, Direction::Increase, &settings()).classification,
        Classification::Pass
    );
}
