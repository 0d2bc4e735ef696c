//! Stackdriver (Cloud Monitoring): the service-account JWT exchange and the MQL query against a
//! receiver playing both Google's token endpoint and the Monitoring API, with bodies shaped by
//! their published references (see fixtures/README.md).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::receiver::{Answer, PATH, Receiver};
use super::vendors::{config, secret, spec};
use crate::metrics::stackdriver::{Claims, SCOPE, StackdriverProvider, parse_response};
use crate::metrics::{MetricProvider, SecretData, build_provider};

const PRIVATE_KEY: &str = include_str!("fixtures/stackdriver/test-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/stackdriver/test-key.pub.pem");
const SERIES: &str = include_str!("fixtures/stackdriver/query_response.json");
const INT64: &str = include_str!("fixtures/stackdriver/int64_response.json");
const NO_DATA: &str = include_str!("fixtures/stackdriver/no_data.json");
const INVALID: &str = include_str!("fixtures/stackdriver/invalid_argument.json");
const EMPTY_QUERY: &str = include_str!("fixtures/stackdriver/empty_query.json");
const DENIED: &str = include_str!("fixtures/stackdriver/permission_denied.json");
const TOKEN: &str = include_str!("fixtures/stackdriver/token.json");
const BAD_GRANT: &str = include_str!("fixtures/stackdriver/token_invalid_grant.json");

const QUERY_PATH: &str = "/v3/projects/my-project/timeSeries:query";
const MQL: &str = "fetch k8s_container | metric 'istio.io/service/server/request_count' | filter metric.destination_workload_name == 'podinfo' | align rate(1m) | every 1m";

async fn google(query: Answer, token: Answer) -> Receiver {
    Receiver::start(
        PATH,
        &[(QUERY_PATH, query), ("/token", token)],
        Answer::Body(404, r#"{"error":{"code":404,"message":"not found"}}"#),
    )
    .await
}

/// A service-account key file as the console downloads it, pointing its token endpoint at `r`.
fn key_file(r: &Receiver) -> String {
    json!({
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": PRIVATE_KEY,
        "client_email": "flagger@my-project.iam.gserviceaccount.com",
        "client_id": "112233445566778899000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{}/token", r.url()),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/flagger%40my-project.iam.gserviceaccount.com"
    })
    .to_string()
}

fn key_secret(r: &Receiver) -> SecretData {
    secret(&[
        ("project", "my-project"),
        ("serviceAccountKey", &key_file(r)),
    ])
}

