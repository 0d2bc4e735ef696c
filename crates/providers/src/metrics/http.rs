//! The HTTP client shared by the metric backends.

use std::sync::Once;
use std::time::Duration;

use super::MetricError;
use super::factory::ProviderConfigError;

static CRYPTO: Once = Once::new();

/// reqwest is built with `rustls-no-provider`: the process must pick a crypto provider once
/// before the first TLS client is built.
pub fn install_crypto_provider() {
    CRYPTO.call_once(|| {
        // Err means another component installed one first; any installed provider will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    pub timeout: Option<Duration>,
    pub insecure_skip_verify: bool,
    /// Extra PEM CA bundle trusted in addition to the system roots.
    pub ca_pem: Option<Vec<u8>>,
}

pub fn client(options: &ClientOptions) -> Result<reqwest::Client, ProviderConfigError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(options.insecure_skip_verify)
        // Flagger's client follows no proxy settings beyond Go's defaults; keep requests direct
        // and predictable for in-cluster addresses.
        .connect_timeout(options.timeout.unwrap_or(Duration::from_secs(5)));
    if let Some(t) = options.timeout {
        builder = builder.timeout(t);
    }
    if let Some(pem) = &options.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ProviderConfigError(format!("invalid CA bundle: {e}")))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ProviderConfigError(format!("building the HTTP client: {e}")))
}

/// The vendor's base address (`default` when the template gives none) without trailing
/// slashes, refused unless it is a URL.
pub fn base_address<'a>(
    vendor: &str,
    address: Option<&'a str>,
    default: Option<&'a str>,
) -> Result<&'a str, ProviderConfigError> {
    let address = address
        .or(default)
        .ok_or_else(|| ProviderConfigError(format!("{vendor} address is required")))?
        .trim_end_matches('/');
    url::Url::parse(address).map_err(|_| {
        ProviderConfigError(format!("{vendor} address {address:?} is not a valid URL"))
    })?;
    Ok(address)
}

/// The client of a SaaS-style backend: a fixed timeout, the system roots only.
pub fn vendor_client(
    timeout: Duration,
    insecure_skip_verify: bool,
) -> Result<reqwest::Client, ProviderConfigError> {
    client(&ClientOptions {
        timeout: Some(timeout),
        insecure_skip_verify,
        ca_pem: None,
    })
}

/// An HTTP error status is a failed query, reported as `<what> (HTTP <status>): <message>`.
pub fn check_status(what: &str, status: u16, body: &str) -> Result<(), MetricError> {
    if status >= 400 {
        return Err(MetricError::failed(format!(
            "{what} (HTTP {status}): {}",
            error_message(body)
        )));
    }
    Ok(())
}

/// For probes that send a deliberately invalid request: a 400 means the backend authenticated
/// and authorised us and only refused the input, so it is up.
pub fn online_unless_refused(what: &str, status: u16, body: &str) -> Result<(), MetricError> {
    if status == 400 {
        return Ok(());
    }
    check_status(what, status, body)
}

/// A backend's JSON answer, or a failed query naming the vendor.
pub fn decode<T: serde::de::DeserializeOwned>(vendor: &str, body: &str) -> Result<T, MetricError> {
    serde_json::from_str(body)
        .map_err(|e| MetricError::failed(format!("error unmarshaling {vendor} response: {e}")))
}

/// Reads a response body, capping what a misbehaving backend can make us hold.
pub async fn read_body(resp: reqwest::Response) -> Result<(u16, String), MetricError> {
    const MAX_BODY: usize = 16 * 1024 * 1024;
    let prefix = read_prefix(resp, MAX_BODY)
        .await
        .map_err(|e| MetricError::failed(format!("error reading body: {}", describe(&e))))?;
    if !prefix.complete {
        return Err(MetricError::failed(format!(
            "response body is larger than {MAX_BODY} bytes"
        )));
    }
    Ok((
        prefix.status,
        String::from_utf8_lossy(&prefix.bytes).into_owned(),
    ))
}

/// At most the first `max` bytes of a response body.
pub struct BodyPrefix {
    pub status: u16,
    pub bytes: Vec<u8>,
    /// False when the body went on past `max` (the rest was not read).
    pub complete: bool,
}

/// Reads a body chunk by chunk and stops at `max` bytes, so an endless or huge answer costs at
/// most `max` bytes of memory (the time is bounded by the client's timeout).
pub async fn read_prefix(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<BodyPrefix, reqwest::Error> {
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = max - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(BodyPrefix {
                status,
                bytes,
                complete: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(BodyPrefix {
        status,
        bytes,
        complete: true,
    })
}

/// reqwest's top-level message hides the cause ("error sending request"); keep the chain.
pub fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "request timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = source {
        if depth >= 8 {
            break;
        }
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
        depth += 1;
    }
    out
}

/// Keeps error messages readable when a backend answers with a whole HTML page.
pub fn truncate(body: &str) -> String {
    const MAX: usize = 1024;
    let body = body.trim();
    if body.len() <= MAX {
        return body.to_string();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &body[..end], body.len())
}

/// Sends a request and reads the answer; transport failures become `QueryFailed`.
pub async fn send(req: reqwest::RequestBuilder) -> Result<(u16, String), MetricError> {
    let resp = req
        .send()
        .await
        .map_err(|e| MetricError::failed(format!("request failed: {}", describe(&e))))?;
    read_body(resp).await
}

/// The error text a JSON backend put in its answer, looking at the fields the vendors use
/// (`error`, `errors`, `message`, AWS's `Message`, `error.message`), else the body itself.
pub fn error_message(body: &str) -> String {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return truncate(body);
    };
    let pick = |v: &serde_json::Value| -> Option<String> {
        match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Array(items) if !items.is_empty() => Some(
                items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| i.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            serde_json::Value::Object(o) => o
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string),
            _ => None,
        }
    };
    ["error", "errors", "message", "Message"]
        .iter()
        .find_map(|k| json.get(*k).and_then(pick))
        .unwrap_or_else(|| truncate(body))
}

/// An `is_online` probe: the backend answered `req` with a success status.
pub async fn probe(what: &str, req: reqwest::RequestBuilder) -> Result<(), MetricError> {
    let (status, body) = send(req).await?;
    check_status(what, status, &body)
}

/// The look-back ending now, `windows` metric intervals long, as (from, to) since the Unix epoch.
/// Saturates: an interval too long to multiply reaches back to the epoch instead of panicking.
pub fn lookback(interval: Duration, windows: u32) -> (Duration, Duration) {
    let to = unix_now();
    (to.saturating_sub(interval.saturating_mul(windows)), to)
}

/// Seconds since the Unix epoch; a clock before 1970 is treated as the epoch.
pub fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose answer never ends: 1 KiB chunks for as long as the client reads.
    async fn endless() -> String {
        let chunk = axum::body::Bytes::from(vec![b'x'; 1024]);
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let chunk = chunk.clone();
                async move {
                    let stream = futures::stream::repeat_with(move || {
                        Ok::<_, std::io::Error>(chunk.clone())
                    });
                    axum::body::Body::from_stream(stream)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn an_endless_body_is_read_up_to_the_cap_only() {
        let url = endless().await;
        let client = vendor_client(Duration::from_secs(30), false).unwrap();
        let prefix = read_prefix(client.get(&url).send().await.unwrap(), 10_000)
            .await
            .unwrap();
        assert_eq!(prefix.bytes.len(), 10_000);
        assert!(!prefix.complete);
        let error = send(client.get(&url)).await.unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
    }
}
