//! Prometheus HTTP API: instant queries.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use super::factory::{ProviderConfigError, SecretData, secret_string};
use super::http::{ClientOptions, client, describe, read_body, truncate};
use super::template::collapse_whitespace;
use super::{MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, finite_or_no_data};

/// Flagger's per-query timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const ONLINE_QUERY: &str = "vector(1)";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Bearer(String),
    Basic { username: String, password: String },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// What Flagger sends.
    #[default]
    Get,
    /// Form-encoded body: for queries longer than a URL should carry.
    Post,
}

#[derive(Clone, Debug)]
pub struct PrometheusOptions {
    pub address: String,
    pub auth: Auth,
    /// MetricTemplate `spec.provider.headers`: each value is sent as its own header line.
    pub headers: BTreeMap<String, Vec<String>>,
    pub insecure_skip_verify: bool,
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
    pub method: Method,
}

impl PrometheusOptions {
    pub fn new(address: impl Into<String>) -> Self {
        PrometheusOptions {
            address: address.into(),
            auth: Auth::None,
            headers: BTreeMap::new(),
            insecure_skip_verify: false,
            ca_pem: None,
            timeout: DEFAULT_TIMEOUT,
            method: Method::Get,
        }
    }
}

/// Credentials from the template's Secret: `token` → bearer; else `username` and `password`,
/// both required. `None` means the template has no `secretRef`.
pub fn auth_from_secret(secret: Option<&SecretData>) -> Result<Auth, ProviderConfigError> {
    let Some(secret) = secret else {
        return Ok(Auth::None);
    };
    if let Some(token) = secret_string(secret, "token")? {
        return Ok(Auth::Bearer(token));
    }
    let username = secret_string(secret, "username")?.ok_or_else(|| {
        ProviderConfigError("prometheus credentials do not contain a username".into())
    })?;
    let password = secret_string(secret, "password")?.ok_or_else(|| {
        ProviderConfigError("prometheus credentials do not contain a password".into())
    })?;
    Ok(Auth::Basic { username, password })
}

#[derive(Debug)]
pub struct PrometheusProvider {
    endpoint: url::Url,
    options: PrometheusOptions,
    client: reqwest::Client,
}

impl PrometheusProvider {
    pub fn new(options: PrometheusOptions) -> Result<Self, ProviderConfigError> {
        let endpoint = query_endpoint(&options.address)?;
        for name in options.headers.keys() {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ProviderConfigError(format!("invalid header name {name:?}")))?;
        }
        let client = client(&ClientOptions {
            timeout: Some(options.timeout),
            insecure_skip_verify: options.insecure_skip_verify,
            ca_pem: options.ca_pem.clone(),
        })?;
        Ok(PrometheusProvider {
            endpoint,
            options,
            client,
        })
    }

    /// Runs a query and returns the sample; the query is whitespace-collapsed first.
    pub async fn query(&self, query: &str) -> Result<Sample, MetricError> {
        let query = collapse_whitespace(query);
        let mut req = match self.options.method {
            Method::Get => self
                .client
                .get(self.endpoint.clone())
                .query(&[("query", query.as_str())]),
            Method::Post => {
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("query", &query)
                    .finish();
                self.client
                    .post(self.endpoint.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
        };
        for (name, values) in &self.options.headers {
            for v in values {
                req = req.header(name.as_str(), v.as_str());
            }
        }
        req = match &self.options.auth {
            Auth::None => req,
            Auth::Bearer(token) => req.bearer_auth(token),
            Auth::Basic { username, password } => req.basic_auth(username, Some(password)),
        };
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                MetricError::failed(format!(
                    "request failed: timed out after {:?}",
                    self.options.timeout
                ))
            } else {
                MetricError::failed(format!("request failed: {}", describe(&e)))
            }
        })?;
        let (status, body) = read_body(resp).await?;
        parse_response(status, &body)
    }
}

/// `<address>/api/v1/query`, keeping any path prefix of the address (Prometheus behind a
/// `--web.route-prefix` or a proxy path).
fn query_endpoint(address: &str) -> Result<url::Url, ProviderConfigError> {
    let invalid =
        || ProviderConfigError(format!("prometheus address {address:?} is not a valid URL"));
    if address.trim().is_empty() {
        return Err(invalid());
    }
    let mut url = url::Url::parse(address).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(invalid());
    }
    let path = format!("{}/api/v1/query", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    Ok(url)
}

impl MetricProvider for PrometheusProvider {
    fn kind(&self) -> &'static str {
        "prometheus"
    }

    fn run_query<'a>(&'a self, query: &'a str, _interval: Duration) -> QueryFuture<'a> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let sample = self.query(ONLINE_QUERY).await?;
            if sample.value == 1.0 {
                Ok(())
            } else {
                Err(MetricError::failed(format!(
                    "value is not 1 for query: {ONLINE_QUERY}"
                )))
            }
        })
    }
}

