//! Deletion with `revertOnDeletion`: give the user back the workload and
//! routing they had before the Canary existed.

use flagger_api::status::CanaryPhase;

use crate::action::{Action, EventName};
use crate::tick::{Stop, Tick};

pub(crate) fn run(t: &mut Tick) -> Stop {
    if !t.obs.has_finalizer {
        return Stop::End;
    }
    if !t.spec.revert_on_deletion {
        t.push(Action::RemoveFinalizer);
        return Stop::End;
    }
    match t.phase() {
        CanaryPhase::Terminated => t.push(Action::RemoveFinalizer),
        CanaryPhase::Terminating => match t.readiness(&t.obs.canary) {
            Ok(()) => {
                t.push(Action::RevertRouting);
                // Written before the finalizer goes, so a retried finalisation is a no-op.
                t.set_phase(CanaryPhase::Terminated);
                t.push(Action::RemoveFinalizer);
                t.normal(
                    EventName::Terminated,
                    format!("Terminated canary {}", t.spec.key()),
                );
            }
            Err((_, message)) => {
                t.warning(
                    EventName::Other,
                    format!("{} not ready: {message}", t.spec.target_key()),
                );
            }
        },
        _ => {
            t.set_phase(CanaryPhase::Terminating);
            t.normal(
                EventName::Terminating,
                format!("Terminating canary {}", t.spec.key()),
            );
            t.push(Action::ResumeTargetScaler);
            t.push(Action::RestoreTarget);
        }
    }
    Stop::End
}
