//! The providers that read the Kubernetes API (keptn, externalmetrics) against a loopback server
//! answering as the API server does (objects, `Status` errors, watch streams), through the same
//! kube client the controller uses.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use flagger_api::metric_template::MetricProvider as ProviderSpec;
use serde_json::{Value as Json, json};

use crate::metrics::keptn::KeptnProvider;
use crate::metrics::{MetricError, MetricProvider, SecretData, build_provider_in_cluster};

/// One request as the fake API server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: String,
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    async fn start() -> (String, Fake) {
        let fake = Fake::default();
        let app = Router::new().fallback(answer).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, fake)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn client(url: &str) -> kube::Client {
    kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

/// A response that never comes: the provider's own timeout has to end the wait.
fn hang() -> Response {
    Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>()).into_response()
}

fn external_list(values: &[&str]) -> Response {
    let items: Vec<Json> = values
        .iter()
        .map(|v| json!({"metricName": "queue", "metricLabels": {}, "timestamp": "2026-12-05T03:00:00Z", "value": v}))
        .collect();
    axum::Json(json!({"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1", "metadata": {}, "items": items})).into_response()
}

/// A watch stream with one event, then held open as the API server holds it.
fn watch_event(object: Json) -> Response {
    let line = format!("{}\n", json!({"type": "MODIFIED", "object": object}));
    let first = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(line)) });
    Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending())).into_response()
}

fn analysis(name: &str, status: Json) -> Json {
    json!({"apiVersion": "metrics.keptn.sh/v1beta1", "kind": "Analysis",
        "metadata": {"name": name, "namespace": "test", "resourceVersion": "7"}, "status": status})
}

async fn answer(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    fake.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        uri: uri.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let path = uri.path();
    let watching = uri.query().is_some_and(|q| q.contains("watch=true"));
    if let Some(name) =
        path.strip_prefix("/apis/metrics.keptn.sh/v1beta1/namespaces/test/keptnmetrics/")
    {
        return match name {
            "cpu" => axum::Json(json!({"kind": "KeptnMetric", "metadata": {"name": "cpu"}, "status": {"value": "42.5", "rawValue": "NDIuNQ=="}})).into_response(),
            "pending" => axum::Json(json!({"kind": "KeptnMetric", "metadata": {"name": "pending"}})).into_response(),
            "slow" => hang(),
            _ => status(404, "NotFound", &format!("keptnmetrics.metrics.keptn.sh \"{name}\" not found")),
        };
    }
    if path == "/apis/metrics.keptn.sh/v1beta1/namespaces/test/analyses" && method == Method::POST {
        let sent: Json = serde_json::from_slice(&body).unwrap_or_default();
        let prefix = sent
            .pointer("/metadata/generateName")
            .and_then(Json::as_str)
            .unwrap_or("x-");
        let mut created = sent.clone();
        created["metadata"]["name"] = json!(format!("{prefix}abcde"));
        created["metadata"]["resourceVersion"] = json!("5");
        return (StatusCode::CREATED, axum::Json(created)).into_response();
    }
    if path == "/apis/metrics.keptn.sh/v1beta1/namespaces/test/analyses" && watching {
        let query = uri.query().unwrap_or_default();
        return if query.contains("good-abcde") {
            watch_event(analysis(
                "good-abcde",
                json!({"state": "Completed", "pass": true, "raw": "{}"}),
            ))
        } else if query.contains("bad-abcde") {
            // Keptn leaves `pass` out when the analysis failed.
            watch_event(analysis(
                "bad-abcde",
                json!({"state": "Completed", "warning": true}),
            ))
        } else {
            watch_event(analysis("slow-abcde", json!({"state": "Progressing"})))
        };
    }
    if path.starts_with("/apis/metrics.keptn.sh/v1beta1/namespaces/test/analyses/")
        && method == Method::DELETE
    {
        return axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        )
        .into_response();
    }
    if let Some(metric) =
        path.strip_prefix("/apis/external.metrics.k8s.io/v1beta1/namespaces/test/")
    {
        return match metric {
            "queue" => external_list(&["1500m"]),
            "several" => external_list(&["3", "4"]),
            "empty" => external_list(&[]),
            "slow" => hang(),
            _ => status(404, "NotFound", "the server could not find the metric"),
        };
    }
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn spec(type_: &str, address: Option<String>) -> ProviderSpec {
    ProviderSpec {
        type_: type_.into(),
        address,
        ..Default::default()
    }
}

async fn run(p: &dyn MetricProvider, query: &str) -> Result<f64, MetricError> {
    p.run_query(query, Duration::from_secs(60))
        .await
        .map(|s| s.value)
}

