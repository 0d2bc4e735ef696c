//! One `analysis.metrics[]` entry from spec to outcome: classify the entry,
//! render its query, run it on the right backend. The outcome is a value (in threshold units),
//! or why there is none; judging it against the thresholds, `dryRun` and `noData` is the core's
//! job (`flagger_core`), so there is one threshold judge.
//!
//! Looking up the MetricTemplate and its Secret needs the cluster, so the controller resolves
//! them and hands over either the template with a built provider, or why that failed.

use std::time::Duration;

use flagger_api::analysis::CrossNamespaceRef;
use flagger_api::{Canary, CanaryMetric, MetricTemplate};

use super::builtin::{BuiltinMetric, QuerySet, to_threshold_unit};
use super::template::{DEFAULT_INTERVAL, QueryModel, RenderError, collapse_whitespace, render};
use super::{MetricError, MetricProvider};

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

/// Why a check produced no value. `NoValues` and `QueryFailed` are the backend's answer (a
/// `noData: hold` metric holds on them); the others are configuration problems.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckError {
    /// The backend's detail (may be empty): the event text around it depends on the kind.
    NoValues(String),
    QueryFailed(String),
    /// The query template did not render.
    Render(String),
    /// Template/Secret missing, provider construction failed, a bad interval, or the metric is
    /// unusable: the whole event text, as only the resolver knows what it looked up.
    Unusable(String),
}

impl From<MetricError> for CheckError {
    fn from(e: MetricError) -> Self {
        match e {
            MetricError::NoValues(detail) => CheckError::NoValues(detail),
            MetricError::QueryFailed(m) => CheckError::QueryFailed(m),
        }
    }
}

impl From<RenderError> for CheckError {
    fn from(e: RenderError) -> Self {
        CheckError::Render(e.to_string())
    }
}

/// Flagger's text for an entry with nothing to run.
pub const NO_USABLE_QUERY: &str =
    "Metric query failed for no usable metrics template and query were configured";

/// What an entry of `analysis.metrics` is evaluated as.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Builtin(BuiltinMetric),
    Inline(String),
    Template(CrossNamespaceRef),
    /// No builtin name, no query, no template: always fails (Flagger behaviour).
    Unusable,
}

/// A builtin name with `query` or `templateRef` runs only those: the name is then just a label.
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
    /// Template or Secret missing, a required Secret key absent, a bad address: the whole
    /// event text, naming what was looked up.
    Failed(String),
}

pub struct CheckContext<'a> {
    pub canary: &'a Canary,
    /// The controller's `-mesh-provider`.
    pub mesh_provider: &'a str,
    /// The Prometheus at `spec.metricsServer` or `-metrics-server`, for builtin and inline
    /// entries, or why there is none (a bad address): that fails only the entries needing it.
    pub prometheus: Result<&'a dyn MetricProvider, &'a str>,
    /// Knative: the latest created revision, which the `route` function returns.
    pub route_override: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckOutcome {
    pub kind: MetricKind,
    /// The query as sent, when rendering got that far.
    pub query: Option<String>,
    /// In threshold units: % for the builtin success rate, whole ms for the builtin duration.
    pub value: Result<f64, CheckError>,
    /// Things worth a Warning event that do not change the outcome (e.g. several series).
    pub warnings: Vec<String>,
}

