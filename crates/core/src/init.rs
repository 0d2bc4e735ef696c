//! Initialisation: take the workload over without downtime.

use flagger_api::status::CanaryPhase;

use crate::action::{Action, EventName, Routes, Severity};
use crate::tick::{Flow, Stop, Tick};

pub(crate) fn run(t: &mut Tick) -> Flow {
    if t.phase() == CanaryPhase::New {
        t.set_phase(CanaryPhase::Initializing);
    }
    t.push(Action::EnsurePrimary);
    // Never scale the target down before the primary can serve, whatever the failure: no downtime.
    if let Err((_, message)) = t.readiness(&t.obs.primary) {
        t.warning(
            EventName::Other,
            format!(
                "{}-primary.{} not ready: {message}",
                t.spec.target_name, t.spec.namespace
            ),
        );
        return Err(Stop::End);
    }
    t.push(Action::PauseTargetScaler);
    t.push(Action::RouteApexToPrimary);
    t.push(Action::ScaleTargetToZero);
    t.push(Action::SetRoutes(Routes::PRIMARY));
    t.sync(CanaryPhase::Initialized, 0, 0, 0);
    t.status.last_promoted_spec = Some(t.obs.revision.clone());
    // A token present at creation is history, not a request.
    t.status.last_handled_reset = t.obs.reset_token.clone();
    t.normal(
        EventName::Initialized,
        format!("Initialization done! {}", t.spec.key()),
    );
    let fields = t.detail_fields();
    t.alert(
        Severity::Info,
        format!(
            "New {} detected, initialization completed.",
            t.spec.target_kind
        ),
        fields,
        None,
    );
    Err(Stop::End)
}
