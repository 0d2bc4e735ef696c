//! Posting one JSON body: timeout, proxy, bounded retries, and errors that never carry a secret.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::NotifyError;
use super::secret::{SecretToken, SecretUrl, scrub};

/// Receiver bodies are quoted in errors; more than this is noise (and memory a hostile
/// receiver could make us hold).
const MAX_BODY: usize = 16 * 1024;

static CRYPTO: Once = Once::new();

/// reqwest is built with `rustls-no-provider` (kube brings `ring`; two providers make rustls
/// panic), so the process-wide provider must be installed before the first client is built.
/// Safe to call from anywhere, any number of times, including tests.
pub fn ensure_crypto_provider() {
    CRYPTO.call_once(|| {
        // Err only means another part of the process installed one first, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Timeouts and retry policy of alert deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// Per attempt, connect to last byte.
    pub timeout: Duration,
    /// Total attempts, including the first; retried only on 5xx (except 501) and 429.
    pub attempts: u32,
    pub min_backoff: Duration,
    /// Also caps a receiver's `Retry-After`, so one alert never holds a tick for long.
    pub max_backoff: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> DeliveryOptions {
        // Three attempts inside the < 5 s direct-alert budget for the common case (one blip).
        DeliveryOptions {
            timeout: Duration::from_secs(5),
            attempts: 3,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// A receiver's answer on success.
#[derive(Debug)]
pub(crate) struct Answer {
    pub body: String,
}

/// One HTTP client per notifier (the proxy is a client setting), plus what to scrub from errors.
pub(crate) struct Transport {
    client: reqwest::Client,
    options: DeliveryOptions,
    secrets: Vec<String>,
}

// `secrets` is the list of things never to print; the client's Debug is noise.
impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum AttemptError {
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    Transport(String),
}

impl AttemptError {
    fn retryable(&self) -> bool {
        match self {
            AttemptError::Status { status, .. } => {
                *status == 429 || (*status >= 500 && *status != 501)
            }
            // A timed-out POST may have been delivered; a second copy in the channel is worse
            // than the Warning event the caller records.
            AttemptError::Transport(_) => false,
        }
    }
}

impl Transport {
    pub fn new(
        proxy: Option<&SecretUrl>,
        options: DeliveryOptions,
        mut secrets: Vec<String>,
    ) -> Result<Transport, NotifyError> {
        ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(concat!("flagger-rs/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = proxy {
            secrets.extend(proxy.secret_parts());
            let p = reqwest::Proxy::all(proxy.expose().as_str())
                .map_err(|_| NotifyError::Config(format!("proxy {proxy} is not usable")))?;
            builder = builder.proxy(p);
        }
        let client = builder.build().map_err(|e| {
            NotifyError::Config(format!("HTTP client: {}", scrub(&chain(&e), &secrets)))
        })?;
        Ok(Transport {
            client,
            options,
            secrets,
        })
    }

    /// POSTs `body` as JSON; 2xx is success.
    pub async fn post(
        &self,
        url: &SecretUrl,
        body: Vec<u8>,
        bearer: Option<&SecretToken>,
    ) -> Result<Answer, NotifyError> {
        let auth = match bearer {
            Some(t) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                        NotifyError::Config(
                            "token contains characters not allowed in a header".into(),
                        )
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let attempts = AtomicU32::new(0);
        let once = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt(url, body.clone(), auth.clone()).await
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.options.min_backoff)
            .with_max_delay(self.options.max_backoff)
            .with_max_times(self.options.attempts.saturating_sub(1) as usize)
            .with_jitter();
        let max = self.options.max_backoff;
        let result = once
            .retry(backoff)
            .when(AttemptError::retryable)
            // `dur` is None once the retry budget is spent; keep it None so Retry-After never
            // extends the number of attempts.
            .adjust(|e, dur| {
                dur.map(|d| match e {
                    AttemptError::Status {
                        retry_after: Some(ra),
                        ..
                    } => (*ra).min(max),
                    _ => d,
                })
            })
            .await;
        let attempts = attempts.load(Ordering::Relaxed);
        result.map_err(|e| match e {
            AttemptError::Status { status, body, .. } => NotifyError::Status {
                endpoint: url.redacted(),
                status,
                body: scrub(&body, &self.secrets),
                attempts,
            },
            AttemptError::Transport(message) => NotifyError::Transport {
                endpoint: url.redacted(),
                message,
                attempts,
            },
        })
    }

    async fn attempt(
        &self,
        url: &SecretUrl,
        body: Vec<u8>,
        auth: Option<HeaderValue>,
    ) -> Result<Answer, AttemptError> {
        let mut req = self
            .client
            .post(url.expose().clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| AttemptError::Transport(self.describe(e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(resp).await;
        if (200..300).contains(&status) {
            Ok(Answer { body })
        } else {
            Err(AttemptError::Status {
                status,
                body: body.trim().to_owned(),
                retry_after,
            })
        }
    }

    /// reqwest's Display names the full URL; this keeps the cause and drops every secret.
    fn describe(&self, e: reqwest::Error) -> String {
        let kind = if e.is_timeout() {
            format!("timed out after {:?}", self.options.timeout)
        } else if e.is_connect() {
            "connection failed".to_owned()
        } else {
            "request failed".to_owned()
        };
        let detail = scrub(&chain(&e.without_url()), &self.secrets);
        if detail.is_empty() {
            kind
        } else {
            format!("{kind}: {detail}")
        }
    }
}

/// The error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    // Bounded: error chains are short, but a cycle must not hang the controller.
    for _ in 0..8 {
        let Some(s) = source else { break };
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

async fn read_limited(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    // Bounded by MAX_BODY: stops reading once enough was kept.
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_BODY.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
