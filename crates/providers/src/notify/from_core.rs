//! From the state machine's `Action::Alert` to a notifier `Alert`: the core decides what to say,
//! this side turns its machine-readable reason into the one-line explanation.

use flagger_api::status::{CanaryPhase, CheckKind};
use flagger_core::action::{
    Alert as CoreAlert, FailedCheck as CoreCheck, Reason as CoreReason, Severity as CoreSeverity,
};

use super::alert::{Alert, CheckFailure, Field, Reason, Severity, ThresholdRange};

pub fn severity_from_core(s: CoreSeverity) -> Severity {
    match s {
        CoreSeverity::Info => Severity::Info,
        CoreSeverity::Warn => Severity::Warn,
        CoreSeverity::Error => Severity::Error,
    }
}

impl ThresholdRange {
    /// Reads the core's record form, `min 99`, `max 500`, `min 1 max 2`; anything else is empty.
    pub fn parse(text: &str) -> ThresholdRange {
        let mut range = ThresholdRange::default();
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.chunks(2) {
            match pair {
                ["min", v] => range.min = v.parse().ok(),
                ["max", v] => range.max = v.parse().ok(),
                _ => {}
            }
        }
        range
    }
}

/// The core's hook messages read `Halt <canary> advancement <what> <hook> failed <err>`; the
/// notifier names the hook itself, so only `<err>` is kept.
fn hook_detail(message: &str, hook: &str) -> String {
    let marker = format!(" {hook} failed ");
    match message.find(&marker) {
        Some(i) => message[i + marker.len()..].trim().to_owned(),
        None => message.trim().to_owned(),
    }
}

