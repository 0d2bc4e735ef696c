//! Faults for the chaos scenarios (`tests/chaos.rs`): the cluster's own kube-apiserver and etcd killed,
//! restarted or paused, a metrics server that answers late, and a proxy between the controller and the API
//! server that breaks watches with 410 Gone. Everything runs inside the cluster's network namespace, as root,
//! like the test binary itself (`hack/cluster/exec`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use kube::api::DynamicObject;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::Result;
use crate::controller::{Proc, cluster_dir, phase, status};

/// A process `hack/cluster/up` started and recorded in `<state>/pids/<name>.pid`.
pub struct ClusterProcess {
    name: &'static str,
    /// Its listening address: free again only a moment after the process has exited.
    listens: &'static str,
}

impl ClusterProcess {
    pub const API_SERVER: ClusterProcess = ClusterProcess {
        name: "kube-apiserver",
        listens: "127.0.0.1:6443",
    };
    pub const ETCD: ClusterProcess = ClusterProcess {
        name: "etcd",
        listens: "127.0.0.1:2379",
    };

    fn pid_file(&self) -> PathBuf {
        cluster_dir()
            .join("pids")
            .join(format!("{}.pid", self.name))
    }

    pub fn pid(&self) -> Result<u32> {
        let path = self.pid_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{}: not a pid: {text:?}", path.display()))
    }

    /// Sends `signal` (a kill(1) name: STOP, CONT, KILL) to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid()?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .context("running kill")?;
        ensure!(
            status.success(),
            "kill -{signal} {} ({pid}): {status}",
            self.name
        );
        Ok(())
    }

    /// Pauses the process (SIGSTOP) until the guard is dropped (SIGCONT), whatever the test's outcome.
    pub fn pause(&'static self) -> Result<Paused> {
        self.signal("STOP")?;
        eprintln!("{} (pid {}) stopped", self.name, self.pid()?);
        Ok(Paused { process: self })
    }

    /// SIGKILLs the process, starts it again with the same command line (its output appended to the same log,
    /// its new pid in the pid file, so `hack/cluster/down` stops it) and returns once it is gone and re-spawned.
    pub async fn kill_and_restart(&self) -> Result<()> {
        let pid = self.pid()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .with_context(|| format!("reading the command line of {} ({pid})", self.name))?;
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        ensure!(
            !argv.is_empty(),
            "{} ({pid}) has no command line",
            self.name
        );
        self.signal("KILL")?;
        // A process has no watch API: a bounded poll of /proc until the kernel has released its ports.
        crate::poll_until(
            &format!("{} ({pid}) gone", self.name),
            Duration::from_secs(30),
            || async move { Ok((!alive(pid)).then_some(())) },
        )
        .await?;
        let listens = self.listens;
        crate::poll_until(
            &format!("{listens} released by {}", self.name),
            Duration::from_secs(30),
            || async move {
                Ok(match TcpStream::connect(listens).await {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                    _ => None,
                })
            },
        )
        .await?;
        let log = cluster_dir()
            .join("logs")
            .join(format!("{}.log", self.name));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        // setsid: a session of its own, as `up` starts it, so the test's end does not take it down.
        let child = std::process::Command::new("setsid")
            .args(&argv)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("restarting {}", self.name))?;
        std::fs::write(self.pid_file(), format!("{}\n", child.id()))
            .with_context(|| format!("writing {}", self.pid_file().display()))?;
        eprintln!(
            "{} killed (pid {pid}) and restarted (pid {})",
            self.name,
            child.id()
        );
        Ok(())
    }
}

/// True while `pid` runs (a zombie has exited).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// A paused cluster process; resumed when dropped.
pub struct Paused {
    process: &'static ClusterProcess,
}

impl Drop for Paused {
    fn drop(&mut self) {
        match self.process.signal("CONT") {
            Ok(()) => eprintln!("{} resumed", self.process.name),
            Err(e) => eprintln!("resuming {}: {e:#}", self.process.name),
        }
    }
}

