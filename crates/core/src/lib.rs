//! The rollout state machine: every decision the operator makes, as pure functions.
//!
//! [`advance`] takes the normalised spec ([`normalize`]), the persisted status, what the shell
//! observed and the current time, and returns the next status with the effects to carry out. No
//! I/O, no clock: the status is the only memory, so a controller can stop between any two ticks
//! and resume from the status alone.

pub mod action;
mod checks;
mod deletion;
mod init;
pub mod judging;
mod machine;
pub mod manual;
pub mod normalize;
pub mod observation;
pub mod plan;
mod promotion;
mod revision;
mod rollback;
mod runstart;
pub mod session_affinity;
pub mod status;
mod strategy;
mod tick;
pub mod weights;

pub use action::{
    Action, Alert, Event, EventName, EventType, FailedCheck, Need, Outcome, Reason, Routes,
    Severity, Workload,
};
pub use checks::evaluate;
pub use machine::advance;
pub use normalize::{
    Ladder, MetricCheck, MetricKind, Mirror, NoDataPolicy, Ramp, RolloutSpec, Settings, SpecError,
    Strategy, normalize,
};
pub use observation::{
    HookResult, ManualRequest, MetricOutcome, MetricResult, Observation, Readiness, RouteState,
};
pub use session_affinity::{CookieNames, FreshCookies};
