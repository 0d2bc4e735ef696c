//! A webhook receiver owned by one test, on a free loopback port: it records every call (method, path, content
//! type, JSON body) and answers by path, so a test can steer a canary's hooks and check what the controller sent.
//!
//! | path | answer |
//! |---|---|
//! | `/gate`, `/gate/...` | 500 while closed (at first, and after [`HookCatcher::close_gate`]), 200 after [`HookCatcher::open_gate`] |
//! | `/fail` | 500 |
//! | `/code/<n>` | status `n` |
//! | `/flaky/<k>` | 500 for the first `k` calls to that path, 200 after |
//! | `/hold/...` | nothing: the call stays in flight until the caller goes away |
//! | anything else | the code set with [`HookCatcher::answer`], else 200 |

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::Result;

/// One received call.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub body: Value,
    /// When the request was complete, on the test's clock (for tick timing).
    pub received: std::time::Instant,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    per_path: BTreeMap<String, usize>,
    open_gates: BTreeSet<String>,
    codes: BTreeMap<String, u16>,
}

pub struct HookCatcher {
    url: String,
    state: Arc<Mutex<State>>,
    arrivals: UnboundedReceiver<Call>,
    task: tokio::task::JoinHandle<()>,
}

impl HookCatcher {
    pub async fn start() -> Result<HookCatcher> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, arrivals) = unbounded_channel();
        let sink = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (tx, sink) = (tx.clone(), sink.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(socket, tx, sink).await {
                        eprintln!("hook catcher: {e:#}");
                    }
                });
            }
        });
        Ok(HookCatcher {
            url,
            state,
            arrivals,
            task,
        })
    }

    /// URL of a path, for webhook specs.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Opens the gate at `path` (`/gate` or `/gate/...`).
    pub fn open_gate(&self, path: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.open_gates.insert(path.to_string());
        }
    }

    /// Makes `path` answer `code` from now on (the canary's spec need not change to change a hook's answer).
    pub fn answer(&self, path: &str, code: u16) {
        if let Ok(mut s) = self.state.lock() {
            s.codes.insert(path.to_string(), code);
        }
    }

    pub fn close_gate(&self, path: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.open_gates.remove(path);
        }
    }

    /// Forgets the arrivals not yet awaited with [`HookCatcher::next`] (the record of [`HookCatcher::calls`] stays).
    pub fn drain(&mut self) {
        while self.arrivals.try_recv().is_ok() {}
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.state
            .lock()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }

    /// How many calls to `path` were received so far.
    pub fn count(&self, path: &str) -> usize {
        self.calls().iter().filter(|c| c.path == path).count()
    }

    /// Waits until `n` calls to `path` have been received in all, at most `timeout`.
    pub async fn wait_count(&mut self, path: &str, n: usize, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Each arrival is sent after it is recorded, so the count is current whenever one comes in.
        while self.count(path) < n {
            match tokio::time::timeout_at(deadline, self.arrivals.recv()).await {
                Ok(Some(_)) => {}
                Ok(None) => bail!(
                    "hook catcher stopped with {} calls to {path}",
                    self.count(path)
                ),
                Err(_) => bail!(
                    "{} calls to {path} after {timeout:?}, want {n}",
                    self.count(path)
                ),
            }
        }
        Ok(())
    }

    /// The next call to `path`, waiting at most `timeout`; calls to other paths before it are skipped.
    pub async fn next(&mut self, path: &str, timeout: Duration) -> Result<Call> {
        let found = tokio::time::timeout(timeout, async {
            while let Some(call) = self.arrivals.recv().await {
                if call.path == path {
                    return Some(call);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(call)) => Ok(call),
            Ok(None) => bail!("hook catcher stopped before a call to {path}"),
            Err(_) => bail!("no call to {path} within {timeout:?}"),
        }
    }
}

impl Drop for HookCatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    tx: UnboundedSender<Call>,
    state: Arc<Mutex<State>>,
) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut request_line = head.split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let length = header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let content_type = header("content-type").unwrap_or_default();
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            bail!("{path}: connection closed inside the body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Value =
        serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    let call = Call {
        method,
        path: path.clone(),
        content_type,
        body,
        received: std::time::Instant::now(),
    };
    let (nth, open, set) = match state.lock() {
        Ok(mut s) => {
            s.calls.push(call.clone());
            let n = s.per_path.entry(path.clone()).or_insert(0);
            *n += 1;
            (
                *n,
                s.open_gates.contains(&path),
                s.codes.get(&path).copied(),
            )
        }
        Err(_) => (1, false, None),
    };
    let _ = tx.send(call);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let code: u16 = match segments.as_slice() {
        ["hold", ..] => {
            // Held: the connection ends when the caller goes away.
            while socket.read(&mut chunk).await? > 0 {}
            return Ok(());
        }
        ["echo", ..] => {
            // A receiver that shows the caller what it sent, headers included, in its error page.
            let answer = format!(
                "HTTP/1.1 500 X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                head.len()
            );
            socket.write_all(answer.as_bytes()).await?;
            return Ok(());
        }
        ["gate", ..] if open => 200,
        ["gate", ..] | ["fail"] => 500,
        ["code", n] => n.parse().unwrap_or(400),
        ["flaky", k] if nth <= k.parse().unwrap_or(0) => 500,
        _ => set.unwrap_or(200),
    };
    let answer = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    socket.write_all(answer.as_bytes()).await?;
    Ok(())
}
