//! Retries, timeouts, proxies, and secrets kept out of every error.

use std::time::Duration;

use flagger_api::status::CanaryPhase;

use super::receiver::{Answer, Receiver};
use crate::notify::*;

const SECRET_PATH: &str = "/services/T0SECRET/B0SECRET/XXXXTOPSECRETXXXX";

fn fast() -> DeliveryOptions {
    ensure_crypto_provider();
    DeliveryOptions {
        timeout: Duration::from_secs(5),
        attempts: 3,
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    }
}

fn provider(type_: ProviderType, address: &str) -> ResolvedProvider {
    ResolvedProvider {
        type_,
        address: SecretUrl::parse(address).unwrap(),
        token: None,
        proxy: None,
        channel: "general".into(),
        username: "flagger".into(),
        message_template: None,
    }
}

fn alert() -> Alert {
    Alert::new(
        "podinfo",
        "test",
        CanaryPhase::Progressing,
        Severity::Info,
        "hello",
    )
}

fn assert_no_secret(e: &NotifyError, secrets: &[&str]) {
    let shown = format!("{e} {e:?}");
    for s in secrets {
        assert!(!shown.contains(s), "{s:?} leaked into {shown:?}");
    }
}

#[tokio::test]
async fn retries_503_then_succeeds() {
    let mut rx = Receiver::start(vec![
        Answer::status(503, "busy"),
        Answer::status(503, "busy"),
    ])
    .await;
    let n = Slack::new(&provider(ProviderType::Slack, &rx.url("/hook")), fast()).unwrap();
    n.send(&alert()).await.unwrap();
    let requests = rx.drain();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|r| r.body == requests[0].body),
        "the same body each time"
    );
}

