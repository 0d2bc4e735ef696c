//! From a metric's outcome to what the analysis does with it (metrics.md §3.3, §6).
//!
//! Two optional behaviours sit on top of Flagger's: a per-metric `dryRun` (evaluated and
//! reported, never fails nor holds the analysis) and a no-data policy (`fail` = Flagger,
//! `hold` = neither advance nor count a failure while the backend has no answer).

use flagger_api::analysis::ThresholdRange;

use super::MetricError;
use super::builtin::{BuiltinMetric, QuerySet, to_threshold_unit};
use super::factory::ProviderConfigError;
use super::template::RenderError;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoDataPolicy {
    /// Flagger: no data and failed queries count as failed checks.
    #[default]
    Fail,
    /// Neither advance nor count a failure: the tick is spent waiting for data.
    Hold,
}

/// What kind of metric entry produced the value; decides the threshold semantics and the
/// wording of events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Builtin {
        set: QuerySet,
        metric: BuiltinMetric,
    },
    /// Deprecated inline `query` run against the canary's Prometheus.
    Inline,
    /// `templateRef`, resolved to the template's name and namespace.
    Template { name: String, namespace: String },
}

/// The inputs of one check besides its outcome.
#[derive(Clone, Debug)]
pub struct CheckSpec<'a> {
    /// Canary name and namespace, for the event text.
    pub canary: &'a str,
    pub namespace: &'a str,
    /// `targetRef.name`, for the "not receiving traffic" hint.
    pub target: &'a str,
    pub metric: &'a str,
    pub kind: MetricKind,
    pub threshold: Option<f64>,
    pub threshold_range: Option<&'a ThresholdRange>,
    pub dry_run: bool,
    pub no_data: NoDataPolicy,
}

/// Why a check produced no value.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckError {
    NoValues(String),
    QueryFailed(String),
    /// The query template did not render.
    Render(String),
    /// Template/Secret missing, provider construction failed, or the metric is unusable.
    Unusable(String),
}

impl From<MetricError> for CheckError {
    fn from(e: MetricError) -> Self {
        match e {
            MetricError::NoValues(_) => CheckError::NoValues(e.to_string()),
            MetricError::QueryFailed(m) => CheckError::QueryFailed(m),
        }
    }
}

impl From<RenderError> for CheckError {
    fn from(e: RenderError) -> Self {
        CheckError::Render(e.to_string())
    }
}

impl From<ProviderConfigError> for CheckError {
    fn from(e: ProviderConfigError) -> Self {
        CheckError::Unusable(e.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    InRange,
    OutOfRange,
    NoValues,
    QueryFailed,
    RenderFailed,
    Unusable,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::InRange => "InRange",
            Cause::OutOfRange => "OutOfRange",
            Cause::NoValues => "NoValues",
            Cause::QueryFailed => "QueryFailed",
            Cause::RenderFailed => "RenderFailed",
            Cause::Unusable => "Unusable",
        }
    }
}

/// Machine-readable account of one check, for events, `status.canaryAnalysis` and alerts.
#[derive(Clone, Debug, PartialEq)]
pub struct VerdictReason {
    pub metric: String,
    pub cause: Cause,
    /// In threshold units: % for the success rate, whole ms for the duration.
    pub value: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The query as sent, when rendering got that far.
    pub query: Option<String>,
    /// Flagger-style event text.
    pub message: String,
    pub dry_run: bool,
}

