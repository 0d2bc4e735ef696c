//! One metric check: find the query (builtin, inline or MetricTemplate), render it, run it
//! against its provider, and report a value, "no data", a failed query (the backend's fault) or an
//! error (the configuration's fault) — the core judges the value and applies `dryRun`/`noData`.

use std::sync::Arc;
use std::time::Duration;

use flagger_api::analysis::CanaryMetric;
use flagger_api::{Canary, MetricTemplate};
use flagger_core::{MetricOutcome, MetricResult, RolloutSpec};
use flagger_providers::metrics::builtin::{BuiltinMetric, QuerySet, to_threshold_unit};
use flagger_providers::metrics::{
    MetricError, MetricProvider, QueryModel, SecretData, build_provider, render,
};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::context::Context;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

pub async fn run(ctx: &Context, canary: &Canary, _spec: &RolloutSpec, name: &str) -> MetricResult {
    let result = |query: Option<String>, outcome: MetricOutcome| MetricResult {
        name: name.to_string(),
        query,
        outcome,
    };
    let Some(metric) = canary
        .spec
        .analysis
        .metrics
        .iter()
        .flatten()
        .find(|m| m.name == name)
    else {
        return result(
            None,
            MetricOutcome::Error(format!("metric {name} is not in the canary spec")),
        );
    };
    let interval = metric
        .interval
        .as_deref()
        .and_then(|i| flagger_api::duration::parse(i).ok())
        .unwrap_or(DEFAULT_INTERVAL);
    let model = QueryModel::for_canary(
        canary,
        metric.interval.as_deref(),
        metric.template_variables.as_ref(),
    );
    let prepared = match prepare(ctx, canary, metric, &model).await {
        Ok(p) => p,
        Err((query, message)) => return result(query, MetricOutcome::Error(message)),
    };
    let outcome = match prepared.provider.run_query(&prepared.query, interval).await {
        Ok(sample) => {
            MetricOutcome::Value(prepared.convert.map_or(sample.value, |c| c(sample.value)))
        }
        Err(MetricError::NoValues(detail)) => {
            let detail = if detail.is_empty() {
                "no data".to_string()
            } else {
                detail
            };
            let target = format!(
                "{}.{}",
                canary.spec.target_ref.name,
                canary.namespace().unwrap_or_default()
            );
            MetricOutcome::NoData(match prepared.source {
                Source::Builtin(set) => format!(
                    "no values found for {set} metric {name} probably {target} is not receiving traffic: {detail}"
                ),
                Source::Inline => format!("no values found for metric: {name}"),
                Source::Template => format!("no values found for custom metric: {name}: {detail}"),
            })
        }
        Err(MetricError::QueryFailed(message)) => {
            MetricOutcome::QueryFailed(match prepared.source {
                Source::Builtin(_) => format!("Prometheus query failed: {message}"),
                Source::Inline => format!("Prometheus query failed for {name}: {message}"),
                Source::Template => format!("Metric query failed for {name}: {message}"),
            })
        }
    };
    result(Some(prepared.query), outcome)
}

/// Where the query came from: the texts of metrics.md §6.1 differ per kind.
enum Source {
    /// The builtin query set of this provider.
    Builtin(&'static str),
    Inline,
    Template,
}

struct Prepared {
    source: Source,
    provider: Arc<dyn MetricProvider>,
    query: String,
    /// Builtin durations come back in seconds or milliseconds; thresholds are in milliseconds.
    convert: Option<Box<dyn Fn(f64) -> f64 + Send>>,
}

type PrepareError = (Option<String>, String);

async fn prepare(
    ctx: &Context,
    canary: &Canary,
    metric: &CanaryMetric,
    model: &QueryModel,
) -> Result<Prepared, PrepareError> {
    let namespace = canary.namespace().unwrap_or_default();
    if let Some(template_ref) = &metric.template_ref {
        let template_ns = template_ref.namespace.clone().unwrap_or(namespace);
        let id = format!("{}.{template_ns}", template_ref.name);
        let template = match ctx
            .cache
            .get::<MetricTemplate>(&ctx.client, &template_ns, &template_ref.name)
            .await
        {
            Ok(Some(t)) => t,
            Ok(None) => return Err((None, format!("MetricTemplate {id} not found"))),
            Err(e) => return Err((None, format!("MetricTemplate {id} could not be read: {e}"))),
        };
        let query = render(&template.spec.query, model).map_err(|e| {
            (
                None,
                format!("Metric template {id} query render error: {e}"),
            )
        })?;
        let secret = match &template.spec.provider.secret_ref {
            Some(secret_ref) => Some(
                read_secret(ctx, &template_ns, &secret_ref.name)
                    .await
                    .map_err(|m| (Some(query.clone()), m))?,
            ),
            None => None,
        };
        let provider = build_provider(&template.spec.provider, secret.as_ref())
            .map_err(|e| (Some(query.clone()), format!("MetricTemplate {id}: {e}")))?;
        return Ok(Prepared {
            source: Source::Template,
            provider,
            query,
            convert: None,
        });
    }
    let server = canary
        .spec
        .metrics_server
        .clone()
        .unwrap_or_else(|| ctx.flags.metrics_server.clone());
    let prometheus = || -> Result<Arc<dyn MetricProvider>, String> {
        ctx.prometheus(&server)
            .map(|p| p as Arc<dyn MetricProvider>)
    };
    if let Some(query) = &metric.query {
        let query = render(query, model).map_err(|e| {
            (
                None,
                format!("metric {} query render error: {e}", metric.name),
            )
        })?;
        let provider = prometheus().map_err(|m| (Some(query.clone()), m))?;
        return Ok(Prepared {
            source: Source::Inline,
            provider,
            query,
            convert: None,
        });
    }
    let Some(builtin) = BuiltinMetric::from_name(&metric.name) else {
        return Err((
            None,
            format!(
                "metric {} has no query, no templateRef and is not a builtin metric",
                metric.name
            ),
        ));
    };
    let set = QuerySet::select(
        &ctx.flags.mesh_provider,
        canary.spec.provider.as_deref(),
        &canary.spec.target_ref,
    );
    let query = set.render(builtin, model).map_err(|e| {
        (
            None,
            format!("builtin metric {} render error: {e}", metric.name),
        )
    })?;
    let provider = prometheus().map_err(|m| (Some(query.clone()), m))?;
    let unit = set.raw_unit(builtin);
    Ok(Prepared {
        source: Source::Builtin(set.name()),
        provider,
        query,
        convert: Some(Box::new(move |raw| to_threshold_unit(raw, unit))),
    })
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
        Err(e) => Err(format!("Secret {name}.{namespace} could not be read: {e}")),
    }
}
