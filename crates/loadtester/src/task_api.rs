//! `/` (and every unrouted path): runs the task described by the payload's `metadata`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::hey::{self, Plan};
use crate::payload::Payload;
use crate::server::{AppState, Rejection};
use crate::tasks::{Started, Work};

pub async fn handle(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let payload = match state.payload(&body) {
        Ok(p) => p,
        Err(rejection) => return rejection.into_response(),
    };
    if payload.metadata.as_ref().is_none_or(|m| m.is_empty()) {
        return (StatusCode::BAD_REQUEST, "metadata not found in payload").into_response();
    }
    let kind = payload.meta("type").unwrap_or("cmd").to_owned();
    match kind.as_str() {
        "cmd" => background(&state, &payload),
        "bash" => match command(&payload) {
            Ok(cmd) => blocking(&state, &payload, &kind, cmd, "bash", vec!["-c", cmd]).await,
            Err(rejection) => rejection.into_response(),
        },
        "helm" | "helmv3" | "kubectl" => match command(&payload) {
            Ok(cmd) => {
                let program = if kind == "kubectl" { "kubectl" } else { "helm" };
                // Flagger runs these without a shell, split on whitespace.
                let args = cmd.split_whitespace().collect();
                blocking(&state, &payload, &kind, cmd, program, args).await
            }
            Err(rejection) => rejection.into_response(),
        },
        "concord" | "ngrinder" => (
            StatusCode::NOT_IMPLEMENTED,
            format!("task type {kind} is not supported by flagger-rs loadtester"),
        )
            .into_response(),
        other => (
            StatusCode::BAD_REQUEST,
            format!("unknown task type {other}"),
        )
            .into_response(),
    }
}

fn command(payload: &Payload) -> Result<&str, Rejection> {
    payload.meta("cmd").ok_or_else(|| {
        Rejection(
            StatusCode::BAD_REQUEST,
            "cmd not found in metadata".to_owned(),
        )
    })
}

fn background(state: &Arc<AppState>, payload: &Payload) -> Response {
    let cmd = match command(payload) {
        Ok(cmd) => cmd,
        Err(rejection) => return rejection.into_response(),
    };
    let work = match hey::plan(cmd) {
        Ok(Plan::BuiltIn(spec)) => Work::Load(spec),
        Ok(Plan::Shell) => Work::Shell,
        // Flagger would accept the task and fail later in its log; a bad load test is a broken
        // webhook, so say so to the caller.
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let canary = payload.canary();
    match state
        .tasks
        .spawn(&canary, cmd, work, payload.meta_flag("logCmdOutput"))
    {
        Ok(Started::Started) => StatusCode::ACCEPTED.into_response(),
        Ok(Started::AlreadyRunning) => (StatusCode::ACCEPTED, "already running").into_response(),
        Err(busy) => (StatusCode::SERVICE_UNAVAILABLE, busy.to_string()).into_response(),
    }
}

async fn blocking(
    state: &AppState,
    payload: &Payload,
    kind: &str,
    cmd: &str,
    program: &str,
    args: Vec<&str>,
) -> Response {
    let canary = payload.canary();
    let out = match state
        .tasks
        .run_blocking(kind, &canary, cmd, program, &args)
        .await
    {
        Ok(out) => out,
        Err(busy) => return (StatusCode::SERVICE_UNAVAILABLE, busy.to_string()).into_response(),
    };
    if out.success() {
        if payload.meta_flag("returnCmdOutput") {
            (StatusCode::OK, out.output).into_response()
        } else {
            StatusCode::OK.into_response()
        }
    } else {
        // Flagger's text: the exit error, then the combined output.
        let text = format!("{} {}", out.outcome, out.output_text());
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            text.trim_end().to_owned(),
        )
            .into_response()
    }
}