impl VerdictReason {
    /// What `flagger_canary_metric_analysis` records: durations in seconds, the rest as is.
    pub fn gauge_value(&self, kind: &MetricKind) -> Option<f64> {
        let v = self.value?;
        Some(match kind {
            MetricKind::Builtin {
                metric: BuiltinMetric::RequestDuration,
                ..
            } => v / 1000.0,
            _ => v,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass { reason: VerdictReason },
    Fail { reason: VerdictReason },
    Hold { reason: VerdictReason },
}

impl Verdict {
    pub fn reason(&self) -> &VerdictReason {
        match self {
            Verdict::Pass { reason } | Verdict::Fail { reason } | Verdict::Hold { reason } => {
                reason
            }
        }
    }

    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass { .. })
    }
}

/// The accepted range, in threshold units (metrics.md §6): `thresholdRange` wins; else the
/// deprecated `threshold` is a minimum for the builtin success rate and a maximum otherwise
/// (absent = 0). Duration bounds are truncated to whole milliseconds.
pub fn bounds(
    kind: &MetricKind,
    threshold: Option<f64>,
    range: Option<&ThresholdRange>,
) -> (Option<f64>, Option<f64>) {
    let (min, max) = match range {
        Some(r) => (
            r.min.as_ref().map(|n| n.as_f64()),
            r.max.as_ref().map(|n| n.as_f64()),
        ),
        None => match kind {
            MetricKind::Builtin {
                metric: BuiltinMetric::RequestSuccessRate,
                ..
            } => (Some(threshold.unwrap_or(0.0)), None),
            _ => (None, Some(threshold.unwrap_or(0.0))),
        },
    };
    if is_duration(kind) {
        (min.map(f64::trunc), max.map(f64::trunc))
    } else {
        (min, max)
    }
}

fn is_duration(kind: &MetricKind) -> bool {
    matches!(
        kind,
        MetricKind::Builtin {
            metric: BuiltinMetric::RequestDuration,
            ..
        }
    )
}

/// Decides one check. `outcome` is the raw number the provider returned (builtin durations in
/// their set's raw unit) or why there is none; `query` is the rendered query, if any.
pub fn evaluate(
    spec: &CheckSpec<'_>,
    query: Option<&str>,
    outcome: Result<f64, CheckError>,
) -> Verdict {
    let (min, max) = bounds(&spec.kind, spec.threshold, spec.threshold_range);
    let mut reason = VerdictReason {
        metric: spec.metric.to_string(),
        cause: Cause::InRange,
        value: None,
        min,
        max,
        query: query.map(str::to_string),
        message: String::new(),
        dry_run: spec.dry_run,
    };
    let failed = match outcome {
        Ok(raw) => {
            let value = match &spec.kind {
                MetricKind::Builtin { set, metric } => {
                    to_threshold_unit(raw, set.raw_unit(*metric))
                }
                _ => raw,
            };
            reason.value = Some(value);
            let below = min.filter(|m| value < *m);
            let above = max.filter(|m| value > *m);
            match (below, above) {
                (None, None) => {
                    reason.message =
                        format!("{} {} within range", spec.metric, fmt_value(spec, value));
                    false
                }
                (Some(m), _) => {
                    reason.cause = Cause::OutOfRange;
                    reason.message = out_of_range(spec, value, '<', m);
                    true
                }
                (None, Some(m)) => {
                    reason.cause = Cause::OutOfRange;
                    reason.message = out_of_range(spec, value, '>', m);
                    true
                }
            }
        }
        Err(e) => {
            let (cause, message) = error_text(spec, &e);
            reason.cause = cause;
            reason.message = message;
            true
        }
    };
    if spec.dry_run {
        if failed {
            reason.message = format!("dry-run: {}", reason.message);
        }
        return Verdict::Pass { reason };
    }
    if !failed {
        return Verdict::Pass { reason };
    }
    let holdable = matches!(reason.cause, Cause::NoValues | Cause::QueryFailed);
    if holdable && spec.no_data == NoDataPolicy::Hold {
        reason.message = format!(
            "Hold {}.{} advancement: {}",
            spec.canary, spec.namespace, reason.message
        );
        return Verdict::Hold { reason };
    }
    Verdict::Fail { reason }
}

fn fmt_value(spec: &CheckSpec<'_>, value: f64) -> String {
    match &spec.kind {
        MetricKind::Builtin {
            metric: BuiltinMetric::RequestSuccessRate,
            ..
        } => format!("{value:.2}%"),
        MetricKind::Builtin {
            metric: BuiltinMetric::RequestDuration,
            ..
        } => go_duration_ms(value),
        _ => format!("{value:.2}"),
    }
}

fn out_of_range(spec: &CheckSpec<'_>, value: f64, op: char, bound: f64) -> String {
    let who = format!("{}.{}", spec.canary, spec.namespace);
    match &spec.kind {
        MetricKind::Builtin {
            metric: BuiltinMetric::RequestSuccessRate,
            ..
        } => format!("Halt {who} advancement success rate {value:.2}% {op} {bound}%"),
        MetricKind::Builtin {
            metric: BuiltinMetric::RequestDuration,
            ..
        } => format!(
            "Halt {who} advancement request duration {} {op} {}",
            go_duration_ms(value),
            go_duration_ms(bound)
        ),
        _ => format!(
            "Halt {who} advancement {} {value:.2} {op} {bound}",
            spec.metric
        ),
    }
}

fn error_text(spec: &CheckSpec<'_>, e: &CheckError) -> (Cause, String) {
    let metric = spec.metric;
    match (e, &spec.kind) {
        (CheckError::NoValues(err), MetricKind::Builtin { set, .. }) => (
            Cause::NoValues,
            format!(
                "Halt advancement no values found for {} metric {metric} probably {}.{} is not receiving traffic: {err}",
                set.name(),
                spec.target,
                spec.namespace
            ),
        ),
        (CheckError::NoValues(_), MetricKind::Inline) => (
            Cause::NoValues,
            format!("Halt advancement no values found for metric: {metric}"),
        ),
        (CheckError::NoValues(err), MetricKind::Template { .. }) => (
            Cause::NoValues,
            format!("Halt advancement no values found for custom metric: {metric}: {err}"),
        ),
        (CheckError::QueryFailed(err), MetricKind::Builtin { .. }) => (
            Cause::QueryFailed,
            format!("Prometheus query failed: {err}"),
        ),
        (CheckError::QueryFailed(err), MetricKind::Inline) => (
            Cause::QueryFailed,
            format!("Prometheus query failed for {metric}: {err}"),
        ),
        (CheckError::QueryFailed(err), MetricKind::Template { .. }) => (
            Cause::QueryFailed,
            format!("Metric query failed for {metric}: {err}"),
        ),
        (CheckError::Render(err), MetricKind::Template { name, namespace }) => (
            Cause::RenderFailed,
            format!("Metric template {name}.{namespace} query render error: {err}"),
        ),
        (CheckError::Render(err), _) => (
            Cause::RenderFailed,
            format!("Metric {metric} query render error: {err}"),
        ),
        (CheckError::Unusable(err), MetricKind::Template { name, namespace }) => (
            Cause::Unusable,
            format!("Metric template {name}.{namespace} {err}"),
        ),
        (CheckError::Unusable(err), _) => {
            (Cause::Unusable, format!("Metric query failed for {err}"))
        }
    }
}

/// Go's `time.Duration.String()` for a whole number of milliseconds: `500ms`, `1.515s`,
/// `1m30s`, `0s`.
pub fn go_duration_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return if ms > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Whole milliseconds by construction (truncated above); the cast saturates on overflow.
    let ms = ms as i64;
    if ms == 0 {
        return "0s".into();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let frac = |millis: u64| -> String {
        if millis == 0 {
            String::new()
        } else {
            format!(".{millis:03}").trim_end_matches('0').to_string()
        }
    };
    let total_secs = ms / 1000;
    let millis = ms % 1000;
    let hours = total_secs / 3600;
    let mins = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let mut out = sign.to_string();
    if hours > 0 {
        out.push_str(&format!("{hours}h{mins}m"));
    } else if mins > 0 {
        out.push_str(&format!("{mins}m"));
    }
    out.push_str(&format!("{secs}{}s", frac(millis)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagger_api::Number;

    const SR: MetricKind = MetricKind::Builtin {
        set: QuerySet::Traefik,
        metric: BuiltinMetric::RequestSuccessRate,
    };
    const DUR: MetricKind = MetricKind::Builtin {
        set: QuerySet::Traefik,
        metric: BuiltinMetric::RequestDuration,
    };
    const HTTP_DUR: MetricKind = MetricKind::Builtin {
        set: QuerySet::Http,
        metric: BuiltinMetric::RequestDuration,
    };

    fn template() -> MetricKind {
        MetricKind::Template {
            name: "latency".into(),
            namespace: "flagger".into(),
        }
    }

    fn range(min: Option<f64>, max: Option<f64>) -> ThresholdRange {
        ThresholdRange {
            min: min.map(Number::from),
            max: max.map(Number::from),
        }
    }

    fn spec<'a>(
        kind: MetricKind,
        threshold: Option<f64>,
        range: Option<&'a ThresholdRange>,
    ) -> CheckSpec<'a> {
        let metric = match &kind {
            MetricKind::Builtin { metric, .. } => metric.name(),
            MetricKind::Inline => "error-rate",
            MetricKind::Template { .. } => "p95-latency",
        };
        CheckSpec {
            canary: "podinfo",
            namespace: "test",
            target: "podinfo",
            metric,
            kind,
            threshold,
            threshold_range: range,
            dry_run: false,
            no_data: NoDataPolicy::Fail,
        }
    }

    #[derive(Debug, PartialEq)]
    enum V {
        P,
        F,
        H,
    }

    fn short(v: &Verdict) -> V {
        match v {
            Verdict::Pass { .. } => V::P,
            Verdict::Fail { .. } => V::F,
            Verdict::Hold { .. } => V::H,
        }
    }

    #[test]
    fn threshold_table() {
        let r_min99 = range(Some(99.0), None);
        let r_max500 = range(None, Some(500.9));
        let r_both = range(Some(1.0), Some(2.0));
        let rows: Vec<(CheckSpec, f64, V)> = vec![
            // deprecated threshold: builtin success rate is a minimum
            (spec(SR, Some(99.0), None), 99.0, V::P),
            (spec(SR, Some(99.0), None), 98.99, V::F),
            (spec(SR, None, None), 0.0, V::P),
            // thresholdRange wins over threshold
            (spec(SR, Some(50.0), Some(&r_min99)), 98.0, V::F),
            (spec(SR, Some(50.0), Some(&r_min99)), 100.0, V::P),
            // builtin duration: maximum, whole ms, bounds truncated (500.9 behaves as 500)
            (spec(DUR, Some(500.0), None), 500.9, V::P),
            (spec(DUR, Some(500.0), None), 501.0, V::F),
            (spec(DUR, None, Some(&r_max500)), 500.99, V::P),
            (spec(DUR, None, Some(&r_max500)), 501.0, V::F),
            // http set returns seconds
            (spec(HTTP_DUR, Some(500.0), None), 0.5009, V::P),
            (spec(HTTP_DUR, Some(500.0), None), 0.501, V::F),
            // inline/template: threshold is a maximum, absent = 0
            (spec(MetricKind::Inline, Some(5.0), None), 5.0, V::P),
            (spec(MetricKind::Inline, Some(5.0), None), 5.01, V::F),
            (spec(template(), None, None), 0.0, V::P),
            (spec(template(), None, None), 0.1, V::F),
            // both bounds inclusive
            (spec(template(), None, Some(&r_both)), 1.0, V::P),
            (spec(template(), None, Some(&r_both)), 2.0, V::P),
            (spec(template(), None, Some(&r_both)), 0.99, V::F),
            (spec(template(), None, Some(&r_both)), 2.01, V::F),
            // infinities compare normally
            (spec(template(), None, Some(&r_both)), f64::INFINITY, V::F),
            (spec(SR, Some(99.0), None), f64::INFINITY, V::P),
        ];
        for (i, (s, v, want)) in rows.into_iter().enumerate() {
            let got = evaluate(&s, Some("q"), Ok(v));
            assert_eq!(short(&got), want, "row {i}: {v} {:?}", got.reason());
        }
    }

    #[test]
    fn failure_messages_and_reason() {
        let r = range(Some(99.0), None);
        let v = evaluate(&spec(SR, None, Some(&r)), Some("sum(x)"), Ok(95.5));
        let Verdict::Fail { reason } = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            reason.message,
            "Halt podinfo.test advancement success rate 95.50% < 99%"
        );
        assert_eq!(reason.cause, Cause::OutOfRange);
        assert_eq!(reason.value, Some(95.5));
        assert_eq!((reason.min, reason.max), (Some(99.0), None));
        assert_eq!(reason.query.as_deref(), Some("sum(x)"));
        assert_eq!(reason.metric, "request-success-rate");

        let v = evaluate(&spec(DUR, Some(500.0), None), None, Ok(1515.7));
        assert_eq!(
            v.reason().message,
            "Halt podinfo.test advancement request duration 1.515s > 500ms"
        );
        assert_eq!(v.reason().gauge_value(&DUR), Some(1.515));

        let r = range(Some(1.0), None);
        let v = evaluate(&spec(template(), None, Some(&r)), None, Ok(0.5));
        assert_eq!(
            v.reason().message,
            "Halt podinfo.test advancement p95-latency 0.50 < 1"
        );
    }

