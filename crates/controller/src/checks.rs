//! One metric check as the controller runs it: look up what only the cluster knows (the
//! MetricTemplate, its Secret, the shared Prometheus client), let
//! [`flagger_providers::metrics::check_metric`] classify, render and run the entry, and word the
//! outcome in Flagger's texts. Judging the value (thresholds, `dryRun`, `noData`) is the
//! core's job.

use std::sync::Arc;

use flagger_api::analysis::CrossNamespaceRef;
use flagger_api::{Canary, MetricTemplate};
use flagger_core::{MetricOutcome, MetricResult};
use flagger_providers::metrics::check::{Entry, classify};
use flagger_providers::metrics::{
    CheckContext, CheckError, CheckOutcome, MetricKind, MetricProvider, ResolvedTemplate,
    SecretData, build_provider_in_cluster, check_metric,
};
use flagger_providers::wording::Plain;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::context::Context;
use crate::redact::redact;

/// One checked metric: the result for the core, plus what the controller reports on its own.
pub struct Checked {
    pub result: MetricResult,
    /// Worth a Warning event without changing the outcome (e.g. several series).
    pub warnings: Vec<String>,
    /// `None` when the metric is not in the spec.
    pub kind: Option<MetricKind>,
}

/// `knative_revision`: for a Knative Service target, the revision under analysis.
pub async fn run(
    ctx: &Context,
    canary: &Canary,
    name: &str,
    knative_revision: Option<&str>,
) -> Checked {
    let Some(metric) = canary
        .spec
        .analysis
        .metrics
        .iter()
        .flatten()
        .find(|m| m.name == name)
    else {
        return Checked {
            result: MetricResult {
                name: name.to_string(),
                query: None,
                outcome: MetricOutcome::Error(format!("metric {name} is not in the canary spec")),
            },
            warnings: Vec::new(),
            kind: None,
        };
    };
    let namespace = canary.namespace().unwrap_or_default();
    // Template entries never query the canary's Prometheus: a bad `metricsServer` must not cost
    // them a client build per check.
    let prometheus = match classify(metric) {
        Entry::Template(_) => None,
        _ => Some(ctx.prometheus(metrics_server(ctx, canary))),
    };
    let template = match &metric.template_ref {
        Some(template_ref) => Some(resolve_template(ctx, &namespace, template_ref).await),
        None => None,
    };
    let check_ctx = CheckContext {
        canary,
        mesh_provider: &ctx.flags.mesh_provider,
        prometheus: match &prometheus {
            Some(Ok(p)) => Ok(p.as_ref()),
            Some(Err(why)) => Err(why.as_str()),
            None => Err("templateRef metrics do not use the canary's Prometheus"),
        },
        // A Knative target's `route` is its latest created revision, the revision under analysis.
        route_override: knative_revision,
    };
    let resolved = template.as_ref().map(|t| match t {
        Ok((template, provider, _)) => ResolvedTemplate::Ready {
            template,
            provider: provider.as_ref(),
        },
        Err(why) => ResolvedTemplate::Failed(why.clone()),
    });
    // The backend is the server the query goes to: the template's provider address, else the
    // canary's Prometheus; a provider without an address (a cloud API) shares its type's limit.
    let backend = match &template {
        Some(Ok((template, _, _))) => template
            .spec
            .provider
            .address
            .clone()
            .unwrap_or_else(|| template.spec.provider.type_.clone()),
        _ => metrics_server(ctx, canary).to_string(),
    };
    let checked = ctx
        .outbound
        .run(
            &crate::outbound::backend_of(&backend),
            check_metric(&check_ctx, metric, resolved),
        )
        .await;
    let secrets = match &template {
        Some(Ok((_, _, secrets))) => secrets.as_slice(),
        _ => &[],
    };
    without_secrets(to_checked(canary, name, checked), secrets)
}

