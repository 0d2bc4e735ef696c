//! One tick, its steps in a fixed order.

use flagger_api::request::RequestAction;
use flagger_api::status::{CanaryPhase, CanaryStatus};
use jiff::Timestamp;

use crate::action::{Action, EventName, Reason, Workload};
use crate::normalize::RolloutSpec;
use crate::observation::{Observation, RouteState};
use crate::revision::{new_reset, reverted, revision_changed};
use crate::rollback::{failed_checks_reason, rollback};
use crate::status::StatusExt;
use crate::tick::{Flow, Stop, Tick, after};
use crate::weights::routes_from_status;
use crate::{checks, deletion, init, manual, promotion, runstart, session_affinity, strategy};

/// Decides one tick: the new status and the effects that get there.
///
/// When the decision needs webhook or metric results that are not in `observation`, the answer is
/// the unchanged status and a single [`Action::Need`]; call again with the results added.
pub fn advance(
    spec: &RolloutSpec,
    status: &CanaryStatus,
    observation: &Observation,
    now: Timestamp,
) -> (CanaryStatus, Vec<Action>) {
    let mut t = Tick::new(spec, status, observation, now);
    if let Err(Stop::Need(need)) = run(&mut t) {
        return (status.clone(), vec![Action::Need(need)]);
    }
    let Tick {
        status: mut new,
        mut actions,
        ..
    } = t;
    session_affinity::decide(spec, &mut new, &actions, &observation.fresh_cookies);
    let moved = new.phase != status.phase
        || new.canary_weight != status.canary_weight
        || new.failed_checks != status.failed_checks
        || new.iterations != status.iterations;
    // The printer column only moves when something a user would call a transition happens.
    if moved {
        new.last_transition_time = Some(now);
    }
    if spec.dry_run {
        for a in &mut actions {
            if a.is_effect() {
                let inner = std::mem::replace(a, Action::RemoveFinalizer);
                *a = Action::DryRun(Box::new(inner));
            }
        }
    }
    actions.push(Action::RequeueAfter(spec.interval));
    (new, actions)
}

