//! What `status` shows of one Canary, computed from the object alone (spec and status) and the
//! current time, so every rendering and every test starts from the same pure value.

use flagger_api::Canary;
use flagger_api::analysis::HookType;
use flagger_api::status::{CanaryPhase, CheckKind, CheckRecord};
use flagger_core::plan::time_to_promotion;
use flagger_core::status::StatusExt;
use flagger_core::weights::routes_from_status;
use flagger_core::{RolloutSpec, Settings, Strategy, normalize};
use jiff::Timestamp;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryView {
    pub name: String,
    pub namespace: String,
    /// Empty until the controller first processes the canary.
    pub phase: String,
    /// `canary`, `ab-testing` or `blue-green`; empty when the spec does not normalise.
    pub strategy: String,
    pub primary_weight: u32,
    pub canary_weight: u32,
    pub mirror_weight: u32,
    pub progress: Option<Progress>,
    /// The latest result of each check of the current run, in the order they first ran.
    pub checks: Vec<CheckView>,
    pub failed_checks: u32,
    pub threshold: Option<u32>,
    /// Failed checks the run can still take before it rolls back.
    pub failures_left: Option<u32>,
    /// A gate or webhook the run waits on.
    pub pending: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Timestamp>,
    pub seconds_in_phase: Option<u64>,
    /// From now, if every check passes and every gate opens.
    pub seconds_to_promotion: Option<u64>,
    /// The message of the `Promoted` condition: the controller's own summary.
    pub message: Option<String>,
    /// Why the spec could not be read, when it could not (the rest then comes from the status).
    pub spec_error: Option<String>,
}

/// Where the run is: weight step k of n (canary strategy) or iteration k of n.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub unit: &'static str,
    pub current: u32,
    pub total: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckView {
    pub kind: CheckKind,
    pub name: String,
    pub iteration: i32,
    pub value: Option<f64>,
    pub threshold: Option<String>,
    pub failed: bool,
    pub message: Option<String>,
}

impl From<&CheckRecord> for CheckView {
    fn from(r: &CheckRecord) -> CheckView {
        CheckView {
            kind: r.kind,
            name: r.name.clone(),
            iteration: r.iteration,
            value: r.value,
            threshold: r.threshold.clone(),
            failed: r.failed,
            message: r.message.clone(),
        }
    }
}

/// The normalised spec as a controller with `settings` would read it (the mesh provider only
/// matters for canaries without `spec.provider`, the minimum interval only to the ETA).
pub fn rollout_spec(canary: &Canary, settings: &Settings) -> Result<RolloutSpec, String> {
    normalize(canary, settings).map_err(|e| e.to_string())
}

/// The view as a controller with Flagger's default settings sees the canary.
pub fn view(canary: &Canary, now: Timestamp) -> CanaryView {
    view_with(canary, &Settings::default(), now)
}

pub fn view_with(canary: &Canary, settings: &Settings, now: Timestamp) -> CanaryView {
    let status = canary.status.clone().unwrap_or_default();
    let spec = rollout_spec(canary, settings);
    let phase = status.phase_or_new();
    // The routed weight: for blue/green and A/B the status keeps no weight, the phase and
    // iteration say where the traffic is.
    let canary_weight = match &spec {
        Ok(s) => routes_from_status(s, &status).canary,
        Err(_) => status.weight(),
    }
    .min(100);
    let phase_since = status.last_transition_time;
    let threshold = spec.as_ref().ok().map(|s| s.threshold);
    let failed_checks = status.failed();
    CanaryView {
        name: canary.metadata.name.clone().unwrap_or_default(),
        namespace: canary.metadata.namespace.clone().unwrap_or_default(),
        phase: phase.as_str().to_string(),
        strategy: spec
            .as_ref()
            .map(|s| s.strategy.label().to_string())
            .unwrap_or_default(),
        primary_weight: 100 - canary_weight,
        canary_weight,
        mirror_weight: status.mirror(),
        progress: spec.as_ref().ok().and_then(|s| progress(s, &status)),
        checks: latest_checks(status.records()),
        failed_checks,
        threshold,
        failures_left: threshold.map(|t| t.saturating_sub(failed_checks)),
        pending: spec
            .as_ref()
            .ok()
            .and_then(|s| pending(s, phase, status.records())),
        phase_since,
        seconds_in_phase: phase_since
            .map(|t| u64::try_from(now.duration_since(t).as_secs()).unwrap_or(0)),
        seconds_to_promotion: spec
            .as_ref()
            .ok()
            .and_then(|s| time_to_promotion(s, &status, now)),
        message: status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Promoted")
            .and_then(|c| c.message.clone()),
        spec_error: spec.err(),
    }
}