/// The Prometheus of builtin and inline checks: the canary's own `metricsServer`, else the
/// controller's `-metrics-server`.
pub(crate) fn metrics_server<'a>(ctx: &'a Context, canary: &'a Canary) -> &'a str {
    canary
        .spec
        .metrics_server
        .as_deref()
        .unwrap_or(&ctx.flags.metrics_server)
}

/// A backend's error may quote the credentials it was sent (an API key in an echoed URL or
/// header); the check's texts become Events and alerts, so the template Secret's values go.
fn without_secrets(mut checked: Checked, secrets: &[String]) -> Checked {
    if secrets.is_empty() {
        return checked;
    }
    let clean = |text: &mut String| *text = redact(text, secrets.iter().map(String::as_str));
    match &mut checked.result.outcome {
        MetricOutcome::NoData(text)
        | MetricOutcome::QueryFailed(text)
        | MetricOutcome::Error(text) => clean(text),
        MetricOutcome::Value(_) => {}
    }
    checked.warnings.iter_mut().for_each(clean);
    checked
}

/// The core's view of a check, in Flagger's words (the kind of entry decides the text).
fn to_checked(canary: &Canary, name: &str, checked: CheckOutcome) -> Checked {
    let CheckOutcome {
        kind,
        query,
        value,
        warnings,
    } = checked;
    let outcome = match value {
        Ok(v) => MetricOutcome::Value(v),
        Err(e) => error_outcome(canary, name, &kind, e),
    };
    Checked {
        result: MetricResult {
            name: name.to_string(),
            query,
            outcome,
        },
        warnings,
        kind: Some(kind),
    }
}

fn error_outcome(canary: &Canary, name: &str, kind: &MetricKind, e: CheckError) -> MetricOutcome {
    match e {
        CheckError::NoValues(detail) => {
            let detail = if detail.is_empty() {
                "no data".to_string()
            } else {
                detail
            };
            MetricOutcome::NoData(match kind {
                MetricKind::Builtin { set, .. } => format!(
                    "no values found for {} metric {name} probably {}.{} is not receiving traffic: {detail}",
                    set.name(),
                    canary.spec.target_ref.name,
                    canary.namespace().unwrap_or_default()
                ),
                MetricKind::Inline => format!("no values found for metric: {name}"),
                MetricKind::Template { .. } => {
                    format!("no values found for custom metric: {name}: {detail}")
                }
            })
        }
        CheckError::QueryFailed(message) => MetricOutcome::QueryFailed(match kind {
            MetricKind::Builtin { .. } => format!("Prometheus query failed: {message}"),
            MetricKind::Inline => format!("Prometheus query failed for {name}: {message}"),
            MetricKind::Template { .. } => format!("Metric query failed for {name}: {message}"),
        }),
        CheckError::Render(e) => MetricOutcome::Error(match kind {
            MetricKind::Builtin { .. } => format!("builtin metric {name} render error: {e}"),
            MetricKind::Inline => format!("metric {name} query render error: {e}"),
            MetricKind::Template {
                name: template,
                namespace,
            } => format!("Metric template {template}.{namespace} query render error: {e}"),
        }),
        CheckError::Unusable(message) => MetricOutcome::Error(message),
    }
}

/// The template, its provider and the values of its Secret (to keep them out of messages).
pub(crate) type Resolved = Result<(MetricTemplate, Arc<dyn MetricProvider>, Vec<String>), String>;

