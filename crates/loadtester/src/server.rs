//! The HTTP server: routes, shared state and graceful serving.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::gates::Gates;
use crate::metrics::Metrics;
use crate::payload::Payload;
use crate::tasks::TaskRunner;
use crate::{auth, gate_api, task_api};

pub struct AppState {
    pub config: Config,
    pub gates: Gates,
    pub tasks: Arc<TaskRunner>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(config: Config) -> Arc<Self> {
        let metrics = Arc::new(Metrics::new());
        let tasks = Arc::new(TaskRunner::new(
            config.task_timeout,
            config.max_tasks,
            Arc::clone(&metrics),
        ));
        Arc::new(Self {
            config,
            gates: Gates::default(),
            tasks,
            metrics,
        })
    }

    /// Decodes a payload and applies `-namespace-regexp`.
    pub fn payload(&self, body: &Bytes) -> Result<Payload, Rejection> {
        let payload: Payload = serde_json::from_slice(body).map_err(|e| {
            tracing::error!(error = %e, "decoding the request body failed");
            Rejection(
                StatusCode::BAD_REQUEST,
                format!("decoding the request body failed: {e}"),
            )
        })?;
        if let Some(re) = &self.config.namespace_regexp
            && !re.is_match(&payload.namespace)
        {
            tracing::warn!(namespace = payload.namespace, "namespace not allowed");
            return Err(Rejection(StatusCode::FORBIDDEN, "Forbidden".into()));
        }
        Ok(payload)
    }
}

/// A request refused before any work: its status and text body.
#[derive(Debug)]
pub struct Rejection(pub StatusCode, pub String);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// Flagger's routes; any path not listed runs a task, as in Flagger's `/` catch-all.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", any(|| async { "OK" }))
        .route("/metrics", any(metrics))
        .route("/gate/approve", any(|| async { "OK" }))
        .route(
            "/gate/halt",
            any(|| async { (StatusCode::FORBIDDEN, "Forbidden") }),
        )
        .route("/gate/check", any(gate_api::check))
        .route("/gate/open", any(gate_api::open))
        .route("/gate/close", any(gate_api::close))
        .route("/rollback/check", any(gate_api::rollback_check))
        .route("/rollback/open", any(gate_api::rollback_open))
        .route("/rollback/close", any(gate_api::rollback_close))
        .fallback(task_api::handle)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_token,
        ))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