#[tokio::test]
async fn keptn_metric_value_no_data_error_and_timeout() {
    let (url, _fake) = Fake::start().await;
    let p = build_provider_in_cluster(&spec("keptn", None), None, &client(&url)).unwrap();
    assert_eq!(run(p.as_ref(), "keptnmetric/test/cpu").await.unwrap(), 42.5);
    assert!(
        run(p.as_ref(), "keptnmetric/test/pending")
            .await
            .unwrap_err()
            .is_no_values()
    );
    let e = run(p.as_ref(), "KeptnMetrics/test/gone").await.unwrap_err();
    assert!(!e.is_no_values());
    assert!(
        e.to_string()
            .contains("could not retrieve KeptnMetric test/gone")
            && e.to_string().contains("not found"),
        "{e}"
    );
    let e = run(p.as_ref(), "keptnmetric/test/slow").await.unwrap_err();
    assert!(e.to_string().contains("no answer within"), "{e}");
    p.is_online().await.unwrap();
}

#[tokio::test]
async fn keptn_analysis_pass_fail_and_timeout_always_deleted() {
    let (url, fake) = Fake::start().await;
    let p = KeptnProvider::new(client(&url)).with_analysis_timeout(Duration::from_millis(300));
    assert_eq!(
        run(&p, "analysis/test/good/5m/app=podinfo;env=prod")
            .await
            .unwrap(),
        1.0
    );
    let seen = fake.seen();
    let created: Json = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(seen[0].method, Method::POST);
    assert!(
        seen[0]
            .uri
            .query()
            .unwrap_or_default()
            .contains("fieldManager=flagger")
    );
    assert_eq!(created["metadata"]["generateName"], "good-");
    assert_eq!(
        created["spec"],
        json!({"analysisDefinition": {"name": "good"}, "timeframe": {"recent": "5m"}, "args": {"app": "podinfo", "env": "prod"}})
    );
    assert!(
        seen[1]
            .uri
            .query()
            .unwrap()
            .contains("metadata.name%3Dgood-abcde"),
        "{:?}",
        seen[1].uri
    );
    assert_eq!(
        (seen[2].method.clone(), seen[2].uri.path()),
        (
            Method::DELETE,
            "/apis/metrics.keptn.sh/v1beta1/namespaces/test/analyses/good-abcde"
        )
    );

    assert_eq!(run(&p, "analysis/test/bad").await.unwrap(), 0.0);
    let e = run(&p, "analysis/test/slow").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("timeout while waiting for Keptn Analysis test/slow"),
        "{e}"
    );
    let deletes: Vec<String> = fake
        .seen()
        .iter()
        .filter(|s| s.method == Method::DELETE)
        .map(|s| s.uri.path().rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(deletes, ["good-abcde", "bad-abcde", "slow-abcde"]);
}

#[tokio::test]
async fn externalmetrics_through_the_api_server() {
    let (url, fake) = Fake::start().await;
    let p = build_provider_in_cluster(&spec("externalmetrics", None), None, &client(&url)).unwrap();
    assert_eq!(
        run(p.as_ref(), "test/queue?labelSelector=app%3Dpodinfo")
            .await
            .unwrap(),
        1.5
    );
    let req = &fake.seen()[0];
    assert_eq!(
        req.uri.path(),
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/test/queue"
    );
    assert!(
        req.uri
            .query()
            .unwrap()
            .contains("labelSelector=app%3Dpodinfo"),
        "{:?}",
        req.uri
    );
    let several = p
        .run_query("test/several", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(several.value, 3.0);
    assert_eq!(several.warnings.len(), 1);
    assert!(
        run(p.as_ref(), "test/empty")
            .await
            .unwrap_err()
            .is_no_values()
    );
    let e = run(p.as_ref(), "test/unknown").await.unwrap_err();
    assert!(
        !e.is_no_values() && e.to_string().contains("could not find the metric"),
        "{e}"
    );
    let e = run(p.as_ref(), "test/slow").await.unwrap_err();
    assert!(e.to_string().contains("no answer within"), "{e}");
}

#[tokio::test]
async fn externalmetrics_at_an_address_with_a_token() {
    let (url, fake) = Fake::start().await;
    let unused = client("http://127.0.0.1:9");
    let secret: SecretData = [("token".to_string(), b"s3cret\n".to_vec())].into();
    let p = build_provider_in_cluster(&spec("externalmetrics", Some(url)), Some(&secret), &unused)
        .unwrap();
    assert_eq!(run(p.as_ref(), "test/queue").await.unwrap(), 1.5);
    let req = &fake.seen()[0];
    assert_eq!(
        req.uri.path(),
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/test/queue"
    );
    assert_eq!(req.headers["authorization"], "Bearer s3cret");
    let e = run(p.as_ref(), "test/unknown").await.unwrap_err();
    assert!(e.to_string().contains("HTTP 404"), "{e}");
    assert!(
        run(p.as_ref(), "test/empty")
            .await
            .unwrap_err()
            .is_no_values()
    );
    let e = build_provider_in_cluster(&spec("externalmetrics", None), Some(&secret), &unused)
        .err()
        .unwrap();
    assert!(e.to_string().contains("needs spec.provider.address"), "{e}");
}
