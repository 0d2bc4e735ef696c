//! What one tick decides: effects for the shell to carry out, as plain data.

use std::time::Duration;

use flagger_api::analysis::HookType;
use flagger_api::status::{CanaryPhase, CheckKind, CheckRecord};
use serde::{Serialize, Serializer};

/// One effect. The shell executes them in order; any failure ends the tick and the next tick retries
/// from the status it had before (every effect is an idempotent apply of a desired state).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    AddFinalizer,
    RemoveFinalizer,
    /// Services, primary workload and its `-primary` configs (initialisation).
    EnsurePrimary,
    /// Apex Service selects the primary pods; routing objects exist (initialisation).
    RouteApexToPrimary,
    /// Scale from zero (and canary pod overrides).
    ScaleTargetUp,
    /// Scale to zero (and removal of canary pod overrides).
    ScaleTargetToZero,
    PauseTargetScaler,
    ResumeTargetScaler,
    ReconcilePrimaryScaler,
    /// Copy the target's template to the primary.
    Promote,
    SetRoutes(Routes),
    /// Deletion: give the target back its replicas.
    RestoreTarget,
    /// Deletion: apex Service selector and routing objects as the user had them.
    RevertRouting,
    /// Fire-and-forget hooks (`post-rollout`): failures only become events.
    CallWebhooks {
        #[serde(serialize_with = "hook_type")]
        kind: HookType,
        phase: CanaryPhase,
        hooks: Vec<String>,
    },
    /// The tick cannot be decided without these results: run them, put the results in the
    /// observation and call `advance` again with the same status.
    Need(Need),
    Event(Event),
    Alert(Alert),
    /// A run ended; drives the success/failure/rollback counters and `analysis-complete` hooks.
    Report(Outcome),
    RequeueAfter(Duration),
    /// The run waits for this workload's rollout: the next tick may come as soon as the workload
    /// is ready (or has failed), before the interval of [`Action::RequeueAfter`] is over. The
    /// wait is the cluster's, not the plan's: ticking at the next interval instead would add up to
    /// an interval to the run each time a rollout outlasts the tick before it.
    RequeueWhenReady(Workload),
    /// Controller dry-run: what would have been done, for the log only.
    DryRun(Box<Action>),
}

impl Action {
    /// Effects that change traffic, workloads, the Canary object or the outside world; these are
    /// the ones dry-run turns into log lines.
    pub fn is_effect(&self) -> bool {
        !matches!(
            self,
            Action::Need(_)
                | Action::Event(_)
                | Action::Report(_)
                | Action::RequeueAfter(_)
                | Action::RequeueWhenReady(_)
                | Action::DryRun(_)
        )
    }
}

/// A workload of the canary whose readiness a run can wait on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Workload {
    /// The `-primary` copy.
    Primary,
    /// The target itself.
    Canary,
}

/// Desired routes. `mirror` is the percentage of requests mirrored to the canary (0 = no mirror).
/// A/B routers apply `primary`/`canary` to the match rule only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Routes {
    pub primary: u32,
    pub canary: u32,
    pub mirror: u32,
}

impl Routes {
    pub const PRIMARY: Routes = Routes {
        primary: 100,
        canary: 0,
        mirror: 0,
    };
    pub const CANARY: Routes = Routes {
        primary: 0,
        canary: 100,
        mirror: 0,
    };

    pub fn split(canary: u32) -> Routes {
        let canary = canary.min(100);
        Routes {
            primary: 100 - canary,
            canary,
            mirror: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "need", rename_all = "camelCase")]
pub enum Need {
    /// Call these hooks in order (payload `phase`); results may stop early, the core asks again
    /// for whatever it still needs.
    Webhooks {
        #[serde(serialize_with = "hook_type")]
        kind: HookType,
        phase: CanaryPhase,
        hooks: Vec<String>,
    },
    /// Query these metrics in order; same early-stop contract as webhooks.
    Metrics { names: Vec<String> },
    /// Query the judged metrics for the baseline, add both sides' samples to the run's and
    /// look (`judging::look`) at everything gathered.
    Judge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// Event lifecycle names, used by event-webhook filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventName {
    Initialized,
    Waiting,
    RevisionDetected,
    Restarted,
    AnalysisStarted,
    CheckFailed,
    WeightAdvanced,
    IterationAdvanced,
    WaitingTrafficIncrease,
    WaitingPromotion,
    PromotionStarted,
    Succeeded,
    Rollback,
    Failed,
    Terminating,
    Terminated,
    /// A manual request (`promote`, `abort`, ...) was answered.
    ManualRequest,
    Other,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "type")]
    pub type_: EventType,
    pub name: EventName,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warn,
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub severity: Severity,
    pub message: String,
    pub fields: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    Succeeded { skipped: bool },
    RolledBack { reason: Reason },
    PromotionFailed { reason: Reason },
}

/// Why a run failed or halted, in a form alerts and logs can explain without parsing text.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// One check failed this tick (the run goes on while `failedChecks < threshold`).
    CheckFailed {
        check: Box<FailedCheck>,
    },
    FailedChecks {
        failed_checks: u32,
        threshold: u32,
        /// The check whose failure reached the threshold (absent after a restart mid-count).
        last: Option<Box<FailedCheck>>,
        /// Every failed check recorded during the run.
        records: Vec<CheckRecord>,
    },
    ProgressDeadline {
        message: String,
    },
    PrimaryNotReady {
        message: String,
    },
    ManualWebhook {
        hook: String,
    },
    Reverted {
        revision: String,
    },
    PromotionFailed {
        message: String,
    },
    /// A person asked for the rollback (`flagger-rs abort`).
    Aborted {
        by: String,
    },
}

impl Reason {
    /// The `reason` label of `flagger_canary_rollbacks_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::CheckFailed { .. } | Reason::FailedChecks { .. } => "failed_checks",
            Reason::ProgressDeadline { .. } => "progress_deadline",
            Reason::PrimaryNotReady { .. } => "primary_not_ready",
            Reason::ManualWebhook { .. } => "manual_webhook",
            Reason::Reverted { .. } => "reverted",
            Reason::PromotionFailed { .. } => "promotion_failed",
            Reason::Aborted { .. } => "aborted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedCheck {
    pub kind: CheckKind,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// e.g. `min 99`, `max 500`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub message: String,
}

fn hook_type<S: Serializer>(kind: &HookType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}
