//! "Would this have promoted?": the judge run interval by interval over a recording, with
//! Flagger's counting of failed checks.
//!
//! Each interval the judge sees everything recorded so far (a canary's evidence accumulates over
//! its run); a Pass decision counts as a passed check, Fail as a failed check, and Marginal or
//! Inconclusive hold the canary (no step, no failure). The run rolls back at the interval whose
//! failure reaches `threshold`, and promotes at the interval whose pass completes the checks the
//! canary's plan needs.

use std::collections::BTreeMap;

use crate::classify::{Direction, Judgement, judge_counts, judge_series};
use crate::recording::{Recording, Window};
use crate::score::{Criticality, Decision, MetricVerdict, Score, Scoring, score};
use crate::settings::Settings;

/// One interval of the replay.
#[derive(Debug, Clone)]
pub struct ReplayedInterval {
    pub interval: u32,
    pub metrics: Vec<(String, Judgement)>,
    pub score: Score,
}

/// How the recorded run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Promoted {
        interval: u32,
    },
    RolledBack {
        interval: u32,
    },
    /// The recording ended first.
    Undecided {
        passed: u32,
        failed: u32,
        held: u32,
    },
}

#[derive(Debug, Clone)]
pub struct Replay {
    pub intervals: Vec<ReplayedInterval>,
    pub outcome: Outcome,
}

/// `checks_to_promote`: passing checks the canary's plan needs before promotion; `threshold`: failed
/// checks that roll it back. Every metric is judged with `direction` "increase is worse", counts
/// and weights alike, in a group of its own.
pub fn replay(
    recording: &Recording,
    settings: &Settings,
    scoring: &Scoring,
    threshold: u32,
    checks_to_promote: u32,
) -> Replay {
    let mut gathered: BTreeMap<String, Window> = BTreeMap::new();
    let (mut passed, mut failed, mut held) = (0u32, 0u32, 0u32);
    let mut intervals = Vec::new();
    let mut outcome = None;
    for (&interval, windows) in &recording.intervals {
        for (metric, window) in windows {
            accumulate(
                gathered
                    .entry(metric.clone())
                    .or_insert_with(|| empty_like(window)),
                window,
            );
        }
        let metrics: Vec<(String, Judgement)> = gathered
            .iter()
            .map(|(metric, window)| (metric.clone(), judge(window, settings)))
            .collect();
        let verdicts: Vec<MetricVerdict> = metrics
            .iter()
            .map(|(metric, judgement)| MetricVerdict {
                name: metric.clone(),
                group: metric.clone(),
                criticality: Criticality::Normal,
                classification: judgement.classification,
            })
            .collect();
        let score = score(&verdicts, scoring);
        match score.decision {
            Decision::Pass => passed += 1,
            Decision::Fail => failed += 1,
            Decision::Marginal | Decision::Inconclusive => held += 1,
        }
        intervals.push(ReplayedInterval {
            interval,
            metrics,
            score,
        });
        if failed >= threshold.max(1) {
            outcome = Some(Outcome::RolledBack { interval });
            break;
        }
        if passed >= checks_to_promote {
            outcome = Some(Outcome::Promoted { interval });
            break;
        }
    }
    Replay {
        intervals,
        outcome: outcome.unwrap_or(Outcome::Undecided {
            passed,
            failed,
            held,
        }),
    }
}

fn judge(window: &Window, settings: &Settings) -> Judgement {
    match window {
        Window::Samples { canary, primary } => {
            judge_series(canary, primary, Direction::Increase, settings)
        }
        Window::Counts { canary, primary } => {
            judge_counts(*canary, *primary, Direction::Increase, settings)
        }
    }
}

fn empty_like(window: &Window) -> Window {
    match window {
        Window::Samples { .. } => Window::Samples {
            canary: Vec::new(),
            primary: Vec::new(),
        },
        Window::Counts { .. } => {
            let empty = crate::counts::Counts {
                errors: 0,
                total: 0,
            };
            Window::Counts {
                canary: empty,
                primary: empty,
            }
        }
    }
}

/// Adds an interval's window to what was gathered; a metric whose form changed mid-recording
/// cannot be parsed in the first place, so mismatched forms are left as they are.
fn accumulate(into: &mut Window, window: &Window) {
    match (into, window) {
        (
            Window::Samples { canary, primary },
            Window::Samples {
                canary: c,
                primary: p,
            },
        ) => {
            canary.extend_from_slice(c);
            primary.extend_from_slice(p);
        }
        (
            Window::Counts { canary, primary },
            Window::Counts {
                canary: c,
                primary: p,
            },
        ) => {
            for (side, add) in [(canary, c), (primary, p)] {
                side.errors = side.errors.saturating_add(add.errors);
                side.total = side.total.saturating_add(add.total);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome, replay};
    use crate::recording::Recording;
    use crate::score::Scoring;
    use crate::settings::Settings;

    fn recording(canary_latency: f64, intervals: u32) -> Recording {
        let mut text = String::new();
        for i in 1..=intervals {
            for k in 0..12 {
                let jitter = f64::from(k % 4);
                text.push_str(&format!("{i},latency,canary,{}\n", canary_latency + jitter));
                text.push_str(&format!("{i},latency,primary,{}\n", 100.0 + jitter));
            }
            text.push_str(&format!(
                "{i},errors,canary,2,1000\n{i},errors,primary,2,1000\n"
            ));
        }
        Recording::parse(&text).unwrap()
    }

    #[test]
    fn an_equal_canary_promotes_after_the_planned_checks() {
        let r = replay(
            &recording(100.0, 10),
            &Settings::default(),
            &Scoring::default(),
            2,
            5,
        );
        assert_eq!(r.outcome, Outcome::Promoted { interval: 5 });
    }

    #[test]
    fn a_slower_canary_rolls_back_at_the_threshold() {
        let r = replay(
            &recording(130.0, 10),
            &Settings::default(),
            &Scoring::default(),
            2,
            5,
        );
        assert_eq!(r.outcome, Outcome::RolledBack { interval: 2 });
        assert!(
            r.intervals[0].score.reason.contains("score"),
            "{:?}",
            r.intervals[0].score
        );
    }

    #[test]
    fn too_short_a_recording_is_undecided() {
        let r = replay(
            &recording(100.0, 2),
            &Settings::default(),
            &Scoring::default(),
            2,
            5,
        );
        assert_eq!(
            r.outcome,
            Outcome::Undecided {
                passed: 2,
                failed: 0,
                held: 0
            }
        );
    }
}