/// The controller's webhook runner reports an empty-bodied refusal as `… returned HTTP <code>`.
fn status_in(detail: &str) -> Option<u16> {
    let rest = &detail[detail.find("returned HTTP ")? + "returned HTTP ".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

pub fn check_from_core(c: &CoreCheck) -> CheckFailure {
    match c.kind {
        CheckKind::Metric => match c.value {
            Some(value) => CheckFailure::MetricOutOfRange {
                metric: c.name.clone(),
                value,
                range: ThresholdRange::parse(c.threshold.as_deref().unwrap_or_default()),
                query: c.query.clone(),
            },
            // Flagger's no-data texts all say "no values found".
            None if c.message.contains("no values found") => CheckFailure::MetricNoData {
                metric: c.name.clone(),
                query: c.query.clone(),
            },
            None => CheckFailure::MetricQueryFailed {
                metric: c.name.clone(),
                query: c.query.clone(),
                error: c.message.clone(),
            },
        },
        CheckKind::PreRollout => {
            let detail = hook_detail(&c.message, &c.name);
            CheckFailure::PreRolloutFailed {
                hook: c.name.clone(),
                status: status_in(&detail),
                detail,
            }
        }
        CheckKind::Webhook | CheckKind::Gate => {
            let detail = hook_detail(&c.message, &c.name);
            CheckFailure::WebhookFailed {
                hook: c.name.clone(),
                status: status_in(&detail),
                detail,
            }
        }
    }
}

/// `None` for reasons that never end a run (a single failed check).
pub fn reason_from_core(r: &CoreReason, progress_deadline_seconds: Option<u32>) -> Option<Reason> {
    Some(match r {
        CoreReason::CheckFailed { .. } => return None,
        // The abort's alert is the answer to the request, which names who asked.
        CoreReason::Aborted { .. } => return None,
        CoreReason::FailedChecks {
            failed_checks,
            threshold,
            last,
            ..
        } => Reason::FailedChecks {
            failed_checks: *failed_checks,
            threshold: *threshold,
            last: last.as_deref().map(check_from_core),
        },
        CoreReason::ProgressDeadline { message } => Reason::ProgressDeadline {
            deadline_seconds: progress_deadline_seconds,
            detail: message.clone(),
        },
        CoreReason::PrimaryNotReady { message } => Reason::PrimaryNotReady {
            detail: message.clone(),
        },
        CoreReason::ManualWebhook { hook } => Reason::ManualRollback { hook: hook.clone() },
        CoreReason::Reverted { .. } => Reason::Reverted,
        CoreReason::PromotionFailed { message } => Reason::PromotionFailed {
            detail: message.clone(),
        },
    })
}

impl Alert {
    /// The notifier alert for one `Action::Alert`. With a run-ending reason the text is the
    /// explained one (`Failed checks threshold reached 5: request-success-rate is 97.2, below
    /// the minimum 99`); otherwise the core's catalogue text. Context (target, weights,
    /// metadata, check records, cluster field) is for the caller to fill in.
    pub fn from_core(
        name: &str,
        namespace: &str,
        phase: CanaryPhase,
        alert: &CoreAlert,
        progress_deadline_seconds: Option<u32>,
    ) -> Alert {
        let reason = alert
            .reason
            .as_ref()
            .and_then(|r| reason_from_core(r, progress_deadline_seconds));
        let message = match &reason {
            Some(r) => r.message(name, namespace),
            None => alert.message.clone(),
        };
        let mut out = Alert::new(
            name,
            namespace,
            phase,
            severity_from_core(alert.severity),
            message,
        );
        out.fields = alert.fields.iter().map(|(n, v)| Field::new(n, v)).collect();
        out.reason = reason;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        kind: CheckKind,
        name: &str,
        value: Option<f64>,
        threshold: Option<&str>,
        message: &str,
    ) -> CoreCheck {
        CoreCheck {
            kind,
            name: name.into(),
            value,
            threshold: threshold.map(Into::into),
            query: None,
            message: message.into(),
        }
    }

    fn rollback(last: CoreCheck) -> CoreAlert {
        CoreAlert {
            severity: CoreSeverity::Error,
            message: "Failed checks threshold reached 5".into(),
            fields: vec![("Failed check".into(), "x".into())],
            reason: Some(CoreReason::FailedChecks {
                failed_checks: 5,
                threshold: 5,
                last: Some(Box::new(last)),
                records: vec![],
            }),
        }
    }

    #[test]
    fn core_reasons_become_explanations() {
        let cases = [
            (
                check(
                    CheckKind::Metric,
                    "request-success-rate",
                    Some(97.5),
                    Some("min 99"),
                    "Halt podinfo.test advancement success rate 97.50% < 99%",
                ),
                "Failed checks threshold reached 5: request-success-rate is 97.5, below the minimum 99",
            ),
            (
                check(
                    CheckKind::Metric,
                    "latency",
                    Some(700.0),
                    Some("min 1 max 500"),
                    "Halt …",
                ),
                "Failed checks threshold reached 5: latency is 700, above the maximum 500",
            ),
            (
                check(
                    CheckKind::Metric,
                    "request-success-rate",
                    None,
                    Some("min 99"),
                    "Halt advancement no values found for prometheus metric request-success-rate probably podinfo.test is not receiving traffic: no values",
                ),
                "Failed checks threshold reached 5: request-success-rate returned no data (is the canary receiving traffic?)",
            ),
            (
                check(
                    CheckKind::Metric,
                    "errors",
                    None,
                    None,
                    "Prometheus query failed for errors: connection refused",
                ),
                "Failed checks threshold reached 5: errors query failed: Prometheus query failed for errors: connection refused",
            ),
            (
                check(
                    CheckKind::Webhook,
                    "acceptance",
                    None,
                    None,
                    "Halt podinfo.test advancement external check acceptance failed http://x/ returned HTTP 503 (giving up after 3 attempt(s))",
                ),
                "Failed checks threshold reached 5: webhook acceptance failed with HTTP 503: http://x/ returned HTTP 503 (giving up after 3 attempt(s))",
            ),
            (
                check(
                    CheckKind::PreRollout,
                    "migrate",
                    None,
                    None,
                    "Halt podinfo.test advancement pre-rollout check migrate failed schema locked",
                ),
                "Failed checks threshold reached 5: pre-rollout webhook migrate failed: schema locked",
            ),
        ];
        for (last, want) in cases {
            let a = Alert::from_core(
                "podinfo",
                "test",
                CanaryPhase::Failed,
                &rollback(last),
                None,
            );
            assert_eq!(a.message, want);
            assert_eq!(a.severity, Severity::Error);
            assert_eq!(a.fields, vec![Field::new("Failed check", "x")]);
        }
    }

    #[test]
    fn other_reasons_and_plain_alerts() {
        let deadline = CoreAlert {
            severity: CoreSeverity::Error,
            message: "Progress deadline exceeded canary deployment podinfo.test not ready".into(),
            fields: vec![],
            reason: Some(CoreReason::ProgressDeadline {
                message: "canary deployment podinfo.test not ready".into(),
            }),
        };
        let a = Alert::from_core("podinfo", "test", CanaryPhase::Failed, &deadline, Some(600));
        assert_eq!(
            a.message,
            "Progress deadline exceeded after 600s: canary deployment podinfo.test not ready"
        );
        let info = CoreAlert {
            severity: CoreSeverity::Info,
            message: "Canary analysis completed successfully, promotion finished.".into(),
            fields: vec![],
            reason: None,
        };
        let a = Alert::from_core("podinfo", "test", CanaryPhase::Succeeded, &info, None);
        assert_eq!(
            (a.message.as_str(), a.severity, a.reason),
            (info.message.as_str(), Severity::Info, None)
        );
        assert_eq!(
            ThresholdRange::parse("min 1.5 max 2"),
            ThresholdRange {
                min: Some(1.5),
                max: Some(2.0)
            }
        );
        assert_eq!(ThresholdRange::parse("bogus"), ThresholdRange::default());
    }
}