/// Waits until the API server answers again (after a restart). No watch can be opened on a server that is
/// down: a bounded poll of its version endpoint.
pub async fn wait_api_server(client: &Client, timeout: Duration) -> Result<()> {
    crate::poll_until("the API server answering", timeout, || async {
        Ok(client.apiserver_version().await.ok().map(|_| ()))
    })
    .await
}

/// Awaits the Canary phase `want` through a watch that outlives API server outages: errors are retried with
/// the watcher's backoff instead of failing the wait. Fails early on `Failed` unless that is wanted.
pub async fn wait_phase_through_outages(
    api: &Api<DynamicObject>,
    name: &str,
    want: &str,
    timeout: Duration,
    controller: &Proc,
) -> Result<DynamicObject> {
    let stream = watcher(
        api.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .applied_objects();
    let found = async {
        let mut stream = std::pin::pin!(stream);
        let mut errors = 0usize;
        while let Some(item) = stream.next().await {
            match item {
                Ok(obj) if phase(&obj) == want || (phase(&obj) == "Failed" && want != "Failed") => {
                    return Ok(obj);
                }
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    eprintln!("watching Canary {name} (error {errors}, retrying): {e}");
                }
            }
        }
        bail!("the watch of Canary {name} ended")
    };
    let obj = match tokio::time::timeout(timeout, found).await {
        Ok(r) => r?,
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            bail!(
                "Canary {name} not {want} after {timeout:?}; status {}\ncontroller log tail:\n{}",
                last.as_ref()
                    .map(|o| status(o).to_string())
                    .unwrap_or_default(),
                controller.log_tail()
            )
        }
    };
    ensure!(
        phase(&obj) == want,
        "Canary {name} reached {} while waiting for {want}; status {}\ncontroller log tail:\n{}",
        phase(&obj),
        status(&obj),
        controller.log_tail()
    );
    Ok(obj)
}

/// A TCP proxy on loopback that holds every connection for `delay` before connecting it to `upstream`: a
/// server that answers, but late. Its tasks end when it is dropped.
pub struct SlowProxy {
    pub url: String,
    connections: Arc<AtomicUsize>,
    _tasks: JoinSet<()>,
}

impl SlowProxy {
    pub async fn start(upstream: &str, delay: Duration) -> Result<SlowProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let upstream = upstream.to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut downstream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                let upstream = upstream.clone();
                conns.spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut up) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut downstream, &mut up).await;
                    }
                });
            }
        });
        Ok(SlowProxy {
            url,
            connections,
            _tasks: tasks,
        })
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// The `ERROR` event an API server sends on a watch whose resource version is too old to resume from.
fn gone_event() -> String {
    let event = json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "too old resource version (injected by the e2e watch breaker)",
        "reason": "Expired", "code": 410,
    }});
    format!("{event}\n")
}

