//! One Canary checked against the cluster through the controller's own code: its metric checks
//! run once as the next analysis tick would run them, its hooks' tokens and AlertProviders are
//! resolved as a tick would resolve them. Nothing here writes: hooks are never called (they have
//! side effects) and no notification is sent.

use std::time::Duration;

use flagger_api::Canary;
use flagger_api::analysis::CanaryWebhook;
use flagger_controller::context::Context;
use flagger_core::{MetricCheck, MetricOutcome, MetricResult, NoDataPolicy, RolloutSpec};
use flagger_providers::metrics::MetricKind;
use kube::ResourceExt;

use super::report::{
    AlertReport, CanaryReport, HostCheck, MetricReport, Outcome, Verdict, WebhookReport,
};

/// How long a host name lookup may take before it counts as not resolving.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// `source` is where the canary was read (`file:document`).
pub async fn check_canary(ctx: &Context, canary: &Canary, source: String) -> CanaryReport {
    let mut report = CanaryReport {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        source,
        pass: false,
        error: None,
        metrics: Vec::new(),
        webhooks: Vec::new(),
        alerts: Vec::new(),
    };
    match flagger_core::normalize(canary, &ctx.core) {
        Ok(spec) => {
            for check in &spec.metrics {
                report.metrics.push(metric(ctx, canary, &spec, check).await);
            }
        }
        Err(e) => report.error = Some(format!("the controller would not run it: {e}")),
    }
    for hook in canary.spec.analysis.webhooks.iter().flatten() {
        report.webhooks.push(webhook(ctx, canary, hook).await);
    }
    for alert in canary.spec.analysis.alerts.iter().flatten() {
        let namespace = alert
            .provider_ref
            .namespace
            .clone()
            .unwrap_or_else(|| report.namespace.clone());
        let error = match flagger_controller::alerts::notifier_for(
            ctx,
            &alert.provider_ref.name,
            &namespace,
        )
        .await
        {
            Ok(Some(_)) => None,
            Ok(None) => Some("its address is empty: the controller sends it nothing".into()),
            Err(why) => Some(why),
        };
        report.alerts.push(AlertReport {
            name: alert.name.clone(),
            provider: format!("{}.{namespace}", alert.provider_ref.name),
            severity: alert.severity.clone().unwrap_or_else(|| "info".into()),
            error,
        });
    }
    report.pass = report.error.is_none()
        && report.metrics.iter().all(|m| m.verdict == Verdict::Pass)
        && report.webhooks.iter().all(|w| w.token_error.is_none())
        && report.alerts.iter().all(|a| a.error.is_none());
    report
}

/// The check as the controller runs it (template, Secret, rendering, provider, the query), judged
/// as the core judges it.
async fn metric(
    ctx: &Context,
    canary: &Canary,
    spec: &RolloutSpec,
    check: &MetricCheck,
) -> MetricReport {
    // A Knative target's analysis queries its latest created revision; without a run in progress
    // there is none to name, so the route stays the target's own name.
    let checked = flagger_controller::checks::run(ctx, canary, &check.name, None).await;
    let verdict = match flagger_core::evaluate(spec.key(), check, &checked.result) {
        Ok(()) => (Verdict::Pass, None),
        Err(failed) => (verdict_of(check, &checked.result), Some(failed.message)),
    };
    let MetricResult { query, outcome, .. } = checked.result;
    let (outcome, value, error) = match outcome {
        MetricOutcome::Value(v) => (Outcome::Value, Some(v), None),
        MetricOutcome::NoData(e) => (Outcome::NoValues, None, Some(e)),
        MetricOutcome::QueryFailed(e) => (Outcome::QueryFailed, None, Some(e)),
        MetricOutcome::Error(e) => (Outcome::Error, None, Some(e)),
    };
    MetricReport {
        name: check.name.clone(),
        source: source_of(ctx, canary, checked.kind.as_ref()),
        query,
        outcome,
        value,
        error,
        threshold: check.threshold.clone(),
        verdict: verdict.0,
        reason: verdict.1,
        warnings: checked.warnings,
    }
}

/// What a failed check does to the tick: counted, only reported (`dryRun`), or held (`noData:
/// hold` without a value).
fn verdict_of(check: &MetricCheck, result: &MetricResult) -> Verdict {
    let without_value = matches!(
        result.outcome,
        MetricOutcome::NoData(_) | MetricOutcome::QueryFailed(_)
    );
    if check.dry_run {
        Verdict::FailNotCounted
    } else if without_value && check.no_data == NoDataPolicy::Hold {
        Verdict::Hold
    } else {
        Verdict::Fail
    }
}

