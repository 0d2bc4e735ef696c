//! Keptn: a `KeptnMetric`'s value, or the verdict of a Keptn `Analysis`, read from the API
//! server. Keptn's metrics operator does the querying; this provider only reads what it stored.
//!
//! Query: `keptnmetric/<namespace>/<name>` or
//! `analysis/<namespace>/<analysis definition>/<timeframe, default 1m>/<key=value;key=value>`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams, WatchEvent,
    WatchParams,
};
use serde_json::{Value as Json, json};

use super::{MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, finite_or_no_data};

const GROUP: &str = "metrics.keptn.sh";
const VERSION: &str = "v1beta1";
/// Flagger gives Keptn this long to evaluate an Analysis it created.
pub const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(10);
/// A KeptnMetric read, as long as the HTTP backends' queries may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The look-back of an Analysis whose query names none.
const DEFAULT_TIMEFRAME: &str = "1m";
const QUERY_FORMAT: &str =
    "keptnmetric/<namespace>/<name> or analysis/<namespace>/<name>/<timeframe>/<key=value;...>";

pub struct KeptnProvider {
    client: kube::Client,
    analysis_timeout: Duration,
}

impl KeptnProvider {
    pub fn new(client: kube::Client) -> Self {
        KeptnProvider {
            client,
            analysis_timeout: ANALYSIS_TIMEOUT,
        }
    }

    /// How long to wait for Keptn to complete an Analysis.
    pub fn with_analysis_timeout(mut self, timeout: Duration) -> Self {
        self.analysis_timeout = timeout;
        self
    }

