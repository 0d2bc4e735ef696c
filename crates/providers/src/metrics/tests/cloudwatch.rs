//! CloudWatch: SigV4 against AWS's published signing test suite, and `GetMetricData` against a
//! receiver replaying bodies shaped by the CloudWatch API reference (see fixtures/README.md).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use serde_json::{Value as Json, json};

use super::receiver::{Answer, Receiver};
use super::vendors::{config, secret, spec};
use crate::metrics::cloudwatch::{CloudWatchProvider, parse_response, sign_headers};
use crate::metrics::{MetricProvider, SecretData, build_provider};

const OK: &str = include_str!("fixtures/cloudwatch/get_metric_data.json");
const NO_VALUES: &str = include_str!("fixtures/cloudwatch/no_values.json");
const INVALID: &str = include_str!("fixtures/cloudwatch/invalid_parameter.json");
const DENIED: &str = include_str!("fixtures/cloudwatch/access_denied.json");
const VALIDATION: &str = include_str!("fixtures/cloudwatch/validation_error.json");

/// One case of the AWS SigV4 test suite: its context, request and expected signed request.
struct Vector {
    name: &'static str,
    context: &'static str,
    request: &'static str,
    signed: &'static str,
    canonical: &'static str,
}

macro_rules! vector {
    ($name:literal) => {
        Vector {
            name: $name,
            context: include_str!(concat!("fixtures/sigv4/", $name, "/context.json")),
            request: include_str!(concat!("fixtures/sigv4/", $name, "/request.txt")),
            signed: include_str!(concat!(
                "fixtures/sigv4/",
                $name,
                "/header-signed-request.txt"
            )),
            canonical: include_str!(concat!(
                "fixtures/sigv4/",
                $name,
                "/header-canonical-request.txt"
            )),
        }
    };
}

/// `METHOD PATH HTTP/1.1`, `Name:value` lines, a blank line, the body.
fn parse_request(text: &str) -> (String, String, Vec<(String, String)>, String) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let mut first = lines.next().unwrap().split(' ');
    let method = first.next().unwrap().to_string();
    let path = first.next().unwrap().to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    (method, path, headers, body.to_string())
}

fn time(text: &str) -> SystemTime {
    SystemTime::from(text.parse::<jiff::Timestamp>().unwrap())
}

#[test]
fn sigv4_matches_the_published_test_vectors() {
    for v in [
        vector!("get-vanilla"),
        vector!("get-vanilla-with-session-token"),
        vector!("post-vanilla"),
        vector!("post-header-key-sort"),
    ] {
        let ctx: Json = serde_json::from_str(v.context).unwrap();
        let c = &ctx["credentials"];
        let creds = Credentials::new(
            c["access_key_id"].as_str().unwrap(),
            c["secret_access_key"].as_str().unwrap(),
            c["token"].as_str().map(str::to_string),
            None,
            "test-suite",
        );
        let (method, path, headers, body) = parse_request(v.request);
        let host = &headers.iter().find(|(k, _)| k == "Host").unwrap().1;
        let url = format!("https://{host}{path}");
        let header_refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let signed = sign_headers(
            &creds,
            ctx["region"].as_str().unwrap(),
            ctx["service"].as_str().unwrap(),
            time(ctx["timestamp"].as_str().unwrap()),
            (&method, &url, &header_refs, body.as_bytes()),
        )
        .unwrap();
        let got: HashMap<String, String> = signed
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        // Every header the signed request adds to the unsigned one, byte for byte.
        let (_, _, expected, _) = parse_request(v.signed);
        let added: Vec<_> = expected
            .iter()
            .filter(|(k, _)| !headers.iter().any(|(h, _)| h == k))
            .collect();
        assert!(
            added.iter().any(|(k, _)| k == "Authorization"),
            "{}",
            v.name
        );
        // The canonical request's last lines: the signed header names, then the payload hash.
        let signed_names = v.canonical.lines().rev().nth(1).unwrap();
        assert!(
            got["authorization"].contains(&format!("SignedHeaders={signed_names},")),
            "{}",
            v.name
        );
        for (k, value) in added {
            assert_eq!(
                got.get(&k.to_ascii_lowercase()),
                Some(value),
                "{}: {k}",
                v.name
            );
        }
        assert_eq!(got.len(), expected.len() - headers.len(), "{}", v.name);
    }
}

const QUERY: &str = r#"[
  {"Id": "e1", "Expression": "m1 / m2", "Label": "ErrorRate"},
  {"id": "m1", "metricStat": {"metric": {"namespace": "MyKubernetesEmojis", "metricName": "ErrorCount",
     "dimensions": [{"name": "app", "value": "podinfo"}]}, "period": 60, "stat": "Sum", "unit": "Count"},
   "returnData": false},
  {"Id": "m2", "MetricStat": {"Metric": {"Namespace": "MyKubernetesEmojis", "MetricName": "RequestCount"},
     "Period": 60, "Stat": "Sum", "Unit": "Count"}, "ReturnData": false}
]"#;

