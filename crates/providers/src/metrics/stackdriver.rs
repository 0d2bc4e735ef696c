//! Google Cloud Monitoring (Stackdriver): an MQL query through `projects.timeSeries.query`,
//! authorised with an OAuth2 access token.
//!
//! The token comes from a service-account key (a JWT signed RS256 with the key, exchanged at the
//! key's `token_uri`): the Secret's `serviceAccountKey`, else the key file named by
//! `GOOGLE_APPLICATION_CREDENTIALS`; without either, from the GKE/GCE metadata server (workload
//! identity), as Google's application default credentials do.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::factory::{ProviderConfigError, VendorConfig};
use super::http::{
    base_address, check_status, decode, online_unless_refused, send, truncate, unix_now,
};
use super::{MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, finite_or_no_data};

pub const DEFAULT_ADDRESS: &str = "https://monitoring.googleapis.com";
pub const SCOPE: &str = "https://www.googleapis.com/auth/monitoring.read";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const METADATA_HOST: &str = "metadata.google.internal";
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const TIMEOUT: Duration = Duration::from_secs(5);
/// Signed assertions live one hour, the longest Google accepts.
const ASSERTION_LIFETIME: u64 = 3600;
/// A token this close to expiry is replaced rather than used.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The fields of a service-account key file that the token exchange needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// Where access tokens come from.
enum TokenSource {
    Key {
        key: ServiceAccountKey,
        signer: jsonwebtoken::EncodingKey,
    },
    /// The metadata server's base URL (`GCE_METADATA_HOST` overrides the host, as in Google's
    /// libraries).
    Metadata(String),
}

/// The claims of the JWT-bearer assertion (RFC 7523, Google's service-account flow).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub scope: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

pub struct StackdriverProvider {
    query_url: String,
    source: TokenSource,
    token: Mutex<Option<(String, Instant)>>,
    client: reqwest::Client,
}

impl std::fmt::Debug for StackdriverProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackdriverProvider")
            .field("query_url", &self.query_url)
            .finish_non_exhaustive()
    }
}

impl StackdriverProvider {
    pub fn new(config: &VendorConfig) -> Result<Self, ProviderConfigError> {
        Self::with_timeout(config, |k| std::env::var(k).ok(), TIMEOUT)
    }

    /// Like [`StackdriverProvider::new`] with the environment and timeout given.
    pub fn with_timeout(
        config: &VendorConfig,
        env: impl Fn(&str) -> Option<String>,
        timeout: Duration,
    ) -> Result<Self, ProviderConfigError> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        if config.secret.is_none() {
            return Err(ProviderConfigError(
                "stackdriver needs a secretRef whose Secret names the project (key \"project\")"
                    .into(),
            ));
        }
        let project = config.required("stackdriver", "project")?;
        let address = base_address("stackdriver", config.address, Some(DEFAULT_ADDRESS))?;
        let key_json = match (
            config.optional("serviceAccountKey")?,
            var("GOOGLE_APPLICATION_CREDENTIALS"),
        ) {
            (Some(json), _) => Some(json),
            (None, Some(path)) => Some(std::fs::read_to_string(&path).map_err(|e| {
                ProviderConfigError(format!(
                    "reading GOOGLE_APPLICATION_CREDENTIALS {path}: {e}"
                ))
            })?),
            (None, None) => None,
        };
        let source = match key_json {
            Some(json) => {
                let key: ServiceAccountKey = serde_json::from_str(&json).map_err(|e| {
                    ProviderConfigError(format!(
                        "serviceAccountKey is not a service-account key: {e}"
                    ))
                })?;
                let signer = jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes())
                    .map_err(|e| {
                        ProviderConfigError(format!("serviceAccountKey private_key: {e}"))
                    })?;
                TokenSource::Key { key, signer }
            }
            None => TokenSource::Metadata(format!(
                "http://{}",
                var("GCE_METADATA_HOST").as_deref().unwrap_or(METADATA_HOST)
            )),
        };
        Ok(StackdriverProvider {
            query_url: format!("{address}/v3/projects/{project}/timeSeries:query"),
            source,
            token: Mutex::new(None),
            client: config.client(timeout)?,
        })
    }

    async fn access_token(&self) -> Result<String, MetricError> {
        if let Ok(cached) = self.token.lock()
            && let Some((token, expires)) = cached.as_ref()
            && Instant::now() + EXPIRY_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        let req = match &self.source {
            TokenSource::Key { key, signer } => {
                let assertion = assertion(key, signer, unix_now().as_secs())?;
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", JWT_BEARER)
                    .append_pair("assertion", &assertion)
                    .finish();
                self.client
                    .post(&key.token_uri)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form)
            }
            TokenSource::Metadata(base) => self
                .client
                .get(format!("{base}{METADATA_TOKEN_PATH}"))
                .header("Metadata-Flavor", "Google"),
        };
        let (status, body) = send(req).await?;
        let token = parse_token(status, &body)?;
        let expires = Instant::now() + Duration::from_secs(token.expires_in);
        if let Ok(mut cached) = self.token.lock() {
            *cached = Some((token.access_token.clone(), expires));
        }
        Ok(token.access_token)
    }

    async fn query(&self, mql: &str) -> Result<(u16, String), MetricError> {
        let token = self.access_token().await?;
        send(
            self.client
                .post(&self.query_url)
                .bearer_auth(token)
                .json(&json!({ "query": mql })),
        )
        .await
    }
}

