//! Helpers for the benchmark commands (`src/bin/bench_*.rs`, run by `hack/bench`): they print numbers and
//! assert nothing about timing. Child processes (controller, loadtester, a private Prometheus and Alertmanager)
//! are killed when their guard drops; a loopback HTTP receiver stands in for Slack and for Alertmanager's webhook
//! receiver; a watch-fed tracker timestamps every change of Canary phase and Deployment replicas as the bench
//! sees it. Times are wall-clock milliseconds since the Unix epoch (one machine, one clock), so they compare with
//! the controller's log timestamps and with the API server's and Prometheus' timestamps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures::TryStreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::DynamicObject;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::Result;

/// Wall clock in milliseconds since the epoch.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// RFC 3339 time (API server, Prometheus, the controller's log) in epoch milliseconds.
pub fn parse_time_ms(s: &str) -> Option<f64> {
    let t: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()?;
    Some(t.0.as_millisecond() as f64 + f64::from(t.0.subsec_microsecond() % 1000) / 1000.0)
}

/// Removes ANSI colour sequences (`ESC [ ... m`) from a log line.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Timestamp (epoch ms) of the first line of `log` at or after `after_ms` that contains `needle`; the line's
/// first token is its RFC 3339 time (tracing's console format).
pub fn log_time_ms(log: &str, needle: &str, after_ms: f64) -> Option<f64> {
    log.lines()
        .map(strip_ansi)
        .filter(|l| l.contains(needle))
        .filter_map(|l| parse_time_ms(l.split_whitespace().next()?))
        .find(|t| *t >= after_ms)
}

/// A free loopback port (released just before the child binds it).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident set size of a process in KiB, from /proc/<pid>/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The largest resident set size a process has had so far, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Machine load at the time of the run (for docs/benchmarks.md).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A child process logging to a file; SIGKILLed when dropped.
pub struct Child {
    pub what: String,
    pub pid: u32,
    pub log: PathBuf,
    child: tokio::process::Child,
}

impl Child {
    pub fn spawn(what: &str, program: &Path, args: &[String]) -> Result<Child> {
        let log = std::env::temp_dir().join(format!(
            "flagger-rs-bench-{}-{}.log",
            what.replace([' ', '/'], "-"),
            std::process::id()
        ));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        let err = out.try_clone()?;
        let child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", program.display(), args.join(" ")))?;
        let pid = child.id().context("child has no pid")?;
        eprintln!("{what}: pid {pid}, log {}", log.display());
        Ok(Child {
            what: what.to_string(),
            pid,
            log,
            child,
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            bail!(
                "{} exited ({status}); log tail:\n{}",
                self.what,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.child.start_kill().ok();
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub at_ms: f64,
    pub path: String,
    pub body: String,
}

/// A minimal HTTP/1.1 server on loopback recording every request (Slack incoming webhook, Alertmanager webhook);
/// answers 200 `ok` and closes the connection. Bounded: at most [`Receiver::MAX_HITS`] requests of at most
/// [`Receiver::MAX_BODY`] bytes are kept.
pub struct Receiver {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub const MAX_HITS: usize = 10_000;
    pub const MAX_BODY: usize = 1 << 20;

    pub async fn start() -> Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let hits = Arc::new(Mutex::new(Vec::new()));
        let sink = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), serve_one(sock, sink)).await;
                });
            }
        });
        Ok(Receiver { url, hits, task })
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(mut sock: tokio::net::TcpStream, sink: Arc<Mutex<Vec<Hit>>>) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            bail!("request header too large");
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
        .min(Receiver::MAX_BODY);
    while buf.len() < header_end + len {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let at_ms = now_ms();
    let end = buf.len().min(header_end + len);
    let body = String::from_utf8_lossy(&buf[header_end..end]).to_string();
    if let Ok(mut v) = sink.lock()
        && v.len() < Receiver::MAX_HITS
    {
        v.push(Hit { at_ms, path, body });
    }
    sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await?;
    sock.shutdown().await.ok();
    Ok(())
}