/// The weights a canary ladder climbs through, from the first step to the promotion weight.
fn ladder_weights(spec: &RolloutSpec) -> Vec<u32> {
    let Strategy::Canary(ladder) = &spec.strategy else {
        return Vec::new();
    };
    let max = ladder.max();
    let mut weights = Vec::new();
    let mut w = 0u32;
    // A ladder has at most 100 steps of at least 1; the bound keeps a zero step from spinning.
    while w < max && weights.len() < 100 {
        let step = ladder.next_step(w);
        if step == 0 {
            break;
        }
        w = w.saturating_add(step).min(max);
        weights.push(w);
    }
    weights
}

fn progress(spec: &RolloutSpec, status: &flagger_api::status::CanaryStatus) -> Option<Progress> {
    match &spec.strategy {
        Strategy::Canary(_) => {
            let weights = ladder_weights(spec);
            let current = weights.iter().filter(|w| **w <= status.weight()).count();
            Some(Progress {
                unit: "step",
                current: u32::try_from(current).unwrap_or(u32::MAX),
                total: u32::try_from(weights.len()).unwrap_or(u32::MAX),
            })
        }
        Strategy::AbTesting { iterations } | Strategy::BlueGreen { iterations } => Some(Progress {
            unit: "iteration",
            current: status.iter().min(*iterations),
            total: *iterations,
        }),
    }
}

fn latest_checks(records: &[CheckRecord]) -> Vec<CheckView> {
    let mut latest: Vec<CheckView> = Vec::new();
    for record in records {
        match latest
            .iter_mut()
            .find(|c| c.kind == record.kind && c.name == record.name)
        {
            Some(slot) if slot.iteration <= record.iteration => *slot = record.into(),
            Some(_) => {}
            None => latest.push(record.into()),
        }
    }
    latest
}

fn hook_names(spec: &RolloutSpec, kind: HookType) -> String {
    spec.hooks
        .iter()
        .filter(|h| h.kind == kind)
        .map(|h| h.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The gate or webhook holding the run: a confirm gate the phase names, else a gate or webhook
/// whose latest call failed.
fn pending(spec: &RolloutSpec, phase: CanaryPhase, records: &[CheckRecord]) -> Option<String> {
    let gate = match phase {
        CanaryPhase::Waiting => Some(HookType::ConfirmRollout),
        CanaryPhase::WaitingPromotion => Some(HookType::ConfirmPromotion),
        _ => None,
    };
    if let Some(kind) = gate {
        let names = hook_names(spec, kind);
        let label = match kind {
            HookType::ConfirmRollout => "confirm-rollout",
            _ => "confirm-promotion",
        };
        return Some(format!("{label} gate {names}").trim_end().to_string());
    }
    if !matches!(phase, CanaryPhase::Progressing) {
        return None;
    }
    latest_checks(records)
        .into_iter()
        .find(|c| c.failed && matches!(c.kind, CheckKind::Gate | CheckKind::Webhook))
        .map(|c| {
            let kind = if c.kind == CheckKind::Gate {
                "gate"
            } else {
                "webhook"
            };
            match c.message {
                Some(m) => format!("{kind} {}: {m}", c.name),
                None => format!("{kind} {}", c.name),
            }
        })
}
