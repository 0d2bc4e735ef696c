//! The podinfo-like HTTP surface, answered as whichever pod owns the local address the connection came in on.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::{Extension, Json};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;

use crate::mesh_series::{self, PodSeries};
use crate::pods::{Index, PodView};

/// Longest `/delay/{s}` honoured, so clients with no timeout still finish.
const MAX_DELAY_S: u64 = 30;
/// Pods whose metrics are kept; older entries are dropped when pods go away.
const MAX_METRIC_PODS: usize = 4096;

#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub local: SocketAddr,
}

impl Connected<IncomingStream<'_, TcpListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        let local = stream
            .io()
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Conn { local }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReqLabels {
    method: String,
    path: String,
    status: String,
}

struct PodMetrics {
    registry: Registry,
    duration: Family<ReqLabels, Histogram>,
    total: Family<ReqLabels, Counter>,
    /// What a service mesh's proxy would have seen of the same requests.
    mesh: PodSeries,
}

impl PodMetrics {
    fn new() -> Self {
        let duration = Family::<ReqLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let total = Family::<ReqLabels, Counter>::default();
        let mut registry = Registry::default();
        // Same names as podinfo, which Flagger's docs and MetricTemplates query.
        registry.register(
            "http_request_duration_seconds",
            "Seconds spent serving HTTP requests.",
            duration.clone(),
        );
        registry.register(
            "http_requests",
            "The total number of HTTP requests.",
            total.clone(),
        );
        PodMetrics {
            registry,
            duration,
            total,
            mesh: PodSeries::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub index: Arc<RwLock<Arc<Index>>>,
    metrics: Arc<Mutex<HashMap<String, Arc<PodMetrics>>>>,
}

impl AppState {
    pub fn new() -> Self {
        AppState {
            index: Arc::new(RwLock::new(Arc::new(Index::default()))),
            metrics: Arc::default(),
        }
    }

    fn lookup(&self, ip: IpAddr) -> Option<Arc<PodView>> {
        let index = self.index.read().map(|g| Arc::clone(&g)).ok()?;
        index.by_ip.get(&ip).cloned()
    }

    fn pod_metrics(&self, pod: &PodView) -> Option<Arc<PodMetrics>> {
        let mut map = self.metrics.lock().ok()?;
        if !map.contains_key(&pod.uid) && map.len() >= MAX_METRIC_PODS {
            let live: std::collections::HashSet<String> = self
                .index
                .read()
                .map(|i| i.by_ip.values().map(|p| p.uid.clone()).collect())
                .unwrap_or_default();
            map.retain(|uid, _| live.contains(uid));
        }
        if map.len() >= MAX_METRIC_PODS {
            return None;
        }
        Some(Arc::clone(
            map.entry(pod.uid.clone())
                .or_insert_with(|| Arc::new(PodMetrics::new())),
        ))
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(info))
        .route("/api/info", get(info))
        .route("/version", get(version))
        .route("/healthz", get(ok))
        .route("/readyz", get(ok))
        .route("/status/{code}", get(status).post(status))
        .route("/delay/{seconds}", get(delay).post(delay))
        .route("/token", post(token))
        .route("/api/echo", post(echo))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), as_pod))
        .with_state(state)
}

/// Resolves the pod from the connection's local address, applies its injected latency and errors, and records
/// podinfo's request metrics for it.
async fn as_pod(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(pod) = state.lookup(conn.local.ip()) else {
        return (
            StatusCode::NOT_FOUND,
            format!("testapp: no running pod has IP {}\n", conn.local.ip()),
        )
            .into_response();
    };
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let start = Instant::now();
    let probe = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
    if !probe && pod.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(pod.latency_ms)).await;
    }
    let resp = if !probe && pod.next_is_error() {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": 500, "message": "testapp: injected error", "hostname": pod.name, "version": pod.version})),
        )
            .into_response()
    } else {
        req.extensions_mut().insert(Arc::clone(&pod));
        next.run(req).await
    };
    if path != "/metrics"
        && let Some(m) = state.pod_metrics(&pod)
    {
        let labels = ReqLabels {
            method,
            path,
            status: resp.status().as_u16().to_string(),
        };
        m.duration
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
        m.total.get_or_create(&labels).inc();
        if !probe {
            m.mesh.record(
                conn.local.port(),
                resp.status().as_u16(),
                start.elapsed().as_secs_f64() * 1000.0,
            );
        }
    }
    resp
}

/// Every running pod's mesh series in one exposition, as a mesh's Prometheus would gather them from all
/// proxies: one scrape whatever the number of pods, and only pods that served requests appear.
pub fn mesh_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(mesh_metrics))
        .with_state(state)
}

async fn mesh_metrics(State(state): State<AppState>) -> Response {
    let live: HashMap<String, Arc<PodView>> = state
        .index
        .read()
        .map(|i| {
            i.by_ip
                .values()
                .map(|p| (p.uid.clone(), Arc::clone(p)))
                .collect()
        })
        .unwrap_or_default();
    let pods: Vec<(Arc<PodView>, Arc<PodMetrics>)> = match state.metrics.lock() {
        Ok(map) => map
            .iter()
            .filter_map(|(uid, m)| Some((Arc::clone(live.get(uid)?), Arc::clone(m))))
            .collect(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let body = mesh_series::render(pods.iter().map(|(p, m)| (&p.mesh, &m.mesh)));
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn info(Extension(pod): Extension<Arc<PodView>>) -> Json<serde_json::Value> {
    Json(json!({
        "hostname": pod.name,
        "namespace": pod.namespace,
        "version": pod.version,
        "revision": "",
        "color": "#34577c",
        "logo": "",
        "message": format!("greetings from podinfo v{}", pod.version),
        "goos": "linux",
        "goarch": "amd64",
        "runtime": "testapp",
        "num_goroutine": "1",
        "num_cpu": "2",
    }))
}

async fn version(Extension(pod): Extension<Arc<PodView>>) -> Json<serde_json::Value> {
    Json(json!({"version": pod.version, "commit": ""}))
}

async fn ok() -> Json<serde_json::Value> {
    Json(json!({"status": "OK"}))
}

async fn status(Path(code): Path<u16>) -> Response {
    match StatusCode::from_u16(code) {
        Ok(c) => (c, Json(json!({"status": code}))).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "invalid status code\n").into_response(),
    }
}

async fn delay(Path(seconds): Path<u64>) -> Json<serde_json::Value> {
    let s = seconds.min(MAX_DELAY_S);
    tokio::time::sleep(Duration::from_secs(s)).await;
    Json(json!({"delay": s}))
}

async fn token(Extension(pod): Extension<Arc<PodView>>) -> Json<serde_json::Value> {
    let n = pod.requests.load(std::sync::atomic::Ordering::Relaxed);
    Json(json!({"token": format!("{}-{}", pod.name, n), "expires_at": "2100-01-01T00:00:00Z"}))
}

async fn echo(body: axum::body::Bytes) -> axum::body::Bytes {
    body
}

async fn metrics(
    State(state): State<AppState>,
    Extension(pod): Extension<Arc<PodView>>,
) -> Response {
    let mut out = String::new();
    if let Some(m) = state.pod_metrics(&pod)
        && prometheus_client::encoding::text::encode(&mut out, &m.registry).is_err()
    {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if out.is_empty() {
        let _ = writeln!(out, "# EOF");
    }
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
