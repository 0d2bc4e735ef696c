//! One `analysis.metrics[]` entry from spec to verdict (metrics.md §1): classify the entry,
//! render its query, run it on the right backend, decide.
//!
//! Looking up the MetricTemplate and its Secret needs the cluster, so the controller resolves
//! them and hands over either the template with a built provider, or why that failed.

use std::time::Duration;

use flagger_api::analysis::CrossNamespaceRef;
use flagger_api::{Canary, CanaryMetric, MetricTemplate};

use super::MetricProvider;
use super::builtin::{BuiltinMetric, QuerySet};
use super::template::{DEFAULT_INTERVAL, QueryModel, collapse_whitespace, render};
use super::verdict::{CheckError, CheckSpec, MetricKind, NoDataPolicy, Verdict, evaluate};

/// What an entry of `analysis.metrics` is evaluated as.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Builtin(BuiltinMetric),
    Inline(String),
    Template(CrossNamespaceRef),
    /// No builtin name, no query, no template: always fails (Flagger behaviour).
    Unusable,
}

/// metrics.md §1; a builtin name with `query` or `templateRef` runs only those (D-6).
pub fn classify(metric: &CanaryMetric) -> Entry {
    if let Some(t) = &metric.template_ref {
        return Entry::Template(t.clone());
    }
    if let Some(q) = metric.query.as_ref().filter(|q| !q.trim().is_empty()) {
        return Entry::Inline(q.clone());
    }
    match BuiltinMetric::from_name(&metric.name) {
        Some(b) => Entry::Builtin(b),
        None => Entry::Unusable,
    }
}

/// The template a `templateRef` resolved to, or why it did not.
pub enum ResolvedTemplate<'a> {
    Ready {
        template: &'a MetricTemplate,
        provider: &'a dyn MetricProvider,
    },
    /// Template or Secret missing, a required Secret key absent, a bad address: the text
    /// follows "Metric template {name}.{ns} ".
    Failed(String),
}

pub struct CheckContext<'a> {
    pub canary: &'a Canary,
    /// The controller's `-mesh-provider`.
    pub mesh_provider: &'a str,
    /// The Prometheus at `spec.metricsServer` or `-metrics-server`, for builtin and inline
    /// entries.
    pub prometheus: &'a dyn MetricProvider,
    /// Knative: the latest created revision, which the `route` function returns.
    pub route_override: Option<&'a str>,
}

/// Per-metric options that have no API field yet.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckOptions {
    pub dry_run: bool,
    pub no_data: NoDataPolicy,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckOutcome {
    pub kind: MetricKind,
    pub verdict: Verdict,
    /// Things worth a Warning event that do not change the verdict (e.g. several series).
    pub warnings: Vec<String>,
}

/// Evaluates one metric entry. `template` must be given for `templateRef` entries.
pub async fn check_metric(
    ctx: &CheckContext<'_>,
    metric: &CanaryMetric,
    template: Option<ResolvedTemplate<'_>>,
    options: CheckOptions,
) -> CheckOutcome {
    let canary = ctx.canary;
    let name = canary.metadata.name.as_deref().unwrap_or_default();
    let namespace = canary.metadata.namespace.as_deref().unwrap_or_default();
    let entry = classify(metric);
    let kind = match &entry {
        Entry::Builtin(b) => MetricKind::Builtin {
            set: QuerySet::select(
                ctx.mesh_provider,
                canary.spec.provider.as_deref(),
                &canary.spec.target_ref,
            ),
            metric: *b,
        },
        Entry::Inline(_) | Entry::Unusable => MetricKind::Inline,
        Entry::Template(r) => MetricKind::Template {
            name: r.name.clone(),
            namespace: r.namespace.clone().unwrap_or_else(|| namespace.to_string()),
        },
    };
    let spec = CheckSpec {
        canary: name,
        namespace,
        target: &canary.spec.target_ref.name,
        metric: &metric.name,
        kind: kind.clone(),
        threshold: metric.threshold.as_ref().map(|n| n.as_f64()),
        threshold_range: metric.threshold_range.as_ref(),
        dry_run: options.dry_run,
        no_data: options.no_data,
    };
    let mut warnings = Vec::new();
    let (query, result) = run(ctx, metric, &entry, &kind, template, &mut warnings).await;
    let verdict = evaluate(&spec, query.as_deref(), result);
    CheckOutcome {
        kind,
        verdict,
        warnings,
    }
}