    fn api(&self, kind: &str, plural: &str, namespace: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk(GROUP, VERSION, kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
        Api::namespaced_with(self.client.clone(), namespace, &resource)
    }

    async fn keptn_metric(&self, namespace: &str, name: &str) -> Result<Sample, MetricError> {
        let id = format!("{namespace}/{name}");
        let api = self.api("KeptnMetric", "keptnmetrics", namespace);
        let metric = tokio::time::timeout(READ_TIMEOUT, api.get(name))
            .await
            .map_err(|_| {
                MetricError::failed(format!(
                    "could not retrieve KeptnMetric {id}: no answer within {READ_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| {
                MetricError::failed(format!("could not retrieve KeptnMetric {id}: {e}"))
            })?;
        metric_value(&metric.data, &id)
    }

    /// Creates the Analysis, waits for Keptn's verdict and deletes it again whatever happened,
    /// so failed evaluations leave nothing behind.
    async fn analysis(&self, query: &AnalysisQuery) -> Result<Sample, MetricError> {
        let api = self.api("Analysis", "analyses", &query.namespace);
        let id = format!("{}/{}", query.namespace, query.definition);
        let object: DynamicObject = serde_json::from_value(analysis_object(query))
            .map_err(|e| MetricError::failed(format!("building Keptn Analysis {id}: {e}")))?;
        let params = PostParams {
            field_manager: Some("flagger".into()),
            ..Default::default()
        };
        let created = api.create(&params, &object).await.map_err(|e| {
            MetricError::failed(format!("could not create Keptn Analysis {id}: {e}"))
        })?;
        let name = created.metadata.name.clone().unwrap_or_default();
        let verdict = tokio::time::timeout(self.analysis_timeout, wait_for_verdict(&api, &created))
            .await
            .unwrap_or_else(|_| {
                Err(MetricError::failed(format!(
                    "encountered timeout while waiting for Keptn Analysis {id} to be finished"
                )))
            });
        let deleted = api.delete(&name, &DeleteParams::default()).await;
        match (verdict, deleted) {
            (Ok(mut sample), Err(e)) => {
                sample
                    .warnings
                    .push(format!("could not delete Keptn Analysis {name}: {e}"));
                Ok(sample)
            }
            (verdict, _) => verdict,
        }
    }
}

impl MetricProvider for KeptnProvider {
    fn kind(&self) -> &'static str {
        "keptn"
    }

    fn run_query<'a>(&'a self, query: &'a str, _interval: Duration) -> QueryFuture<'a> {
        Box::pin(async move {
            match parse_query(query)? {
                Query::Metric { namespace, name } => self.keptn_metric(&namespace, &name).await,
                Query::Analysis(analysis) => self.analysis(&analysis).await,
            }
        })
    }

    /// Flagger does not probe Keptn: the objects it reads are checked by each query.
    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

#[derive(Debug, PartialEq)]
pub enum Query {
    Metric { namespace: String, name: String },
    Analysis(AnalysisQuery),
}

#[derive(Debug, PartialEq)]
pub struct AnalysisQuery {
    pub namespace: String,
    /// The `AnalysisDefinition` to evaluate.
    pub definition: String,
    /// `spec.timeframe.recent`.
    pub timeframe: String,
    pub args: BTreeMap<String, String>,
}

/// Splits the query on `/`. The kind is matched case-insensitively, singular or plural, as
/// Flagger does; arguments without exactly one `=` are skipped, as Flagger does.
pub fn parse_query(query: &str) -> Result<Query, MetricError> {
    let parts: Vec<&str> = query.trim().split('/').collect();
    if parts.len() < 3 {
        return Err(MetricError::failed(format!(
            "unexpected query format {query:?}: expected {QUERY_FORMAT}"
        )));
    }
    let namespace = parts[1].to_string();
    let name = parts[2].to_string();
    match parts[0].to_ascii_lowercase().as_str() {
        "keptnmetric" | "keptnmetrics" => Ok(Query::Metric { namespace, name }),
        "analysis" | "analyses" => Ok(Query::Analysis(AnalysisQuery {
            namespace,
            definition: name,
            timeframe: parts
                .get(3)
                .filter(|t| !t.is_empty())
                .unwrap_or(&DEFAULT_TIMEFRAME)
                .to_string(),
            args: parts
                .get(4)
                .map(|args| {
                    args.split(';')
                        .filter_map(|pair| {
                            let (k, v) = pair.split_once('=')?;
                            (!v.contains('=')).then(|| (k.to_string(), v.to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })),
        other => Err(MetricError::failed(format!(
            "unexpected resource kind {other:?} in the query: must be one of keptnmetric, analysis"
        ))),
    }
}

/// The Analysis as Keptn's CRD defines it; the API server names it after the definition.
fn analysis_object(query: &AnalysisQuery) -> Json {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Analysis",
        "metadata": {
            "generateName": format!("{}-", query.definition),
            "namespace": query.namespace,
        },
        "spec": {
            "analysisDefinition": {"name": query.definition},
            "timeframe": {"recent": query.timeframe},
            "args": query.args,
        },
    })
}

/// `status.value` of a KeptnMetric: a decimal string written by Keptn's metrics operator.
pub fn metric_value(object: &Json, id: &str) -> Result<Sample, MetricError> {
    let value = object
        .pointer("/status/value")
        .and_then(Json::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| MetricError::no_values(format!("no value found in KeptnMetric {id}")))?;
    let number: f64 = value.trim().parse().map_err(|e| {
        MetricError::failed(format!(
            "could not parse value {value:?} of KeptnMetric {id} to float: {e}"
        ))
    })?;
    finite_or_no_data(number, "KeptnMetric value").map(Sample::new)
}

/// Keptn's verdict once it marked the Analysis `Completed`: 1 when it passed, else 0. `None`
/// while Keptn is still working on it. Keptn omits `pass` when it is false, so a completed
/// Analysis without it failed (waiting for the field would only end in a timeout).
pub fn verdict(object: &Json) -> Option<Sample> {
    let status = object.get("status")?;
    if status.get("state").and_then(Json::as_str) != Some("Completed") {
        return None;
    }
    let pass = status.get("pass").and_then(Json::as_bool).unwrap_or(false);
    Some(Sample::new(if pass { 1.0 } else { 0.0 }))
}

/// Follows the Analysis from its creation until Keptn writes a verdict. The caller bounds the
/// wait; a watch that the API server ends is resumed from the last version seen.
async fn wait_for_verdict(
    api: &Api<DynamicObject>,
    created: &DynamicObject,
) -> Result<Sample, MetricError> {
    if let Some(sample) = verdict(&created.data) {
        return Ok(sample);
    }
    let name = created.metadata.name.clone().unwrap_or_default();
    let mut version = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let params = WatchParams::default().fields(&format!("metadata.name={name}"));
    let failed = |e: kube::Error| {
        MetricError::failed(format!(
            "could not check status of Keptn Analysis {name}: {e}"
        ))
    };
    loop {
        let mut events = api.watch(&params, &version).await.map_err(failed)?.boxed();
        while let Some(event) = events.try_next().await.map_err(failed)? {
            match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    if let Some(sample) = verdict(&o.data) {
                        return Ok(sample);
                    }
                    version = o.metadata.resource_version.unwrap_or(version);
                }
                WatchEvent::Deleted(_) => {
                    return Err(MetricError::failed(format!(
                        "Keptn Analysis {name} was deleted before it finished"
                    )));
                }
                WatchEvent::Bookmark(b) => version = b.metadata.resource_version,
                WatchEvent::Error(e) => {
                    return Err(MetricError::failed(format!(
                        "watching Keptn Analysis {name}: {}",
                        e.message
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_query_kinds() {
        assert_eq!(
            parse_query("keptnmetric/test/cpu\n").unwrap(),
            Query::Metric {
                namespace: "test".into(),
                name: "cpu".into()
            }
        );
        let Query::Analysis(a) = parse_query("Analysis/test/slo/5m/app=podinfo;bad;x=1=2").unwrap()
        else {
            panic!("not an analysis")
        };
        assert_eq!(a.definition, "slo");
        assert_eq!(a.timeframe, "5m");
        assert_eq!(
            a.args,
            BTreeMap::from([("app".to_string(), "podinfo".to_string())])
        );
        let Query::Analysis(a) = parse_query("analyses/test/slo").unwrap() else {
            panic!("not an analysis")
        };
        assert_eq!(a.timeframe, "1m");
        assert!(a.args.is_empty());
    }

    #[test]
    fn refuses_malformed_queries() {
        for q in ["keptnmetric/test", "pod/test/x", ""] {
            let e = parse_query(q).unwrap_err();
            assert!(!e.is_no_values(), "{q}: {e}");
        }
    }

    #[test]
    fn metric_value_no_data_and_errors() {
        let ok = json!({"status": {"value": "42.5", "rawValue": "NDIuNQ=="}});
        assert_eq!(metric_value(&ok, "t/m").unwrap(), Sample::new(42.5));
        assert!(metric_value(&json!({}), "t/m").unwrap_err().is_no_values());
        assert!(
            metric_value(&json!({"status": {"value": ""}}), "t/m")
                .unwrap_err()
                .is_no_values()
        );
        let e = metric_value(&json!({"status": {"value": "high"}}), "t/m").unwrap_err();
        assert!(e.to_string().contains("could not parse"), "{e}");
    }

    #[test]
    fn verdict_only_when_completed() {
        assert_eq!(verdict(&json!({})), None);
        assert_eq!(
            verdict(&json!({"status": {"state": "Progressing", "pass": true}})),
            None
        );
        assert_eq!(
            verdict(&json!({"status": {"state": "Completed", "pass": true}})),
            Some(Sample::new(1.0))
        );
        assert_eq!(
            verdict(&json!({"status": {"state": "Completed", "pass": false}})),
            Some(Sample::new(0.0))
        );
        assert_eq!(
            verdict(&json!({"status": {"state": "Completed", "raw": "{}"}})),
            Some(Sample::new(0.0))
        );
    }
}
