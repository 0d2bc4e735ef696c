//! Calling a canary's webhooks with Flagger's payload and HTTP semantics.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use flagger_api::Canary;
use flagger_api::analysis::{CanaryWebhook, SecretKeyRef};
use flagger_providers::metrics::{read_prefix, truncate};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde::Serialize;

use crate::context::Context;
use crate::redact::redact;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of a failed hook's answer read; more than the excerpt an Event keeps, so the excerpt
/// can say how long the answer was up to this size.
const MAX_BODY: usize = 64 * 1024;

/// Calls a canary's hook with the token its `bearerTokenSecretRef` names, read from the canary's
/// namespace; a token that cannot be read fails the hook, saying why.
pub async fn call(
    ctx: &Context,
    canary: &Canary,
    hook: &CanaryWebhook,
    payload: &Payload,
) -> Result<(), String> {
    let token = match &hook.bearer_token_secret_ref {
        Some(secret_ref) => Some(token(ctx, canary, secret_ref).await?),
        None => None,
    };
    let backend = crate::outbound::backend_of(&hook.url);
    ctx.outbound
        .run(&backend, ctx.webhooks.call(hook, payload, token.as_deref()))
        .await
}

/// The hook's bearer token from its Secret in the canary's namespace, or the text saying why
/// there is none.
pub async fn token(
    ctx: &Context,
    canary: &Canary,
    secret_ref: &SecretKeyRef,
) -> Result<String, String> {
    let namespace = canary.namespace().unwrap_or_default();
    let id = format!("{}.{namespace}", secret_ref.name);
    let secret = ctx
        .cache
        .get::<Secret>(&ctx.client, &namespace, &secret_ref.name)
        .await
        .map_err(|e| format!("Secret {id} could not be read: {e}"))?
        .ok_or_else(|| format!("Secret {id} not found"))?;
    let value = secret
        .data
        .and_then(|mut data| data.remove(&secret_ref.key))
        .ok_or_else(|| format!("Secret {id} has no key {:?}", secret_ref.key))?;
    String::from_utf8(value.0)
        .map(|t| t.trim().to_string())
        .map_err(|_| format!("Secret {id} key {:?} is not UTF-8 text", secret_ref.key))
}

/// The body every webhook receives.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Payload {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub checksum: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Values for the placeholders in webhook metadata.
#[derive(Clone, Debug, Default)]
pub struct Placeholders {
    pub canary_weight: u32,
    pub iteration: i32,
    pub failed_checks: i32,
    pub target: String,
}

