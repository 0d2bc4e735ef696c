//! `flagger-rs why NAME`: the last decision about a canary in words — which check decided it, its
//! value against the threshold, the query behind it, and what the controller does next. Read
//! from the status (check records, conditions) and the canary's latest Warning event.

use std::process::ExitCode;

use flagger_api::Canary;
use flagger_api::status::{CheckKind, CheckRecord};
use flagger_core::status::StatusExt;
use flagger_core::{RolloutSpec, Strategy};
use jiff::Timestamp;
use serde::Serialize;

use crate::cluster::CliError;
use crate::duration::short as duration;
use crate::events::{EventView, canary_events, views};
use crate::output::{Output, print, structured};
use crate::status::model::{rollout_spec, view};
use crate::status::{canaries_api, get_canary};

pub use crate::status::OneCanaryArgs as Args;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Why {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    /// The decision, one sentence.
    pub decision: String,
    /// The check that decided it, when one did.
    pub check: Option<DecidingCheck>,
    pub failed_checks: u32,
    pub threshold: Option<u32>,
    /// What the controller does next, one sentence.
    pub next: String,
    /// The latest Warning event, which often carries the controller's own words.
    pub last_warning: Option<EventView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecidingCheck {
    pub name: String,
    pub kind: CheckKind,
    pub iteration: i32,
    pub value: Option<f64>,
    pub threshold: Option<String>,
    /// The metric's inline query or the template it comes from.
    pub query: Option<String>,
    pub message: Option<String>,
}

pub fn run(args: &Args) -> ExitCode {
    crate::command::run_async(why(args))
}

async fn why(args: &Args) -> Result<(), CliError> {
    let cluster = args.cluster.connect().await?;
    let namespace = cluster.namespace.as_str();
    let canaries = canaries_api(cluster.client.clone(), namespace, false);
    let canary = get_canary(&canaries, &args.name, namespace).await?;
    let events = views(&canary_events(cluster.client, &args.name, namespace).await?);
    let why = explain(&canary, &events, Timestamp::now());
    let text = match args.output {
        Output::Text => render(&why),
        other => structured(&why, other)?,
    };
    print(&text);
    Ok(())
}

fn query_of(canary: &Canary, name: &str) -> Option<String> {
    let metric = canary
        .spec
        .analysis
        .metrics
        .iter()
        .flatten()
        .find(|m| m.name == name)?;
    if let Some(q) = metric.query.as_deref().filter(|q| !q.trim().is_empty()) {
        return Some(q.trim().to_string());
    }
    metric.template_ref.as_ref().map(|r| {
        let ns = r
            .namespace
            .as_deref()
            .or(canary.metadata.namespace.as_deref())
            .unwrap_or_default();
        format!("MetricTemplate {ns}/{}", r.name)
    })
}

/// The latest failed record of the run, the most recent iteration first.
fn latest_failure(records: &[CheckRecord]) -> Option<&CheckRecord> {
    records
        .iter()
        .filter(|r| r.failed)
        .max_by_key(|r| (r.iteration, r.time))
}

fn deciding(canary: &Canary, r: &CheckRecord) -> DecidingCheck {
    DecidingCheck {
        name: r.name.clone(),
        kind: r.kind,
        iteration: r.iteration,
        value: r.value,
        threshold: r.threshold.clone(),
        query: (r.kind == CheckKind::Metric)
            .then(|| query_of(canary, &r.name))
            .flatten(),
        message: r.message.clone(),
    }
}

fn describe(c: &DecidingCheck) -> String {
    let kind = match c.kind {
        CheckKind::Metric => "metric check",
        CheckKind::Webhook => "webhook",
        CheckKind::PreRollout => "pre-rollout webhook",
        CheckKind::Gate => "gate",
    };
    let value = match (c.value, &c.threshold) {
        (Some(v), Some(t)) => format!(": value {v} against threshold {t}"),
        (Some(v), None) => format!(": value {v}"),
        (None, _) => match &c.message {
            Some(m) => format!(": {m}"),
            None => ": no value".into(),
        },
    };
    format!(
        "{kind} {} failed at iteration {}{value}",
        c.name, c.iteration
    )
}

/// The weight the next passing tick routes to the canary.
fn next_weight(spec: &RolloutSpec, weight: u32) -> Option<u32> {
    match &spec.strategy {
        Strategy::Canary(ladder) if weight < ladder.max() => Some(
            weight
                .saturating_add(ladder.next_step(weight))
                .min(ladder.max()),
        ),
        _ => None,
    }
}

pub fn explain(canary: &Canary, events: &[EventView], now: Timestamp) -> Why {
    let v = view(canary, now);
    let status = canary.status.clone().unwrap_or_default();
    let spec = rollout_spec(canary, &flagger_core::Settings::default()).ok();
    let failure = latest_failure(status.records()).map(|r| deciding(canary, r));
    let last_warning = events
        .iter()
        .filter(|e| e.type_ == "Warning")
        .max_by_key(|e| e.last_seen)
        .cloned();
    let warning_text = last_warning.as_ref().map(|e| e.message.clone());
    let message = v.message.clone().unwrap_or_default();
    let eta = v
        .seconds_to_promotion
        .map(|s| format!(" Promotion in about {} if every check passes.", duration(s)))
        .unwrap_or_default();
    let left = v.failures_left.unwrap_or(0);
    let (decision, check, next) = match v.phase.as_str() {
        "" => (
            "The controller has not processed this canary yet.".to_string(),
            None,
            "On its next tick it creates the primary and starts routing to it.".to_string(),
        ),
        "Initializing" | "Initialized" => (
            format!("The primary is initialised; no run is under way. {message}")
                .trim_end()
                .to_string(),
            None,
            "A run starts when the target's pod template or a tracked ConfigMap or Secret changes."
                .to_string(),
        ),
        "Waiting" => (
            format!(
                "The run is held before it starts: the {} is closed.",
                v.pending
                    .clone()
                    .unwrap_or_else(|| "confirm-rollout gate".into())
            ),
            None,
            "The run starts on the first tick after the gate opens.".to_string(),
        ),
        "WaitingPromotion" => (
            format!(
                "The analysis passed; the {} is closed.",
                v.pending
                    .clone()
                    .unwrap_or_else(|| "confirm-promotion gate".into())
            ),
            None,
            "Promotion starts on the first tick after the gate opens.".to_string(),
        ),
        "Progressing" => match &failure {
            Some(c) if c.iteration >= status.iter() as i32 && v.failed_checks > 0 => (
                format!("The last tick did not advance: {}.", describe(c)),
                Some(c.clone()),
                if left == 0 {
                    "The next failed check rolls the canary back.".to_string()
                } else {
                    format!(
                        "{left} more failed check(s) roll the canary back; a tick whose checks all pass advances the run.{eta}"
                    )
                },
            ),
            _ => {
                let step = spec
                    .as_ref()
                    .and_then(|s| next_weight(s, v.canary_weight))
                    .map(|w| format!("The next passing tick routes {w}% to the canary."))
                    .unwrap_or_else(|| "The next passing tick advances the run.".to_string());
                (
                    match &v.progress {
                        Some(p) => format!(
                            "Every check passed; the run is at {} {} of {}.",
                            p.unit, p.current, p.total
                        ),
                        None => "Every check passed.".to_string(),
                    },
                    None,
                    format!("{step}{eta}"),
                )
            }
        },
        "Promoting" => (
            "The analysis passed: the primary is being updated to the canary's revision."
                .to_string(),
            None,
            format!("Traffic goes back to the primary, then the canary is scaled down.{eta}"),
        ),
        "Finalising" => (
            "The primary runs the new revision; traffic is returning to it.".to_string(),
            None,
            format!("The canary is scaled down and the run ends Succeeded.{eta}"),
        ),
        "Succeeded" => (
            format!("Promoted. {message}").trim_end().to_string(),
            None,
            "Nothing until the next revision, which starts a new run.".to_string(),
        ),
        "Failed" => {
            let reason = match (&failure, &warning_text) {
                (Some(c), _) => format!("Rolled back: {}.", describe(c)),
                (None, Some(w)) => format!("Rolled back: {w}"),
                (None, None) => format!("Rolled back. {message}").trim_end().to_string(),
            };
            (
                reason,
                failure.clone(),
                "Traffic stays on the primary until a new revision (or a changed flagger.app/reset annotation) starts a run.".to_string(),
            )
        }
        "Terminating" | "Terminated" => (
            "The canary is being deleted; the controller hands the workload back.".to_string(),
            None,
            "Nothing: the controller stops managing it.".to_string(),
        ),
        other => (format!("Phase {other}."), None, String::new()),
    };
    Why {
        name: v.name,
        namespace: v.namespace,
        phase: v.phase,
        decision,
        check,
        failed_checks: v.failed_checks,
        threshold: v.threshold,
        next,
        last_warning,
    }
}

pub fn render(w: &Why) -> String {
    let phase = if w.phase.is_empty() { "New" } else { &w.phase };
    let mut out = format!("{}.{} is {phase}.\n{}\n", w.name, w.namespace, w.decision);
    if let Some(c) = &w.check {
        if let Some(q) = &c.query {
            out.push_str(&format!("  query: {q}\n"));
        }
        if c.value.is_some()
            && let Some(m) = &c.message
        {
            out.push_str(&format!("  message: {m}\n"));
        }
    }
    if let Some(t) = w.threshold {
        out.push_str(&format!("Failed checks: {} of {t}.\n", w.failed_checks));
    }
    if let Some(e) = &w.last_warning {
        out.push_str(&format!("Last warning ({}): {}\n", e.reason, e.message));
    }
    out.push_str(&format!("Next: {}\n", w.next));
    out
}