#[derive(Deserialize)]
struct Envelope {
    status: Option<String>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: Option<String>,
    result: Option<Json>,
}

/// Interprets one `/api/v1/query` answer.
pub fn parse_response(status: u16, body: &str) -> Result<Sample, MetricError> {
    let envelope: Result<Envelope, _> = serde_json::from_str(body);
    if status >= 400 {
        let detail = match &envelope {
            Ok(Envelope {
                error: Some(error),
                error_type,
                ..
            }) => match error_type {
                Some(t) => format!("{t}: {error}"),
                None => error.clone(),
            },
            _ => truncate(body),
        };
        return Err(MetricError::failed(format!(
            "error response (HTTP {status}): {detail}"
        )));
    }
    let envelope = envelope.map_err(|e| {
        MetricError::failed(format!(
            "error unmarshaling result: {e}, '{}'",
            truncate(body)
        ))
    })?;
    if envelope.status.as_deref() == Some("error") {
        let error = envelope.error.unwrap_or_else(|| "unknown error".into());
        let detail = match envelope.error_type {
            Some(t) => format!("{t}: {error}"),
            None => error,
        };
        return Err(MetricError::failed(format!("query error: {detail}")));
    }
    let data = envelope.data.ok_or_else(|| {
        MetricError::failed(format!("response has no data: '{}'", truncate(body)))
    })?;
    let result = data.result.unwrap_or(Json::Null);
    match data.result_type.as_deref() {
        Some("scalar") => scalar(&result).map(Sample::new),
        Some("matrix") => Err(MetricError::failed("more than one value returned")),
        Some("vector") | None => vector(&result),
        Some(other) => Err(MetricError::failed(format!(
            "unsupported result type {other:?}"
        ))),
    }
}

fn vector(result: &Json) -> Result<Sample, MetricError> {
    let items = match result {
        Json::Array(items) => items,
        Json::Null => return Err(MetricError::no_values("empty result")),
        other => {
            return Err(MetricError::failed(format!(
                "vector result is not a list: {other}"
            )));
        }
    };
    let Some(last) = items.last() else {
        return Err(MetricError::no_values("empty vector"));
    };
    if last.get("values").is_some() {
        return Err(MetricError::failed("more than one value returned"));
    }
    let pair = last
        .get("value")
        .ok_or_else(|| MetricError::failed(format!("sample without a value: {last}")))?;
    let value = scalar(pair)?;
    let mut sample = Sample::new(value);
    if items.len() > 1 {
        sample.warnings.push(format!(
            "query returned {} series, using the last one",
            items.len()
        ));
    }
    Ok(sample)
}

/// `[<unix time>, "<number>"]`.
fn scalar(pair: &Json) -> Result<f64, MetricError> {
    let text = pair
        .as_array()
        .filter(|p| p.len() == 2)
        .and_then(|p| p[1].as_str())
        .ok_or_else(|| MetricError::failed(format!("malformed sample {pair}")))?;
    let value = parse_go_float(text)
        .ok_or_else(|| MetricError::failed(format!("unparsable sample value {text:?}")))?;
    finite_or_no_data(value, "result")
}