/// Replaces the fixed placeholders (whitespace inside the braces optional); any other `{{ … }}`
/// text is left alone so Go-template commands handed to the loadtester keep working.
pub fn substitute(text: &str, payload: &Payload, values: &Placeholders) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = after[..end].trim();
        let value = match key {
            "canaryWeight" => Some(values.canary_weight.to_string()),
            "primaryWeight" => Some((100 - values.canary_weight.min(100)).to_string()),
            "iteration" => Some(values.iteration.to_string()),
            "failedChecks" => Some(values.failed_checks.to_string()),
            "phase" => Some(payload.phase.clone()),
            "name" => Some(payload.name.clone()),
            "namespace" => Some(payload.namespace.clone()),
            "target" => Some(values.target.clone()),
            "checksum" => Some(payload.checksum.clone()),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// HTTP clients for hooks: one verifying certificates, one for `disableTLS: true`.
#[derive(Clone)]
pub struct Caller {
    verified: reqwest::Client,
    unverified: reqwest::Client,
}

impl Caller {
    pub fn new() -> Result<Caller, reqwest::Error> {
        flagger_providers::metrics::install_crypto_provider();
        Ok(Caller {
            verified: reqwest::Client::builder().build()?,
            unverified: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()?,
        })
    }

    /// Calls one hook: `Ok` on 200, 201 or 202; otherwise (an excerpt of) the response body or
    /// the transport error, with `token` removed from it. `retries` extra attempts on connection
    /// errors, 429 and 5xx other than 501. `token` is sent as `Authorization: Bearer`.
    pub async fn call(
        &self,
        hook: &CanaryWebhook,
        payload: &Payload,
        token: Option<&str>,
    ) -> Result<(), String> {
        self.attempts(hook, payload, token)
            .await
            .map_err(|message| redact(&message, token))
    }

    async fn attempts(
        &self,
        hook: &CanaryWebhook,
        payload: &Payload,
        token: Option<&str>,
    ) -> Result<(), String> {
        let client = if hook.disable_tls == Some(true) {
            &self.unverified
        } else {
            &self.verified
        };
        let timeout = timeout_of(hook);
        let retries = hook
            .retries
            .as_ref()
            .and_then(|r| r.integer())
            .unwrap_or(0)
            .clamp(0, 10) as usize;
        let attempt = || async {
            let mut request = client.post(&hook.url).timeout(timeout).json(payload);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request
                .send()
                .await
                .map_err(|e| Failure::Retriable(transport_error(&e)))?;
            let status = response.status().as_u16();
            if matches!(status, 200..=202) {
                return Ok(());
            }
            // The body becomes an Event message: only its beginning is read (the request's
            // timeout bounds the time), and only an excerpt of that is kept.
            let body = read_prefix(response, MAX_BODY)
                .await
                .map(|prefix| String::from_utf8_lossy(&prefix.bytes).into_owned())
                .unwrap_or_default();
            let message = if body.trim().is_empty() {
                format!("{} returned HTTP {status}", hook.url)
            } else {
                truncate(&body)
            };
            if status == 429 || (status >= 500 && status != 501) {
                Err(Failure::Retriable(message))
            } else {
                Err(Failure::Final(message))
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(retries);
        attempt
            .retry(backoff)
            .when(|f: &Failure| matches!(f, Failure::Retriable(_)))
            .await
            .map_err(|f| match f {
                Failure::Retriable(m) if retries > 0 => {
                    format!("{m} (giving up after {} attempt(s))", retries + 1)
                }
                Failure::Retriable(m) | Failure::Final(m) => m,
            })
    }
}

enum Failure {
    Retriable(String),
    Final(String),
}

fn timeout_of(hook: &CanaryWebhook) -> Duration {
    hook.timeout
        .as_deref()
        .filter(|t| t.len() >= 2)
        .and_then(|t| flagger_api::duration::parse(t).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// reqwest's Display omits the cause ("error sending request"); the chain says what happened.
fn transport_error(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;

    fn payload() -> Payload {
        Payload {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: "Progressing".into(),
            checksum: "abc".into(),
            metadata: None,
        }
    }

    #[test]
    fn placeholders_are_substituted_and_other_braces_kept() {
        let values = Placeholders {
            canary_weight: 30,
            iteration: 2,
            failed_checks: 1,
            target: "podinfo".into(),
        };
        let text = r#"if [ "{{ canaryWeight }}" -eq 30 ]; then echo {{primaryWeight}} {{ iteration }} {{failedChecks}} {{ phase }} {{ name }}.{{ namespace }} {{ target }} {{ checksum }}; fi; kubectl -o go-template='{{.metadata.name}}'"#;
        assert_eq!(
            substitute(text, &payload(), &values),
            r#"if [ "30" -eq 30 ]; then echo 70 2 1 Progressing podinfo.test podinfo abc; fi; kubectl -o go-template='{{.metadata.name}}'"#
        );
        assert_eq!(
            substitute("unclosed {{ name", &payload(), &values),
            "unclosed {{ name"
        );
    }

    #[test]
    fn payload_has_flaggers_shape() {
        let mut p = payload();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "abc"})
        );
        p.metadata = Some([("cmd".to_string(), "hey".to_string())].into());
        assert_eq!(serde_json::to_value(&p).unwrap()["metadata"]["cmd"], "hey");
    }

    #[test]
    fn short_or_missing_timeouts_mean_ten_seconds() {
        let hook = |t: Option<&str>| CanaryWebhook {
            timeout: t.map(String::from),
            ..Default::default()
        };
        assert_eq!(timeout_of(&hook(None)), DEFAULT_TIMEOUT);
        assert_eq!(timeout_of(&hook(Some("5"))), DEFAULT_TIMEOUT);
        assert_eq!(timeout_of(&hook(Some("30s"))), Duration::from_secs(30));
    }

    async fn serve(statuses: Vec<u16>) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = Router::new().route(
            "/",
            post(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let status = statuses.get(n).or(statuses.last()).copied().unwrap_or(200);
                async move {
                    (
                        StatusCode::from_u16(status).unwrap(),
                        format!("answer {status}"),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls)
    }

    fn hook(url: &str, retries: i64) -> CanaryWebhook {
        CanaryWebhook {
            name: "h".into(),
            url: url.into(),
            retries: Some(retries.into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn success_codes_and_failure_bodies() {
        let caller = Caller::new().unwrap();
        for (status, ok) in [
            (200, true),
            (201, true),
            (202, true),
            (204, false),
            (403, false),
        ] {
            let (url, _) = serve(vec![status]).await;
            let result = caller.call(&hook(&url, 0), &payload(), None).await;
            assert_eq!(result.is_ok(), ok, "HTTP {status}: {result:?}");
            match (ok, status) {
                (true, _) => {}
                // 204 has no body, so the message names the status instead.
                (false, 204) => assert!(result.unwrap_err().ends_with("returned HTTP 204")),
                (false, _) => assert_eq!(result.unwrap_err(), format!("answer {status}")),
            }
        }
    }

    #[tokio::test]
    async fn retries_only_what_may_succeed_later() {
        let caller = Caller::new().unwrap();
        let (url, calls) = serve(vec![503, 200]).await;
        assert!(caller.call(&hook(&url, 2), &payload(), None).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let (url, calls) = serve(vec![501]).await;
        assert!(caller.call(&hook(&url, 2), &payload(), None).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "501 is final");

        let (url, calls) = serve(vec![400]).await;
        assert!(caller.call(&hook(&url, 2), &payload(), None).await.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "4xx other than 429 is final"
        );
    }

    #[tokio::test]
    async fn the_token_is_sent_and_never_comes_back_in_the_message() {
        // Echoes the Authorization header it received inside an error page far longer than an
        // Event message may be.
        let app = Router::new().route(
            "/",
            post(|headers: axum::http::HeaderMap| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_string();
                let page = format!("denied, you sent {auth}\n{}", "x".repeat(1 << 20));
                (StatusCode::FORBIDDEN, page)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let caller = Caller::new().unwrap();
        let error = caller
            .call(&hook(&url, 0), &payload(), Some("tok-3141"))
            .await
            .unwrap_err();
        assert!(
            error.starts_with("denied, you sent Bearer [redacted]"),
            "{}",
            &error[..80]
        );
        assert!(!error.contains("tok-3141"));
        assert!(error.len() < 2048, "{} bytes kept", error.len());
    }

    #[tokio::test]
    async fn connection_errors_say_what_happened() {
        let caller = Caller::new().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let error = caller
            .call(&hook(&url, 0), &payload(), None)
            .await
            .unwrap_err();
        assert!(error.to_lowercase().contains("connect"), "{error}");
    }
}
