//! Amazon CloudWatch: `GetMetricData` over the AWS JSON 1.0 protocol, signed with SigV4.
//!
//! The template's query is the `MetricDataQueries` array (as in Flagger); the window is ten
//! metric intervals back from now and the value is the first value of the first result, which
//! CloudWatch orders newest first.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::aws_credentials::CredentialSource;
use super::factory::{ProviderConfigError, VendorConfig};
use super::http::{base_address, check_status, decode, online_unless_refused, send, unix_now};
use super::{MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, finite_or_no_data};

const SERVICE: &str = "monitoring";
const TARGET: &str = "GraniteServiceVersion20100801.GetMetricData";
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
const TIMEOUT: Duration = Duration::from_secs(5);
const LOOKBACK_WINDOWS: u32 = 10;
const MAX_DATAPOINTS: u32 = 20;

#[derive(Debug)]
pub struct CloudWatchProvider {
    endpoint: String,
    region: String,
    credentials: CredentialSource,
    client: reqwest::Client,
}

impl CloudWatchProvider {
    /// `region` is `spec.provider.region`; the endpoint is the region's unless the template gives
    /// an address (a VPC endpoint, a FIPS endpoint, a test server).
    pub fn new(config: &VendorConfig, region: Option<&str>) -> Result<Self, ProviderConfigError> {
        Self::with_timeout(config, region, |k| std::env::var(k).ok(), TIMEOUT)
    }

    /// Like [`CloudWatchProvider::new`] with the environment and timeout given.
    pub fn with_timeout(
        config: &VendorConfig,
        region: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
        timeout: Duration,
    ) -> Result<Self, ProviderConfigError> {
        let region = region
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ProviderConfigError("cloudwatch region not specified".into()))?;
        let default = format!("https://{SERVICE}.{region}.amazonaws.com");
        let endpoint = base_address("cloudwatch", config.address, Some(&default))?.to_string();
        Ok(CloudWatchProvider {
            endpoint,
            region: region.to_string(),
            credentials: CredentialSource::from_config(config, region, env)?,
            client: config.client(timeout)?,
        })
    }

    async fn get_metric_data(&self, input: &Json) -> Result<(u16, String), MetricError> {
        let body = serde_json::to_vec(input)
            .map_err(|e| MetricError::failed(format!("encoding the request: {e}")))?;
        let url = format!("{}/", self.endpoint);
        let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
        let credentials = self.credentials.resolve(&self.client).await?;
        let signed = sign_headers(
            &credentials,
            &self.region,
            SERVICE,
            SystemTime::now(),
            ("POST", &url, &headers, &body),
        )
        .map_err(MetricError::failed)?;
        let mut req = self.client.post(&url).body(body);
        for (name, value) in headers.iter().copied().chain(signed.iter().map(as_pair)) {
            req = req.header(name, value);
        }
        send(req).await
    }
}

fn as_pair((k, v): &(String, String)) -> (&str, &str) {
    (k, v)
}

/// A request to sign: method, full URL, headers to sign, body.
pub type Unsigned<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [u8]);

/// The headers SigV4 adds (`authorization`, `x-amz-date`, `x-amz-security-token`).
pub fn sign_headers(
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
    (method, url, headers, body): Unsigned<'_>,
) -> Result<Vec<(String, String)>, String> {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing the request: {e}"))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("signing the request: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("signing the request: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The `GetMetricData` input: the user's queries over `[now − 10 × interval, now]`.
pub fn request_body(query: &str, interval: Duration, now: Duration) -> Result<Json, MetricError> {
    let queries: Json = serde_json::from_str(query)
        .map_err(|e| MetricError::failed(format!("error unmarshaling query: {e}")))?;
    let Json::Array(queries) = queries else {
        return Err(MetricError::failed(
            "error unmarshaling query: expected a JSON array of MetricDataQuery",
        ));
    };
    let end = now.as_secs();
    let start = end.saturating_sub(interval.saturating_mul(LOOKBACK_WINDOWS).as_secs());
    Ok(json!({
        "MetricDataQueries": queries.into_iter().map(canonical_keys).collect::<Vec<_>>(),
        "StartTime": start,
        "EndTime": end,
        "MaxDatapoints": MAX_DATAPOINTS,
    }))
}

/// The member names of `MetricDataQuery` and what it nests.
const MEMBERS: &[&str] = &[
    "Id",
    "MetricStat",
    "Metric",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Name",
    "Value",
    "Period",
    "Stat",
    "Unit",
    "Expression",
    "Label",
    "ReturnData",
    "AccountId",
];

/// Flagger decodes the query with Go's case-insensitive JSON field matching, so `"id"` works
/// there; the JSON protocol is case-sensitive, so known member names are written AWS's way.
fn canonical_keys(v: Json) -> Json {
    match v {
        Json::Object(o) => Json::Object(
            o.into_iter()
                .map(|(k, v)| {
                    let k = MEMBERS
                        .iter()
                        .find(|m| m.eq_ignore_ascii_case(&k))
                        .map_or(k, |m| m.to_string());
                    (k, canonical_keys(v))
                })
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.into_iter().map(canonical_keys).collect()),
        other => other,
    }
}

impl MetricProvider for CloudWatchProvider {
    fn kind(&self) -> &'static str {
        "cloudwatch"
    }

    fn run_query<'a>(&'a self, query: &'a str, interval: Duration) -> QueryFuture<'a> {
        Box::pin(async move {
            let input = request_body(query, interval, unix_now())?;
            let (status, body) = self.get_metric_data(&input).await?;
            parse_response(status, &body)
        })
    }

    /// An empty request: CloudWatch checks the signature and the permission before the input,
    /// so a validation error (400) means the credentials are good, as in Flagger.
    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let input = json!({"MetricDataQueries": [], "StartTime": 0, "EndTime": 0});
            let (status, body) = self.get_metric_data(&input).await?;
            online_unless_refused("cloudwatch", status, &body)
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Output {
    #[serde(default)]
    metric_data_results: Vec<MetricDataResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDataResult {
    #[serde(default)]
    values: Vec<f64>,
    status_code: Option<String>,
}

/// The first value of the first result.
pub fn parse_response(status: u16, body: &str) -> Result<Sample, MetricError> {
    check_status("error requesting cloudwatch", status, body)?;
    let out: Output = decode("cloudwatch", body)?;
    let result = out
        .metric_data_results
        .first()
        .ok_or_else(|| MetricError::no_values("no MetricDataResults"))?;
    let value = result.values.first().ok_or_else(|| {
        MetricError::no_values(format!(
            "first result has no values (StatusCode {})",
            result.status_code.as_deref().unwrap_or("absent")
        ))
    })?;
    finite_or_no_data(*value, "value").map(Sample::new)
}
