//! One alert, as the controller hands it over: who, what, how bad, and why.
//!
//! The `reason` keeps the cause machine-readable (metric, value, bounds, query, webhook, status),
//! so the default text can explain a rollback on its own and a `messageTemplate` can pick the
//! parts it wants.

use std::collections::BTreeMap;
use std::fmt;

use flagger_api::status::{CanaryPhase, CheckRecord};

/// Alert severity. Ordered: `Info < Warn < Error`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    #[default]
    Info,
    Warn,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warn" => Some(Severity::Warn),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Does an `analysis.alerts[]` entry with this `severity` receive an alert of `alert` severity?
/// `info` and empty (Flagger's documented default is `info`) take everything, `warn` takes warn
/// and error, `error` only error.
/// Anything else cannot pass the CRD schema; it receives nothing rather than guessing.
pub fn admits(entry_severity: Option<&str>, alert: Severity) -> bool {
    match entry_severity.unwrap_or("") {
        "" => true,
        s => Severity::parse(s).is_some_and(|min| alert >= min),
    }
}

/// One detail line: Slack field, Teams fact, Google Chat section, generic `fields[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: String,
}

impl Field {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Field {
        Field {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A metric's accepted range (`thresholdRange`, or the builtin's implied bound). Inclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ThresholdRange {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl fmt::Display for ThresholdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (Some(min), Some(max)) => write!(f, "min {} max {}", num(min), num(max)),
            (Some(min), None) => write!(f, "min {}", num(min)),
            (None, Some(max)) => write!(f, "max {}", num(max)),
            (None, None) => Ok(()),
        }
    }
}

/// The check whose failure decided (or contributed to) a rollback.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckFailure {
    MetricOutOfRange {
        metric: String,
        value: f64,
        range: ThresholdRange,
        /// The query as sent to the provider, after template rendering.
        query: Option<String>,
    },
    /// An empty result or NaN: usually a canary that receives no traffic.
    MetricNoData {
        metric: String,
        query: Option<String>,
    },
    MetricQueryFailed {
        metric: String,
        query: Option<String>,
        error: String,
    },
    /// A `rollout` webhook; `status` is absent for transport errors and timeouts.
    WebhookFailed {
        hook: String,
        status: Option<u16>,
        detail: String,
    },
    PreRolloutFailed {
        hook: String,
        status: Option<u16>,
        detail: String,
    },
}

impl CheckFailure {
    pub fn check_name(&self) -> &str {
        match self {
            CheckFailure::MetricOutOfRange { metric, .. }
            | CheckFailure::MetricNoData { metric, .. }
            | CheckFailure::MetricQueryFailed { metric, .. } => metric,
            CheckFailure::WebhookFailed { hook, .. }
            | CheckFailure::PreRolloutFailed { hook, .. } => hook,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            CheckFailure::MetricOutOfRange { .. } => "metric-out-of-range",
            CheckFailure::MetricNoData { .. } => "metric-no-data",
            CheckFailure::MetricQueryFailed { .. } => "metric-query-failed",
            CheckFailure::WebhookFailed { .. } => "webhook-failed",
            CheckFailure::PreRolloutFailed { .. } => "pre-rollout-failed",
        }
    }

    /// Half a sentence saying what went wrong, e.g.
    /// `request-success-rate is 97.2, below the minimum 99`.
    pub fn explain(&self) -> String {
        match self {
            CheckFailure::MetricOutOfRange {
                metric,
                value,
                range,
                ..
            } => {
                let v = num(*value);
                match (range.min, range.max) {
                    (Some(min), _) if *value < min => {
                        format!("{metric} is {v}, below the minimum {}", num(min))
                    }
                    (_, Some(max)) if *value > max => {
                        format!("{metric} is {v}, above the maximum {}", num(max))
                    }
                    // NaN or a bound the caller did not pass: still name the metric and value.
                    _ => format!("{metric} is {v}, outside {range}"),
                }
            }
            CheckFailure::MetricNoData { metric, .. } => {
                format!("{metric} returned no data (is the canary receiving traffic?)")
            }
            CheckFailure::MetricQueryFailed { metric, error, .. } => {
                format!("{metric} query failed: {}", one_line(error))
            }
            CheckFailure::WebhookFailed {
                hook,
                status,
                detail,
            } => hook_failure("webhook", hook, *status, detail),
            CheckFailure::PreRolloutFailed {
                hook,
                status,
                detail,
            } => hook_failure("pre-rollout webhook", hook, *status, detail),
        }
    }

