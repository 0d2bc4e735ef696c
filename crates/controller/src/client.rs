//! The controller's Kubernetes client, built as Flagger builds its own: `-kubeconfig` (else the
//! in-cluster config or `KUBECONFIG`), `-master` overriding the server address, and
//! `-kubeconfig-qps`/`-kubeconfig-burst` as a client-side rate limit on every request.

use kube::client::ClientBuilder;
use kube::{Client, Config};

use crate::flags::Flags;
use crate::metrics::Metrics;
use crate::ratelimit::{ClientRate, RateLimitLayer};
use crate::run::RunError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl From<ClientError> for RunError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Config(message) => RunError::Config(message),
            ClientError::Kube(e) => RunError::Client(e),
        }
    }
}

/// The client; every request it sends is counted and timed in `metrics`.
pub async fn build(flags: &Flags, metrics: &Metrics) -> Result<Client, ClientError> {
    let rate = ClientRate::from_flags(flags.kubeconfig_qps, flags.kubeconfig_burst)
        .map_err(ClientError::Config)?;
    with_rate(config(flags).await?, rate, metrics)
}

/// A client whose requests all go through one token bucket of `rate`.
pub fn with_rate(
    config: Config,
    rate: ClientRate,
    metrics: &Metrics,
) -> Result<Client, ClientError> {
    let layer = RateLimitLayer::new(rate, metrics.api_requests.clone(), metrics.timings.clone());
    Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

async fn config(flags: &Flags) -> Result<Config, ClientError> {
    let config_error = |e: &dyn std::fmt::Display| ClientError::Config(e.to_string());
    let mut config = if flags.kubeconfig.is_empty() {
        Config::infer().await.map_err(|e| config_error(&e))?
    } else {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&flags.kubeconfig).map_err(|e| config_error(&e))?;
        Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| config_error(&e))?
    };
    if !flags.master.is_empty() {
        config.cluster_url = flags
            .master
            .parse()
            .map_err(|e| ClientError::Config(format!("-master {}: {e}", flags.master)))?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;
    use tokio::time::Instant;

    use super::*;

    /// A loopback API server that answers every request with an empty ConfigMap list and notes
    /// when (on tokio's clock) each request arrived.
    async fn api_server() -> (String, Arc<Mutex<Vec<Instant>>>) {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = arrivals.clone();
        let app = axum::Router::new().fallback(move || {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(Instant::now());
                axum::Json(serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": []
                }))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, arrivals)
    }

    fn client(url: &str, rate: ClientRate, metrics: &Metrics) -> Client {
        let config = Config::new(url.parse().unwrap());
        with_rate(config, rate, metrics).unwrap()
    }

    /// Time is tokio's paused clock: what is asserted is which request the bucket let through
    /// at which instant of that clock, never how fast anything ran.
    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_burst_wait_for_tokens_at_qps() {
        let (url, arrivals) = api_server().await;
        let (qps, burst) = (4u32, 3u32);
        let rate = ClientRate::Limited {
            qps: NonZeroU32::new(qps).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        };
        let metrics = Metrics::new(false);
        let api: Api<ConfigMap> = Api::namespaced(client(&url, rate, &metrics), "default");
        let start = Instant::now();
        let requests = 11u32;
        let lists = (0..requests).map(|_| {
            let api = api.clone();
            async move { api.list(&Default::default()).await.map(|_| ()) }
        });
        for result in futures::future::join_all(lists).await {
            result.unwrap();
        }
        let mut arrivals: Vec<Duration> = arrivals
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.duration_since(start))
            .collect();
        arrivals.sort();
        assert_eq!(arrivals.len(), requests as usize);
        // Request n (from 0) may leave once n + 1 tokens were available: the burst at once, then
        // one every 1/qps.
        let token_period = Duration::from_secs(1) / qps;
        for (n, arrived) in arrivals.iter().enumerate() {
            let earliest = token_period * (n as u32 + 1).saturating_sub(burst);
            assert!(
                *arrived >= earliest,
                "request {n} at {arrived:?}, before {earliest:?}"
            );
        }
        // And the bucket does not hold back more than it must: the last one leaves with the last
        // token, within one token period.
        let last = token_period * (requests - burst);
        assert!(
            arrivals[arrivals.len() - 1] < last + token_period,
            "{arrivals:?}"
        );
        // The queue stood still for a token from the first refusal to the last admission, and
        // every answer was timed.
        let waited = metrics.timings.api_budget_wait.get();
        assert!(
            waited >= (last - token_period).as_secs_f64() && waited <= last.as_secs_f64(),
            "waited {waited} s for tokens, the last token came at {last:?}"
        );
        let exposition = metrics.encode().unwrap();
        let timed = format!(
            "flagger_api_request_duration_seconds_count{{method=\"GET\",resource=\"configmaps\"}} {requests}"
        );
        assert!(exposition.contains(&timed), "{exposition}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_client_sends_everything_at_once() {
        let (url, arrivals) = api_server().await;
        let api: Api<ConfigMap> = Api::namespaced(
            client(&url, ClientRate::Unlimited, &Metrics::new(false)),
            "default",
        );
        let start = Instant::now();
        let lists = (0..20).map(|_| {
            let api = api.clone();
            async move { api.list(&Default::default()).await.map(|_| ()) }
        });
        for result in futures::future::join_all(lists).await {
            result.unwrap();
        }
        let arrivals = arrivals.lock().unwrap();
        assert_eq!(arrivals.len(), 20);
        assert!(
            arrivals
                .iter()
                .all(|t| t.duration_since(start) < Duration::from_millis(1))
        );
    }
}