fn cloudwatch_spec(address: String) -> flagger_api::metric_template::MetricProvider {
    let mut s = spec("cloudwatch", address);
    s.region = Some("eu-west-1".into());
    s
}

fn keys() -> SecretData {
    secret(&[
        ("aws_access_key_id", "AKIDEXAMPLE"),
        (
            "aws_secret_access_key",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
        ("aws_session_token", "session-token"),
    ])
}

#[tokio::test]
async fn get_metric_data_is_signed_windowed_and_read() {
    let r = Receiver::start("", &[], Answer::Body(200, OK)).await;
    let p = build_provider(&cloudwatch_spec(r.url()), Some(&keys())).unwrap();
    let s = p.run_query(QUERY, Duration::from_secs(60)).await.unwrap();
    assert_eq!(s.value, 0.0125, "first result, first (newest) value");

    let req = &r.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/");
    assert_eq!(req.headers["content-type"], "application/x-amz-json-1.0");
    assert_eq!(
        req.headers["x-amz-target"],
        "GraniteServiceVersion20100801.GetMetricData"
    );
    assert_eq!(req.headers["x-amz-security-token"], "session-token");
    let date = req.headers["x-amz-date"].to_str().unwrap();
    let auth = req.headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/eu-west-1/monitoring/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="
        , &date[..8])),
        "{auth}"
    );

    let body: Json = serde_json::from_str(&req.body).unwrap();
    let start = body["StartTime"].as_u64().unwrap();
    let end = body["EndTime"].as_u64().unwrap();
    assert_eq!(end - start, 600, "ten windows of 1m");
    assert_eq!(body["MaxDatapoints"], 20);
    assert_eq!(
        body["MetricDataQueries"][1],
        json!({"Id": "m1", "MetricStat": {"Metric": {"Namespace": "MyKubernetesEmojis", "MetricName": "ErrorCount",
            "Dimensions": [{"Name": "app", "Value": "podinfo"}]}, "Period": 60, "Stat": "Sum", "Unit": "Count"},
            "ReturnData": false}),
        "member names are written AWS's way"
    );
    assert_eq!(body["MetricDataQueries"].as_array().unwrap().len(), 3);

    // The signature covers exactly what arrived: signing the received request at its own
    // x-amz-date gives the received authorization.
    let at = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", date)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("session-token".into()),
        None,
        "t",
    );
    let resigned = sign_headers(
        &creds,
        "eu-west-1",
        "monitoring",
        SystemTime::from(at),
        (
            "POST",
            &format!("{}/", r.url()),
            &[
                ("content-type", "application/x-amz-json-1.0"),
                (
                    "x-amz-target",
                    "GraniteServiceVersion20100801.GetMetricData",
                ),
            ],
            req.body.as_bytes(),
        ),
    )
    .unwrap();
    let resigned_auth = resigned
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .unwrap();
    assert_eq!(resigned_auth.1, auth);
}