    fn template_data(&self, out: &mut BTreeMap<&'static str, String>) {
        out.insert("Check", self.check_name().to_owned());
        out.insert("CheckKind", self.kind().to_owned());
        match self {
            CheckFailure::MetricOutOfRange {
                metric,
                value,
                range,
                query,
            } => {
                out.insert("Metric", metric.clone());
                out.insert("Value", num(*value));
                out.insert("Threshold", range.to_string());
                if let Some(min) = range.min {
                    out.insert("Min", num(min));
                }
                if let Some(max) = range.max {
                    out.insert("Max", num(max));
                }
                if let Some(q) = query {
                    out.insert("Query", q.clone());
                }
            }
            CheckFailure::MetricNoData { metric, query } => {
                out.insert("Metric", metric.clone());
                if let Some(q) = query {
                    out.insert("Query", q.clone());
                }
            }
            CheckFailure::MetricQueryFailed {
                metric,
                query,
                error,
            } => {
                out.insert("Metric", metric.clone());
                out.insert("Detail", error.clone());
                if let Some(q) = query {
                    out.insert("Query", q.clone());
                }
            }
            CheckFailure::WebhookFailed {
                hook,
                status,
                detail,
            }
            | CheckFailure::PreRolloutFailed {
                hook,
                status,
                detail,
            } => {
                out.insert("Webhook", hook.clone());
                out.insert("Detail", detail.clone());
                if let Some(s) = status {
                    out.insert("Status", s.to_string());
                }
            }
        }
    }
}

fn hook_failure(what: &str, hook: &str, status: Option<u16>, detail: &str) -> String {
    let detail = one_line(detail);
    match (status, detail.is_empty()) {
        (Some(s), true) => format!("{what} {hook} failed with HTTP {s}"),
        (Some(s), false) => format!("{what} {hook} failed with HTTP {s}: {detail}"),
        (None, true) => format!("{what} {hook} failed"),
        (None, false) => format!("{what} {hook} failed: {detail}"),
    }
}

/// Why a run failed (one error alert per rollback, so every rollback reaches on-call).
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    FailedChecks {
        failed_checks: u32,
        threshold: u32,
        /// The check that reached the threshold; absent when the controller restarted mid-count.
        last: Option<CheckFailure>,
    },
    /// The canary workload was not ready within `progressDeadlineSeconds`.
    ProgressDeadline {
        deadline_seconds: Option<u32>,
        detail: String,
    },
    /// The primary stopped being ready during the analysis.
    PrimaryNotReady { detail: String },
    /// A `rollback` webhook asked for the rollback.
    ManualRollback { hook: String },
    /// The target was set back to the promoted revision mid-run.
    Reverted,
    /// The primary did not become ready after the promotion copy.
    PromotionFailed { detail: String },
}

impl Reason {
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::FailedChecks { .. } => "failed_checks",
            Reason::ProgressDeadline { .. } => "progress_deadline",
            Reason::PrimaryNotReady { .. } => "primary_not_ready",
            Reason::ManualRollback { .. } => "manual_webhook",
            Reason::Reverted => "reverted",
            Reason::PromotionFailed { .. } => "promotion_failed",
        }
    }

    /// The default alert text: the catalogue sentence, then the cause, on one line.
    pub fn message(&self, name: &str, namespace: &str) -> String {
        match self {
            Reason::FailedChecks {
                failed_checks,
                last,
                ..
            } => match last {
                Some(check) => format!(
                    "Failed checks threshold reached {failed_checks}: {}",
                    check.explain()
                ),
                None => format!("Failed checks threshold reached {failed_checks}"),
            },
            Reason::ProgressDeadline {
                deadline_seconds,
                detail,
            } => {
                let detail = one_line(detail);
                let after = deadline_seconds
                    .map(|s| format!(" after {s}s"))
                    .unwrap_or_default();
                if detail.is_empty() {
                    format!("Progress deadline exceeded: canary not ready{after}")
                } else {
                    format!("Progress deadline exceeded{after}: {detail}")
                }
            }
            Reason::PrimaryNotReady { detail } => {
                format!("Rolling back, primary not ready: {}", one_line(detail))
            }
            Reason::ManualRollback { hook } => {
                format!("Rolling back manual webhook invoked: rollback hook {hook} asked for it")
            }
            Reason::Reverted => {
                format!("Rolling back {name}.{namespace}: target reverted to the promoted revision")
            }
            Reason::PromotionFailed { detail } => {
                format!("Promotion failed, primary not ready: {}", one_line(detail))
            }
        }
    }

    /// `.Reason` in message templates: every part by name; absent parts render empty.
    pub(crate) fn template_data(&self) -> BTreeMap<&'static str, String> {
        let mut out = BTreeMap::new();
        out.insert("Kind", self.kind().to_owned());
        match self {
            Reason::FailedChecks {
                failed_checks,
                threshold,
                last,
            } => {
                out.insert("FailedChecks", failed_checks.to_string());
                out.insert("FailedChecksThreshold", threshold.to_string());
                if let Some(check) = last {
                    check.template_data(&mut out);
                    out.insert("Explanation", check.explain());
                }
            }
            Reason::ProgressDeadline {
                deadline_seconds,
                detail,
            } => {
                out.insert("Detail", detail.clone());
                if let Some(s) = deadline_seconds {
                    out.insert("DeadlineSeconds", s.to_string());
                }
            }
            Reason::PrimaryNotReady { detail } | Reason::PromotionFailed { detail } => {
                out.insert("Detail", detail.clone());
            }
            Reason::ManualRollback { hook } => {
                out.insert("Webhook", hook.clone());
            }
            Reason::Reverted => {}
        }
        out
    }
}

