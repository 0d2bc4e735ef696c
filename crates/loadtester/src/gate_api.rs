//! `/gate/*` and `/rollback/*`: Flagger's manual approval and rollback gates.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::gates::rollback_key;
use crate::server::AppState;

pub async fn check(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    keyed(&state, &body, false, |state, key| {
        check_key(state, &key, "gate")
    })
}

pub async fn open(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    keyed(&state, &body, false, |state, key| {
        open_key(state, &key, "gate")
    })
}

pub async fn close(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    keyed(&state, &body, false, |state, key| {
        close_key(state, &key, "gate")
    })
}

pub async fn rollback_check(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    keyed(&state, &body, true, |state, key| {
        check_key(state, &key, "rollback")
    })
}

pub async fn rollback_open(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    keyed(&state, &body, true, |state, key| {
        open_key(state, &key, "rollback")
    })
}

pub async fn rollback_close(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    keyed(&state, &body, true, |state, key| {
        close_key(state, &key, "rollback")
    })
}

fn keyed(
    state: &AppState,
    body: &Bytes,
    rollback: bool,
    action: impl FnOnce(&AppState, String) -> Response,
) -> Response {
    match state.payload(body) {
        Ok(payload) => {
            let canary = payload.canary();
            let key = if rollback {
                rollback_key(&canary)
            } else {
                canary
            };
            action(state, key)
        }
        Err(rejection) => rejection.into_response(),
    }
}

fn check_key(state: &AppState, key: &str, what: &str) -> Response {
    let approved = state.gates.is_open(key);
    tracing::info!(key, approved, "{what} check");
    if approved {
        (StatusCode::OK, "Approved").into_response()
    } else {
        (StatusCode::FORBIDDEN, "Forbidden").into_response()
    }
}

fn open_key(state: &AppState, key: &str, what: &str) -> Response {
    match state.gates.open(key) {
        Ok(()) => {
            tracing::info!(key, "{what} opened");
            StatusCode::ACCEPTED.into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

fn close_key(state: &AppState, key: &str, what: &str) -> Response {
    state.gates.close(key);
    tracing::info!(key, "{what} closed");
    StatusCode::ACCEPTED.into_response()
}
