//! `flagger-rs plan`: the core run against simulated observations, so users see what a Canary
//! will do before applying it.

use flagger_api::analysis::HookType;
use flagger_api::status::{CanaryPhase, CanaryStatus};
use jiff::Timestamp;
use serde::Serialize;

use crate::action::{Action, Need};
use crate::advance;
use crate::normalize::{MetricCheck, RolloutSpec};
use crate::observation::{HookResult, MetricOutcome, MetricResult, Observation, RouteState};
use crate::tick::after;

/// Upper bound on simulated ticks; a spec needs at most a few hundred (100 iterations or weight
/// steps of 1), so reaching it means the run never ends. Kept low enough that a plan stays quick
/// when the run cannot end (a `threshold` in the billions keeps a failing run going to the bound).
const MAX_TICKS: u32 = 2_000;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub name: String,
    pub namespace: String,
    pub strategy: String,
    pub interval_seconds: u64,
    /// Checks fail from this tick on (`--fail-at`); absent for the healthy schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_at: Option<u32>,
    pub steps: Vec<PlanStep>,
    /// From the tick that detects the new revision to `Succeeded`, all checks passing and every
    /// workload ready at once: a real run adds the time its canary and its primary take to roll
    /// out (its ticks go on when a rollout ends, not at the next interval).
    pub promote_after_seconds: Option<u64>,
    /// From the tick that detects the new revision to the rollback, every check failing from
    /// `failAt` (default: from the first analysis tick); absent when nothing can fail.
    pub rollback_after_seconds: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanStep {
    pub tick: u32,
    pub elapsed_seconds: u64,
    pub phase: CanaryPhase,
    /// Routed weights after the tick (for A/B: on the requests matching `analysis.match`).
    pub canary_weight: u32,
    pub primary_weight: u32,
    pub mirror_weight: u32,
    /// Hooks called during the tick, in order.
    pub webhooks: Vec<String>,
    /// Metric checks run during the tick, in order.
    pub checks: Vec<String>,
    /// Event messages of the tick.
    pub events: Vec<String>,
}

struct Run {
    steps: Vec<PlanStep>,
    ended_at: Option<(CanaryPhase, u64)>,
}

fn passing(m: &MetricCheck) -> f64 {
    m.min.or(m.max).unwrap_or(0.0)
}

fn failing(m: &MetricCheck) -> f64 {
    match (m.min, m.max) {
        (Some(min), _) => min - 1.0,
        (None, Some(max)) => max + 1.0,
        (None, None) => f64::NAN,
    }
}

/// The revision every simulated tick observes.
const SIMULATED_REVISION: &str = "r1.next";

/// Where a simulated run starts: the status and routes of that moment, its time, and how many
/// intervals pass before the first simulated tick.
struct Start {
    status: CanaryStatus,
    router: RouteState,
    mirror: u32,
    at: Timestamp,
    first_tick_after: u32,
}

impl Start {
    /// No revision recorded: the observed one is new, as any revision the primary does not run is.
    fn new_revision() -> Start {
        Start {
            status: CanaryStatus {
                phase: Some(CanaryPhase::Initialized),
                ..CanaryStatus::default()
            },
            router: RouteState::PRIMARY,
            mirror: 0,
            at: Timestamp::UNIX_EPOCH,
            first_tick_after: 0,
        }
    }

    /// A run under way as `status` records it, its next tick one interval after `now`. The
    /// recorded revision becomes the simulated one, so the simulation continues the run rather
    /// than seeing a new revision and restarting it.
    fn resume(status: &CanaryStatus, now: Timestamp) -> Start {
        let mut status = status.clone();
        status.last_applied_spec = Some(SIMULATED_REVISION.to_string());
        if status.last_promoted_spec.as_deref() == Some(SIMULATED_REVISION) {
            status.last_promoted_spec = None;
        }
        status.tracked_configs = None;
        let canary = u32::try_from(status.canary_weight.unwrap_or(0).clamp(0, 100)).unwrap_or(0);
        let mirror = u32::try_from(status.mirror_weight.unwrap_or(0).max(0)).unwrap_or(0);
        Start {
            status,
            router: RouteState {
                primary: 100 - canary,
                canary,
                mirrored: mirror > 0,
            },
            mirror,
            at: now,
            first_tick_after: 1,
        }
    }
}