#[tokio::test]
async fn jwt_exchange_then_mql_query() {
    let r = google(Answer::Body(200, SERIES), Answer::Body(200, TOKEN)).await;
    let p = build_provider(&spec("stackdriver", r.url()), Some(&key_secret(&r))).unwrap();
    let s = p.run_query(MQL, Duration::from_secs(60)).await.unwrap();
    assert_eq!(s.value, 0.0125, "first series, first (newest) point");
    p.run_query(MQL, Duration::from_secs(60)).await.unwrap();

    let reqs = r.requests();
    let paths: Vec<_> = reqs.iter().map(|q| q.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/token", QUERY_PATH, QUERY_PATH],
        "the token is reused"
    );

    let token_req = &reqs[0];
    assert_eq!(token_req.method, "POST");
    assert_eq!(
        token_req.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form: HashMap<String, String> = url::form_urlencoded::parse(token_req.body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    // The assertion verifies with the key's public half and says who asks for what.
    let token_uri = format!("{}/token", r.url());
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[&token_uri]);
    let decoded = jsonwebtoken::decode::<Claims>(
        &form["assertion"],
        &jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(
        decoded.header.kid.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    let c = decoded.claims;
    assert_eq!(c.iss, "flagger@my-project.iam.gserviceaccount.com");
    assert_eq!(c.scope, SCOPE);
    assert_eq!(c.aud, token_uri);
    assert_eq!(c.exp - c.iat, 3600);

    let q = &reqs[1];
    assert_eq!(q.method, "POST");
    assert_eq!(
        q.headers["authorization"],
        "Bearer ya29.c.b0AXv0zTOExampleAccessToken"
    );
    let body: Json = serde_json::from_str(&q.body).unwrap();
    assert_eq!(body, json!({ "query": MQL }));
}

#[tokio::test]
async fn errors_from_the_api_and_the_token_endpoint() {
    let r = google(Answer::Body(400, INVALID), Answer::Body(200, TOKEN)).await;
    let p = build_provider(&spec("stackdriver", r.url()), Some(&key_secret(&r))).unwrap();
    let e = p
        .run_query("fech x", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "error requesting stackdriver (HTTP 400): Line 1, column 7: Table operation 'fech' not found."
    );

    let r = google(Answer::Body(200, SERIES), Answer::Body(400, BAD_GRANT)).await;
    let p = build_provider(&spec("stackdriver", r.url()), Some(&key_secret(&r))).unwrap();
    let e = p.run_query(MQL, Duration::from_secs(60)).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "error getting a stackdriver access token (HTTP 400): invalid_grant: Invalid JWT Signature."
    );
    assert_eq!(r.requests().len(), 1, "no query without a token");

    let r = google(Answer::Hang, Answer::Body(200, TOKEN)).await;
    let s = key_secret(&r);
    let url = r.url();
    let config = config(Some(&url), Some(&s), false);
    let p =
        StackdriverProvider::with_timeout(&config, |_| None, Duration::from_millis(300)).unwrap();
    let e = p.run_query(MQL, Duration::from_secs(60)).await.unwrap_err();
    assert!(
        !e.is_no_values() && e.to_string().contains("timed out"),
        "{e}"
    );
}

#[tokio::test]
async fn metadata_server_token_without_a_key() {
    let metadata = Receiver::start(
        PATH,
        &[(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            Answer::Body(200, TOKEN),
        )],
        Answer::Body(404, "not found"),
    )
    .await;
    let r = google(Answer::Body(200, INT64), Answer::Body(500, "unused")).await;
    let s = secret(&[("project", "my-project")]);
    let url = r.url();
    let config = config(Some(&url), Some(&s), false);
    let host = metadata.addr.to_string();
    let env = |k: &str| (k == "GCE_METADATA_HOST").then(|| host.clone());
    let p = StackdriverProvider::with_timeout(&config, env, Duration::from_secs(5)).unwrap();
    assert_eq!(
        p.run_query(MQL, Duration::from_secs(60))
            .await
            .unwrap()
            .value,
        1204.0
    );
    let m = &metadata.requests()[0];
    assert_eq!(m.method, "GET");
    assert_eq!(m.headers["metadata-flavor"], "Google");
    assert_eq!(
        r.requests()[0].headers["authorization"],
        "Bearer ya29.c.b0AXv0zTOExampleAccessToken"
    );
}

#[tokio::test]
async fn key_file_from_google_application_credentials() {
    let r = google(Answer::Body(200, SERIES), Answer::Body(200, TOKEN)).await;
    let path = std::env::temp_dir().join(format!("flagger-rs-gcp-key-{}", std::process::id()));
    std::fs::write(&path, key_file(&r)).unwrap();
    let s = secret(&[("project", "my-project")]);
    let url = r.url();
    let config = config(Some(&url), Some(&s), false);
    let file = path.display().to_string();
    let env = |k: &str| (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| file.clone());
    let p = StackdriverProvider::with_timeout(&config, env, Duration::from_secs(5)).unwrap();
    assert_eq!(
        p.run_query(MQL, Duration::from_secs(60))
            .await
            .unwrap()
            .value,
        0.0125
    );
    let paths: Vec<_> = r.requests().iter().map(|q| q.path.clone()).collect();
    assert_eq!(paths, ["/token", QUERY_PATH]);
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn online_when_the_empty_query_is_refused_as_invalid() {
    let r = google(Answer::Body(400, EMPTY_QUERY), Answer::Body(200, TOKEN)).await;
    let p = build_provider(&spec("stackdriver", r.url()), Some(&key_secret(&r))).unwrap();
    p.is_online().await.unwrap();
    let body: Json = serde_json::from_str(&r.requests()[1].body).unwrap();
    assert_eq!(body, json!({"query": ""}));

    let r = google(Answer::Body(403, DENIED), Answer::Body(200, TOKEN)).await;
    let p = build_provider(&spec("stackdriver", r.url()), Some(&key_secret(&r))).unwrap();
    assert_eq!(
        p.is_online().await.unwrap_err().to_string(),
        "stackdriver (HTTP 403): Permission monitoring.timeSeries.list denied (or the resource may not exist)."
    );
}

#[test]
fn values_no_data_and_several_series() {
    assert_eq!(parse_response(200, SERIES).unwrap().value, 0.0125);
    assert_eq!(parse_response(200, INT64).unwrap().value, 1204.0);
    assert!(parse_response(200, NO_DATA).unwrap_err().is_no_values());
    assert!(parse_response(200, "{}").unwrap_err().is_no_values());
    let nan = r#"{"timeSeriesData":[{"pointData":[{"values":[{"doubleValue":"NaN"}]}]}]}"#;
    assert!(parse_response(200, nan).unwrap_err().is_no_values());
    let dist =
        r#"{"timeSeriesData":[{"pointData":[{"values":[{"distributionValue":{"count":"3"}}]}]}]}"#;
    assert!(
        parse_response(200, dist)
            .unwrap_err()
            .to_string()
            .contains("unsupported value type")
    );
}

#[test]
fn configuration_errors() {
    let cases: [(Option<SecretData>, &str); 4] = [
        (None, "needs a secretRef"),
        (Some(secret(&[])), "\"project\""),
        (
            Some(secret(&[("project", "p"), ("serviceAccountKey", "{}")])),
            "serviceAccountKey is not a service-account key",
        ),
        (
            Some(secret(&[
                ("project", "p"),
                (
                    "serviceAccountKey",
                    r#"{"client_email":"a@b","private_key":"nope","token_uri":"https://oauth2.googleapis.com/token"}"#,
                ),
            ])),
            "serviceAccountKey private_key",
        ),
    ];
    for (s, needle) in cases {
        let e = build_provider(
            &spec("stackdriver", "https://monitoring.googleapis.com".into()),
            s.as_ref(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}