/// Runs one metric entry. `template` must be given for `templateRef` entries.
pub async fn check_metric(
    ctx: &CheckContext<'_>,
    metric: &CanaryMetric,
    template: Option<ResolvedTemplate<'_>>,
) -> CheckOutcome {
    let canary = ctx.canary;
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
    let mut warnings = Vec::new();
    let (query, result) = run(ctx, metric, &entry, &kind, template, &mut warnings).await;
    let value = result.map(|raw| match &kind {
        MetricKind::Builtin { set, metric } => to_threshold_unit(raw, set.raw_unit(*metric)),
        _ => raw,
    });
    CheckOutcome {
        kind,
        query,
        value,
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
                    "metric {} interval {interval_text:?} is zero",
                    metric.name
                ))),
            );
        }
        Err(e) => {
            return (
                None,
                Err(CheckError::Unusable(format!(
                    "metric {} interval {interval_text:?}: {e}",
                    metric.name
                ))),
            );
        }
    };
    let mut model = QueryModel::for_canary(
        ctx.canary,
        Some(interval_text),
        metric.template_variables.as_ref(),
    );
    if let Some(route) = ctx.route_override {
        model.route = route.to_string();
    }
    let (text, provider): (String, Result<&dyn MetricProvider, &str>) = match (entry, template) {
        (Entry::Unusable, _) => {
            return (None, Err(CheckError::Unusable(NO_USABLE_QUERY.into())));
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
                Ok(q) => (q, Ok(provider)),
                Err(e) => return (None, Err(e.into())),
            }
        }
        (Entry::Template(_), Some(ResolvedTemplate::Failed(why))) => {
            return (None, Err(CheckError::Unusable(why)));
        }
        (Entry::Template(_), None) => {
            let MetricKind::Template { name, namespace } = kind else {
                return (
                    None,
                    Err(CheckError::Unusable("inconsistent metric kind".into())),
                );
            };
            return (
                None,
                Err(CheckError::Unusable(format!(
                    "MetricTemplate {name}.{namespace} was not resolved"
                ))),
            );
        }
    };
    let provider = match provider {
        Ok(p) => p,
        Err(why) => return (Some(text), Err(CheckError::Unusable(why.to_string()))),
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
    use crate::metrics::{MetricError, ProbeFuture, QueryFuture, Sample};

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
        fn run_query<'a>(&'a self, query: &'a str, interval: Duration) -> QueryFuture<'a> {
            self.asked
                .lock()
                .unwrap()
                .push((query.to_string(), interval));
            let answer = self.answer.clone();
            Box::pin(async move { answer })
        }
        fn is_online(&self) -> ProbeFuture<'_> {
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

    /// A check of `c` on the traefik mesh with `prom` as its Prometheus and no route override.
    fn traefik<'a>(c: &'a Canary, prom: &'a Fake) -> CheckContext<'a> {
        CheckContext {
            canary: c,
            mesh_provider: "traefik",
            prometheus: Ok(prom),
            route_override: None,
        }
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
            mesh_provider: "kubernetes",
            ..traefik(&c, &prom)
        };
        let m = metric(serde_json::json!({
            "name": "request-success-rate", "interval": "30s", "thresholdRange": {"min": 99}
        }));
        let out = check_metric(&ctx, &m, None).await;
        assert_eq!(out.value, Ok(99.5));
        let asked = prom.asked();
        assert_eq!(asked.len(), 1);
        assert!(asked[0].0.starts_with("sum(rate(traefik_service_request_duration_seconds_bucket{service=~\"test-podinfo-canary-"), "{}", asked[0].0);
        assert!(asked[0].0.contains("[30s]"));
        assert_eq!(asked[0].1, Duration::from_secs(30));
        assert_eq!(out.query.as_deref(), Some(asked[0].0.as_str()));
    }

    #[tokio::test]
    async fn builtin_durations_come_back_in_whole_milliseconds() {
        let c = canary();
        // Whole milliseconds, truncated as Flagger's `time.Duration` conversion does.
        let prom = Fake::new(Ok(Sample::new(515.9)));
        let ctx = traefik(&c, &prom);
        let m = metric(serde_json::json!({"name": "request-duration"}));
        assert_eq!(check_metric(&ctx, &m, None).await.value, Ok(515.0));
        // Inline queries come back as the backend said.
        let m = metric(serde_json::json!({"name": "request-duration", "query": "x"}));
        assert_eq!(check_metric(&ctx, &m, None).await.value, Ok(515.9));
    }

    #[tokio::test]
    async fn template_strictness_and_resolution_failures() {
        let c = canary();
        let prom = Fake::new(Ok(Sample::new(1.0)));
        let tpl_backend = Fake::new(Ok(Sample::new(250.0)));
        let ctx = traefik(&c, &prom);
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
        )
        .await;
        assert_eq!(out.value, Ok(250.0));
        assert_eq!(
            out.kind,
            MetricKind::Template {
                name: "latency".into(),
                namespace: "flagger".into()
            }
        );
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
        )
        .await;
        let Err(CheckError::Render(why)) = &out.value else {
            panic!("{:?}", out.value)
        };
        assert!(why.contains("\"percentile\""), "{why}");
        assert_eq!(out.query, None);

        let out = check_metric(
            &ctx,
            &m,
            Some(ResolvedTemplate::Failed(
                "secret flagger/prom-auth not found".into(),
            )),
        )
        .await;
        assert_eq!(
            out.value,
            Err(CheckError::Unusable(
                "secret flagger/prom-auth not found".into()
            ))
        );
        assert_eq!(tpl_backend.asked().len(), 1);
    }

    #[tokio::test]
    async fn unusable_metric_and_bad_interval_are_configuration_errors() {
        let c = canary();
        let prom = Fake::new(Ok(Sample::new(1.0)));
        let ctx = traefik(&c, &prom);
        let out = check_metric(&ctx, &metric(serde_json::json!({"name": "errors"})), None).await;
        assert_eq!(out.value, Err(CheckError::Unusable(NO_USABLE_QUERY.into())));
        let out = check_metric(
            &ctx,
            &metric(serde_json::json!({"name": "request-duration", "interval": "soon"})),
            None,
        )
        .await;
        assert!(
            matches!(out.value, Err(CheckError::Unusable(_))),
            "{:?}",
            out.value
        );
        assert!(prom.asked().is_empty());
    }

    #[tokio::test]
    async fn inline_queries_are_collapsed_and_blank_ones_fall_back_to_the_builtin() {
        let c = canary();
        let prom = Fake::new(Ok(Sample::new(1.0)));
        let ctx = traefik(&c, &prom);
        let m = metric(serde_json::json!({
            "name": "errors", "query": "\n  sum(\n\trate(x[{{ interval }}])\n)  \n"
        }));
        let out = check_metric(&ctx, &m, None).await;
        assert_eq!(out.query.as_deref(), Some("sum( rate(x[1m]) )"));
        assert_eq!(out.kind, MetricKind::Inline);

        let blank = metric(serde_json::json!({"name": "request-success-rate", "query": " \n "}));
        assert_eq!(
            classify(&blank),
            Entry::Builtin(BuiltinMetric::RequestSuccessRate)
        );
        let out = check_metric(&ctx, &blank, None).await;
        assert!(
            matches!(out.kind, MetricKind::Builtin { .. }),
            "{:?}",
            out.kind
        );
        assert!(
            out.query.as_deref().is_some_and(|q| q.contains("traefik_")),
            "{:?}",
            out.query
        );
    }

    #[tokio::test]
    async fn knative_route_override_reaches_the_query() {
        let c = canary();
        let prom = Fake::new(Ok(Sample::new(1.0)));
        let ctx = CheckContext {
            route_override: Some("podinfo-00002"),
            ..traefik(&c, &prom)
        };
        let m = metric(serde_json::json!({"name": "hits", "query": "x{route=\"{{ route }}\"}"}));
        let out = check_metric(&ctx, &m, None).await;
        assert_eq!(out.query.as_deref(), Some("x{route=\"podinfo-00002\"}"));
    }

    #[tokio::test]
    async fn a_missing_prometheus_fails_only_the_entries_that_need_it() {
        let c = canary();
        let tpl_backend = Fake::new(Ok(Sample::new(3.0)));
        let ctx = CheckContext {
            prometheus: Err("invalid metrics server address"),
            ..traefik(&c, &tpl_backend)
        };
        let out = check_metric(
            &ctx,
            &metric(serde_json::json!({"name": "request-success-rate"})),
            None,
        )
        .await;
        assert_eq!(
            out.value,
            Err(CheckError::Unusable(
                "invalid metrics server address".into()
            ))
        );
        assert!(out.query.is_some());
        let tpl = template("up");
        let m = metric(serde_json::json!({"name": "up", "templateRef": {"name": "latency"}}));
        let out = check_metric(
            &ctx,
            &m,
            Some(ResolvedTemplate::Ready {
                template: &tpl,
                provider: &tpl_backend,
            }),
        )
        .await;
        assert_eq!(out.value, Ok(3.0));
        let out = check_metric(&ctx, &m, None).await;
        assert_eq!(
            out.value,
            Err(CheckError::Unusable(
                "MetricTemplate latency.test was not resolved".into()
            ))
        );
    }

    #[tokio::test]
    async fn zero_interval_is_a_configuration_error() {
        let c = canary();
        let prom = Fake::new(Ok(Sample::new(1.0)));
        let ctx = traefik(&c, &prom);
        let m = metric(serde_json::json!({"name": "request-duration", "interval": "0s"}));
        let out = check_metric(&ctx, &m, None).await;
        assert_eq!(
            out.value,
            Err(CheckError::Unusable(
                "metric request-duration interval \"0s\" is zero".into()
            ))
        );
        assert!(prom.asked().is_empty());
    }

    #[tokio::test]
    async fn several_series_warn_and_the_backends_answers_stay_apart() {
        let c = canary();
        let mut sample = Sample::new(0.2);
        sample
            .warnings
            .push("query returned 2 series, using the last one".into());
        let prom = Fake::new(Ok(sample));
        let ctx = traefik(&c, &prom);
        let m = metric(
            serde_json::json!({"name": "error-rate", "query": "sum(x{ns=\"{{ namespace }}\"})", "threshold": 1}),
        );
        let out = check_metric(&ctx, &m, None).await;
        assert_eq!(out.value, Ok(0.2));
        assert_eq!(
            out.warnings,
            vec!["query returned 2 series, using the last one"]
        );
        assert_eq!(prom.asked()[0].0, "sum(x{ns=\"test\"})");

        let empty = Fake::new(Err(MetricError::no_values("empty vector")));
        let out = check_metric(
            &CheckContext {
                prometheus: Ok(&empty),
                ..ctx
            },
            &m,
            None,
        )
        .await;
        assert_eq!(out.value, Err(CheckError::NoValues("empty vector".into())));
        assert_eq!(out.query.as_deref(), Some("sum(x{ns=\"test\"})"));
        let down = Fake::new(Err(MetricError::failed("connection refused")));
        let out = check_metric(
            &CheckContext {
                prometheus: Ok(&down),
                ..ctx
            },
            &m,
            None,
        )
        .await;
        assert_eq!(
            out.value,
            Err(CheckError::QueryFailed("connection refused".into()))
        );
    }
}
