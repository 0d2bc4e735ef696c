//! Webhook calls and metric queries: the slow, outside work of a tick, run outside the reconcile
//! workers and bounded twice, globally and per backend.
//!
//! A reconcile gives its worker back while these run (see `workers`), so a hook that hangs for its
//! whole timeout holds up only its own canary. Without a bound, ten thousand canaries due at once
//! would open ten thousand connections to one Prometheus; so every call first waits for a place
//! at its backend (first come, first served), then for one of the global places.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Semaphore;

use crate::context::lock;

/// Calls in flight at once, all backends together: well under the default limit of 1024 open
/// files, which the API server connections, watches and the HTTP server share.
pub const GLOBAL: usize = 256;
/// Calls in flight at once to one backend (a Prometheus address, a webhook host): Prometheus runs
/// at most 20 queries at once by default (`--query.max-concurrency`) and queues the rest, so more
/// only moves the queue from here, where it is fair, into Prometheus, where it times out.
pub const PER_BACKEND: usize = 20;

pub struct Outbound {
    /// Where each call's wait for its place and its own time are recorded, when anywhere.
    timings: Option<crate::timings::Timings>,
    global: Arc<Semaphore>,
    per_backend: usize,
    /// Weak, so a backend no call is waiting for costs nothing; a backend whose calls are all
    /// done is forgotten at its next use.
    backends: Mutex<HashMap<String, Weak<Semaphore>>>,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound::new(GLOBAL, PER_BACKEND)
    }
}

impl Outbound {
    pub fn new(global: usize, per_backend: usize) -> Outbound {
        Outbound {
            timings: None,
            global: Arc::new(Semaphore::new(global.max(1))),
            per_backend: per_backend.max(1),
            backends: Mutex::new(HashMap::new()),
        }
    }

    /// Records each call's wait for its place and its own time in `timings`.
    pub fn timed(self, timings: crate::timings::Timings) -> Outbound {
        Outbound {
            timings: Some(timings),
            ..self
        }
    }

    /// Runs `call` once `backend` and the controller as a whole have room for it.
    pub async fn run<F: Future>(&self, backend: &str, call: F) -> F::Output {
        let asked = tokio::time::Instant::now();
        let place = self.backend(backend);
        // Backend first: calls queued for a saturated backend hold no global place meanwhile.
        // The semaphores are never closed, so a failed acquire cannot happen; running unbounded
        // would be the harmless outcome if it did.
        let _at_backend = place.acquire().await.ok();
        let _global = self.global.acquire().await.ok();
        let placed = tokio::time::Instant::now();
        let output = call.await;
        if let Some(timings) = &self.timings {
            timings.outbound(backend, placed - asked, placed.elapsed());
        }
        output
    }

    fn backend(&self, backend: &str) -> Arc<Semaphore> {
        let mut backends = lock(&self.backends);
        if let Some(place) = backends.get(backend).and_then(Weak::upgrade) {
            return place;
        }
        backends.retain(|_, place| place.strong_count() > 0);
        let place = Arc::new(Semaphore::new(self.per_backend));
        backends.insert(backend.to_string(), Arc::downgrade(&place));
        place
    }
}

/// The backend of a URL: scheme, host and port, so paths of one server share its limit and a
/// string that is no URL is a backend of its own.
pub fn backend_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}:{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default(),
            parsed.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Runs `calls` calls of 1 s each (on the paused clock), `backend(i)` naming each one's backend;
    /// returns the most in flight at once per backend and overall.
    async fn peaks(
        outbound: Outbound,
        calls: usize,
        backend: impl Fn(usize) -> &'static str,
    ) -> (HashMap<&'static str, usize>, usize) {
        let outbound = Arc::new(outbound);
        let total = Arc::new(AtomicUsize::new(0));
        let peak_total = Arc::new(AtomicUsize::new(0));
        let per: Arc<Mutex<HashMap<&'static str, (usize, usize)>>> = Arc::default();
        let tasks: Vec<_> = (0..calls)
            .map(|i| {
                let (outbound, total, peak_total, per) = (
                    outbound.clone(),
                    total.clone(),
                    peak_total.clone(),
                    per.clone(),
                );
                let name = backend(i);
                tokio::spawn(async move {
                    outbound
                        .run(name, async {
                            let now = total.fetch_add(1, Ordering::SeqCst) + 1;
                            peak_total.fetch_max(now, Ordering::SeqCst);
                            {
                                let mut per = per.lock().unwrap();
                                let entry = per.entry(name).or_default();
                                entry.0 += 1;
                                entry.1 = entry.1.max(entry.0);
                            }
                            // Simulated call on the paused clock.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            per.lock().unwrap().entry(name).or_default().0 -= 1;
                            total.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let per = per.lock().unwrap().iter().map(|(k, v)| (*k, v.1)).collect();
        (per, peak_total.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn one_backend_gets_at_most_its_share_and_others_still_run() {
        let (per, total) = peaks(Outbound::new(8, 3), 40, |i| {
            if i % 4 == 0 {
                "http://slow"
            } else {
                "http://other"
            }
        })
        .await;
        assert_eq!(per["http://slow"], 3);
        assert_eq!(per["http://other"], 3);
        assert_eq!(total, 6, "both backends busy at once");
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_limit_bounds_all_backends_together() {
        const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
        let (per, total) = peaks(Outbound::new(4, 3), 50, |i| NAMES[i % 5]).await;
        assert_eq!(total, 4);
        assert!(per.values().all(|&p| p <= 3), "{per:?}");
    }

    #[test]
    fn backends_are_scheme_host_and_port() {
        assert_eq!(
            backend_of("http://loadtester.test/gate/check"),
            "http://loadtester.test:80"
        );
        assert_eq!(
            backend_of("http://loadtester.test:80/"),
            backend_of("http://loadtester.test/rollback/check")
        );
        assert_ne!(
            backend_of("https://prom:9090"),
            backend_of("http://prom:9090")
        );
        assert_eq!(backend_of("not a url"), "not a url");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_queued_behind_a_full_backend_is_timed_apart_from_its_own_run() {
        let metrics = crate::metrics::Metrics::new(false);
        let outbound = Arc::new(Outbound::new(8, 1).timed(metrics.timings.clone()));
        let call = |outbound: Arc<Outbound>| async move {
            outbound
                .run("http://prom:9090", async {
                    tokio::time::sleep(Duration::from_secs(1)).await
                })
                .await
        };
        // Two calls, one place: the second waits the first's whole second, then runs its own.
        futures::future::join(call(outbound.clone()), call(outbound)).await;
        let exposition = metrics.encode().unwrap();
        for line in [
            r#"flagger_outbound_wait_seconds_sum{backend="http://prom:9090"} 1.0"#,
            r#"flagger_outbound_wait_seconds_count{backend="http://prom:9090"} 2"#,
            r#"flagger_outbound_call_seconds_sum{backend="http://prom:9090"} 2.0"#,
        ] {
            assert!(exposition.contains(line), "{line} in\n{exposition}");
        }
    }
}