    #[test]
    fn no_data_and_errors_fail_by_default() {
        let nv = || CheckError::from(MetricError::no_values("empty vector"));
        let cases = [
            (
                spec(SR, Some(99.0), None),
                nv(),
                "Halt advancement no values found for traefik metric request-success-rate probably podinfo.test is not receiving traffic: no values found: empty vector",
            ),
            (
                spec(MetricKind::Inline, None, None),
                nv(),
                "Halt advancement no values found for metric: error-rate",
            ),
            (
                spec(template(), None, None),
                nv(),
                "Halt advancement no values found for custom metric: p95-latency: no values found: empty vector",
            ),
            (
                spec(SR, None, None),
                CheckError::from(MetricError::failed("request failed: connection refused")),
                "Prometheus query failed: request failed: connection refused",
            ),
            (
                spec(MetricKind::Inline, None, None),
                CheckError::QueryFailed("x".into()),
                "Prometheus query failed for error-rate: x",
            ),
            (
                spec(template(), None, None),
                CheckError::QueryFailed("x".into()),
                "Metric query failed for p95-latency: x",
            ),
            (
                spec(template(), None, None),
                CheckError::Render("template variable \"k\" is not defined".into()),
                "Metric template latency.flagger query render error: template variable \"k\" is not defined",
            ),
        ];
        for (s, e, msg) in cases {
            let v = evaluate(&s, None, Err(e));
            assert_eq!(short(&v), V::F, "{v:?}");
            assert_eq!(v.reason().message, msg);
            assert_eq!(v.reason().value, None);
        }
    }

