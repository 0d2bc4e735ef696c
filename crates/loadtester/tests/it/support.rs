use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::routing::any;
use flagger_loadtester::{AppState, Config};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Upper bound for any wait in these tests; a wait that hits it is a failure, not a retry.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Loadtester {
    pub url: String,
    pub state: Arc<AppState>,
    pub client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

pub async fn loadtester(config: Config) -> Result<Loadtester, Box<dyn std::error::Error>> {
    flagger_loadtester::install_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let state = AppState::new(config);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(flagger_loadtester::serve(
        listener,
        Arc::clone(&state),
        async {
            let _ = stopped.await;
        },
    ));
    Ok(Loadtester {
        url,
        state,
        client: reqwest::Client::builder().no_proxy().build()?,
        _stop: stop,
    })
}

pub fn payload(name: &str, metadata: Value) -> Value {
    json!({"name": name, "namespace": "test", "phase": "Progressing", "checksum": "r1", "metadata": metadata})
}

impl Loadtester {
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(u16, String), Box<dyn std::error::Error>> {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .timeout(WAIT)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// Waits until `n` background tasks have finished.
    pub async fn finished(&self, n: u64) -> TestResult {
        let mut rx = self.state.tasks.finished();
        tokio::time::timeout(WAIT, rx.wait_for(|done| *done >= n)).await??;
        Ok(())
    }
}

/// A target that counts requests; when `hold` is set it answers only once released.
/// What the target saw in its last request.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Target {
    pub url: String,
    last: Arc<Mutex<Seen>>,
    count: watch::Sender<u64>,
    release: watch::Sender<bool>,
    _stop: oneshot::Sender<()>,
}

#[derive(Clone)]
struct TargetState {
    last: Arc<Mutex<Seen>>,
    count: watch::Sender<u64>,
    release: watch::Receiver<bool>,
}

pub async fn target(hold: bool) -> Result<Target, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let count = watch::channel(0u64).0;
    let (release, release_rx) = watch::channel(!hold);
    let last = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new().fallback(any(hit)).with_state(TargetState {
        last: Arc::clone(&last),
        count: count.clone(),
        release: release_rx,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Target {
        url,
        last,
        count,
        release,
        _stop: stop,
    })
}

async fn hit(
    State(mut state): State<TargetState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let seen = Seen {
        method: method.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    *state.last.lock().unwrap_or_else(|p| p.into_inner()) = seen;
    state.count.send_modify(|n| *n += 1);
    let _ = state.release.wait_for(|open| *open).await;
    "ok"
}

impl Target {
    pub fn count(&self) -> u64 {
        *self.count.borrow()
    }

    pub async fn wait_count(&self, n: u64) -> TestResult {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(WAIT, rx.wait_for(|c| *c >= n)).await??;
        Ok(())
    }

    pub fn last(&self) -> Seen {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn release(&self) {
        self.release.send_replace(true);
    }
}
