//! `insecureSkipVerify` for the SaaS providers: a TLS receiver whose certificate no root signs.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use super::receiver::{Answer, PATH, Receiver};
use super::vendors::{config, secret};
use crate::metrics::cloudwatch::CloudWatchProvider;
use crate::metrics::splunk::SplunkProvider;
use crate::metrics::stackdriver::StackdriverProvider;
use crate::metrics::{MetricError, MetricProvider, install_crypto_provider};

const CERT: &[u8] = include_bytes!("fixtures/tls/server-cert.pem");
const KEY: &[u8] = include_bytes!("fixtures/tls/server-key.pem");

/// An HTTPS server on 127.0.0.1 answering every request with `body`, one request per
/// connection.
async fn self_signed(body: &'static str) -> String {
    install_crypto_provider();
    let certs = CertificateDer::pem_slice_iter(CERT)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if read_request(&mut tls).await.is_none() {
                    return;
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

/// Reads one request (head and `content-length` body); `None` if the client went away.
async fn read_request(tls: &mut (impl AsyncReadExt + Unpin)) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tls.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return Some(());
        }
    }
}

async fn strict_then_insecure<P: MetricProvider>(
    make: impl Fn(bool) -> P,
    query: &str,
) -> (MetricError, f64) {
    let strict = make(false)
        .run_query(query, Duration::from_secs(60))
        .await
        .unwrap_err();
    let value = make(true)
        .run_query(query, Duration::from_secs(60))
        .await
        .unwrap()
        .value;
    (strict, value)
}

fn assert_refused_certificate(e: &MetricError) {
    assert!(!e.is_no_values());
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
}

#[tokio::test]
async fn insecure_skip_verify_reaches_a_self_signed_server() {
    let timeout = Duration::from_secs(5);

    let url = self_signed(include_str!("fixtures/cloudwatch/get_metric_data.json")).await;
    let s = secret(&[("aws_access_key_id", "a"), ("aws_secret_access_key", "s")]);
    let (e, v) = strict_then_insecure(
        |insecure| {
            CloudWatchProvider::with_timeout(
                &config(Some(&url), Some(&s), insecure),
                Some("eu-west-1"),
                |_| None,
                timeout,
            )
            .unwrap()
        },
        r#"[{"Id": "e1", "Expression": "1"}]"#,
    )
    .await;
    assert_refused_certificate(&e);
    assert_eq!(v, 0.0125);

    let url = self_signed(include_str!("fixtures/splunk/one_series.sse")).await;
    let s = secret(&[("sf_token_key", "t")]);
    let (e, v) = strict_then_insecure(
        |insecure| {
            SplunkProvider::with_timeout(&config(Some(&url), Some(&s), insecure), timeout).unwrap()
        },
        "data('x').publish()",
    )
    .await;
    assert_refused_certificate(&e);
    assert_eq!(v, 0.0175);

    // The token comes from a plain-HTTP metadata server; the API is the self-signed one.
    let metadata = Receiver::start(
        PATH,
        &[(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            Answer::Body(200, include_str!("fixtures/stackdriver/token.json")),
        )],
        Answer::Body(404, "not found"),
    )
    .await;
    let host = metadata.addr.to_string();
    let url = self_signed(include_str!("fixtures/stackdriver/query_response.json")).await;
    let s = secret(&[("project", "my-project")]);
    let (e, v) = strict_then_insecure(
        |insecure| {
            StackdriverProvider::with_timeout(
                &config(Some(&url), Some(&s), insecure),
                |k| (k == "GCE_METADATA_HOST").then(|| host.clone()),
                timeout,
            )
            .unwrap()
        },
        "fetch x",
    )
    .await;
    assert_refused_certificate(&e);
    assert_eq!(v, 0.0125);
}
