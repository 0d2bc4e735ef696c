//! The built-in load generator: runs a [`LoadSpec`] with `concurrency` workers, each optionally
//! rate limited, until the request count or the duration is used up, and never past a deadline.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, redirect};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, timeout_at};

use crate::hey::{Body, LoadSpec, Stop};

/// Distinct error messages kept in a report; a broken target would otherwise fill memory with
/// one entry per connection error text.
const MAX_ERROR_KINDS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("reading the request body file {path}: {source}")]
    BodyFile {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub elapsed: Duration,
    /// Requests that got a response, whatever its status.
    pub responses: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    pub fastest: Option<Duration>,
    pub slowest: Option<Duration>,
    total_latency: Duration,
}

impl LoadReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn record(&mut self, latency: Duration, outcome: Result<u16, String>) {
        match outcome {
            Ok(status) => {
                self.responses += 1;
                *self.statuses.entry(status).or_default() += 1;
                self.total_latency += latency;
                self.fastest = Some(self.fastest.map_or(latency, |f| f.min(latency)));
                self.slowest = Some(self.slowest.map_or(latency, |s| s.max(latency)));
            }
            Err(message) => self.add_error(message, 1),
        }
    }

    fn add_error(&mut self, message: String, count: u64) {
        if self.errors.len() >= MAX_ERROR_KINDS && !self.errors.contains_key(&message) {
            *self.errors.entry("(other errors)".to_owned()).or_default() += count;
        } else {
            *self.errors.entry(message).or_default() += count;
        }
    }

    fn merge(&mut self, other: LoadReport) {
        self.responses += other.responses;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (message, n) in other.errors {
            self.add_error(message, n);
        }
        self.total_latency += other.total_latency;
        self.fastest = [self.fastest, other.fastest].into_iter().flatten().min();
        self.slowest = [self.slowest, other.slowest].into_iter().flatten().max();
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let avg = if self.responses > 0 {
            self.total_latency.as_secs_f64() / self.responses as f64
        } else {
            0.0
        };
        let rps = if secs > 0.0 {
            (self.responses + self.error_count()) as f64 / secs
        } else {
            0.0
        };
        writeln!(f, "Summary:")?;
        writeln!(f, "  Total:\t{secs:.4} secs")?;
        let slowest = self.slowest.unwrap_or_default().as_secs_f64();
        let fastest = self.fastest.unwrap_or_default().as_secs_f64();
        writeln!(f, "  Slowest:\t{slowest:.4} secs")?;
        writeln!(f, "  Fastest:\t{fastest:.4} secs")?;
        writeln!(f, "  Average:\t{avg:.4} secs")?;
        writeln!(f, "  Requests/sec:\t{rps:.4}")?;
        writeln!(f)?;
        writeln!(f, "Status code distribution:")?;
        for (status, n) in &self.statuses {
            writeln!(f, "  [{status}]\t{n} responses")?;
        }
        if !self.errors.is_empty() {
            writeln!(f)?;
            writeln!(f, "Error distribution:")?;
            for (message, n) in &self.errors {
                writeln!(f, "  [{n}]\t{message}")?;
            }
        }
        Ok(())
    }
}

/// Runs the load. `deadline` bounds the whole run even for `-n` (Flagger's task `-timeout`).
pub async fn run(spec: &LoadSpec, deadline: Duration) -> Result<LoadReport, LoadError> {
    let client = client(spec)?;
    let body = match &spec.body {
        None => None,
        Some(Body::Inline(text)) => Some(text.clone().into_bytes()),
        Some(Body::File(path)) => {
            Some(
                tokio::fs::read(path)
                    .await
                    .map_err(|source| LoadError::BodyFile {
                        path: path.clone(),
                        source,
                    })?,
            )
        }
    };
    let start = Instant::now();
    let mut end = start + deadline;
    let budget = match spec.stop {
        Stop::Count(n) => Some(Arc::new(AtomicU64::new(n))),
        Stop::After(d) => {
            end = end.min(start + d);
            None
        }
    };
    let request = Arc::new(Request {
        client,
        headers: spec.headers.iter().cloned().collect(),
        body,
        spec: spec.clone(),
    });
    let mut workers = JoinSet::new();
    for _ in 0..spec.concurrency {
        workers.spawn(worker(Arc::clone(&request), budget.clone(), end));
    }
    let mut report = LoadReport::default();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(part) => report.merge(part),
            Err(e) => report.add_error(format!("worker failed: {e}"), 1),
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

struct Request {
    client: Client,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    spec: LoadSpec,
}

async fn worker(request: Arc<Request>, budget: Option<Arc<AtomicU64>>, end: Instant) -> LoadReport {
    let mut report = LoadReport::default();
    let mut ticker = request.spec.rate_per_worker.map(|qps| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / qps));
        // A slow target must not be answered with a burst once it recovers.
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    loop {
        if let Some(ticker) = ticker.as_mut()
            && timeout_at(end, ticker.tick()).await.is_err()
        {
            break;
        }
        if Instant::now() >= end {
            break;
        }
        if let Some(budget) = &budget
            && budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
        {
            break;
        }
        let started = Instant::now();
        let outcome = match timeout_at(end, send(&request)).await {
            Ok(outcome) => outcome,
            Err(_) => Err("stopped at the end of the run".to_owned()),
        };
        report.record(started.elapsed(), outcome);
    }
    report
}

async fn send(request: &Request) -> Result<u16, String> {
    let spec = &request.spec;
    let mut builder = request
        .client
        .request(spec.method.clone(), spec.url.clone())
        .headers(request.headers.clone());
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    if let Some((user, pass)) = &spec.basic_auth {
        builder = builder.basic_auth(user, Some(pass));
    }
    if let Some(t) = spec.request_timeout {
        builder = builder.timeout(t);
    }
    let mut response = builder.send().await.map_err(|e| error_text(&e))?;
    let status = response.status().as_u16();
    // Drain the body so the connection goes back to the pool, as hey does.
    while response
        .chunk()
        .await
        .map_err(|e| error_text(&e))?
        .is_some()
    {}
    Ok(status)
}

fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn client(spec: &LoadSpec) -> Result<Client, LoadError> {
    crate::install_crypto_provider();
    let mut builder = Client::builder().redirect(if spec.disable_redirects {
        redirect::Policy::none()
    } else {
        redirect::Policy::limited(10)
    });
    if !spec.http2 {
        builder = builder.http1_only();
    }
    if spec.disable_keepalive {
        builder = builder.pool_max_idle_per_host(0);
    }
    if let Some(proxy) = &spec.proxy {
        builder = builder.proxy(reqwest::Proxy::all(proxy)?);
    }
    Ok(builder.build()?)
}
