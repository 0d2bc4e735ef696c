//! The working state of one tick and the small helpers every step uses.

use flagger_api::analysis::HookType;
use flagger_api::status::{CanaryPhase, CanaryStatus};
use jiff::{SignedDuration, Timestamp};

use crate::action::{Action, Alert, Event, EventName, EventType, Need, Reason, Severity};
use crate::normalize::{Hook, RolloutSpec, Strategy};
use crate::observation::{Observation, Readiness};
use crate::status::{StatusExt, set_phase};

/// Why a step ended the tick early.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The tick is decided; keep the status and actions so far.
    End,
    /// Results are missing; the tick is re-run from scratch once they are in the observation.
    Need(Need),
}

pub(crate) type Flow = Result<(), Stop>;

pub(crate) struct Tick<'a> {
    pub spec: &'a RolloutSpec,
    pub obs: &'a Observation,
    pub now: Timestamp,
    /// The status as read at the start of the tick.
    pub start: &'a CanaryStatus,
    pub status: CanaryStatus,
    pub actions: Vec<Action>,
    /// This is the first analysis tick of the run (pre-rollout hooks, no metrics).
    pub first_analysis: bool,
}

/// The outcome of running the hooks of one type.
pub(crate) struct HookRun<'a> {
    pub passed: Vec<&'a Hook>,
    /// The hook that stopped the run and its message.
    pub stopped_by: Option<(&'a Hook, String)>,
}