/// One check record of the run, as `.CanaryAnalysis.Iterations` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckLine {
    pub iteration: i32,
    /// The check's name (metric or webhook).
    pub metric: String,
    pub value: Option<f64>,
    /// e.g. `min 99`.
    pub threshold: Option<String>,
    pub failed: bool,
    pub message: Option<String>,
}

impl From<&CheckRecord> for CheckLine {
    fn from(r: &CheckRecord) -> CheckLine {
        CheckLine {
            iteration: r.iteration,
            metric: r.name.clone(),
            value: r.value,
            threshold: r.threshold.clone(),
            failed: r.failed,
            message: r.message.clone(),
        }
    }
}

/// Everything a notifier or a message template may show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Alert {
    /// Canary name and namespace.
    pub name: String,
    pub namespace: String,
    /// Phase after the event.
    pub phase: CanaryPhase,
    pub severity: Severity,
    /// The standard text (catalogue sentence plus cause); a `messageTemplate` replaces it.
    pub message: String,
    /// Detail fields, in order.
    pub fields: Vec<Field>,
    pub reason: Option<Reason>,
    /// `<Kind>/<target>.<ns>`.
    pub target: String,
    /// The revision checksum of webhook payloads.
    pub checksum: String,
    pub canary_weight: u32,
    pub failed_checks: u32,
    pub iterations: u32,
    /// `.Metadata` of templates: `cluster`, `target`, `revision`, `version`, then Canary labels.
    pub metadata: BTreeMap<String, String>,
    /// `status.canaryAnalysis.iterations`.
    pub checks: Vec<CheckLine>,
    /// Unix milliseconds of the event (generic payload `timestamp`).
    pub timestamp_ms: i64,
}