/// A change the tracker saw: a Canary's phase / failed checks, or a Deployment's `spec.replicas` and whether its
/// rollout is complete.
#[derive(Clone, Debug)]
pub struct Rec {
    pub at_ms: f64,
    pub name: String,
    pub phase: String,
    pub failed_checks: i64,
    /// `status.lastTransitionTime` of a Canary.
    pub transition: String,
    /// `spec.replicas` of a Deployment (-1 for a Canary record).
    pub replicas: i32,
    /// A Deployment whose rollout is complete (see [`rolled_out`]); true for a Canary record.
    pub rolled_out: bool,
}

/// Whether the cluster has finished rolling `d` out, as `kubectl rollout status` decides: its controller has seen
/// the latest spec, and every replica asked for is updated and available with no old one left.
pub fn rolled_out(d: &Deployment) -> bool {
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = d.status.as_ref() else {
        return false;
    };
    st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && st.updated_replicas.unwrap_or(0) == wanted
        && st.replicas.unwrap_or(0) == wanted
        && st.available_replicas.unwrap_or(0) == wanted
}

/// Watches every Canary and Deployment of a namespace and keeps, per object, each distinct state with the time
/// the watch delivered it.
pub struct Tracker {
    canaries: Arc<Mutex<Vec<Rec>>>,
    deployments: Arc<Mutex<Vec<Rec>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Bound on the records kept (a scale run of 1 000 canaries makes tens of thousands).
const MAX_RECS: usize = 400_000;

impl Tracker {
    pub fn start(canaries: Api<DynamicObject>, deployments: Api<Deployment>) -> Tracker {
        let c = Arc::new(Mutex::new(Vec::new()));
        let d = Arc::new(Mutex::new(Vec::new()));
        let sink = c.clone();
        let t1 = tokio::spawn(async move {
            let stream = watcher(canaries, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            let mut stream = std::pin::pin!(stream);
            let mut last: HashMap<String, (String, i64)> = HashMap::new();
            while let Ok(Some(obj)) = stream.try_next().await {
                let at_ms = now_ms();
                let name = obj.metadata.name.clone().unwrap_or_default();
                let st = crate::controller::status(&obj);
                let phase = crate::controller::phase(&obj).to_string();
                let failed_checks = st.get("failedChecks").and_then(|v| v.as_i64()).unwrap_or(0);
                let key = (phase.clone(), failed_checks);
                if last.get(&name) == Some(&key) {
                    continue;
                }
                last.insert(name.clone(), key);
                let transition = st
                    .get("lastTransitionTime")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                if let Ok(mut v) = sink.lock()
                    && v.len() < MAX_RECS
                {
                    v.push(Rec {
                        at_ms,
                        name,
                        phase,
                        failed_checks,
                        transition,
                        replicas: -1,
                        rolled_out: true,
                    });
                }
            }
        });
        let sink = d.clone();
        let t2 = tokio::spawn(async move {
            let stream = watcher(deployments, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            let mut stream = std::pin::pin!(stream);
            let mut last: HashMap<String, (i32, bool)> = HashMap::new();
            while let Ok(Some(obj)) = stream.try_next().await {
                let at_ms = now_ms();
                let name = obj.metadata.name.clone().unwrap_or_default();
                let replicas = obj.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let rolled_out = rolled_out(&obj);
                if last.get(&name) == Some(&(replicas, rolled_out)) {
                    continue;
                }
                last.insert(name.clone(), (replicas, rolled_out));
                if let Ok(mut v) = sink.lock()
                    && v.len() < MAX_RECS
                {
                    v.push(Rec {
                        at_ms,
                        name,
                        phase: String::new(),
                        failed_checks: 0,
                        transition: String::new(),
                        replicas,
                        rolled_out,
                    });
                }
            }
        });
        Tracker {
            canaries: c,
            deployments: d,
            tasks: vec![t1, t2],
        }
    }

    pub fn canaries(&self) -> Vec<Rec> {
        self.canaries.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn deployments(&self) -> Vec<Rec> {
        self.deployments
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// First Canary record of `name` at or after `after_ms` satisfying `f`.
    pub fn canary_after(&self, name: &str, after_ms: f64, f: impl Fn(&Rec) -> bool) -> Option<Rec> {
        self.canaries()
            .into_iter()
            .find(|r| r.name == name && r.at_ms >= after_ms && f(r))
    }

    /// First Deployment record of `name` at or after `after_ms` satisfying `f`.
    pub fn deployment_after(
        &self,
        name: &str,
        after_ms: f64,
        f: impl Fn(&Rec) -> bool,
    ) -> Option<Rec> {
        self.deployments()
            .into_iter()
            .find(|r| r.name == name && r.at_ms >= after_ms && f(r))
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Checks local state `probe` every 10 ms until it yields `Some`, at most `timeout` (the state is fed by watches
/// or by the receiver: no API request per check).
pub async fn wait_local<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not seen within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// p50/p90/p99/max (nearest rank) of a sample in milliseconds.
#[derive(Clone, Debug)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn summarize(sample: &[f64]) -> Option<Summary> {
    if sample.is_empty() {
        return None;
    }
    let mut v = sample.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Summary {
        n: v.len(),
        min: v[0],
        p50: rank(50.0),
        p90: rank(90.0),
        p99: rank(99.0),
        max: v[v.len() - 1],
    })
}

/// Milliseconds as seconds with 3 decimals.
pub fn secs(ms: f64) -> String {
    format!("{:.3}", ms / 1000.0)
}

/// A table row `| what | n | min | p50 | p90 | p99 | max |` in seconds, or `| what | 0 | … |` when empty.
pub fn row(what: &str, sample: &[f64]) -> String {
    match summarize(sample) {
        Some(s) => format!(
            "| {what} | {} | {} | {} | {} | {} | {} |",
            s.n,
            secs(s.min),
            secs(s.p50),
            secs(s.p90),
            secs(s.p99),
            secs(s.max)
        ),
        None => format!("| {what} | 0 | - | - | - | - | - |"),
    }
}

pub const TABLE_HEAD: &str =
    "| measure (seconds) | n | min | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|";

/// API requests by (verb, resource[/subresource]).
pub type Counts = std::collections::BTreeMap<(String, String), f64>;

/// Non-WATCH `apiserver_request_total`, summed by (verb, resource[/subresource]).
pub async fn request_counts(client: &kube::Client) -> Result<Counts> {
    let req = kube::core::Request::new("").get("metrics", &Default::default())?;
    let text = client
        .request_text(req)
        .await
        .context("GET /metrics of the API server")?;
    let mut out = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split("\",")
                .filter_map(|kv| kv.split_once("=\""))
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let verb = label("verb");
        if verb == "WATCH" || verb == "CONNECT" {
            continue;
        }
        let mut resource = label("resource");
        let sub = label("subresource");
        if !sub.is_empty() {
            resource = format!("{resource}/{sub}");
        }
        *out.entry((verb, resource)).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(out)
}

pub fn delta(a: &Counts, b: &Counts) -> Counts {
    b.iter()
        .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

pub fn total(c: &Counts) -> f64 {
    // From 0.0: an empty f64 sum is -0.0, which a table prints as "-0.00".
    c.values().fold(0.0, |sum, n| sum + n)
}

/// utime + stime of a process in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is field 3 of stat, utime 14, stime 15.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = summarize(&v).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (10.0, 18.0, 20.0, 20.0));
    }

    #[test]
    fn log_times_are_parsed_through_colour_codes() {
        let log = "\u{1b}[2m2026-12-01T19:17:38.305405Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m Rolling back a.b x";
        let t = log_time_ms(log, "Rolling back a.b", 0.0).unwrap();
        assert_eq!(t, parse_time_ms("2026-12-01T19:17:38.305405Z").unwrap());
        // Epoch milliseconds in an f64 keep about 0.25 µs of precision at this magnitude.
        assert!((t % 1000.0 - 305.405).abs() < 1e-3);
    }
}
