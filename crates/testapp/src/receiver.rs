//! A local notification receiver: Alertmanager's webhook target and a catch-all for other webhooks, so tests can
//! read back what was delivered. Everything is kept in memory with fixed bounds.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const MAX_PER_NAME: usize = 1000;
const MAX_NAMES: usize = 256;

#[derive(Clone, Default)]
pub struct Receiver {
    received: Arc<Mutex<HashMap<String, VecDeque<serde_json::Value>>>>,
    /// Set once the pod watch has listed every pod, so `up` does not report ready before pods are served.
    pub synced: Arc<AtomicBool>,
}

impl Receiver {
    fn push(&self, name: &str, body: serde_json::Value) -> Result<(), StatusCode> {
        let mut map = self
            .received
            .lock()
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        if !map.contains_key(name) && map.len() >= MAX_NAMES {
            return Err(StatusCode::INSUFFICIENT_STORAGE);
        }
        let q = map.entry(name.to_string()).or_default();
        if q.len() >= MAX_PER_NAME {
            q.pop_front();
        }
        q.push_back(body);
        Ok(())
    }

    fn list(&self, name: &str) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .map(|m| {
                m.get(name)
                    .map(|q| q.iter().cloned().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

pub fn router(receiver: Receiver) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/alerts",
            get(list_alerts).post(post_alerts).delete(clear_alerts),
        )
        .route(
            "/hooks/{name}",
            get(list_hook).post(post_hook).delete(clear_hook),
        )
        .with_state(receiver)
}

async fn healthz(State(r): State<Receiver>) -> Response {
    if r.synced.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "pod watch not synced yet\n",
        )
            .into_response()
    }
}

async fn post_alerts(State(r): State<Receiver>, Json(body): Json<serde_json::Value>) -> StatusCode {
    r.push("alerts", body)
        .map_or_else(|e| e, |()| StatusCode::OK)
}

async fn list_alerts(State(r): State<Receiver>) -> Json<Vec<serde_json::Value>> {
    Json(r.list("alerts"))
}

async fn clear_alerts(State(r): State<Receiver>) -> StatusCode {
    clear(&r, "alerts")
}

/// Webhook bodies need not be JSON (e.g. form-encoded chat payloads), so non-JSON is kept as a string.
async fn post_hook(
    State(r): State<Receiver>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    r.push(&format!("hook:{name}"), value)
        .map_or_else(|e| e, |()| StatusCode::OK)
}

async fn list_hook(
    State(r): State<Receiver>,
    Path(name): Path<String>,
) -> Json<Vec<serde_json::Value>> {
    Json(r.list(&format!("hook:{name}")))
}

async fn clear_hook(State(r): State<Receiver>, Path(name): Path<String>) -> StatusCode {
    clear(&r, &format!("hook:{name}"))
}

fn clear(r: &Receiver, name: &str) -> StatusCode {
    match r.received.lock() {
        Ok(mut m) => {
            m.remove(name);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
