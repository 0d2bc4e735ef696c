//! What the judge buys over fixed thresholds: detection and false-alarm rates on synthetic
//! windows with known injected regressions, and how many analysis intervals each needs.
//!
//! `cargo bench -p flagger-judge --bench detection` prints the table of docs/benchmarks.md. Each
//! analysis interval yields, per side, a window of latency samples (each the mean of the requests
//! one scrape step saw) and an error count out of the requests served. The fixed thresholds are the
//! ones Flagger's examples configure (`request-duration` below 500 ms, `request-success-rate` at
//! least 99 %); the judge runs with its defaults on the data gathered so far, one interval at a
//! time, up to ten.

use flagger_judge::{Classification, Counts, Direction, Settings, judge_counts, judge_series};
use statrs::distribution::{Binomial, Discrete};

const TRIALS: usize = 200;
const MAX_INTERVALS: usize = 10;
/// Scrape steps per analysis interval (a one-minute interval at a five-second step).
const STEPS: usize = 12;
const BASE_LATENCY_MS: f64 = 100.0;
/// Spread of single requests' latency around their mean, relative.
const REQUEST_SPREAD: f64 = 0.5;
const BASE_ERROR_RATE: f64 = 0.002;

/// SplitMix64: a seeded generator so every run prints the same table.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// By inverting the distribution function term by term (statrs's own inverse gives up on
    /// some of these parameters).
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        let Ok(b) = Binomial::new(p.clamp(0.0, 1.0), n) else {
            return 0;
        };
        let u = self.uniform();
        let mut cumulative = 0.0;
        for k in 0..n {
            cumulative += b.pmf(k);
            if u <= cumulative {
                return k;
            }
        }
        n
    }
}

/// One side's latency samples for one interval: each the mean of the requests of one step.
fn latency_window(rng: &mut Rng, requests_per_step: u64, factor: f64) -> Vec<f64> {
    let spread = BASE_LATENCY_MS * REQUEST_SPREAD / (requests_per_step as f64).sqrt();
    (0..STEPS)
        .map(|_| (BASE_LATENCY_MS * factor + spread * rng.normal()).max(0.0))
        .collect()
}

#[derive(Default)]
struct Tally {
    fixed_caught: usize,
    judge_caught: usize,
    judge_inconclusive: usize,
    intervals_to_verdict: usize,
}

impl Tally {
    fn row(&self, label: &str, traffic: &str) -> String {
        let pct = |n: usize| format!("{:.0} %", 100.0 * n as f64 / TRIALS as f64);
        let mean_intervals = if self.judge_caught > 0 {
            format!(
                "{:.1}",
                self.intervals_to_verdict as f64 / self.judge_caught as f64
            )
        } else {
            "–".into()
        };
        format!(
            "| {label} | {traffic} | {} | {} | {} | {mean_intervals} |",
            pct(self.fixed_caught),
            pct(self.judge_caught),
            pct(self.judge_inconclusive)
        )
    }
}

fn latency_case(rng: &mut Rng, requests_per_step: u64, factor: f64) -> Tally {
    let settings = Settings::default();
    let mut tally = Tally::default();
    for _ in 0..TRIALS {
        let (mut canary, mut primary) = (Vec::new(), Vec::new());
        let mut fixed = false;
        let mut verdict = Classification::Inconclusive;
        for interval in 1..=MAX_INTERVALS {
            let c = latency_window(rng, requests_per_step, factor);
            // Flagger's check reads the interval's 99th percentile; with normal request spread
            // that is the mean plus 2.33 spreads.
            let p99 = c.iter().sum::<f64>() / c.len() as f64 * (1.0 + 2.33 * REQUEST_SPREAD);
            fixed |= p99 > 500.0;
            canary.extend(c);
            primary.extend(latency_window(rng, requests_per_step, 1.0));
            verdict =
                judge_series(&canary, &primary, Direction::Increase, &settings).classification;
            if verdict == Classification::High {
                tally.intervals_to_verdict += interval;
                break;
            }
        }
        tally.fixed_caught += usize::from(fixed);
        tally.judge_caught += usize::from(verdict == Classification::High);
        tally.judge_inconclusive += usize::from(verdict == Classification::Inconclusive);
    }
    tally
}

fn error_case(rng: &mut Rng, requests_per_interval: u64, factor: f64) -> Tally {
    let settings = Settings::default();
    let mut tally = Tally::default();
    for _ in 0..TRIALS {
        let (mut canary, mut primary) = (
            Counts {
                errors: 0,
                total: 0,
            },
            Counts {
                errors: 0,
                total: 0,
            },
        );
        let mut fixed = false;
        let mut verdict = Classification::Inconclusive;
        for interval in 1..=MAX_INTERVALS {
            let errors = rng.binomial(requests_per_interval, BASE_ERROR_RATE * factor);
            let success_rate = 1.0 - errors as f64 / requests_per_interval as f64;
            fixed |= success_rate < 0.99;
            canary.errors += errors;
            canary.total += requests_per_interval;
            primary.errors += rng.binomial(requests_per_interval, BASE_ERROR_RATE);
            primary.total += requests_per_interval;
            verdict = judge_counts(canary, primary, Direction::Increase, &settings).classification;
            if verdict == Classification::High {
                tally.intervals_to_verdict += interval;
                break;
            }
        }
        tally.fixed_caught += usize::from(fixed);
        tally.judge_caught += usize::from(verdict == Classification::High);
        tally.judge_inconclusive += usize::from(verdict == Classification::Inconclusive);
    }
    tally
}

fn main() {
    let mut rng = Rng(0x5EED);
    println!(
        "{TRIALS} trials per row, up to {MAX_INTERVALS} intervals each; latency {BASE_LATENCY_MS} ms \
         mean per request (spread {REQUEST_SPREAD}), {STEPS} samples per interval and side; \
         primary error rate {} %.",
        BASE_ERROR_RATE * 100.0
    );
    println!();
    println!(
        "| injected | traffic | fixed threshold caught | judge caught | judge still inconclusive | intervals to the judge's verdict |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, factor) in [
        ("latency +0 % (false alarms)", 1.0),
        ("latency +5 %", 1.05),
        ("latency +10 %", 1.10),
        ("latency +20 %", 1.20),
    ] {
        for requests_per_step in [5u64, 50, 500] {
            let tally = latency_case(&mut rng, requests_per_step, factor);
            println!(
                "{}",
                tally.row(label, &format!("{requests_per_step} req/step"))
            );
        }
    }
    for (label, factor) in [
        ("errors ×1 (false alarms)", 1.0),
        ("errors ×1.5", 1.5),
        ("errors ×2", 2.0),
        ("errors ×5", 5.0),
    ] {
        for requests_per_interval in [1_000u64, 10_000, 100_000] {
            let tally = error_case(&mut rng, requests_per_interval, factor);
            println!(
                "{}",
                tally.row(label, &format!("{requests_per_interval} req/interval"))
            );
        }
    }
}
