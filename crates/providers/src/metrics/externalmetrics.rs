//! Kubernetes external metrics (`external.metrics.k8s.io/v1beta1`): the API that KEDA and the
//! metrics adapters serve through the API server's aggregation layer.
//!
//! Query: `[<namespace>/]<metricName>[?labelSelector=<url-encoded selector>]`, namespace
//! `default` when absent.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ListParams;
use kube_quantity::ParsedQuantity;
use serde::Deserialize;

use super::factory::{ProviderConfigError, VendorConfig};
use super::http::{base_address, check_status, send};
use super::{MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, finite_or_no_data};

const TIMEOUT: Duration = Duration::from_secs(5);
const API_PATH: &str = "/apis/external.metrics.k8s.io/v1beta1";
const QUERY_FORMAT: &str = "<namespace>/<metricName>?labelSelector=<url-encoded label selector>";

pub struct ExternalMetricsProvider {
    server: Server,
}

enum Server {
    /// The API server flagger-rs runs against, with its own credentials.
    Cluster(kube::Client),
    /// `spec.provider.address`, with the Secret's `token` as a bearer token.
    Address {
        base: String,
        token: Option<String>,
        client: reqwest::Client,
    },
}

impl ExternalMetricsProvider {
    pub fn new(config: &VendorConfig, cluster: kube::Client) -> Result<Self, ProviderConfigError> {
        let token = config.optional("token")?;
        let server = match config.address {
            Some(address) => Server::Address {
                base: base_address("externalmetrics", Some(address), None)?.to_string(),
                token: token.map(|t| t.trim().to_string()),
                client: config.client(TIMEOUT)?,
            },
            // flagger-rs reaches its API server through a client whose credentials it cannot
            // swap per request; a token is only usable with the address it belongs to.
            None if token.is_some() => {
                return Err(ProviderConfigError(
                    "externalmetrics: the secret's token needs spec.provider.address (without one, flagger-rs queries its own API server with its own credentials)".into(),
                ));
            }
            None => Server::Cluster(cluster),
        };
        Ok(ExternalMetricsProvider { server })
    }

    async fn list(&self, query: &MetricQuery) -> Result<String, MetricError> {
        let path = format!("{API_PATH}/namespaces/{}/{}", query.namespace, query.metric);
        match &self.server {
            Server::Cluster(client) => {
                let mut params = ListParams::default();
                if let Some(selector) = &query.label_selector {
                    params = params.labels(selector);
                }
                let request = kube::core::Request::new(path)
                    .list(&params)
                    .map_err(|e| MetricError::failed(format!("building the request: {e}")))?;
                match tokio::time::timeout(TIMEOUT, client.request_text(request)).await {
                    Ok(Ok(body)) => Ok(body),
                    Ok(Err(e)) => Err(MetricError::failed(format!(
                        "error querying external metrics API: {e}"
                    ))),
                    Err(_) => Err(MetricError::failed(format!(
                        "error querying external metrics API: no answer within {TIMEOUT:?}"
                    ))),
                }
            }
            Server::Address {
                base,
                token,
                client,
            } => {
                let mut request = client.get(format!("{base}{path}"));
                if let Some(selector) = &query.label_selector {
                    request = request.query(&[("labelSelector", selector)]);
                }
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let (status, body) = send(request).await?;
                check_status("error querying external metrics API", status, &body)?;
                Ok(body)
            }
        }
    }
}

impl MetricProvider for ExternalMetricsProvider {
    fn kind(&self) -> &'static str {
        "externalmetrics"
    }

    fn run_query<'a>(&'a self, query: &'a str, _interval: Duration) -> QueryFuture<'a> {
        Box::pin(async move {
            let query = parse_query(query)?;
            parse_response(&self.list(&query).await?)
        })
    }

    /// Lists a metric nobody serves: any answer other than a transport or API error means
    /// the external metrics API is up.
    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let probe = MetricQuery {
                namespace: "kube-system".into(),
                metric: "dummy-metric".into(),
                label_selector: None,
            };
            self.list(&probe).await.map(|_| ()).map_err(|e| {
                MetricError::failed(format!("external metrics service unavailable: {e}"))
            })
        })
    }
}

#[derive(Debug, PartialEq)]
pub struct MetricQuery {
    pub namespace: String,
    pub metric: String,
    pub label_selector: Option<String>,
}