#[tokio::test]
async fn retries_are_bounded() {
    let mut rx = Receiver::start(vec![Answer::status(502, "bad gateway"); 10]).await;
    let n = Generic::new(&provider(ProviderType::Generic, &rx.url("/hook")), fast()).unwrap();
    let e = n.send(&alert()).await.unwrap_err();
    assert!(
        matches!(
            e,
            NotifyError::Status {
                status: 502,
                attempts: 3,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(rx.drain().len(), 3);
    assert_eq!(
        e.to_string(),
        format!(
            "http://{}/… answered HTTP 502 (attempts: 3): bad gateway",
            rx.addr
        )
    );
}

#[tokio::test]
async fn retries_429_honouring_a_capped_retry_after() {
    let mut throttled = Answer::status(429, "slow down");
    // An hour: the cap (max_backoff) keeps the test, and a real tick, short.
    throttled.headers.push(("retry-after", "3600".into()));
    let mut rx = Receiver::start(vec![throttled]).await;
    let n = Rocket::new(&provider(ProviderType::Rocket, &rx.url("/hook")), fast()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), n.send(&alert()))
        .await
        .expect("Retry-After is capped")
        .unwrap();
    assert_eq!(rx.drain().len(), 2);
}

#[tokio::test]
async fn client_errors_and_501_are_not_retried() {
    for status in [400, 403, 404, 501] {
        let mut rx = Receiver::start(vec![Answer::status(status, "no")]).await;
        let n = GChat::new(&provider(ProviderType::GChat, &rx.url("/hook")), fast()).unwrap();
        let e = n.send(&alert()).await.unwrap_err();
        assert_eq!(e.attempts(), 1, "{status}: {e}");
        assert_eq!(rx.drain().len(), 1, "{status}");
    }
}

#[tokio::test]
async fn secret_url_never_appears_in_status_errors() {
    // A receiver that echoes the URL back in its error page.
    let mut rx = Receiver::start(vec![Answer::status(
        400,
        &format!("invalid_token for {SECRET_PATH}"),
    )])
    .await;
    let url = rx.url(SECRET_PATH);
    let mut p = provider(ProviderType::Slack, &url);
    p.token = Some(SecretToken::new("xoxb-SECRET-TOKEN"));
    let n = ProviderNotifier::new(&p, fast()).unwrap();
    let e = n.notify(&alert()).await.result.unwrap_err();
    assert_no_secret(&e, &[SECRET_PATH, "TOPSECRET", "xoxb-SECRET-TOKEN", &url]);
    assert!(e.to_string().contains("HTTP 400"), "{e}");
    assert!(e.to_string().contains("[redacted]"), "{e}");
    let shown = format!("{n:?} {p:?}");
    assert!(
        !shown.contains("TOPSECRET") && !shown.contains("xoxb-SECRET"),
        "{shown}"
    );
    assert_eq!(rx.drain().len(), 1);
}

#[tokio::test]
async fn secret_url_never_appears_in_transport_errors() {
    // A port nothing listens on: bind, note the address, close.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{addr}{SECRET_PATH}?sig=QUERYSECRET");
    for type_ in [
        ProviderType::Slack,
        ProviderType::MsTeams,
        ProviderType::Discord,
        ProviderType::Generic,
    ] {
        let n = ProviderNotifier::new(&provider(type_, &url), fast()).unwrap();
        let e = n.notify(&alert()).await.result.unwrap_err();
        assert!(
            matches!(e, NotifyError::Transport { attempts: 1, .. }),
            "{type_}: {e}"
        );
        assert_no_secret(&e, &["TOPSECRET", "QUERYSECRET", "T0SECRET"]);
        assert!(e.to_string().contains(&format!("http://{addr}/…")), "{e}");
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    let mut hang = Answer::status(200, "");
    hang.hang = true;
    let mut rx = Receiver::start(vec![hang]).await;
    let opts = DeliveryOptions {
        timeout: Duration::from_millis(300),
        ..fast()
    };
    let n = Generic::new(&provider(ProviderType::Generic, &rx.url(SECRET_PATH)), opts).unwrap();
    let e = n.send(&alert()).await.unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_no_secret(&e, &["TOPSECRET"]);
    assert_eq!(
        rx.drain().len(),
        1,
        "a timeout is not retried: the first POST may have landed"
    );
}

#[tokio::test]
async fn slack_api_refusal_is_an_error() {
    let mut rx = Receiver::start(vec![Answer::status(
        200,
        r#"{"ok":false,"error":"channel_not_found"}"#,
    )])
    .await;
    let mut p = provider(ProviderType::Slack, &rx.url("/api/chat.postMessage"));
    p.token = Some(SecretToken::new("xoxb-1"));
    let e = Slack::new(&p, fast())
        .unwrap()
        .send(&alert())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, NotifyError::Refused { error, .. } if error == "channel_not_found"),
        "{e}"
    );
    assert_eq!(rx.drain().len(), 1);
}

#[tokio::test]
async fn proxy_receives_the_request() {
    let mut proxy = Receiver::start(vec![]).await;
    let mut p = provider(
        ProviderType::Slack,
        "http://alerts.example.invalid/services/A/B/C",
    );
    p.proxy = Some(SecretUrl::parse(&proxy.url("")).unwrap());
    Slack::new(&p, fast())
        .unwrap()
        .send(&alert())
        .await
        .unwrap();
    let r = proxy.next().await;
    assert_eq!(
        r.uri.host(),
        Some("alerts.example.invalid"),
        "absolute-form request through the proxy"
    );
    assert_eq!(r.uri.path(), "/services/A/B/C");
    assert_eq!(r.body["attachments"][0]["text"], "hello");
}

#[tokio::test]
async fn resolved_from_an_alert_provider_and_secret() {
    let mut rx = Receiver::start(vec![]).await;
    let spec = flagger_api::AlertProviderSpec {
        type_: "generic".into(),
        secret_ref: Some(flagger_api::metric_template::SecretRef {
            name: "hook".into(),
        }),
        ..Default::default()
    };
    let secret = std::collections::BTreeMap::from([
        ("address".to_owned(), rx.url("/from-secret")),
        ("token".to_owned(), "s3cr3t".to_owned()),
    ]);
    let p = resolve(&spec, Some(&secret)).unwrap().unwrap();
    let d = ProviderNotifier::new(&p, fast())
        .unwrap()
        .notify(&alert())
        .await;
    d.result.unwrap();
    let r = rx.next().await;
    assert_eq!(r.uri.path(), "/from-secret");
    assert_eq!(r.header("authorization"), Some("Bearer s3cr3t"));
}