    #[test]
    fn hold_policy() {
        let mut s = spec(SR, Some(99.0), None);
        s.no_data = NoDataPolicy::Hold;
        let v = evaluate(
            &s,
            Some("q"),
            Err(CheckError::NoValues("no values found".into())),
        );
        assert_eq!(short(&v), V::H);
        assert_eq!(v.reason().cause, Cause::NoValues);
        assert!(
            v.reason()
                .message
                .starts_with("Hold podinfo.test advancement: Halt advancement no values found"),
            "{}",
            v.reason().message
        );
        let v = evaluate(
            &s,
            Some("q"),
            Err(CheckError::QueryFailed("connection refused".into())),
        );
        assert_eq!(short(&v), V::H);
        assert_eq!(v.reason().cause, Cause::QueryFailed);
        // hold never hides a real failure, nor a broken configuration
        assert_eq!(short(&evaluate(&s, None, Ok(50.0))), V::F);
        assert_eq!(
            short(&evaluate(&s, None, Err(CheckError::Render("x".into())))),
            V::F
        );
        assert_eq!(
            short(&evaluate(&s, None, Err(CheckError::Unusable("x".into())))),
            V::F
        );
        assert_eq!(short(&evaluate(&s, None, Ok(99.5))), V::P);
    }

    #[test]
    fn dry_run_never_fails_nor_holds() {
        for policy in [NoDataPolicy::Fail, NoDataPolicy::Hold] {
            let mut s = spec(SR, Some(99.0), None);
            s.dry_run = true;
            s.no_data = policy;
            let v = evaluate(&s, Some("q"), Ok(10.0));
            assert_eq!(short(&v), V::P);
            assert_eq!(v.reason().cause, Cause::OutOfRange);
            assert!(v.reason().dry_run);
            assert!(
                v.reason().message.starts_with("dry-run: Halt podinfo.test"),
                "{}",
                v.reason().message
            );
            let v = evaluate(&s, Some("q"), Err(CheckError::NoValues("none".into())));
            assert_eq!(short(&v), V::P);
            assert_eq!(v.reason().cause, Cause::NoValues);
            let v = evaluate(&s, Some("q"), Err(CheckError::QueryFailed("down".into())));
            assert_eq!(short(&v), V::P);
            assert_eq!(v.reason().cause, Cause::QueryFailed);
        }
    }

    #[test]
    fn go_durations() {
        for (ms, want) in [
            (0.0, "0s"),
            (500.0, "500ms"),
            (1000.0, "1s"),
            (1515.0, "1.515s"),
            (1500.0, "1.5s"),
            (90_000.0, "1m30s"),
            (3_600_000.0, "1h0m0s"),
            (3_723_004.0, "1h2m3.004s"),
        ] {
            assert_eq!(go_duration_ms(ms), want);
        }
    }
}