async fn run(
    ctx: &CheckContext<'_>,
    metric: &CanaryMetric,
    entry: &Entry,
    kind: &MetricKind,
    template: Option<ResolvedTemplate<'_>>,
    warnings: &mut Vec<String>,
) -> (Option<String>, Result<f64, CheckError>) {
    let interval_text = metric
        .interval
        .as_deref()
        .filter(|i| !i.is_empty())
        .unwrap_or(DEFAULT_INTERVAL);
    let interval = match flagger_api::duration::parse(interval_text) {
        Ok(d) if d > Duration::ZERO => d,
        Ok(_) => {
            return (
                None,
                Err(CheckError::Unusable(format!(
                    "interval {interval_text:?} is zero"
                ))),
            );
        }
        Err(e) => return (None, Err(CheckError::Unusable(e.to_string()))),
    };
    let mut model = QueryModel::for_canary(
        ctx.canary,
        Some(interval_text),
        metric.template_variables.as_ref(),
    );
    if let Some(route) = ctx.route_override {
        model.route = route.to_string();
    }
    let (text, provider): (String, &dyn MetricProvider) = match (entry, template) {
        (Entry::Unusable, _) => {
            return (
                None,
                Err(CheckError::Unusable(
                    "no usable metrics template and query were configured".into(),
                )),
            );
        }
        (Entry::Builtin(b), _) => {
            let MetricKind::Builtin { set, .. } = kind else {
                return (
                    None,
                    Err(CheckError::Unusable("inconsistent metric kind".into())),
                );
            };
            match set.render(*b, &model) {
                Ok(q) => (q, ctx.prometheus),
                Err(e) => return (None, Err(e.into())),
            }
        }
        (Entry::Inline(q), _) => match render(q, &model) {
            Ok(q) => (collapse_whitespace(&q), ctx.prometheus),
            Err(e) => return (None, Err(e.into())),
        },
        (Entry::Template(_), Some(ResolvedTemplate::Ready { template, provider })) => {
            match render(&template.spec.query, &model) {
                Ok(q) => (q, provider),
                Err(e) => return (None, Err(e.into())),
            }
        }
        (Entry::Template(_), Some(ResolvedTemplate::Failed(why))) => {
            return (None, Err(CheckError::Unusable(why)));
        }
        (Entry::Template(_), None) => {
            return (None, Err(CheckError::Unusable("was not resolved".into())));
        }
    };
    let result = match provider.run_query(&text, interval).await {
        Ok(sample) => {
            warnings.extend(sample.warnings);
            Ok(sample.value)
        }
        Err(e) => Err(e.into()),
    };
    (Some(text), result)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::metrics::verdict::Cause;
    use crate::metrics::{BoxFuture, MetricError, Sample};

    /// Answers every query with the same result and remembers what it was asked.
    struct Fake {
        answer: Result<Sample, MetricError>,
        asked: Mutex<Vec<(String, Duration)>>,
    }

    impl Fake {
        fn new(answer: Result<Sample, MetricError>) -> Self {
            Fake {
                answer,
                asked: Mutex::new(Vec::new()),
            }
        }
        fn asked(&self) -> Vec<(String, Duration)> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl MetricProvider for Fake {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn run_query<'a>(
            &'a self,
            query: &'a str,
            interval: Duration,
        ) -> BoxFuture<'a, Result<Sample, MetricError>> {
            self.asked
                .lock()
                .unwrap()
                .push((query.to_string(), interval));
            let answer = self.answer.clone();
            Box::pin(async move { answer })
        }
        fn is_online(&self) -> BoxFuture<'_, Result<(), MetricError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn canary() -> Canary {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "provider": "traefik",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 80},
                "analysis": {}
            }
        }))
        .unwrap()
    }

    fn metric(v: serde_json::Value) -> CanaryMetric {
        serde_json::from_value(v).unwrap()
    }

    fn template(query: &str) -> MetricTemplate {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "latency", "namespace": "flagger"},
            "spec": {"provider": {"type": "prometheus", "address": "http://prom:9090"}, "query": query}
        }))
        .unwrap()
    }

    #[test]
    fn classification() {
        use serde_json::json;
        assert_eq!(
            classify(&metric(json!({"name": "request-success-rate"}))),
            Entry::Builtin(BuiltinMetric::RequestSuccessRate)
        );
        assert_eq!(
            classify(&metric(json!({"name": "request-duration", "query": "up"}))),
            Entry::Inline("up".into())
        );
        assert!(matches!(
            classify(&metric(
                json!({"name": "request-duration", "templateRef": {"name": "t"}})
            )),
            Entry::Template(_)
        ));
        assert_eq!(
            classify(&metric(json!({"name": "errors"}))),
            Entry::Unusable
        );
    }

    #[tokio::test]
    async fn builtin_uses_the_selected_set_and_interval() {
        let c = canary();
        let prom = Fake::new(Ok(Sample::new(99.5)));
        let ctx = CheckContext {
            canary: &c,
            mesh_provider: "kubernetes",
            prometheus: &prom,
            route_override: None,
        };
        let m = metric(serde_json::json!({
            "name": "request-success-rate", "interval": "30s", "thresholdRange": {"min": 99}
        }));
        let out = check_metric(&ctx, &m, None, CheckOptions::default()).await;
        assert!(out.verdict.is_pass(), "{:?}", out.verdict);
        let asked = prom.asked();
        assert_eq!(asked.len(), 1);
        assert!(asked[0].0.starts_with("sum(rate(traefik_service_request_duration_seconds_bucket{service=~\"test-podinfo-canary-"), "{}", asked[0].0);
        assert!(asked[0].0.contains("[30s]"));
        assert_eq!(asked[0].1, Duration::from_secs(30));
        assert_eq!(
            out.verdict.reason().query.as_deref(),
            Some(asked[0].0.as_str())
        );
    }

    #[tokio::test]
    async fn template_strictness_and_resolution_failures() {
        let c = canary();
        let prom = Fake::new(Ok(Sample::new(1.0)));
        let tpl_backend = Fake::new(Ok(Sample::new(250.0)));
        let ctx = CheckContext {
            canary: &c,
            mesh_provider: "traefik",
            prometheus: &prom,
            route_override: None,
        };
        let m = metric(serde_json::json!({
            "name": "latency", "templateRef": {"name": "latency", "namespace": "flagger"},
            "templateVariables": {"quantile": "0.99"},
            "thresholdRange": {"max": 500}
        }));
        let ok = template(
            "histogram_quantile({{ variables.quantile }}, x{ns=\"{{ namespace }}\"}[{{ interval }}])",
        );
        let out = check_metric(
            &ctx,
            &m,
            Some(ResolvedTemplate::Ready {
                template: &ok,
                provider: &tpl_backend,
            }),
            CheckOptions::default(),
        )
        .await;
        assert!(out.verdict.is_pass(), "{:?}", out.verdict);
        assert_eq!(
            tpl_backend.asked()[0].0,
            "histogram_quantile(0.99, x{ns=\"test\"}[1m])"
        );
        assert!(prom.asked().is_empty());

        let missing = template("x{q=\"{{ variables.percentile }}\"}");
        let out = check_metric(
            &ctx,
            &m,
            Some(ResolvedTemplate::Ready {
                template: &missing,
                provider: &tpl_backend,
            }),
            CheckOptions::default(),
        )
        .await;
        let Verdict::Fail { reason } = &out.verdict else {
            panic!("{:?}", out.verdict)
        };
        assert_eq!(reason.cause, Cause::RenderFailed);
        assert!(
            reason
                .message
                .starts_with("Metric template latency.flagger query render error:"),
            "{}",
            reason.message
        );
        assert!(
            reason.message.contains("\"percentile\""),
            "{}",
            reason.message
        );

        let out = check_metric(
            &ctx,
            &m,
            Some(ResolvedTemplate::Failed(
                "secret flagger/prom-auth not found".into(),
            )),
            CheckOptions {
                dry_run: false,
                no_data: NoDataPolicy::Hold,
            },
        )
        .await;
        assert!(
            matches!(out.verdict, Verdict::Fail { .. }),
            "{:?}",
            out.verdict
        );
        assert_eq!(
            out.verdict.reason().message,
            "Metric template latency.flagger secret flagger/prom-auth not found"
        );
    }

    #[tokio::test]
    async fn unusable_metric_and_bad_interval_fail() {
        let c = canary();
        let prom = Fake::new(Ok(Sample::new(1.0)));
        let ctx = CheckContext {
            canary: &c,
            mesh_provider: "traefik",
            prometheus: &prom,
            route_override: None,
        };
        let out = check_metric(
            &ctx,
            &metric(serde_json::json!({"name": "errors"})),
            None,
            CheckOptions::default(),
        )
        .await;
        assert_eq!(
            out.verdict.reason().message,
            "Metric query failed for no usable metrics template and query were configured"
        );
        let out = check_metric(
            &ctx,
            &metric(serde_json::json!({"name": "request-duration", "interval": "soon"})),
            None,
            CheckOptions::default(),
        )
        .await;
        assert_eq!(out.verdict.reason().cause, Cause::Unusable);
        assert!(prom.asked().is_empty());
    }

    #[tokio::test]
    async fn several_series_warn_and_no_data_holds() {
        let c = canary();
        let mut sample = Sample::new(0.2);
        sample
            .warnings
            .push("query returned 2 series, using the last one".into());
        let prom = Fake::new(Ok(sample));
        let ctx = CheckContext {
            canary: &c,
            mesh_provider: "traefik",
            prometheus: &prom,
            route_override: None,
        };
        let m = metric(
            serde_json::json!({"name": "error-rate", "query": "sum(x{ns=\"{{ namespace }}\"})", "threshold": 1}),
        );
        let out = check_metric(&ctx, &m, None, CheckOptions::default()).await;
        assert!(out.verdict.is_pass());
        assert_eq!(
            out.warnings,
            vec!["query returned 2 series, using the last one"]
        );
        assert_eq!(prom.asked()[0].0, "sum(x{ns=\"test\"})");

        let empty = Fake::new(Err(MetricError::no_values("empty vector")));
        let ctx = CheckContext {
            prometheus: &empty,
            ..ctx
        };
        let hold = CheckOptions {
            dry_run: false,
            no_data: NoDataPolicy::Hold,
        };
        let out = check_metric(&ctx, &m, None, hold).await;
        assert!(
            matches!(out.verdict, Verdict::Hold { .. }),
            "{:?}",
            out.verdict
        );
        let out = check_metric(&ctx, &m, None, CheckOptions::default()).await;
        assert!(
            matches!(out.verdict, Verdict::Fail { .. }),
            "{:?}",
            out.verdict
        );
        assert_eq!(
            out.verdict.reason().message,
            "Halt advancement no values found for metric: error-rate"
        );
    }
}
