//! Promotion, its gate, and skip-analysis.

use flagger_api::analysis::HookType;
use flagger_api::status::{CanaryPhase, CheckKind};

use crate::action::{Action, EventName, Outcome, Routes, Severity};
use crate::checks::{new_record, record};
use crate::observation::RouteState;
use crate::status::StatusExt;
use crate::tick::{Flow, Stop, Tick};

/// `confirm-promotion` gates. `Ok` = open; a closed gate ends the tick in `WaitingPromotion`.
pub(crate) fn gate(t: &mut Tick) -> Flow {
    let run = t.hooks(HookType::ConfirmPromotion, CanaryPhase::Progressing, false)?;
    for hook in run.passed {
        t.normal(
            EventName::Other,
            format!("Confirm-promotion check {} passed", hook.name),
        );
    }
    let Some((hook, message)) = run.stopped_by else {
        return Ok(());
    };
    let rec = new_record(t, CheckKind::Gate, &hook.name, true, Some(message));
    record(t, rec);
    // Weight and iterations stay as they are, so the status keeps telling the routed truth.
    if t.phase() != CanaryPhase::WaitingPromotion {
        t.set_phase(CanaryPhase::WaitingPromotion);
        t.halted_by(
            hook,
            EventName::WaitingPromotion,
            "promotion approval",
            "Canary promotion is waiting for approval.",
        );
    }
    Err(Stop::End)
}

/// Copies the target to the primary; traffic moves once the primary has rolled out.
pub(crate) fn promote(t: &mut Tick) -> Stop {
    announce_copy(t);
    t.push(Action::Promote);
    t.set_phase(CanaryPhase::Promoting);
    Stop::End
}

fn announce_copy(t: &mut Tick) {
    let s = t.spec;
    t.normal(
        EventName::PromotionStarted,
        format!(
            "Copying {} template spec to {}-primary.{}",
            s.target_key(),
            s.target_name,
            s.namespace
        ),
    );
}

fn finalising(t: &mut Tick) -> Stop {
    t.set_phase(CanaryPhase::Finalising);
    t.status.set_weight(0);
    t.status.set_iter(0);
    Stop::End
}

/// The primary runs the new template; move traffic back to it.
pub(crate) fn promoting(t: &mut Tick, routes: RouteState) -> Stop {
    t.push(Action::ReconcilePrimaryScaler);
    let spw = t.spec.step_weight_promotion;
    if !t.spec.routes_traffic {
        return finalising(t);
    }
    if spw == 0 {
        t.normal(EventName::Other, "Routing all traffic to primary".into());
        t.push(Action::SetRoutes(Routes::PRIMARY));
        return finalising(t);
    }
    // Nothing left on the canary means nothing to shift: finish instead of stalling.
    if routes.canary == 0 {
        return finalising(t);
    }
    let p = routes.primary.saturating_add(spw).min(100);
    t.normal(
        EventName::WeightAdvanced,
        format!("Advance {} primary weight {p}", t.spec.key()),
    );
    t.push(Action::SetRoutes(Routes::split(100 - p)));
    if p == 100 {
        return finalising(t);
    }
    t.status.set_weight(100 - p);
    Stop::End
}

/// The run is over; the canary goes back to zero.
pub(crate) fn finalise(t: &mut Tick) -> Stop {
    t.push(Action::PauseTargetScaler);
    t.push(Action::ScaleTargetToZero);
    succeed(t, false);
    t.normal(
        EventName::Succeeded,
        format!("Promotion completed! Scaling down {}", t.spec.target_key()),
    );
    t.alert(
        Severity::Info,
        "Canary analysis completed successfully, promotion finished.".into(),
        Vec::new(),
        None,
    );
    Stop::End
}

fn succeed(t: &mut Tick, skipped: bool) {
    t.set_phase(CanaryPhase::Succeeded);
    t.status.set_weight(0);
    t.status.set_iter(0);
    t.status.set_mirror(0);
    t.status.last_promoted_spec = t.status.last_applied_spec.clone();
    t.push(Action::Report(Outcome::Succeeded { skipped }));
    t.call_hooks(HookType::PostRollout, CanaryPhase::Succeeded);
}

/// Promote without analysis, all in one tick (the primary rollout is not awaited).
pub(crate) fn skip(t: &mut Tick) -> Stop {
    t.push(Action::SetRoutes(Routes::PRIMARY));
    announce_copy(t);
    t.push(Action::Promote);
    t.push(Action::ReconcilePrimaryScaler);
    t.push(Action::PauseTargetScaler);
    t.push(Action::ScaleTargetToZero);
    succeed(t, true);
    t.normal(
        EventName::Succeeded,
        format!(
            "Promotion completed! Canary analysis was skipped for {}",
            t.spec.target_key()
        ),
    );
    t.alert(
        Severity::Info,
        "Canary analysis was skipped, promotion finished.".into(),
        Vec::new(),
        None,
    );
    Stop::End
}