fn is_watch(uri: &http::Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

/// A plain-HTTP proxy on loopback in front of the API server, for a controller whose kubeconfig points at it;
/// it forwards every request with the `flagger-rs` identity. While [`WatchBreaker::expire`] is on, every watch
/// (those open and those started) ends with a 410 Gone `ERROR` event, so only lists get through: a client
/// learns what changed meanwhile only by relisting.
pub struct WatchBreaker {
    pub url: String,
    expired: Arc<AtomicBool>,
    breaks: tokio::sync::watch::Sender<u64>,
    gone_sent: Arc<AtomicUsize>,
    kubeconfig: PathBuf,
    _server: JoinSet<()>,
}

#[derive(Clone)]
struct BreakerState {
    upstream: Client,
    expired: Arc<AtomicBool>,
    breaks: tokio::sync::watch::Receiver<u64>,
    gone_sent: Arc<AtomicUsize>,
}

impl WatchBreaker {
    pub async fn start(tag: &str) -> Result<WatchBreaker> {
        let upstream = crate::flagger_client().await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let expired = Arc::new(AtomicBool::new(false));
        let gone_sent = Arc::new(AtomicUsize::new(0));
        let (breaks, breaks_rx) = tokio::sync::watch::channel(0u64);
        let state = BreakerState {
            upstream,
            expired: expired.clone(),
            breaks: breaks_rx,
            gone_sent: gone_sent.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let mut server = JoinSet::new();
        server.spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("watch breaker: {e}");
            }
        });
        let kubeconfig = std::env::temp_dir().join(format!(
            "flagger-rs-e2e-{tag}-{}.kubeconfig",
            std::process::id()
        ));
        let config = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "breaker", "cluster": {"server": url}}],
            "users": [{"name": "breaker", "user": {}}],
            "contexts": [{"name": "breaker", "context": {"cluster": "breaker", "user": "breaker"}}],
            "current-context": "breaker",
        });
        std::fs::write(&kubeconfig, serde_json::to_vec_pretty(&config)?)
            .with_context(|| format!("writing {}", kubeconfig.display()))?;
        Ok(WatchBreaker {
            url,
            expired,
            breaks,
            gone_sent,
            kubeconfig,
            _server: server,
        })
    }

    /// A kubeconfig that reaches the API server through this proxy.
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// From now until [`WatchBreaker::heal`], every watch ends with 410 Gone, the open ones included.
    pub fn expire(&self) {
        self.expired.store(true, Ordering::SeqCst);
        self.breaks.send_modify(|n| *n += 1);
    }

    pub fn heal(&self) {
        self.expired.store(false, Ordering::SeqCst);
    }

    /// 410 `ERROR` events sent so far.
    pub fn gone_sent(&self) -> usize {
        self.gone_sent.load(Ordering::Relaxed)
    }
}

impl Drop for WatchBreaker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// Headers of one connection, not of the request: each side of the proxy sets its own.
const HOP_BY_HOP: [http::HeaderName; 4] = [
    http::header::HOST,
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    http::header::CONTENT_LENGTH,
];

async fn forward(
    axum::extract::State(state): axum::extract::State<BreakerState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let watch = is_watch(request.uri());
    if watch && state.expired.load(Ordering::SeqCst) {
        return gone_response(&state, futures::stream::empty().boxed());
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(e) => return (http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut builder = http::Request::builder().method(parts.method).uri(parts.uri);
    for (k, v) in &parts.headers {
        // The upstream client sets its own host, authorization and encoding (it decodes what it asks for).
        if !HOP_BY_HOP.contains(k)
            && k != http::header::AUTHORIZATION
            && k != http::header::ACCEPT_ENCODING
        {
            builder = builder.header(k, v);
        }
    }
    let upstream_request = match builder.body(kube::client::Body::from(bytes.to_vec())) {
        Ok(r) => r,
        Err(e) => return (http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let response = match state.upstream.send(upstream_request).await {
        Ok(r) => r,
        Err(e) => return (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let (mut parts, body) = response.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    if !watch || !parts.status.is_success() {
        return http::Response::from_parts(parts, axum::body::Body::new(body));
    }
    // A watch streams until the next break, then ends with 410 Gone.
    let mut breaks = state.breaks.clone();
    breaks.mark_unchanged();
    let until_break = async move {
        let _ = breaks.changed().await;
    };
    let events = axum::body::Body::new(body)
        .into_data_stream()
        .map_err(std::io::Error::other)
        .take_until(Box::pin(until_break));
    gone_response(&state, events.boxed())
}

type Chunks = futures::stream::BoxStream<'static, std::io::Result<axum::body::Bytes>>;

/// A 200 watch response: `before`, then, if the breaker is expiring watches by then, a 410 `ERROR` event.
fn gone_response(state: &BreakerState, before: Chunks) -> axum::response::Response {
    let expired = state.expired.clone();
    let gone_sent = state.gone_sent.clone();
    let end = futures::stream::once(async move {
        expired.load(Ordering::SeqCst).then(|| {
            gone_sent.fetch_add(1, Ordering::Relaxed);
            Ok(axum::body::Bytes::from(gone_event()))
        })
    })
    .filter_map(futures::future::ready);
    let mut response =
        axum::response::Response::new(axum::body::Body::from_stream(before.chain(end)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