fn run(t: &mut Tick) -> Flow {
    let spec = t.spec;
    if t.obs.deleting {
        return Err(deletion::run(t));
    }
    if spec.suspend {
        t.normal(
            EventName::Other,
            "skipping canary run as object is suspended".into(),
        );
        return Err(Stop::End);
    }
    if spec.revert_on_deletion && !t.obs.has_finalizer {
        t.push(Action::AddFinalizer);
    } else if !spec.revert_on_deletion && t.obs.has_finalizer {
        t.push(Action::RemoveFinalizer);
    }

    let phase = t.phase();
    match phase {
        CanaryPhase::New | CanaryPhase::Initializing => return init::run(t),
        CanaryPhase::Terminating | CanaryPhase::Terminated => return Err(Stop::End),
        _ => {}
    }

    // A manual request is answered in any phase from here on; promote, abort and retry end the
    // tick with their effect.
    if let Some((action, by)) = manual::take(t) {
        match action {
            RequestAction::Promote => return Err(promotion::promote(t)),
            RequestAction::Abort => return Err(rollback(t, Reason::Aborted { by })),
            RequestAction::Retry => return Err(runstart::start(t)),
            RequestAction::Pause | RequestAction::Resume => {}
        }
    }

    // Idle canaries go on only for a new revision.
    let changed = revision_changed(t.start, t.obs) || new_reset(t.start, t.obs);
    match phase {
        CanaryPhase::Initialized | CanaryPhase::Succeeded if !changed => return Err(Stop::End),
        CanaryPhase::Failed => {
            // Re-applying the failed revision, or reverting to the promoted one, must not re-run.
            t.status.last_applied_spec = Some(t.obs.revision.clone());
            t.status.tracked_configs = Some(t.obs.configs.clone());
            if !changed {
                return Err(Stop::End);
            }
        }
        _ => {}
    }

    // The primary must be ready (unless the analysis is skipped).
    let skipping = spec.skip_analysis || t.obs.skip_analysis_annotation;
    if !skipping && let Err((failed, message)) = t.readiness(&t.obs.primary) {
        let at_rest = matches!(
            phase,
            CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed
        );
        if !failed || at_rest {
            t.warning(
                EventName::Other,
                format!(
                    "{}-primary.{} not ready: {message}",
                    spec.target_name, spec.namespace
                ),
            );
            if !at_rest {
                // At rest the primary's readiness matters only with a new revision, and a new
                // revision is acted on at once anyway.
                t.push(Action::RequeueWhenReady(Workload::Primary));
            }
            return Err(Stop::End);
        }
        if matches!(phase, CanaryPhase::Promoting | CanaryPhase::Finalising) {
            return Err(crate::rollback::failed_promotion(t, message));
        }
        return Err(rollback(t, Reason::PrimaryNotReady { message }));
    }

    // Dry-run never wrote the router, so the status is the truth there.
    let routes: RouteState = if spec.dry_run {
        routes_from_status(spec, &t.status)
    } else {
        match &t.obs.routes {
            Ok(r) => *r,
            Err(e) => {
                t.warning(
                    EventName::Other,
                    format!("Error reading routes of {}: {e}", spec.key()),
                );
                return Err(Stop::End);
            }
        }
    };

    match phase {
        CanaryPhase::Initialized
        | CanaryPhase::Succeeded
        | CanaryPhase::Failed
        | CanaryPhase::Waiting => {
            return Err(runstart::start(t));
        }
        CanaryPhase::Progressing | CanaryPhase::WaitingPromotion => {
            // A target reverted to the promoted revision rolls back; a new revision restarts the run.
            if reverted(t.start, t.obs) {
                let revision = t.obs.revision.clone();
                return Err(rollback(t, Reason::Reverted { revision }));
            }
            if changed {
                return Err(runstart::restart(t));
            }
            // The canary must be ready; past its progress deadline it rolls back.
            if let Err((failed, message)) = t.readiness(&t.obs.canary) {
                if failed {
                    return Err(rollback(t, Reason::ProgressDeadline { message }));
                }
                let what = if spec.target_kind == "Deployment" {
                    "canary deployment"
                } else {
                    "canary"
                };
                t.warning(
                    EventName::Other,
                    format!("{what} {} not ready: {message}", spec.target_key()),
                );
                t.push(Action::RequeueWhenReady(Workload::Canary));
                return Err(Stop::End);
            }
        }
        _ => {}
    }

    // Skip-analysis promotes at once.
    if skipping {
        return Err(promotion::skip(t));
    }
    match phase {
        CanaryPhase::Promoting => return Err(promotion::promoting(t, routes)),
        CanaryPhase::Finalising => return Err(promotion::finalise(t)),
        _ => {}
    }

    // Manual rollback through `rollback` hooks.
    runstart::rollback_hooks(t)?;
    // Reached only after a crash between a failed check and its rollback, or a lowered threshold.
    if t.status.failed() >= spec.threshold {
        let reason = failed_checks_reason(t, None);
        return Err(rollback(t, reason));
    }

    let first =
        routes.canary == 0 && t.status.iter() == 0 && !(spec.mirror.is_some() && routes.mirrored);
    t.first_analysis = first;
    if first {
        // Warm-up hold (beyond Flagger) before the first analysis step.
        if !spec.delay.is_zero() {
            match t.status.delay_until {
                None => {
                    t.status.delay_until = Some(after(t.now, spec.delay));
                    return Err(Stop::End);
                }
                Some(until) if t.now < until => return Err(Stop::End),
                Some(_) => {}
            }
        }
        checks::pre_rollout(t)?;
    } else {
        checks::analyse(t)?;
    }
    if manual::hold(t) {
        return Err(Stop::End);
    }
    Err(strategy::step(t, routes))
}