pub(crate) fn after(t: Timestamp, d: std::time::Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

impl<'a> Tick<'a> {
    pub fn new(
        spec: &'a RolloutSpec,
        status: &'a CanaryStatus,
        obs: &'a Observation,
        now: Timestamp,
    ) -> Self {
        Tick {
            spec,
            obs,
            now,
            start: status,
            status: status.clone(),
            actions: Vec::new(),
            first_analysis: false,
        }
    }

    pub fn phase(&self) -> CanaryPhase {
        self.status.phase_or_new()
    }

    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    pub fn event(&mut self, type_: EventType, name: EventName, message: String) {
        self.actions.push(Action::Event(Event {
            type_,
            name,
            message,
            reason: None,
        }));
    }

    pub fn event_with(
        &mut self,
        type_: EventType,
        name: EventName,
        message: String,
        reason: Reason,
    ) {
        self.actions.push(Action::Event(Event {
            type_,
            name,
            message,
            reason: Some(reason),
        }));
    }

    pub fn normal(&mut self, name: EventName, message: String) {
        self.event(EventType::Normal, name, message);
    }

    pub fn warning(&mut self, name: EventName, message: String) {
        self.event(EventType::Warning, name, message);
    }

    pub fn alert(
        &mut self,
        severity: Severity,
        message: String,
        fields: Vec<(String, String)>,
        reason: Option<Reason>,
    ) {
        self.actions.push(Action::Alert(Alert {
            severity,
            message,
            fields,
            reason,
        }));
    }

    /// A gate webhook holds the run: the warning naming it and, unless the hook mutes alerts,
    /// the warning alert. `waiting_for` is what the event says the run waits for.
    pub fn halted_by(&mut self, hook: &Hook, name: EventName, waiting_for: &str, alert: &str) {
        self.warning(
            name,
            format!(
                "Halt {} advancement waiting for {waiting_for} {}",
                self.spec.key(),
                hook.name
            ),
        );
        if !hook.mute_alert {
            self.alert(Severity::Warn, alert.into(), Vec::new(), None);
        }
    }

    pub fn set_phase(&mut self, phase: CanaryPhase) {
        set_phase(&mut self.status, phase, &self.spec.target_kind, self.now);
    }

    /// Full status sync: phase and counters, and the revision under test.
    pub fn sync(&mut self, phase: CanaryPhase, weight: u32, failed: u32, iterations: u32) {
        self.set_phase(phase);
        self.status.set_weight(weight);
        self.status.set_failed(failed);
        self.status.set_iter(iterations);
        self.status.last_applied_spec = Some(self.obs.revision.clone());
        self.status.tracked_configs = Some(self.obs.configs.clone());
    }

    /// Forget what the previous run recorded.
    pub fn clear_run_records(&mut self) {
        self.status.canary_analysis = None;
        self.status.delay_until = None;
        self.status.held_since = None;
        self.status.judge = None;
        self.status.set_mirror(0);
        if let Some(token) = &self.obs.reset_token {
            self.status.last_handled_reset = Some(token.clone());
        }
    }

    /// A workload's readiness with the canary's progress deadline applied: a wait that has lasted
    /// longer than `progressDeadlineSeconds` is a failure, in every phase.
    pub fn readiness(&self, r: &'a Readiness) -> Result<(), (bool, String)> {
        match r {
            Readiness::Ready => Ok(()),
            Readiness::Failed { message } => Err((true, message.clone())),
            Readiness::Waiting { message, since } => {
                let expired =
                    since.is_some_and(|s| after(s, self.spec.progress_deadline) < self.now);
                if expired {
                    Err((true, format!("{message}: exceeded its progress deadline")))
                } else {
                    Err((false, message.clone()))
                }
            }
        }
    }

    /// Runs the hooks of `kind` in spec order; stops at the first failure, or at the first success
    /// when `until_success` (rollback hooks). Dry-run calls nothing: gates count as open and
    /// rollback hooks as "no rollback".
    pub fn hooks(
        &mut self,
        kind: HookType,
        phase: CanaryPhase,
        until_success: bool,
    ) -> Result<HookRun<'a>, Stop> {
        let spec: &'a RolloutSpec = self.spec;
        let obs: &'a Observation = self.obs;
        let mut run = HookRun {
            passed: Vec::new(),
            stopped_by: None,
        };
        let mut would_call = Vec::new();
        let of_kind = |h: &&Hook| h.kind == kind;
        for (i, hook) in spec.hooks.iter().filter(of_kind).enumerate() {
            let outcome = if spec.dry_run {
                would_call.push(hook.name.clone());
                if kind == HookType::Rollback {
                    Err("dry-run".to_string())
                } else {
                    Ok(())
                }
            } else {
                match obs.hook(kind, &hook.name) {
                    Some(o) => o.clone(),
                    None => {
                        let hooks = spec
                            .hooks
                            .iter()
                            .filter(of_kind)
                            .skip(i)
                            .map(|h| h.name.clone())
                            .collect();
                        return Err(Stop::Need(Need::Webhooks { kind, phase, hooks }));
                    }
                }
            };
            match (outcome, until_success) {
                (Ok(()), false) => run.passed.push(hook),
                (Err(e), false) => {
                    run.stopped_by = Some((hook, e));
                    break;
                }
                (Ok(()), true) => {
                    run.stopped_by = Some((hook, String::new()));
                    break;
                }
                (Err(_), true) => run.passed.push(hook),
            }
        }
        if !would_call.is_empty() {
            self.push(Action::DryRun(Box::new(Action::CallWebhooks {
                kind,
                phase,
                hooks: would_call,
            })));
        }
        Ok(run)
    }

    /// Fire-and-forget hooks.
    pub fn call_hooks(&mut self, kind: HookType, phase: CanaryPhase) {
        let hooks: Vec<String> = self.spec.hooks_of(kind).map(|h| h.name.clone()).collect();
        if !hooks.is_empty() {
            self.push(Action::CallWebhooks { kind, phase, hooks });
        }
    }

    /// Detail fields of the initialisation and run-start alerts.
    pub fn detail_fields(&self) -> Vec<(String, String)> {
        let s = self.spec;
        let routing = match &s.strategy {
            Strategy::AbTesting { .. } => "A/B Testing".to_string(),
            Strategy::BlueGreen { .. } => "Blue/Green".to_string(),
            Strategy::Canary(l) if l.step_weight > 0 || l.step_weights.is_empty() => {
                format!("Weight step: {} max: {}", l.step_weight, l.max())
            }
            Strategy::Canary(l) => {
                let steps: Vec<String> = l.step_weights.iter().map(u32::to_string).collect();
                // With stepWeights, maxWeight is ignored: the ladder's last step is the maximum.
                format!("Weight steps: {} max: {}", steps.join(","), l.max())
            }
        };
        vec![
            (
                "Target".into(),
                format!("{}/{}", s.target_kind, s.target_key()),
            ),
            ("Failed checks threshold".into(), s.threshold.to_string()),
            (
                "Progress deadline".into(),
                format!("{}s", s.progress_deadline.as_secs()),
            ),
            ("Traffic routing".into(), routing),
        ]
    }
}