impl Alert {
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        phase: CanaryPhase,
        severity: Severity,
        message: impl Into<String>,
    ) -> Alert {
        Alert {
            name: name.into(),
            namespace: namespace.into(),
            phase,
            severity,
            message: message.into(),
            timestamp_ms: now_ms(),
            ..Alert::default()
        }
    }

    /// The error alert of a failed run, its text derived from the reason.
    pub fn failure(name: impl Into<String>, namespace: impl Into<String>, reason: Reason) -> Alert {
        let (name, namespace) = (name.into(), namespace.into());
        let message = reason.message(&name, &namespace);
        let mut alert = Alert::new(
            name,
            namespace,
            CanaryPhase::Failed,
            Severity::Error,
            message,
        );
        alert.reason = Some(reason);
        alert
    }

    /// The rollback of `podinfo.test` after 2 failed checks, the last a success rate of 97.5 %
    /// against a minimum of 99: a realistic alert to render message templates against (the
    /// template tests and the fuzzer do).
    pub fn example_rollback() -> Alert {
        Alert::failure(
            "podinfo",
            "test",
            Reason::FailedChecks {
                failed_checks: 2,
                threshold: 2,
                last: Some(CheckFailure::MetricOutOfRange {
                    metric: "request-success-rate".into(),
                    value: 97.5,
                    range: ThresholdRange {
                        min: Some(99.0),
                        max: None,
                    },
                    query: Some("sum(rate(x[1m]))".into()),
                }),
            },
        )
    }

    /// `-cluster-name`: a first field `Cluster: <name>` on every alert.
    pub fn with_cluster(mut self, cluster: &str) -> Alert {
        if !cluster.is_empty() {
            self.fields.insert(0, Field::new("Cluster", cluster));
            self.metadata
                .entry("cluster".into())
                .or_insert_with(|| cluster.to_owned());
        }
        self
    }

    /// `<name>.<namespace>`: Slack author, Teams summary, Google Chat subtitle.
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    /// Failed-check detail fields from the run's records, at most
    /// `threshold` of them.
    pub fn failed_check_fields(checks: &[CheckLine], threshold: usize) -> Vec<Field> {
        checks
            .iter()
            .filter(|c| c.failed)
            .take(threshold)
            .map(|c| {
                let value = match (c.value, &c.threshold) {
                    (Some(v), Some(t)) => format!(
                        "{}: {} ({t}) at iteration {}",
                        c.metric,
                        num(v),
                        c.iteration
                    ),
                    (Some(v), None) => {
                        format!("{}: {} at iteration {}", c.metric, num(v), c.iteration)
                    }
                    _ => format!(
                        "{}: {}",
                        c.metric,
                        one_line(c.message.as_deref().unwrap_or("failed"))
                    ),
                };
                Field::new("Failed check", value)
            })
            .collect()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A number as a person reads it: at most two decimals, no trailing zeros, tiny values kept.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v != 0.0 && v.abs() < 0.01 {
        return format!("{v:.2e}");
    }
    let rounded = (v * 100.0).round() / 100.0;
    if rounded == rounded.trunc() && rounded.abs() < 1e15 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    }
}

/// Receiver bodies and error chains can be multi-line HTML; a phone shows one short line.
pub(crate) fn one_line(text: &str) -> String {
    const MAX: usize = 160;
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= MAX {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(MAX - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_filter_table() {
        use Severity::*;
        let rows: &[(Option<&str>, Severity, bool)] = &[
            (None, Info, true),
            (None, Warn, true),
            (None, Error, true),
            (Some(""), Info, true),
            (Some(""), Error, true),
            (Some("info"), Info, true),
            (Some("info"), Warn, true),
            (Some("info"), Error, true),
            (Some("warn"), Info, false),
            (Some("warn"), Warn, true),
            (Some("warn"), Error, true),
            (Some("error"), Info, false),
            (Some("error"), Warn, false),
            (Some("error"), Error, true),
            (Some("critical"), Error, false),
            (Some("ERROR"), Error, false),
        ];
        for (entry, alert, want) in rows {
            assert_eq!(
                admits(*entry, *alert),
                *want,
                "entry {entry:?} alert {alert:?}"
            );
        }
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(97.234), "97.23");
        assert_eq!(num(99.0), "99");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(0.0012), "1.20e-3");
        assert_eq!(num(f64::NAN), "NaN");
    }

    #[test]
    fn long_details_become_one_short_line() {
        let body = format!("<html>\n<body>{}</body>\n</html>", "x".repeat(500));
        let line = one_line(&body);
        assert!(!line.contains('\n'));
        assert_eq!(line.chars().count(), 160);
        assert!(line.ends_with('…'));
    }

    #[test]
    fn failed_check_fields_follow_the_catalogue() {
        let checks = vec![
            CheckLine {
                iteration: 2,
                metric: "request-success-rate".into(),
                value: Some(97.5),
                threshold: Some("min 99".into()),
                failed: true,
                message: None,
            },
            CheckLine {
                iteration: 3,
                metric: "ok".into(),
                value: Some(1.0),
                failed: false,
                ..CheckLine::default()
            },
            CheckLine {
                iteration: 3,
                metric: "acceptance".into(),
                failed: true,
                message: Some("HTTP 500: boom".into()),
                ..CheckLine::default()
            },
            CheckLine {
                iteration: 4,
                metric: "third".into(),
                failed: true,
                ..CheckLine::default()
            },
        ];
        let fields = Alert::failed_check_fields(&checks, 2);
        assert_eq!(
            fields,
            vec![
                Field::new(
                    "Failed check",
                    "request-success-rate: 97.5 (min 99) at iteration 2"
                ),
                Field::new("Failed check", "acceptance: HTTP 500: boom"),
            ]
        );
    }
}
