//! The Prometheus client path end to end against a Prometheus-API-compatible receiver.

use std::collections::BTreeMap;
use std::time::Duration;

use flagger_api::metric_template::{MetricProvider as ProviderSpec, SecretRef};

use super::receiver::{Answer, Receiver};
use crate::metrics::prometheus::{Auth, Method, PrometheusOptions, PrometheusProvider};
use crate::metrics::{MetricError, MetricProvider, SecretData, build_provider};

const SR_QUERY: &str = "sum(rate(x{code!~\"5..\"}[1m])) / sum(rate(x[1m])) * 100";
const VECTOR: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733076062.781,"99.5"]}]}}"#;
const ONLINE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733076062.781,"1"]}]}}"#;
const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
const NAN: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733076062.781,"NaN"]}]}}"#;
const SCALAR: &str =
    r#"{"status":"success","data":{"resultType":"scalar","result":[1733076062.781,"42"]}}"#;
const BAD_DATA: &str = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}"#;
const UNAVAILABLE: &str =
    r#"{"status":"error","errorType":"unavailable","error":"TSDB not ready"}"#;

async fn receiver() -> Receiver {
    Receiver::start(
        "query",
        &[
            (SR_QUERY, Answer::Body(200, VECTOR)),
            ("vector(1)", Answer::Body(200, ONLINE)),
            ("empty", Answer::Body(200, EMPTY)),
            ("nan", Answer::Body(200, NAN)),
            ("scalar(42)", Answer::Body(200, SCALAR)),
            ("sum(", Answer::Body(400, BAD_DATA)),
            ("not-ready", Answer::Body(503, UNAVAILABLE)),
            ("hang", Answer::Hang),
        ],
        Answer::Body(500, "unexpected query"),
    )
    .await
}

fn provider(address: String, auth: Auth) -> PrometheusProvider {
    let mut options = PrometheusOptions::new(address);
    options.auth = auth;
    PrometheusProvider::new(options).unwrap()
}

#[tokio::test]
async fn instant_query_collapses_whitespace_and_reads_the_vector() {
    let r = receiver().await;
    let p = provider(r.url(), Auth::None);
    let spaced = "sum(rate(x{code!~\"5..\"}[1m]))\n\t/\n\tsum(rate(x[1m]))   * 100";
    let sample = p.run_query(spaced, Duration::from_secs(60)).await.unwrap();
    assert_eq!(sample.value, 99.5);
    let reqs = r.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/api/v1/query");
    assert_eq!(reqs[0].params["query"], SR_QUERY);
    assert!(reqs[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn bearer_and_basic_auth_headers() {
    let r = receiver().await;
    provider(r.url(), Auth::Bearer("s3cr3t".into()))
        .query(SR_QUERY)
        .await
        .unwrap();
    provider(
        r.url(),
        Auth::Basic {
            username: "user".into(),
            password: "pass".into(),
        },
    )
    .query(SR_QUERY)
    .await
    .unwrap();
    let reqs = r.requests();
    assert_eq!(reqs[0].headers["authorization"], "Bearer s3cr3t");
    // base64("user:pass")
    assert_eq!(reqs[1].headers["authorization"], "Basic dXNlcjpwYXNz");
}

#[tokio::test]
async fn template_provider_with_secret_and_headers() {
    let r = receiver().await;
    let spec = ProviderSpec {
        type_: "prometheus".into(),
        address: Some(format!("{}/", r.url())),
        headers: Some(BTreeMap::from([(
            "X-Scope-OrgID".to_string(),
            vec!["tenant-a".to_string(), "tenant-b".to_string()],
        )])),
        secret_ref: Some(SecretRef {
            name: "prom-auth".into(),
        }),
        insecure_skip_verify: Some(true),
        ..Default::default()
    };
    let secret: SecretData = BTreeMap::from([("token".to_string(), b"tok".to_vec())]);
    let p = build_provider(&spec, Some(&secret)).unwrap();
    assert_eq!(
        p.run_query(SR_QUERY, Duration::from_secs(60))
            .await
            .unwrap()
            .value,
        99.5
    );
    let reqs = r.requests();
    assert_eq!(reqs[0].path, "/api/v1/query");
    assert_eq!(reqs[0].headers["authorization"], "Bearer tok");
    let orgs: Vec<_> = reqs[0].headers.get_all("x-scope-orgid").iter().collect();
    assert_eq!(orgs, ["tenant-a", "tenant-b"]);
}

#[tokio::test]
async fn post_sends_a_form() {
    let r = receiver().await;
    let mut options = PrometheusOptions::new(r.url());
    options.method = Method::Post;
    let p = PrometheusProvider::new(options).unwrap();
    assert_eq!(p.query(SR_QUERY).await.unwrap().value, 99.5);
    let reqs = r.requests();
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].params["query"], SR_QUERY);
}

#[tokio::test]
async fn no_data_is_distinct_from_failure() {
    let r = receiver().await;
    let p = provider(r.url(), Auth::None);
    for q in ["empty", "nan"] {
        let e = p.query(q).await.unwrap_err();
        assert!(e.is_no_values(), "{q}: {e:?}");
    }
    assert_eq!(p.query("scalar(42)").await.unwrap().value, 42.0);
    let e = p.query("sum(").await.unwrap_err();
    assert_eq!(
        e,
        MetricError::failed(
            "error response (HTTP 400): bad_data: invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"
        )
    );
    let e = p.query("not-ready").await.unwrap_err();
    assert_eq!(
        e,
        MetricError::failed("error response (HTTP 503): unavailable: TSDB not ready")
    );
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let r = receiver().await;
    let mut options = PrometheusOptions::new(r.url());
    options.timeout = Duration::from_millis(300);
    let p = PrometheusProvider::new(options).unwrap();
    let started = std::time::Instant::now();
    let e = p.query("hang").await.unwrap_err();
    assert!(!e.is_no_values());
    assert!(e.to_string().contains("timed out after 300ms"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn unreachable_is_a_query_failure() {
    // A port that was just free: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let p = provider(format!("http://{addr}"), Auth::None);
    let e = p.query("vector(1)").await.unwrap_err();
    assert!(matches!(e, MetricError::QueryFailed(_)), "{e:?}");
    assert!(e.to_string().starts_with("request failed:"), "{e}");
}

#[tokio::test]
async fn is_online_runs_vector_1() {
    let r = receiver().await;
    let p = provider(r.url(), Auth::None);
    p.is_online().await.unwrap();
    assert_eq!(r.requests()[0].params["query"], "vector(1)");
}