fn simulate(spec: &RolloutSpec, fail_at: Option<u32>, start: Start) -> Run {
    let Start {
        mut status,
        mut router,
        mut mirror,
        at: start,
        first_tick_after,
    } = start;
    let mut steps = Vec::new();
    for tick in 0..MAX_TICKS {
        let intervals = tick.saturating_add(first_tick_after);
        let elapsed = spec.interval.as_secs().saturating_mul(u64::from(intervals));
        let now = after(start, spec.interval.saturating_mul(intervals));
        let fails = fail_at.is_some_and(|n| tick >= n);
        let mut obs = Observation::ready(SIMULATED_REVISION, router);
        let mut step = PlanStep {
            tick,
            elapsed_seconds: elapsed,
            phase: CanaryPhase::New,
            canary_weight: 0,
            primary_weight: 100,
            mirror_weight: 0,
            webhooks: Vec::new(),
            checks: Vec::new(),
            events: Vec::new(),
        };
        let (next, actions) = loop {
            let (next, actions) = advance(spec, &status, &obs, now);
            match actions.first() {
                Some(Action::Need(Need::Webhooks { kind, hooks, .. })) => {
                    for name in hooks {
                        step.webhooks.push(name.clone());
                        let outcome = match kind {
                            HookType::Rollback => Err("no rollback".to_string()),
                            HookType::PreRollout | HookType::Rollout if fails => {
                                Err("simulated failure".to_string())
                            }
                            _ => Ok(()),
                        };
                        obs.webhooks.push(HookResult {
                            kind: *kind,
                            name: name.clone(),
                            outcome,
                        });
                    }
                }
                Some(Action::Need(Need::Metrics { names })) => {
                    for name in names {
                        let Some(check) = spec.metrics.iter().find(|m| &m.name == name) else {
                            continue;
                        };
                        step.checks.push(name.clone());
                        let value = if fails {
                            failing(check)
                        } else {
                            passing(check)
                        };
                        obs.metrics.push(MetricResult {
                            name: name.clone(),
                            query: None,
                            outcome: MetricOutcome::Value(value),
                        });
                    }
                }
                Some(Action::Need(Need::Judge)) => {
                    obs.judge = Some(crate::judging::simulated(spec, fails));
                }
                _ => break (next, actions),
            }
        };
        for action in &actions {
            match action {
                Action::SetRoutes(r) => {
                    router = RouteState {
                        primary: r.primary,
                        canary: r.canary,
                        mirrored: r.mirror != 0,
                    };
                    mirror = r.mirror;
                }
                Action::CallWebhooks { hooks, .. } => step.webhooks.extend(hooks.iter().cloned()),
                Action::Event(e) => step.events.push(e.message.clone()),
                _ => {}
            }
        }
        status = next;
        step.phase = status.phase.unwrap_or_default();
        step.canary_weight = router.canary;
        step.primary_weight = router.primary;
        step.mirror_weight = mirror;
        steps.push(step);
        if matches!(
            status.phase,
            Some(CanaryPhase::Succeeded | CanaryPhase::Failed)
        ) {
            let phase = status.phase.unwrap_or_default();
            return Run {
                steps,
                ended_at: Some((phase, elapsed)),
            };
        }
    }
    Run {
        steps,
        ended_at: None,
    }
}

/// How many ticks with checks a healthy run of `spec` passes before it is promoted: the looks the
/// statistical judge's correction plans for, and the passes a replay needs.
pub fn checks_to_promote(spec: &RolloutSpec) -> u32 {
    let mut spec = spec.clone();
    spec.dry_run = false;
    let checks = simulate(&spec, None, Start::new_revision())
        .steps
        .iter()
        .filter(|s| !s.checks.is_empty())
        .count();
    u32::try_from(checks).unwrap_or(u32::MAX)
}

/// The schedule of one run of `spec` from the moment a new revision is detected: healthy, or with
/// every check failing from tick `fail_at` on.
pub fn plan(spec: &RolloutSpec, fail_at: Option<u32>) -> Plan {
    let mut spec = spec.clone();
    // A plan is about the canary's own behaviour, whatever the controller's mode.
    spec.dry_run = false;
    let healthy = simulate(&spec, None, Start::new_revision());
    let promote_after_seconds = match healthy.ended_at {
        Some((CanaryPhase::Succeeded, t)) => Some(t),
        _ => None,
    };
    let fail_from = fail_at.unwrap_or(1);
    // Checks fail at most once a tick, so a threshold the horizon cannot reach never rolls back;
    // simulating the whole horizon only to find that out is what made such plans slow.
    let unreachable = u64::from(fail_from) + u64::from(spec.threshold) > u64::from(MAX_TICKS);
    let failing_run = if fail_at.is_none() && unreachable {
        Run {
            steps: Vec::new(),
            ended_at: None,
        }
    } else {
        simulate(&spec, Some(fail_from), Start::new_revision())
    };
    let rollback_after_seconds = match failing_run.ended_at {
        Some((CanaryPhase::Failed, t)) => Some(t),
        _ => None,
    };
    let steps = if fail_at.is_some() {
        failing_run.steps
    } else {
        healthy.steps
    };
    Plan {
        name: spec.name.clone(),
        namespace: spec.namespace.clone(),
        strategy: spec.strategy.label().to_string(),
        interval_seconds: spec.interval.as_secs(),
        fail_at,
        steps,
        promote_after_seconds,
        rollback_after_seconds,
    }
}

/// The phases of a run under way: the ones a promotion can still come out of.
fn under_way(phase: CanaryPhase) -> bool {
    matches!(
        phase,
        CanaryPhase::Waiting
            | CanaryPhase::Progressing
            | CanaryPhase::WaitingPromotion
            | CanaryPhase::Promoting
            | CanaryPhase::Finalising
    )
}

/// Seconds from `now` until a run recorded in `status` is promoted, if every check passes from
/// its next tick on (taken one interval from now) and every gate opens: the plan's simulation
/// started from the status rather than from a new revision. `None` when no run is under way or
/// the run would not finish.
pub fn time_to_promotion(spec: &RolloutSpec, status: &CanaryStatus, now: Timestamp) -> Option<u64> {
    if !status.phase.is_some_and(under_way) {
        return None;
    }
    let mut spec = spec.clone();
    spec.dry_run = false;
    match simulate(&spec, None, Start::resume(status, now)).ended_at {
        Some((CanaryPhase::Succeeded, t)) => Some(t),
        _ => None,
    }
}
