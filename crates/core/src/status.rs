//! Reading and writing the persisted status: the machine's only memory.

use flagger_api::status::{CanaryPhase, CanaryStatus, CheckRecord, Condition};
use jiff::Timestamp;

fn count(v: Option<i32>) -> u32 {
    v.map_or(0, |v| u32::try_from(v).unwrap_or(0))
}

fn store(v: u32) -> Option<i32> {
    Some(i32::try_from(v).unwrap_or(i32::MAX))
}

/// Typed access to the optional, signed fields the CRD stores.
pub trait StatusExt {
    fn phase_or_new(&self) -> CanaryPhase;
    fn weight(&self) -> u32;
    fn failed(&self) -> u32;
    fn iter(&self) -> u32;
    fn mirror(&self) -> u32;
    fn records(&self) -> &[CheckRecord];
    fn set_weight(&mut self, w: u32);
    fn set_failed(&mut self, f: u32);
    fn set_iter(&mut self, i: u32);
    fn set_mirror(&mut self, m: u32);
}

impl StatusExt for CanaryStatus {
    fn phase_or_new(&self) -> CanaryPhase {
        self.phase.unwrap_or_default()
    }
    fn weight(&self) -> u32 {
        count(self.canary_weight)
    }
    fn failed(&self) -> u32 {
        count(self.failed_checks)
    }
    fn iter(&self) -> u32 {
        count(self.iterations)
    }
    fn mirror(&self) -> u32 {
        count(self.mirror_weight)
    }
    fn records(&self) -> &[CheckRecord] {
        self.canary_analysis
            .as_ref()
            .and_then(|a| a.iterations.as_deref())
            .unwrap_or(&[])
    }
    fn set_weight(&mut self, w: u32) {
        self.canary_weight = store(w);
    }
    fn set_failed(&mut self, f: u32) {
        self.failed_checks = store(f);
    }
    fn set_iter(&mut self, i: u32) {
        self.iterations = store(i);
    }
    fn set_mirror(&mut self, m: u32) {
        self.mirror_weight = if m == 0 && self.mirror_weight.is_none() {
            None
        } else {
            store(m)
        };
    }
}

/// The `Promoted` condition for a phase.
fn promoted(phase: CanaryPhase, kind: &str) -> (&'static str, String) {
    match phase {
        CanaryPhase::New | CanaryPhase::Initializing => (
            "Unknown",
            format!("New {kind} detected, starting initialization."),
        ),
        CanaryPhase::Initialized => ("True", format!("{kind} initialization completed.")),
        CanaryPhase::Waiting | CanaryPhase::WaitingPromotion => {
            ("Unknown", "Waiting for approval.".into())
        }
        CanaryPhase::Progressing => (
            "Unknown",
            "New revision detected, progressing canary analysis.".into(),
        ),
        CanaryPhase::Promoting => (
            "Unknown",
            "Canary analysis completed, starting primary rolling update.".into(),
        ),
        CanaryPhase::Finalising => (
            "Unknown",
            "Canary analysis completed, routing all traffic to primary.".into(),
        ),
        CanaryPhase::Succeeded => (
            "True",
            "Canary analysis completed successfully, promotion finished.".into(),
        ),
        CanaryPhase::Failed => (
            "False",
            format!("Canary analysis failed, {kind} scaled to zero."),
        ),
        CanaryPhase::Terminating => ("Unknown", "Canary is being finalized.".into()),
        CanaryPhase::Terminated => ("Unknown", "Canary finalized.".into()),
    }
}

/// Sets the phase and keeps the `Promoted` condition in step; other condition types are kept.
pub(crate) fn set_phase(status: &mut CanaryStatus, phase: CanaryPhase, kind: &str, now: Timestamp) {
    status.phase = Some(phase);
    let (state, message) = promoted(phase, kind);
    let reason = phase.as_str();
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == "Promoted") {
        Some(c) if c.status == state && c.reason == reason => {}
        Some(c) => {
            if c.status != state {
                c.last_transition_time = Some(now);
            }
            c.status = state.to_string();
            c.reason = reason.to_string();
            c.message = Some(message);
            c.last_update_time = Some(now);
        }
        None => conditions.push(Condition {
            type_: "Promoted".into(),
            status: state.into(),
            reason: reason.into(),
            message: Some(message),
            last_update_time: Some(now),
            last_transition_time: Some(now),
        }),
    }
}

/// Replaces the `Promoted` condition's message while the phase stays (a held analysis says why
/// it is not moving); `None` puts back the phase's own message.
pub(crate) fn set_promoted_message(
    status: &mut CanaryStatus,
    message: Option<String>,
    kind: &str,
    now: Timestamp,
) {
    let phase = status.phase_or_new();
    let Some(c) = status
        .conditions
        .iter_mut()
        .flatten()
        .find(|c| c.type_ == "Promoted")
    else {
        return;
    };
    let message = message.unwrap_or_else(|| promoted(phase, kind).1);
    if c.message.as_deref() != Some(message.as_str()) {
        c.message = Some(message);
        c.last_update_time = Some(now);
    }
}
