//! A statistical canary judge: is the canary worse than the primary, judged from samples of both
//! rather than from a fixed threshold?
//!
//! Fixed thresholds (Flagger's `thresholdRange`) must be set loose enough to survive every normal
//! day, so a regression that stays inside them — 20 % slower, twice the errors — promotes. The
//! judge compares the canary with the primary running at the same time, so the day's load, the
//! time of day and upstream trouble affect both sides alike:
//!
//! - [`judge_series`] compares two samples of a continuous metric (latency, CPU) with the
//!   Mann–Whitney U test and the Hodges–Lehmann estimate of the shift between them, and gates the
//!   verdict on the size of the shift, so a statistically significant but negligible change passes;
//! - [`judge_counts`] compares error counts out of request counts with an exact conditional test
//!   of the rate ratio, because a rank test on sparse error rates (mostly zeros) sees ties, not
//!   errors;
//! - [`score`] folds the per-metric classifications into one score by group weight and
//!   criticality, with pass and marginal thresholds.
//!
//! Too little data is never read as a pass: it is [`Classification::Inconclusive`], which the
//! caller holds on. No I/O and no clock: everything here is a function of its arguments.

mod classify;
mod counts;
mod rank_sum;
mod recording;
mod replay;
mod root;
mod run;
mod score;
mod settings;

pub use classify::{Classification, Direction, Judgement, judge_counts, judge_series};
pub use counts::{Counts, RateRatio};
pub use rank_sum::Shift;
pub use recording::{Recording, RecordingError, Window};
pub use replay::{Outcome, Replay, ReplayedInterval, replay};
pub use run::{Correction, Evidence, Look, MetricSeries, look};
pub use score::{Criticality, Decision, MetricVerdict, Score, Scoring, ScoringError, score};
pub use settings::{Settings, SettingsError};