/// The MetricTemplate with its provider built (and its Secret read), or the event text saying
/// what was missing.
pub(crate) async fn resolve_template(
    ctx: &Context,
    canary_namespace: &str,
    template_ref: &CrossNamespaceRef,
) -> Resolved {
    let namespace = template_ref
        .namespace
        .as_deref()
        .unwrap_or(canary_namespace);
    let id = format!("{}.{namespace}", template_ref.name);
    let template = match ctx
        .cache
        .get::<MetricTemplate>(&ctx.client, namespace, &template_ref.name)
        .await
    {
        Ok(Some(t)) => t,
        Ok(None) => return Err(format!("MetricTemplate {id} not found")),
        Err(e) => {
            return Err(format!(
                "MetricTemplate {id} could not be read: {}",
                Plain(&e)
            ));
        }
    };
    let secret = match &template.spec.provider.secret_ref {
        Some(secret_ref) => Some(read_secret(ctx, namespace, &secret_ref.name).await?),
        None => None,
    };
    let secrets: Vec<String> = secret
        .iter()
        .flat_map(|data| data.values())
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .collect();
    let provider = build_provider_in_cluster(&template.spec.provider, secret.as_ref(), &ctx.client)
        .map_err(|e| {
            redact(
                &format!("MetricTemplate {id}: {e}"),
                secrets.iter().map(String::as_str),
            )
        })?;
    Ok((template, provider, secrets))
}

