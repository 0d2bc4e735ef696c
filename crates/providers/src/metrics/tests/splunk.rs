//! Splunk (SignalFx): SignalFlow's `execute` call against a receiver replaying event streams in
//! the format of SignalFlow's stream messages reference (see fixtures/README.md).

use std::time::Duration;

use super::receiver::{Answer, PATH, Receiver};
use super::vendors::{config, secret, spec};
use crate::metrics::splunk::{Event, SplunkProvider, SseParser, endpoints};
use crate::metrics::{MetricProvider, build_provider};

const ONE_SERIES: &str = include_str!("fixtures/splunk/one_series.sse");
const NO_DATA: &str = include_str!("fixtures/splunk/no_data.sse");
const TWO_SERIES: &str = include_str!("fixtures/splunk/two_series.sse");
const ERROR: &str = include_str!("fixtures/splunk/error.sse");
const UNAUTHORIZED: &str = include_str!("fixtures/splunk/unauthorized.json");
const METRIC_LIST: &str = include_str!("fixtures/splunk/metric_list.json");

const PROGRAM: &str =
    "data('request.errors', filter=filter('service', 'podinfo-canary')).sum().publish()";

async fn run(answer: Answer) -> (Receiver, Result<f64, crate::metrics::MetricError>) {
    let r = Receiver::start("", &[], answer).await;
    let p = build_provider(
        &spec("splunk", r.url()),
        Some(&secret(&[("sf_token_key", "sf-token")])),
    )
    .unwrap();
    let v = p
        .run_query(PROGRAM, Duration::from_secs(60))
        .await
        .map(|s| s.value);
    (r, v)
}

#[tokio::test]
async fn execute_request_and_last_value_of_the_one_series() {
    let (r, v) = run(Answer::Body(200, ONE_SERIES)).await;
    assert_eq!(v.unwrap(), 0.0175, "last non-null value");
    let req = &r.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v2/signalflow/execute");
    assert_eq!(req.params["immediate"], "true");
    let start: u128 = req.params["start"].parse().unwrap();
    let stop: u128 = req.params["stop"].parse().unwrap();
    assert_eq!(stop - start, 600_000, "ten windows of 1m, in milliseconds");
    assert_eq!(req.headers["x-sf-token"], "sf-token");
    assert_eq!(req.headers["content-type"], "text/plain");
    assert_eq!(req.body, PROGRAM);
}

#[tokio::test]
async fn no_data_several_series_and_errors() {
    let (_, v) = run(Answer::Body(200, NO_DATA)).await;
    assert!(v.unwrap_err().is_no_values());

    let (_, v) = run(Answer::Body(200, TWO_SERIES)).await;
    let e = v.unwrap_err();
    assert!(!e.is_no_values());
    assert_eq!(
        e.to_string(),
        "invalid response: multiple values returned (2 time series)"
    );

    let (_, v) = run(Answer::Body(200, ERROR)).await;
    let e = v.unwrap_err();
    assert!(
        e.to_string().starts_with("error executing query: {")
            && e.to_string().contains("ANALYTICS_PROGRAM_NAME_ERROR"),
        "{e}"
    );

    let (_, v) = run(Answer::Body(401, UNAUTHORIZED)).await;
    assert_eq!(
        v.unwrap_err().to_string(),
        "error executing query (HTTP 401): Unauthorized"
    );
}

#[tokio::test]
async fn a_silent_stream_times_out() {
    let r = Receiver::start("", &[], Answer::Hang).await;
    let s = secret(&[("sf_token_key", "t")]);
    let url = r.url();
    let config = config(Some(&url), Some(&s), false);
    let p = SplunkProvider::with_timeout(&config, Duration::from_millis(300)).unwrap();
    let e = p
        .run_query(PROGRAM, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(!e.is_no_values());
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[tokio::test]
async fn online_check_lists_one_metric() {
    let r = Receiver::start(
        PATH,
        &[("/v2/metric", Answer::Body(200, METRIC_LIST))],
        Answer::Body(401, UNAUTHORIZED),
    )
    .await;
    let p = build_provider(
        &spec("splunk", r.url()),
        Some(&secret(&[("sf_token_key", "sf-token")])),
    )
    .unwrap();
    p.is_online().await.unwrap();
    let req = &r.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/v2/metric")
    );
    assert_eq!(req.params["limit"], "1");
    assert_eq!(req.headers["x-sf-token"], "sf-token");

    let r = Receiver::start("", &[], Answer::Body(401, UNAUTHORIZED)).await;
    let p = build_provider(
        &spec("splunk", r.url()),
        Some(&secret(&[("sf_token_key", "bad")])),
    )
    .unwrap();
    assert_eq!(
        p.is_online().await.unwrap_err().to_string(),
        "error response (HTTP 401): Unauthorized"
    );
}

#[test]
fn realm_addresses_map_to_stream_and_api() {
    let pair = |a: &str| endpoints(a).unwrap();
    let us1 = (
        "https://stream.us1.signalfx.com".to_string(),
        "https://api.us1.signalfx.com".to_string(),
    );
    assert_eq!(pair("https://api.us1.signalfx.com"), us1);
    assert_eq!(pair("wss://stream.us1.signalfx.com/"), us1);
    assert_eq!(
        pair("http://127.0.0.1:8080"),
        (
            "http://127.0.0.1:8080".to_string(),
            "http://127.0.0.1:8080".to_string()
        )
    );
    assert!(endpoints("ftp://api.us1.signalfx.com").is_err());
    let e = build_provider(&spec("splunk", "https://api.us1.signalfx.com".into()), None)
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "splunk credentials do not contain the key \"sf_token_key\""
    );
}

#[test]
fn sse_events_survive_any_chunking() {
    let whole = SseParser::default().feed(ONE_SERIES);
    assert_eq!(whole.len(), 7);
    assert_eq!(whole[3].name, "data");
    // Fed one byte at a time (and with CRLF line ends), the same events come out.
    let crlf = ONE_SERIES.replace('\n', "\r\n");
    let mut parser = SseParser::default();
    let mut bytewise = Vec::new();
    for c in crlf.chars() {
        bytewise.extend(parser.feed(&c.to_string()));
    }
    assert_eq!(bytewise, whole);
    let with_comment = SseParser::default().feed(": keep-alive\n\nevent: data\ndata: {}\n\n");
    assert_eq!(
        with_comment,
        [Event {
            name: "data".into(),
            data: "{}".into()
        }]
    );
}
