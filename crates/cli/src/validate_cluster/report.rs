//! What `validate --cluster` found per canary, and how it is printed: one block of text per
//! canary, or the same data as JSON. Pure, so the wording is pinned by snapshots.

use serde::Serialize;

/// One Canary from the files, checked against the cluster.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryReport {
    pub name: String,
    pub namespace: String,
    /// `file:document`, as the offline findings name it.
    pub source: String,
    /// True when every metric check would pass now and every Secret and AlertProvider resolves.
    pub pass: bool,
    /// Why the canary could not be checked at all (its spec does not normalise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub metrics: Vec<MetricReport>,
    pub webhooks: Vec<WebhookReport>,
    pub alerts: Vec<AlertReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricReport {
    pub name: String,
    /// Where the query came from: `builtin istio request-success-rate`, `inline query`,
    /// `MetricTemplate latency.test`.
    pub source: String,
    /// The query as sent, when rendering got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub outcome: Outcome,
    /// In threshold units (the builtin duration in milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The controller's text for an outcome without a value (the exact error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    pub verdict: Verdict,
    /// The failed check's message of the next tick, when it would not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Value,
    NoValues,
    QueryFailed,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Pass,
    Fail,
    /// A `dryRun` metric that fails: reported, never counted by the analysis.
    FailNotCounted,
    /// A `noData: hold` metric without a value: the tick would wait, not advance.
    Hold,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::FailNotCounted => "FAIL (dryRun, not counted)",
            Verdict::Hold => "HOLD (noData: hold)",
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReport {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub url: String,
    /// Whether the URL's host resolves from where the command runs (a cluster-internal name
    /// may not resolve outside the cluster, so this never fails the canary).
    pub host: HostCheck,
    /// The bearer token Secret's problem, when the hook names one that cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostCheck {
    pub host: String,
    pub resolves: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertReport {
    pub name: String,
    /// `name.namespace` of the AlertProvider.
    pub provider: String,
    pub severity: String,
    /// Why the controller could not use the provider (missing, its Secret missing, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything `validate --cluster --output json` prints.
#[derive(Debug, Serialize)]
pub struct Report<'a, F: Serialize> {
    /// The offline findings, as `validate --output json` lists them.
    pub findings: &'a [F],
    pub canaries: &'a [CanaryReport],
    pub pass: bool,
}

pub fn json<F: Serialize>(findings: &[F], canaries: &[CanaryReport], pass: bool) -> String {
    let report = Report {
        findings,
        canaries,
        pass,
    };
    serde_json::to_string_pretty(&report)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode the report as JSON: {e}\"}}"))
}

/// The text of all canaries, a blank line between them.
pub fn text(canaries: &[CanaryReport]) -> String {
    canaries
        .iter()
        .map(canary_text)
        .collect::<Vec<_>>()
        .join("\n")
}

fn canary_text(c: &CanaryReport) -> String {
    let mut out = String::new();
    let verdict = if c.pass {
        "every check would pass"
    } else {
        "would NOT pass"
    };
    out.push_str(&format!(
        "Canary {}.{} ({}): {verdict}\n",
        c.name, c.namespace, c.source
    ));
    if let Some(error) = &c.error {
        out.push_str(&format!("  error: {error}\n"));
    }
    for m in &c.metrics {
        out.push_str(&metric_text(m));
    }
    for w in &c.webhooks {
        let host = if w.host.resolves {
            format!("host {} resolves", w.host.host)
        } else {
            format!(
                "host {} does not resolve from here: {}",
                w.host.host,
                w.host.error.as_deref().unwrap_or("no address")
            )
        };
        out.push_str(&format!(
            "  webhook {} ({}): {} ({host}; not called)\n",
            w.name, w.type_, w.url
        ));
        if let Some(e) = &w.token_error {
            out.push_str(&format!("    FAIL bearer token: {e}\n"));
        }
    }
    for a in &c.alerts {
        let state = match &a.error {
            None => "usable".to_string(),
            Some(e) => format!("UNUSABLE: {e}"),
        };
        out.push_str(&format!(
            "  alert {} (severity {}): AlertProvider {} {state}\n",
            a.name, a.severity, a.provider
        ));
    }
    if c.metrics.is_empty() && c.error.is_none() {
        out.push_str("  no metric checks\n");
    }
    out
}