async fn read_secret(ctx: &Context, namespace: &str, name: &str) -> Result<SecretData, String> {
    match ctx.cache.get::<Secret>(&ctx.client, namespace, name).await {
        Ok(Some(secret)) => Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()),
        Ok(None) => Err(format!("Secret {name}.{namespace} not found")),
        Err(e) => Err(format!(
            "Secret {name}.{namespace} could not be read: {}",
            Plain(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flagger_api::CanaryMetric;
    use flagger_providers::metrics::{MetricError, ProbeFuture, QueryFuture, Sample};
    use serde_json::json;

    use super::*;

    /// Answers every query the same way, as a backend would.
    struct Fake(Result<Sample, MetricError>);

    impl MetricProvider for Fake {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn run_query<'a>(&'a self, _query: &'a str, _interval: Duration) -> QueryFuture<'a> {
            let answer = self.0.clone();
            Box::pin(async move { answer })
        }
        fn is_online(&self) -> ProbeFuture<'_> {
            Box::pin(async { Ok(()) })
        }
    }

    fn canary() -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 80},
                "analysis": {}
            }
        }))
        .unwrap()
    }

    fn template(query: &str) -> MetricTemplate {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "latency", "namespace": "flagger"},
            "spec": {"provider": {"type": "prometheus", "address": "http://prom:9090"}, "query": query}
        }))
        .unwrap()
    }

    /// Runs one entry through the shared check with `answer` from every backend and maps it as
    /// the controller does; `template` stands in for the cluster lookup.
    async fn check(
        metric: serde_json::Value,
        answer: Result<Sample, MetricError>,
        template: Option<Result<MetricTemplate, String>>,
    ) -> Checked {
        let c = canary();
        let metric: CanaryMetric = serde_json::from_value(metric).unwrap();
        let backend = Fake(answer);
        let ctx = CheckContext {
            canary: &c,
            mesh_provider: "istio",
            prometheus: Ok(&backend),
            route_override: None,
        };
        let resolved = template.as_ref().map(|t| match t {
            Ok(template) => ResolvedTemplate::Ready {
                template,
                provider: &backend,
            },
            Err(why) => ResolvedTemplate::Failed(why.clone()),
        });
        let name = metric.name.clone();
        to_checked(&c, &name, check_metric(&ctx, &metric, resolved).await)
    }

    #[test]
    fn template_secret_values_never_reach_the_check_texts() {
        let checked = Checked {
            result: MetricResult {
                name: "m".into(),
                query: None,
                outcome: MetricOutcome::QueryFailed("401 for api_key=k-123456".into()),
            },
            warnings: vec!["k-123456 again".into()],
            kind: None,
        };
        let clean = without_secrets(checked, &["k-123456".into()]);
        assert!(
            matches!(&clean.result.outcome, MetricOutcome::QueryFailed(t) if t == "401 for api_key=[redacted]")
        );
        assert_eq!(clean.warnings, ["[redacted] again"]);
    }

    fn builtin() -> serde_json::Value {
        json!({"name": "request-success-rate"})
    }

    fn inline() -> serde_json::Value {
        json!({"name": "errors", "query": "sum(x)"})
    }

    fn templated() -> serde_json::Value {
        json!({"name": "latency", "templateRef": {"name": "latency", "namespace": "flagger"}})
    }

    #[tokio::test]
    async fn no_data_is_worded_per_kind_of_entry() {
        let empty = || Err(MetricError::no_values(""));
        let out = check(builtin(), empty(), None).await;
        assert_eq!(
            out.result.outcome,
            MetricOutcome::NoData(
                "no values found for istio metric request-success-rate probably podinfo.test is not receiving traffic: no data"
                    .into()
            )
        );
        let out = check(inline(), empty(), None).await;
        assert_eq!(
            out.result.outcome,
            MetricOutcome::NoData("no values found for metric: errors".into())
        );
        let out = check(
            templated(),
            Err(MetricError::no_values("result is NaN")),
            Some(Ok(template("up"))),
        )
        .await;
        assert_eq!(
            out.result.outcome,
            MetricOutcome::NoData(
                "no values found for custom metric: latency: result is NaN".into()
            )
        );
        assert_eq!(out.result.query.as_deref(), Some("up"));
    }

    #[tokio::test]
    async fn failed_queries_are_worded_per_kind_of_entry() {
        let refused = || Err(MetricError::failed("connection refused"));
        let out = check(builtin(), refused(), None).await;
        assert_eq!(
            out.result.outcome,
            MetricOutcome::QueryFailed("Prometheus query failed: connection refused".into())
        );
        let out = check(inline(), refused(), None).await;
        assert_eq!(
            out.result.outcome,
            MetricOutcome::QueryFailed(
                "Prometheus query failed for errors: connection refused".into()
            )
        );
        let out = check(templated(), refused(), Some(Ok(template("up")))).await;
        assert_eq!(
            out.result.outcome,
            MetricOutcome::QueryFailed(
                "Metric query failed for latency: connection refused".into()
            )
        );
    }

    #[tokio::test]
    async fn configuration_problems_are_errors_naming_what_is_wrong() {
        let one = || Ok(Sample::new(1.0));
        let out = check(
            templated(),
            one(),
            Some(Err("MetricTemplate latency.flagger not found".into())),
        )
        .await;
        assert_eq!(
            out.result.outcome,
            MetricOutcome::Error("MetricTemplate latency.flagger not found".into())
        );
        let out = check(
            templated(),
            one(),
            Some(Ok(template("x{q=\"{{ variables.missing }}\"}"))),
        )
        .await;
        let MetricOutcome::Error(message) = &out.result.outcome else {
            panic!("{:?}", out.result.outcome)
        };
        assert!(
            message.starts_with("Metric template latency.flagger query render error: "),
            "{message}"
        );
        let out = check(json!({"name": "errors"}), one(), None).await;
        assert_eq!(
            out.result.outcome,
            MetricOutcome::Error(
                "Metric query failed for no usable metrics template and query were configured"
                    .into()
            )
        );
    }

    #[tokio::test]
    async fn values_are_in_threshold_units_and_warnings_are_kept() {
        let mut sample = Sample::new(515.9);
        sample
            .warnings
            .push("query returned 2 series, using the last one".into());
        // Istio reports milliseconds; thresholds compare whole milliseconds.
        let out = check(json!({"name": "request-duration"}), Ok(sample), None).await;
        assert_eq!(out.result.outcome, MetricOutcome::Value(515.0));
        assert_eq!(
            out.warnings,
            vec!["query returned 2 series, using the last one"]
        );
        assert!(matches!(
            out.kind,
            Some(MetricKind::Builtin {
                metric: flagger_providers::metrics::builtin::BuiltinMetric::RequestDuration,
                ..
            })
        ));
    }
}