/// Reads the query as the path and query string of a URL, as Flagger does.
pub fn parse_query(query: &str) -> Result<MetricQuery, MetricError> {
    let malformed =
        |why: &str| MetricError::failed(format!("{why}: expected {QUERY_FORMAT}, got {query:?}"));
    let url = url::Url::parse(&format!("query:///{}", query.trim()))
        .map_err(|_| malformed("malformed query"))?;
    let segments: Vec<&str> = url.path().trim_start_matches('/').split('/').collect();
    let (namespace, metric) = match segments.as_slice() {
        [metric] => ("default", *metric),
        ["", metric] => ("default", *metric),
        [namespace, metric] => (*namespace, *metric),
        _ => return Err(malformed("too many slashes")),
    };
    if metric.is_empty() {
        return Err(malformed("the metric name is empty"));
    }
    let label_selector = url
        .query_pairs()
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty());
    Ok(MetricQuery {
        namespace: namespace.to_string(),
        metric: metric.to_string(),
        label_selector,
    })
}

#[derive(Deserialize)]
struct ValueList {
    #[serde(default)]
    items: Vec<MetricValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricValue {
    #[serde(default)]
    metric_name: String,
    value: Quantity,
}

/// The first item's value, as Flagger picks it; more than one item is worth a warning, since
/// the order is the adapter's.
pub fn parse_response(body: &str) -> Result<Sample, MetricError> {
    let list: ValueList = serde_json::from_str(body).map_err(|e| {
        MetricError::failed(format!("error reading the external metrics answer: {e}"))
    })?;
    let first = list
        .items
        .first()
        .ok_or_else(|| MetricError::no_values("no external metrics found"))?;
    let quantity = ParsedQuantity::try_from(&first.value).map_err(|e| {
        MetricError::failed(format!(
            "external metric {} has an unreadable value {:?}: {e}",
            first.metric_name, first.value.0
        ))
    })?;
    let value = quantity.to_bytes_f64().ok_or_else(|| {
        MetricError::failed(format!(
            "external metric {} value {:?} is out of range",
            first.metric_name, first.value.0
        ))
    })?;
    let mut sample = finite_or_no_data(value, "external metric value").map(Sample::new)?;
    if list.items.len() > 1 {
        sample.warnings.push(format!(
            "external metrics query returned {} values; the first is used",
            list.items.len()
        ));
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_forms() {
        let q =
            parse_query("test/queue_length?labelSelector=app%3Dpodinfo%2Ctier%21%3Dweb").unwrap();
        assert_eq!(
            q,
            MetricQuery {
                namespace: "test".into(),
                metric: "queue_length".into(),
                label_selector: Some("app=podinfo,tier!=web".into()),
            }
        );
        for query in ["queue_length", "/queue_length"] {
            let q = parse_query(query).unwrap();
            assert_eq!(
                (q.namespace.as_str(), q.metric.as_str()),
                ("default", "queue_length")
            );
            assert_eq!(q.label_selector, None);
        }
        for bad in ["a/b/c", "test/", ""] {
            assert!(!parse_query(bad).unwrap_err().is_no_values(), "{bad}");
        }
    }

    fn list(values: &[&str]) -> String {
        let items: Vec<_> = values
            .iter()
            .map(|v| {
                serde_json::json!({
                    "metricName": "queue_length",
                    "metricLabels": {"app": "podinfo"},
                    "timestamp": "2026-12-05T03:00:00Z",
                    "value": v,
                })
            })
            .collect();
        serde_json::json!({
            "kind": "ExternalMetricValueList",
            "apiVersion": "external.metrics.k8s.io/v1beta1",
            "metadata": {},
            "items": items,
        })
        .to_string()
    }

    #[test]
    fn quantities_as_numbers() {
        for (quantity, value) in [
            ("42", 42.0),
            ("1500m", 1.5),
            ("250u", 0.00025),
            ("2k", 2000.0),
            ("1Ki", 1024.0),
            ("-3", -3.0),
        ] {
            assert_eq!(
                parse_response(&list(&[quantity])).unwrap(),
                Sample::new(value),
                "{quantity}"
            );
        }
    }

    #[test]
    fn first_of_several_with_a_warning() {
        let s = parse_response(&list(&["7", "9"])).unwrap();
        assert_eq!(s.value, 7.0);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    }

    #[test]
    fn empty_is_no_data_and_garbage_fails() {
        assert!(parse_response(&list(&[])).unwrap_err().is_no_values());
        assert!(!parse_response(&list(&["lots"])).unwrap_err().is_no_values());
        assert!(!parse_response("<html>").unwrap_err().is_no_values());
    }
}