/// Prometheus formats values with Go's strconv: `NaN`, `+Inf`, `-Inf`, or a decimal.
pub(crate) fn parse_go_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => {
            let looks_numeric = text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
            if looks_numeric && !text.is_empty() {
                text.parse().ok()
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bodies as Prometheus 2.x/3.x writes them (captured from /api/v1/query).
    const VECTOR_ONE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733076062.781,"99.54166666666667"]}]}}"#;
    const VECTOR_TWO: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"service":"test-podinfo-canary-80@kubernetescrd"},"value":[1733076062.781,"12"]},{"metric":{"service":"test-podinfo-primary-80@kubernetescrd"},"value":[1733076062.781,"34.5"]}]}}"#;
    const VECTOR_EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    const VECTOR_NAN: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733076062.781,"NaN"]}]}}"#;
    const VECTOR_INF: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733076062.781,"+Inf"]}]}}"#;
    const VECTOR_NEG_INF: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733076062.781,"-Inf"]}]}}"#;
    const SCALAR: &str =
        r#"{"status":"success","data":{"resultType":"scalar","result":[1733076062.781,"1"]}}"#;
    const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"prometheus"},"values":[[1733076000,"1"],[1733076015,"1"]]}]}}"#;
    const STRING_RESULT: &str =
        r#"{"status":"success","data":{"resultType":"string","result":[1733076062.781,"x"]}}"#;
    const BAD_DATA_400: &str = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:6: parse error: unexpected end of input"}"#;
    const TIMEOUT_503: &str = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
    const EXEC_422: &str = r#"{"status":"error","errorType":"execution","error":"many-to-many matching not allowed: matching labels must be unique on one side"}"#;
    const WARNINGS: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733076062.781,"0.25"]}]},"warnings":["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"x\""]}"#;

    #[test]
    fn vector_with_one_sample() {
        assert_eq!(
            parse_response(200, VECTOR_ONE).unwrap(),
            Sample::new(99.54166666666667)
        );
        assert_eq!(parse_response(200, WARNINGS).unwrap().value, 0.25);
    }

    #[test]
    fn vector_with_several_samples_uses_the_last_and_warns() {
        let s = parse_response(200, VECTOR_TWO).unwrap();
        assert_eq!(s.value, 34.5);
        assert_eq!(
            s.warnings,
            vec!["query returned 2 series, using the last one"]
        );
    }

    #[test]
    fn empty_vector_and_nan_are_no_data() {
        let e = parse_response(200, VECTOR_EMPTY).unwrap_err();
        assert!(e.is_no_values(), "{e:?}");
        assert_eq!(e.to_string(), "no values found: empty vector");
        let e = parse_response(200, VECTOR_NAN).unwrap_err();
        assert!(e.is_no_values(), "{e:?}");
    }

    #[test]
    fn infinities_are_values() {
        assert_eq!(
            parse_response(200, VECTOR_INF).unwrap().value,
            f64::INFINITY
        );
        assert_eq!(
            parse_response(200, VECTOR_NEG_INF).unwrap().value,
            f64::NEG_INFINITY
        );
    }

    #[test]
    fn scalar_is_accepted() {
        assert_eq!(parse_response(200, SCALAR).unwrap(), Sample::new(1.0));
    }

    #[test]
    fn matrix_and_string_are_errors() {
        let e = parse_response(200, MATRIX).unwrap_err();
        assert_eq!(e, MetricError::failed("more than one value returned"));
        assert!(
            !parse_response(200, STRING_RESULT)
                .unwrap_err()
                .is_no_values()
        );
    }

    #[test]
    fn http_errors_carry_the_backend_message() {
        let e = parse_response(400, BAD_DATA_400).unwrap_err();
        assert!(!e.is_no_values());
        assert_eq!(
            e.to_string(),
            "error response (HTTP 400): bad_data: invalid parameter \"query\": 1:6: parse error: unexpected end of input"
        );
        let e = parse_response(503, TIMEOUT_503).unwrap_err();
        assert!(e.to_string().contains("timeout: query timed out"), "{e}");
        let e = parse_response(422, EXEC_422).unwrap_err();
        assert!(e.to_string().contains("HTTP 422"), "{e}");
        let e = parse_response(502, "<html><body>Bad Gateway</body></html>").unwrap_err();
        assert_eq!(
            e.to_string(),
            "error response (HTTP 502): <html><body>Bad Gateway</body></html>"
        );
    }

    #[test]
    fn status_error_with_200_is_a_failure() {
        let e = parse_response(200, BAD_DATA_400).unwrap_err();
        assert!(e.to_string().starts_with("query error: bad_data:"), "{e}");
    }

    #[test]
    fn garbage_is_a_failure() {
        for body in [
            "not json",
            "",
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,2]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}"#,
        ] {
            let e = parse_response(200, body).unwrap_err();
            assert!(!e.is_no_values(), "{body}: {e:?}");
        }
    }

    #[test]
    fn go_floats() {
        assert_eq!(parse_go_float("1e3"), Some(1000.0));
        assert_eq!(parse_go_float("-0.5"), Some(-0.5));
        assert_eq!(parse_go_float("inf"), None);
        assert_eq!(parse_go_float("infinity"), None);
        assert!(parse_go_float("NaN").is_some_and(f64::is_nan));
    }

    #[test]
    fn endpoint_keeps_path_prefix() {
        assert_eq!(
            query_endpoint("http://prom:9090").unwrap().as_str(),
            "http://prom:9090/api/v1/query"
        );
        assert_eq!(
            query_endpoint("https://example.com/prometheus/")
                .unwrap()
                .as_str(),
            "https://example.com/prometheus/api/v1/query"
        );
        assert!(query_endpoint("").is_err());
        assert!(query_endpoint("prom:9090").is_err());
        assert!(query_endpoint("not a url").is_err());
    }

    #[test]
    fn secret_keys() {
        let secret = |pairs: &[(&str, &str)]| -> SecretData {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(auth_from_secret(None).unwrap(), Auth::None);
        assert_eq!(
            auth_from_secret(Some(&secret(&[("token", "t"), ("username", "u")]))).unwrap(),
            Auth::Bearer("t".into())
        );
        assert_eq!(
            auth_from_secret(Some(&secret(&[("username", "u"), ("password", "p")]))).unwrap(),
            Auth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let e = auth_from_secret(Some(&secret(&[("username", "u")]))).unwrap_err();
        assert!(e.to_string().contains("password"), "{e}");
        let e = auth_from_secret(Some(&secret(&[]))).unwrap_err();
        assert!(e.to_string().contains("username"), "{e}");
    }
}