/// The signed JWT-bearer assertion for `key`, issued at `now` (Unix seconds).
pub fn assertion(
    key: &ServiceAccountKey,
    signer: &jsonwebtoken::EncodingKey,
    now: u64,
) -> Result<String, MetricError> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = key.private_key_id.clone();
    let claims = Claims {
        iss: key.client_email.clone(),
        scope: SCOPE.to_string(),
        aud: key.token_uri.clone(),
        iat: now,
        exp: now + ASSERTION_LIFETIME,
    };
    jsonwebtoken::encode(&header, &claims, signer)
        .map_err(|e| MetricError::failed(format!("signing the token request: {e}")))
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
}

fn default_expiry() -> u64 {
    ASSERTION_LIFETIME
}

/// An OAuth error answer says `error` and `error_description`; both are worth showing.
fn parse_token(status: u16, body: &str) -> Result<Token, MetricError> {
    if status >= 400 {
        let detail = serde_json::from_str::<Json>(body)
            .ok()
            .and_then(|j| {
                let error = j["error"].as_str()?.to_string();
                Some(match j["error_description"].as_str() {
                    Some(d) => format!("{error}: {d}"),
                    None => error,
                })
            })
            .unwrap_or_else(|| truncate(body));
        return Err(MetricError::failed(format!(
            "error getting a stackdriver access token (HTTP {status}): {detail}"
        )));
    }
    serde_json::from_str(body)
        .map_err(|e| MetricError::failed(format!("unreadable access token answer: {e}")))
}

impl MetricProvider for StackdriverProvider {
    fn kind(&self) -> &'static str {
        "stackdriver"
    }

    fn run_query<'a>(&'a self, query: &'a str, _interval: Duration) -> QueryFuture<'a> {
        Box::pin(async move {
            let (status, body) = self.query(query).await?;
            parse_response(status, &body)
        })
    }

    /// An empty query: refused as invalid (400) once the token and the permission are good, as
    /// in Flagger.
    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let (status, body) = self.query("").await?;
            online_unless_refused("stackdriver", status, &body)
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryResponse {
    #[serde(default)]
    time_series_data: Vec<TimeSeriesData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeSeriesData {
    #[serde(default)]
    point_data: Vec<PointData>,
}

#[derive(Deserialize)]
struct PointData {
    #[serde(default)]
    values: Vec<Json>,
}

/// The first value of the first point of the first time series (the newest point: MQL returns
/// points newest first).
pub fn parse_response(status: u16, body: &str) -> Result<Sample, MetricError> {
    check_status("error requesting stackdriver", status, body)?;
    let resp: QueryResponse = decode("stackdriver", body)?;
    let value = resp
        .time_series_data
        .first()
        .ok_or_else(|| MetricError::no_values("no time series"))?
        .point_data
        .first()
        .ok_or_else(|| MetricError::no_values("no points"))?
        .values
        .first()
        .ok_or_else(|| MetricError::no_values("no values in the first point"))?;
    // int64 values travel as JSON strings (proto3 JSON mapping).
    let number = if let Some(d) = value.get("doubleValue") {
        d.as_f64()
            .or_else(|| d.as_str().and_then(|s| s.parse().ok()))
    } else if let Some(i) = value.get("int64Value") {
        i.as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .or_else(|| i.as_i64())
            .map(|i| i as f64)
    } else {
        return Err(MetricError::failed(format!(
            "unsupported value type {value} (want doubleValue or int64Value)"
        )));
    };
    let number = number.ok_or_else(|| MetricError::failed(format!("unreadable value {value}")))?;
    finite_or_no_data(number, "value").map(Sample::new)
}