#[tokio::test]
async fn credentials_come_from_the_environment_without_a_secret() {
    let r = Receiver::start("", &[], Answer::Body(200, OK)).await;
    let env = HashMap::from([
        ("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "env-token"),
    ]);
    let url = r.url();
    let config = config(Some(&url), None, false);
    let lookup = |k: &str| env.get(k).map(|v| v.to_string());
    let p = CloudWatchProvider::with_timeout(
        &config,
        Some("us-east-1"),
        lookup,
        Duration::from_secs(5),
    )
    .unwrap();
    p.run_query(QUERY, Duration::from_secs(30)).await.unwrap();
    let req = &r.requests()[0];
    let auth = req.headers["authorization"].to_str().unwrap();
    assert!(
        auth.contains("Credential=AKIAENVIRONMENT/") && auth.contains("/us-east-1/monitoring/"),
        "{auth}"
    );
    assert_eq!(req.headers["x-amz-security-token"], "env-token");

    let e = CloudWatchProvider::with_timeout(
        &config,
        Some("us-east-1"),
        |_| None,
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("AWS_ACCESS_KEY_ID") && e.to_string().contains("aws_access_key_id"),
        "{e}"
    );
    let e = CloudWatchProvider::with_timeout(&config, None, lookup, Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(e.to_string(), "cloudwatch region not specified");
}

#[tokio::test]
async fn no_values_errors_and_timeouts() {
    let r = Receiver::start("", &[], Answer::Body(200, NO_VALUES)).await;
    let p = build_provider(&cloudwatch_spec(r.url()), Some(&keys())).unwrap();
    let e = p
        .run_query(QUERY, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(e.is_no_values(), "{e}");

    let e = p
        .run_query(r#"{"Id": "m1"}"#, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("error unmarshaling query"), "{e}");

    let r = Receiver::start("", &[], Answer::Body(400, INVALID)).await;
    let p = build_provider(&cloudwatch_spec(r.url()), Some(&keys())).unwrap();
    let e = p
        .run_query(QUERY, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "error requesting cloudwatch (HTTP 400): The value e1 for parameter MetricDataQueries.member.1.Expression is not valid. Unrecognized token 'm9'."
    );

    let r = Receiver::start("", &[], Answer::Hang).await;
    let url = r.url();
    let keys = keys();
    let config = config(Some(&url), Some(&keys), false);
    let p = CloudWatchProvider::with_timeout(
        &config,
        Some("eu-west-1"),
        |_| None,
        Duration::from_millis(300),
    )
    .unwrap();
    let e = p
        .run_query(QUERY, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(!e.is_no_values());
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[test]
fn several_results_pick_the_first_results_first_value() {
    assert_eq!(parse_response(200, OK).unwrap().value, 0.0125);
    let e = parse_response(200, r#"{"MetricDataResults":[],"Messages":[]}"#).unwrap_err();
    assert!(e.is_no_values());
    assert!(!parse_response(200, "<html>").unwrap_err().is_no_values());
}

#[tokio::test]
async fn online_when_the_empty_request_is_refused_as_invalid() {
    let r = Receiver::start("", &[], Answer::Body(400, VALIDATION)).await;
    let p = build_provider(&cloudwatch_spec(r.url()), Some(&keys())).unwrap();
    p.is_online().await.unwrap();
    let body: Json = serde_json::from_str(&r.requests()[0].body).unwrap();
    assert_eq!(body["MetricDataQueries"], json!([]));

    let r = Receiver::start("", &[], Answer::Body(403, DENIED)).await;
    let p = build_provider(&cloudwatch_spec(r.url()), Some(&keys())).unwrap();
    let e = p.is_online().await.unwrap_err();
    assert!(
        e.to_string().starts_with(
            "cloudwatch (HTTP 403): User: arn:aws:iam::123456789012:user/flagger is not authorized"
        ),
        "{e}"
    );
}

#[test]
fn the_default_endpoint_is_the_regions() {
    let keys = keys();
    let config = config(None, Some(&keys), false);
    let p = CloudWatchProvider::new(&config, Some("ap-southeast-2")).unwrap();
    assert!(
        format!("{p:?}").contains("endpoint: \"https://monitoring.ap-southeast-2.amazonaws.com\""),
        "{p:?}"
    );
}

const STS_OK: &str = include_str!("fixtures/sts/assume_role_with_web_identity.xml");
const STS_DENIED: &str = include_str!("fixtures/sts/invalid_identity_token.xml");

/// EKS IAM roles for service accounts: a projected token file and a role, exchanged with STS.
#[tokio::test]
async fn web_identity_credentials_from_sts() {
    let token_file = std::env::temp_dir().join(format!(
        "flagger-rs-web-identity-{}-{}",
        std::process::id(),
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace("::", "-")
    ));
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.projected.token\n").unwrap();
    let sts = Receiver::start("", &[], Answer::Body(200, STS_OK)).await;
    let cw = Receiver::start("", &[], Answer::Body(200, OK)).await;
    let env = HashMap::from([
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/flagger".to_string(),
        ),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_ENDPOINT_URL_STS", sts.url()),
    ]);
    let url = cw.url();
    let config = config(Some(&url), None, false);
    let make = |env: HashMap<&'static str, String>| {
        CloudWatchProvider::with_timeout(
            &config,
            Some("eu-west-1"),
            move |k| env.get(k).cloned(),
            Duration::from_secs(5),
        )
        .unwrap()
    };
    let p = make(env.clone());
    assert_eq!(
        p.run_query(QUERY, Duration::from_secs(60))
            .await
            .unwrap()
            .value,
        0.0125
    );

    let s = &sts.requests()[0];
    assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/"));
    assert!(
        s.headers.get("authorization").is_none(),
        "STS takes the token unsigned"
    );
    let form: HashMap<String, String> = url::form_urlencoded::parse(s.body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(form["Version"], "2011-06-15");
    assert_eq!(form["RoleArn"], "arn:aws:iam::123456789012:role/flagger");
    assert_eq!(form["RoleSessionName"], "flagger-rs");
    assert_eq!(
        form["WebIdentityToken"],
        "eyJhbGciOiJSUzI1NiJ9.projected.token"
    );

    let c = &cw.requests()[0];
    let auth = c.headers["authorization"].to_str().unwrap();
    assert!(
        auth.contains("Credential=ASgeIAIOSFODNN7EXAMPLE/"),
        "{auth}"
    );
    assert_eq!(
        c.headers["x-amz-security-token"],
        "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE"
    );

    let denied = Receiver::start("", &[], Answer::Body(400, STS_DENIED)).await;
    let mut env = env;
    env.insert("AWS_ENDPOINT_URL_STS", denied.url());
    let e = make(env)
        .run_query(QUERY, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "AssumeRoleWithWebIdentity (HTTP 400): InvalidIdentityToken: Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements"
    );
    assert_eq!(cw.requests().len(), 1, "nothing sent unsigned");
    std::fs::remove_file(&token_file).unwrap();
}