fn source_of(ctx: &Context, canary: &Canary, kind: Option<&MetricKind>) -> String {
    let prometheus = || {
        canary
            .spec
            .metrics_server
            .clone()
            .unwrap_or_else(|| ctx.flags.metrics_server.clone())
    };
    match kind {
        Some(MetricKind::Builtin { set, metric }) => format!(
            "builtin {} {} on Prometheus {}",
            set.name(),
            metric.name(),
            prometheus()
        ),
        Some(MetricKind::Inline) => format!("inline query on Prometheus {}", prometheus()),
        Some(MetricKind::Template { name, namespace }) => {
            format!("MetricTemplate {name}.{namespace}")
        }
        None => "not in the canary spec".into(),
    }
}

async fn webhook(ctx: &Context, canary: &Canary, hook: &CanaryWebhook) -> WebhookReport {
    let token_error = match &hook.bearer_token_secret_ref {
        Some(secret_ref) => flagger_controller::webhooks::token(ctx, canary, secret_ref)
            .await
            .err(),
        None => None,
    };
    WebhookReport {
        name: hook.name.clone(),
        type_: hook
            .type_
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "rollout".into()),
        url: hook.url.clone(),
        host: resolve_host(&hook.url).await,
        token_error,
    }
}

/// Looks the URL's host up the way the HTTP client would, without connecting.
async fn resolve_host(url: &str) -> HostCheck {
    let uri = match url.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            return HostCheck {
                host: String::new(),
                resolves: false,
                error: Some(format!("not a URL: {e}")),
            };
        }
    };
    let Some(host) = uri.host().map(|h| h.trim_matches(['[', ']']).to_string()) else {
        return HostCheck {
            host: String::new(),
            resolves: false,
            error: Some("the URL names no host".into()),
        };
    };
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let error = match tokio::time::timeout(
        LOOKUP_TIMEOUT,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(mut addresses)) => addresses.next().is_none().then(|| "no address".to_string()),
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {LOOKUP_TIMEOUT:?}")),
    };
    HostCheck {
        host,
        resolves: error.is_none(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use flagger_core::MetricKind as CheckKind;

    use super::*;

    fn check(dry_run: bool, no_data: NoDataPolicy) -> MetricCheck {
        MetricCheck {
            name: "m".into(),
            kind: CheckKind::Custom,
            min: Some(1.0),
            max: None,
            threshold: Some("min 1".into()),
            dry_run,
            no_data,
            judge: None,
        }
    }

    fn result(outcome: MetricOutcome) -> MetricResult {
        MetricResult {
            name: "m".into(),
            query: None,
            outcome,
        }
    }

    /// What a failed check does to the tick decides the verdict, as the analysis treats it.
    #[test]
    fn failed_checks_are_counted_reported_or_held_as_the_tick_would() {
        let no_data = || result(MetricOutcome::NoData("no values found".into()));
        let low = || result(MetricOutcome::Value(0.5));
        assert_eq!(
            verdict_of(&check(false, NoDataPolicy::Fail), &no_data()),
            Verdict::Fail
        );
        assert_eq!(
            verdict_of(&check(false, NoDataPolicy::Hold), &no_data()),
            Verdict::Hold
        );
        assert_eq!(
            verdict_of(&check(false, NoDataPolicy::Hold), &low()),
            Verdict::Fail,
            "a value out of range is never held"
        );
        assert_eq!(
            verdict_of(&check(true, NoDataPolicy::Hold), &no_data()),
            Verdict::FailNotCounted
        );
        let missing = result(MetricOutcome::Error("Secret s.test not found".into()));
        assert_eq!(
            verdict_of(&check(false, NoDataPolicy::Hold), &missing),
            Verdict::Fail,
            "a configuration problem is not no-data"
        );
    }

    #[tokio::test]
    async fn hosts_are_looked_up_without_being_called() {
        let local = resolve_host("http://127.0.0.1:1/gate").await;
        assert!(local.resolves, "{local:?}");
        assert_eq!(local.host, "127.0.0.1");
        let bad = resolve_host("http://no-such-host.invalid/").await;
        assert!(!bad.resolves);
        assert_eq!(bad.host, "no-such-host.invalid");
        assert!(bad.error.is_some());
        let garbage = resolve_host("not a url").await;
        assert!(!garbage.resolves && garbage.error.is_some(), "{garbage:?}");
    }
}
