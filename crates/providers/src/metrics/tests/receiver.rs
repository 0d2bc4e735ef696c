//! A backend stand-in: records each request and answers from a table keyed by a query
//! parameter value, so one server can play every scenario of a test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub params: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: String,
}

#[derive(Clone)]
pub enum Answer {
    Body(u16, &'static str),
    /// Never answers: the client's timeout has to end the request.
    Hang,
}

/// Picks the answer by the value of this query parameter (`query` for Prometheus); [`PATH`]
/// picks it by the request path instead.
#[derive(Clone)]
struct Shared {
    key: &'static str,
    answers: Arc<HashMap<String, Answer>>,
    fallback: Answer,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

/// The key that routes by path (an OAuth token endpoint and an API on one server).
pub const PATH: &str = "<path>";

pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Receiver {
    pub async fn start(key: &'static str, answers: &[(&str, Answer)], fallback: Answer) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            key,
            answers: Arc::new(
                answers
                    .iter()
                    .map(|(k, a)| (k.to_string(), a.clone()))
                    .collect(),
            ),
            fallback,
            seen: seen.clone(),
        };
        let app = Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    Query(mut params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    // POSTed Prometheus queries arrive form-encoded in the body.
    for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
        if headers
            .get("content-type")
            .is_some_and(|c| c == "application/x-www-form-urlencoded")
        {
            params.insert(k.into_owned(), v.into_owned());
        }
    }
    let picked = if shared.key == PATH {
        Some(uri.path())
    } else {
        params.get(shared.key).map(String::as_str)
    };
    let answer = picked
        .and_then(|v| shared.answers.get(v))
        .cloned()
        .unwrap_or_else(|| shared.fallback.clone());
    shared.seen.lock().unwrap().push(Recorded {
        method,
        path: uri.path().to_string(),
        params,
        headers,
        body,
    });
    match answer {
        Answer::Body(status, body) => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        Answer::Hang => std::future::pending().await,
    }
}
