//! Where a tick's time goes when it is late: waiting for a reconcile worker, for a token of the
//! client's QPS budget, for the API server's answer, for a place at the limit of an outside
//! call's backend (a webhook, a metric server, an alert's chat service), and for its answer. A
//! canary whose run takes longer than its plan is late for one of these reasons; these series say
//! which, without a profiler.
//!
//! Histograms in seconds (1 ms to ~33 s), except the budget's wait: the client's requests leave
//! one after another, so the time its queue stood still for a token is one counter, not a
//! per-request figure.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::metrics::RequestLabels;

/// 1 ms doubling to ~33 s: an answer at rest takes milliseconds, a loaded API server or a hook
/// near its timeout tens of seconds.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

type Seconds<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TurnLabels {
    /// `resume`, `reaction` or `scheduled` (see `workers::Turn`).
    pub turn: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// scheme://host:port of a webhook or metric server, or a provider type without an address.
    pub backend: String,
}

#[derive(Clone, Debug)]
pub struct Timings {
    pub worker_wait: Seconds<TurnLabels>,
    pub api_request: Seconds<RequestLabels>,
    pub api_budget_wait: Counter<f64, AtomicU64>,
    pub outbound_wait: Seconds<BackendLabels>,
    pub outbound_call: Seconds<BackendLabels>,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            worker_wait: Family::new_with_constructor(seconds),
            api_request: Family::new_with_constructor(seconds),
            api_budget_wait: Counter::default(),
            outbound_wait: Family::new_with_constructor(seconds),
            outbound_call: Family::new_with_constructor(seconds),
        }
    }
}

impl Timings {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "worker_wait_seconds",
            "Time a reconcile waited for a worker (-threadiness), by turn (resume, reaction or scheduled)",
            self.worker_wait.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Time the API server took to answer a request once it was sent, by HTTP method and resource",
            self.api_request.clone(),
        );
        // prometheus-client appends `_total`: flagger_api_budget_wait_seconds_total.
        registry.register(
            "api_budget_wait_seconds",
            "Time the client's requests stood waiting for a token of -kubeconfig-qps",
            self.api_budget_wait.clone(),
        );
        registry.register(
            "outbound_wait_seconds",
            "Time an outside call (webhook, metric query, alert) waited for a place at its backend's and the global limit",
            self.outbound_wait.clone(),
        );
        registry.register(
            "outbound_call_seconds",
            "Time an outside call (webhook, metric query, alert) took once it had its place, by backend",
            self.outbound_call.clone(),
        );
    }

    pub fn worker_waited(&self, turn: &'static str, waited: Duration) {
        self.worker_wait
            .get_or_create(&TurnLabels { turn })
            .observe(waited.as_secs_f64());
    }

    pub fn outbound(&self, backend: &str, waited: Duration, called: Duration) {
        let labels = BackendLabels {
            backend: backend.to_string(),
        };
        self.outbound_wait
            .get_or_create(&labels)
            .observe(waited.as_secs_f64());
        self.outbound_call
            .get_or_create(&labels)
            .observe(called.as_secs_f64());
    }
}
