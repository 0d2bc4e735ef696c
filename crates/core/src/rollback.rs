//! Rollback and failed promotion.

use flagger_api::analysis::HookType;
use flagger_api::status::{CanaryPhase, CheckRecord};

use crate::action::{Action, EventName, FailedCheck, Outcome, Reason, Routes, Severity};
use crate::status::StatusExt;
use crate::tick::{Stop, Tick};

/// The run's failed checks as alert fields (seed extra). A check that failed the same way on
/// several ticks (a webhook answering 500 each time) is one line with a count: the alert is read
/// on a phone.
fn failed_check_fields(records: &[CheckRecord]) -> Vec<(String, String)> {
    let mut lines: Vec<(String, usize)> = Vec::new();
    for r in records.iter().filter(|r| r.failed) {
        let line = match (r.value, &r.threshold) {
            (Some(v), Some(th)) => format!("{}: {v} ({th}) at iteration {}", r.name, r.iteration),
            _ => format!("{}: {}", r.name, r.message.as_deref().unwrap_or("failed")),
        };
        match lines.iter_mut().find(|(seen, _)| *seen == line) {
            Some((_, count)) => *count += 1,
            None => lines.push((line, 1)),
        }
    }
    lines
        .into_iter()
        .map(|(line, count)| {
            let value = if count == 1 {
                line
            } else {
                format!("{line} ({count} times)")
            };
            ("Failed check".to_string(), value)
        })
        .collect()
}

pub(crate) fn failed_checks_reason(t: &Tick, last: Option<FailedCheck>) -> Reason {
    Reason::FailedChecks {
        failed_checks: t.status.failed(),
        threshold: t.spec.threshold,
        last: last.map(Box::new),
        records: t
            .status
            .records()
            .iter()
            .filter(|r| r.failed)
            .cloned()
            .collect(),
    }
}

/// Rolls back: routes to the primary, target to zero, phase `Failed`. The primary is never touched.
pub(crate) fn rollback(t: &mut Tick, reason: Reason) -> Stop {
    let key = t.spec.key();
    match &reason {
        Reason::FailedChecks { failed_checks, .. } => {
            let f = *failed_checks;
            t.event_with(
                crate::action::EventType::Warning,
                EventName::Rollback,
                format!("Rolling back {key} failed checks threshold reached {f}"),
                reason.clone(),
            );
            let fields = failed_check_fields(t.status.records());
            t.alert(
                Severity::Error,
                format!("Failed checks threshold reached {f}"),
                fields,
                Some(reason.clone()),
            );
        }
        Reason::ProgressDeadline { message } => {
            let message = message.clone();
            t.event_with(
                crate::action::EventType::Warning,
                EventName::Rollback,
                format!("Rolling back {key} progress deadline exceeded {message}"),
                reason.clone(),
            );
            t.alert(
                Severity::Error,
                format!("Progress deadline exceeded {message}"),
                Vec::new(),
                Some(reason.clone()),
            );
        }
        Reason::PrimaryNotReady { message } => {
            let message = message.clone();
            t.event_with(
                crate::action::EventType::Warning,
                EventName::Rollback,
                format!("Rolling back {key} primary not ready: {message}"),
                reason.clone(),
            );
            t.alert(
                Severity::Error,
                format!("Rolling back, primary not ready: {message}"),
                Vec::new(),
                Some(reason.clone()),
            );
        }
        Reason::Reverted { .. } => {
            let message = format!("Rolling back {key}: target reverted to the promoted revision");
            t.event_with(
                crate::action::EventType::Warning,
                EventName::Rollback,
                message.clone(),
                reason.clone(),
            );
            t.alert(Severity::Error, message, Vec::new(), Some(reason.clone()));
        }
        // The manual-webhook notice is sent where the hook answered, an abort's where the
        // request was answered.
        Reason::ManualWebhook { .. }
        | Reason::Aborted { .. }
        | Reason::CheckFailed { .. }
        | Reason::PromotionFailed { .. } => {}
    }
    t.push(Action::SetRoutes(Routes::PRIMARY));
    t.warning(
        EventName::Failed,
        format!("Canary failed! Scaling down {key}"),
    );
    t.push(Action::PauseTargetScaler);
    t.push(Action::ScaleTargetToZero);
    t.sync(CanaryPhase::Failed, 0, 0, 0);
    t.status.set_mirror(0);
    t.push(Action::Report(Outcome::RolledBack { reason }));
    t.call_hooks(HookType::PostRollout, CanaryPhase::Failed);
    Stop::End
}

/// The primary cannot run the promoted template: keep all traffic on the canary, the only healthy
/// copy of the new revision.
pub(crate) fn failed_promotion(t: &mut Tick, message: String) -> Stop {
    let reason = Reason::PromotionFailed {
        message: message.clone(),
    };
    t.event_with(
        crate::action::EventType::Warning,
        EventName::Failed,
        format!(
            "Promotion of {} failed, primary not ready: {message}",
            t.spec.target_key()
        ),
        reason.clone(),
    );
    t.alert(
        Severity::Error,
        format!("Promotion failed, primary not ready: {message}"),
        Vec::new(),
        Some(reason.clone()),
    );
    t.push(Action::SetRoutes(Routes::CANARY));
    t.sync(CanaryPhase::Failed, 100, 0, 0);
    t.status.set_mirror(0);
    t.push(Action::Report(Outcome::PromotionFailed { reason }));
    t.call_hooks(HookType::PostRollout, CanaryPhase::Failed);
    Stop::End
}
