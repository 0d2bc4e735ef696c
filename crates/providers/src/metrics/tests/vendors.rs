//! The other HTTP backends: request shape (path, parameters, credentials) against a receiver.

use std::time::Duration;

use flagger_api::metric_template::MetricProvider as ProviderSpec;

use super::receiver::{Answer, Receiver};
use crate::metrics::factory::VendorConfig;
use crate::metrics::{SecretData, build_provider};

pub(super) fn spec(type_: &str, address: String) -> ProviderSpec {
    ProviderSpec {
        type_: type_.into(),
        address: Some(address),
        ..Default::default()
    }
}

pub(super) fn secret(pairs: &[(&str, &str)]) -> SecretData {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// What a provider is built from, for tests that build one directly (with a short timeout, say).
pub(super) fn config<'a>(
    address: Option<&'a str>,
    secret: Option<&'a SecretData>,
    insecure_skip_verify: bool,
) -> VendorConfig<'a> {
    VendorConfig {
        address,
        secret,
        insecure_skip_verify,
    }
}

#[tokio::test]
async fn datadog_request() {
    let body = r#"{"status":"ok","res_type":"time_series","series":[{"metric":"m","pointlist":[[1733075400000.0,2.5]]}],"from_date":1733075400000,"to_date":1733076000000,"query":"avg:m{*}","message":"","group_by":[]}"#;
    let r = Receiver::start("query", &[], Answer::Body(200, body)).await;
    let p = build_provider(
        &spec("datadog", r.url()),
        Some(&secret(&[
            ("datadog_api_key", "api"),
            ("datadog_application_key", "app"),
        ])),
    )
    .unwrap();
    let s = p
        .run_query("avg:m{*}", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(s.value, 2.5);
    let req = &r.requests()[0];
    assert_eq!(req.path, "/api/v1/query");
    assert_eq!(req.params["query"], "avg:m{*}");
    assert_eq!(req.headers["dd-api-key"], "api");
    assert_eq!(req.headers["dd-application-key"], "app");
    let from: u64 = req.params["from"].parse().unwrap();
    let to: u64 = req.params["to"].parse().unwrap();
    assert_eq!(to - from, 600, "ten windows of 1m");
}

#[tokio::test]
async fn newrelic_request() {
    let body = r#"{"results":[{"average":0.5}],"metadata":{}}"#;
    let r = Receiver::start("nrql", &[], Answer::Body(200, body)).await;
    let p = build_provider(
        &spec("newrelic", r.url()),
        Some(&secret(&[
            ("newrelic_account_id", "1234"),
            ("newrelic_query_key", "qk"),
        ])),
    )
    .unwrap();
    let q = "SELECT average(duration) FROM Transaction";
    assert_eq!(
        p.run_query(q, Duration::from_secs(120))
            .await
            .unwrap()
            .value,
        0.5
    );
    let req = &r.requests()[0];
    assert_eq!(req.path, "/v1/accounts/1234/query");
    assert_eq!(req.params["nrql"], format!("{q} SINCE 120 seconds ago"));
    assert_eq!(req.headers["x-query-key"], "qk");
}

#[tokio::test]
async fn graphite_request() {
    let body =
        r#"[{"target":"a","tags":{"name":"a"},"datapoints":[[1.5,1733075940],[null,1733075950]]}]"#;
    let r = Receiver::start("target", &[], Answer::Body(200, body)).await;
    let p = build_provider(
        &spec("graphite", r.url()),
        Some(&secret(&[("username", "u"), ("password", "p")])),
    )
    .unwrap();
    let s = p
        .run_query("target=sumSeries(a.*) &from=-1min", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(s.value, 1.5);
    let req = &r.requests()[0];
    assert_eq!(req.path, "/render");
    assert_eq!(req.params["target"], "sumSeries(a.*)");
    assert_eq!(req.params["format"], "json");
    assert_eq!(req.headers["authorization"], "Basic dTpw");
}

#[tokio::test]
async fn influxdb_request() {
    let csv = "#datatype,string,long,double\r\n#group,false,false,false\r\n#default,_result,,\r\n,result,table,_value\r\n,,0,0.75\r\n\r\n";
    let r = Receiver::start("org", &[], Answer::Body(200, csv)).await;
    let p = build_provider(
        &spec("influxdb", r.url()),
        Some(&secret(&[("token", "tok"), ("org", "acme")])),
    )
    .unwrap();
    let flux = r#"from(bucket: "b") |> range(start: -1m) |> mean()"#;
    assert_eq!(
        p.run_query(flux, Duration::from_secs(60))
            .await
            .unwrap()
            .value,
        0.75
    );
    let req = &r.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/v2/query");
    assert_eq!(req.params["org"], "acme");
    assert_eq!(req.headers["authorization"], "Token tok");
    let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(body["query"], flux);
    assert_eq!(body["type"], "flux");
}

#[tokio::test]
async fn dynatrace_request() {
    let body = r#"{"totalCount":1,"nextPageKey":null,"resolution":"Inf","result":[{"metricId":"m","data":[{"dimensions":[],"dimensionMap":{},"timestamps":[1733076000000],"values":[12.0]}]}]}"#;
    let r = Receiver::start("metricSelector", &[], Answer::Body(200, body)).await;
    let p = build_provider(
        &spec("dynatrace", r.url()),
        Some(&secret(&[("dynatrace_token", "dt0c01.x")])),
    )
    .unwrap();
    let s = p
        .run_query("builtin:service.response.time:avg", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(s.value, 12.0);
    let req = &r.requests()[0];
    assert_eq!(req.path, "/api/v2/metrics/query");
    assert_eq!(req.params["resolution"], "Inf");
    assert_eq!(req.headers["authorization"], "Api-Token dt0c01.x");
    let from: u128 = req.params["from"].parse().unwrap();
    let to: u128 = req.params["to"].parse().unwrap();
    assert_eq!(to - from, 300_000);
}

#[tokio::test]
async fn vendor_errors_are_query_failures() {
    let r = Receiver::start(
        "query",
        &[],
        Answer::Body(403, r#"{"errors": ["Forbidden"]}"#),
    )
    .await;
    let p = build_provider(
        &spec("datadog", r.url()),
        Some(&secret(&[
            ("datadog_api_key", "a"),
            ("datadog_application_key", "b"),
        ])),
    )
    .unwrap();
    let e = p.run_query("x", Duration::from_secs(60)).await.unwrap_err();
    assert_eq!(e.to_string(), "error response (HTTP 403): Forbidden");
    assert!(!e.is_no_values());
}
