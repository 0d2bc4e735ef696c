//! Starting a run on a new revision and restarting one.

use flagger_api::analysis::HookType;
use flagger_api::status::CanaryPhase;

use crate::action::{Action, EventName, Reason, Routes, Severity};
use crate::rollback::rollback;
use crate::status::StatusExt;
use crate::tick::{Stop, Tick};

pub(crate) fn manual_rollback(t: &mut Tick, hook: &str) -> Stop {
    let reason = Reason::ManualWebhook {
        hook: hook.to_string(),
    };
    t.event_with(
        crate::action::EventType::Warning,
        EventName::Rollback,
        format!("Rolling back {} manual webhook invoked", t.spec.key()),
        reason.clone(),
    );
    // Every rollback reaches on-call at error severity.
    t.alert(
        Severity::Error,
        "Rolling back manual webhook invoked".into(),
        Vec::new(),
        Some(reason.clone()),
    );
    rollback(t, reason)
}

/// `rollback` hooks, asked also while `Waiting`. `Ok` = no hook asked for a rollback.
pub(crate) fn rollback_hooks(t: &mut Tick) -> Result<(), Stop> {
    let phase = t.phase();
    let run = t.hooks(HookType::Rollback, phase, true)?;
    for hook in run.passed {
        t.normal(
            EventName::Other,
            format!("Rollback hook {} not signaling a rollback", hook.name),
        );
    }
    match run.stopped_by {
        Some((hook, _)) => {
            t.normal(
                EventName::Other,
                format!("Rollback check {} passed", hook.name),
            );
            Err(manual_rollback(t, &hook.name))
        }
        None => Ok(()),
    }
}

/// Gates, then scale the new revision up. The analysis starts at the next tick.
pub(crate) fn start(t: &mut Tick) -> Stop {
    let phase = t.phase();
    if phase == CanaryPhase::Waiting
        && let Err(stop) = rollback_hooks(t)
    {
        return stop;
    }
    let run = match t.hooks(HookType::ConfirmRollout, phase, false) {
        Ok(run) => run,
        Err(stop) => return stop,
    };
    for hook in run.passed {
        t.normal(
            EventName::Other,
            format!("Confirm-rollout check {} passed", hook.name),
        );
    }
    if let Some((hook, _)) = run.stopped_by {
        if phase != CanaryPhase::Waiting {
            t.set_phase(CanaryPhase::Waiting);
            t.status.set_weight(0);
            t.status.set_iter(0);
            t.halted_by(
                hook,
                EventName::Waiting,
                "approval",
                "Canary is waiting for approval.",
            );
        }
        return Stop::End;
    }
    t.normal(
        EventName::RevisionDetected,
        format!("New revision detected! Scaling up {}", t.spec.target_key()),
    );
    let fields = t.detail_fields();
    t.alert(
        Severity::Info,
        "New revision detected, progressing canary analysis.".into(),
        fields,
        None,
    );
    for warning in &t.spec.warnings {
        t.warning(EventName::Other, warning.clone());
    }
    t.push(Action::ResumeTargetScaler);
    t.push(Action::ScaleTargetUp);
    t.sync(CanaryPhase::Progressing, 0, 0, 0);
    t.clear_run_records();
    Stop::End
}

/// Restart: the canary workload already runs and rolls to the new template by itself.
pub(crate) fn restart(t: &mut Tick) -> Stop {
    t.normal(
        EventName::Restarted,
        format!(
            "New revision detected! Restarting analysis for {}",
            t.spec.target_key()
        ),
    );
    t.push(Action::SetRoutes(Routes::PRIMARY));
    t.sync(CanaryPhase::Progressing, 0, 0, 0);
    t.clear_run_records();
    Stop::End
}