fn metric_text(m: &MetricReport) -> String {
    let answer = match (m.value, &m.error) {
        (Some(v), _) => format!("value {v}"),
        (None, Some(e)) => e.clone(),
        (None, None) => "no answer".to_string(),
    };
    let threshold = m
        .threshold
        .as_deref()
        .map(|t| format!(" (threshold {t})"))
        .unwrap_or_default();
    let mut out = format!(
        "  metric {}: {}: {answer}{threshold}\n",
        m.name,
        m.verdict.word()
    );
    if let Some(reason) = m.reason.as_ref().filter(|r| Some(*r) != m.error.as_ref()) {
        out.push_str(&format!("    {reason}\n"));
    }
    out.push_str(&format!("    from {}\n", m.source));
    match &m.query {
        Some(q) => out.push_str(&format!("    query: {q}\n")),
        None => out.push_str("    query: (not rendered)\n"),
    }
    for w in &m.warnings {
        out.push_str(&format!("    warning: {w}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str) -> MetricReport {
        MetricReport {
            name: name.into(),
            source: format!("MetricTemplate {name}.test"),
            query: None,
            outcome: Outcome::Value,
            value: None,
            error: None,
            threshold: None,
            verdict: Verdict::Pass,
            reason: None,
            warnings: Vec::new(),
        }
    }

    /// One canary with every kind of line: a passing value, a value out of range, no values, a
    /// missing Secret, a dry-run failure, a hook with a bad token, an unusable alert provider.
    fn reports() -> Vec<CanaryReport> {
        let passing = MetricReport {
            query: Some("max(up{job=\"traefik\"})".into()),
            value: Some(1.0),
            threshold: Some("min 1".into()),
            ..metric("up")
        };
        let out_of_range = MetricReport {
            source: "builtin istio request-duration".into(),
            query: Some("histogram_quantile(0.99, …)".into()),
            value: Some(1515.0),
            threshold: Some("max 500".into()),
            verdict: Verdict::Fail,
            reason: Some("Halt podinfo.test advancement request duration 1.515s > 500ms".into()),
            warnings: vec!["query returned 2 series, using the last one".into()],
            ..metric("request-duration")
        };
        let no_values = MetricReport {
            query: Some("sum(rate(http_requests_total{namespace=\"test\"}[1m]))".into()),
            outcome: Outcome::NoValues,
            error: Some("no values found for custom metric: requests: no data".into()),
            threshold: Some("min 1".into()),
            verdict: Verdict::Fail,
            reason: Some("no values found for custom metric: requests: no data".into()),
            ..metric("requests")
        };
        let no_secret = MetricReport {
            outcome: Outcome::Error,
            error: Some("Secret prom-auth.test not found".into()),
            verdict: Verdict::FailNotCounted,
            reason: Some("Secret prom-auth.test not found".into()),
            ..metric("errors")
        };
        vec![
            CanaryReport {
                name: "podinfo".into(),
                namespace: "test".into(),
                source: "canary.yaml:1".into(),
                pass: false,
                error: None,
                metrics: vec![passing, out_of_range, no_values, no_secret],
                webhooks: vec![
                    WebhookReport {
                        name: "load-test".into(),
                        type_: "rollout".into(),
                        url: "http://127.0.0.1:9999/".into(),
                        host: HostCheck {
                            host: "127.0.0.1".into(),
                            resolves: true,
                            error: None,
                        },
                        token_error: None,
                    },
                    WebhookReport {
                        name: "gate".into(),
                        type_: "confirm-promotion".into(),
                        url: "http://gate.invalid/approve".into(),
                        host: HostCheck {
                            host: "gate.invalid".into(),
                            resolves: false,
                            error: Some("failed to lookup address information".into()),
                        },
                        token_error: Some("Secret gate-token.test not found".into()),
                    },
                ],
                alerts: vec![
                    AlertReport {
                        name: "on-call".into(),
                        provider: "slack.test".into(),
                        severity: "error".into(),
                        error: None,
                    },
                    AlertReport {
                        name: "team".into(),
                        provider: "teams.flagger".into(),
                        severity: "info".into(),
                        error: Some("Secret teams-url.flagger not found".into()),
                    },
                ],
            },
            CanaryReport {
                name: "quiet".into(),
                namespace: "test".into(),
                source: "canary.yaml:2".into(),
                pass: true,
                error: None,
                metrics: Vec::new(),
                webhooks: Vec::new(),
                alerts: Vec::new(),
            },
        ]
    }

    #[test]
    fn text_report() {
        insta::assert_snapshot!(text(&reports()));
    }

    #[test]
    fn json_report() {
        let findings: Vec<serde_json::Value> = Vec::new();
        insta::assert_snapshot!(json(&findings, &reports(), false));
    }
}
