//! What every reconcile shares: clients, settings derived from the flags, metrics, schedules.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use flagger_api::{Canary, CanaryStatus};
use flagger_core::Workload;
use flagger_providers::metrics::prometheus::{PrometheusOptions, PrometheusProvider};

use crate::cache::{Cache, Stores};
use crate::events::Recorder;
use crate::flags::Flags;
use crate::metrics::Metrics;
use crate::own_writes::OwnWrites;
use crate::webhooks::Caller;
use crate::workload;

pub struct Context {
    pub client: Client,
    pub flags: Flags,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub webhooks: Caller,
    /// The `-slack-*` / `-msteams-*` notifier, for canaries without `analysis.alerts`.
    pub global_notifier: Option<flagger_providers::notify::ProviderNotifier>,
    pub core: flagger_core::Settings,
    pub workloads: workload::Settings,
    pub validation: flagger_api::validate::Options,
    /// When each canary's next scheduled tick is due, and for a canary at rest what its last tick
    /// saw (see `at_rest`). In memory only: after a restart the status' `lastTransitionTime` seeds
    /// it.
    schedule: Mutex<HashMap<ObjectRef<Canary>, Due>>,
    /// Validity messages already reported per canary, so a Warning event is emitted once per change.
    pub reported: Mutex<HashMap<ObjectRef<Canary>, String>>,
    /// Dry-run: the status each canary would have, seeded from the live one.
    pub simulated: Mutex<HashMap<ObjectRef<Canary>, CanaryStatus>>,
    /// The Canary versions this controller's status writes replaced: a reconcile that still sees one
    /// runs on a cache that has not caught up with the write (a watch event of a workload can queue
    /// one before the Canary's own event arrives); acting on it would repeat the last transition
    /// (its events, alerts and hooks).
    pub own_writes: OwnWrites,
    /// Prometheus providers (each owns an HTTP client and its connection pool) by server address, for builtin
    /// and inline metrics: building a client per check costs tens of milliseconds and a new connection
    /// (bench_checks: ~25 checks/s per-check vs ~400-600 shared).
    pub prometheus: PrometheusCache,
    /// Workload reads from the watch caches and the memory of what was last written.
    pub cache: Arc<Cache>,
    /// Consecutive failed ticks per canary, for the retry backoff.
    pub failures: Mutex<HashMap<ObjectRef<Canary>, u32>>,
    /// The reconcile workers (`-threadiness`), served in the order canaries became due.
    pub workers: crate::workers::Workers,
    /// The bounds on webhook calls and metric queries in flight.
    pub outbound: crate::outbound::Outbound,
    /// The statistical judge's samples of each canary's current run.
    pub judge_series: crate::judge::Series,
}

struct Due {
    at: Instant,
    /// Set by a tick at rest that found nothing to do; every new due time clears it.
    at_rest: Option<crate::at_rest::Memo>,
    /// Set by a tick that waited for a workload's rollout; every new due time clears it.
    when_ready: Option<Workload>,
}

#[derive(Default)]
pub struct PrometheusCache(Mutex<HashMap<String, Arc<PrometheusProvider>>>);

impl PrometheusCache {
    /// The shared provider for `address`, built on first use.
    pub fn get(&self, address: &str) -> Result<Arc<PrometheusProvider>, String> {
        let mut cache = lock(&self.0);
        if let Some(p) = cache.get(address) {
            return Ok(p.clone());
        }
        let provider = Arc::new(
            PrometheusProvider::new(PrometheusOptions::new(address)).map_err(|e| e.to_string())?,
        );
        if cache.len() >= PROMETHEUS_CACHE_MAX {
            cache.clear();
        }
        cache.insert(address.to_string(), provider.clone());
        Ok(provider)
    }

    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Distinct Prometheus addresses kept; past it the cache starts over (addresses come from canary specs).
const PROMETHEUS_CACHE_MAX: usize = 64;

/// A poisoned lock only means another reconcile panicked mid-update of a cache; the data is
/// still a valid cache.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Context {
    pub fn new(
        client: Client,
        flags: Flags,
        metrics: Arc<Metrics>,
        webhooks: Caller,
        global_notifier: Option<flagger_providers::notify::ProviderNotifier>,
        stores: Option<Stores>,
    ) -> Context {
        let core = flagger_core::Settings {
            mesh_provider: flags.mesh_provider.clone(),
            min_interval: flags.min_analysis_interval,
            dry_run: flags.dry_run,
        };
        let workloads = workload::Settings {
            selector_labels: flags.selector_labels(),
            include_label_prefixes: flags.include_label_prefixes(),
        };
        let validation = flagger_api::validate::Options {
            default_provider: flags.mesh_provider.clone(),
            selector_labels: flags.selector_labels(),
            no_cross_namespace_refs: flags.no_cross_namespace_refs,
            min_interval: flags.min_analysis_interval,
        };
        let cache = Arc::new(Cache::new(stores, &flags.namespace));
        let workers = crate::workers::Workers::count(&flags);
        let timings = metrics.timings.clone();
        Context {
            recorder: Recorder::new(client.clone(), flags.dry_run),
            client,
            flags,
            metrics,
            webhooks,
            global_notifier,
            core,
            workloads,
            validation,
            schedule: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashMap::new()),
            simulated: Mutex::new(HashMap::new()),
            own_writes: OwnWrites::default(),
            prometheus: PrometheusCache::default(),
            cache,
            failures: Mutex::new(HashMap::new()),
            workers: crate::workers::Workers::new(workers).timed(timings.clone()),
            outbound: crate::outbound::Outbound::default().timed(timings),
            judge_series: crate::judge::Series::default(),
        }
    }

    /// The shared Prometheus provider for `address`, built on first use.
    pub fn prometheus(&self, address: &str) -> Result<Arc<PrometheusProvider>, String> {
        self.prometheus.get(address)
    }

    /// True the first time `message` is reported for this canary (and again after it changed).
    pub fn first_report(&self, key: &ObjectRef<Canary>, message: &str) -> bool {
        let mut reported = lock(&self.reported);
        if reported.get(key).is_some_and(|m| m == message) {
            return false;
        }
        reported.insert(key.clone(), message.to_string());
        true
    }

    pub fn due(&self, key: &ObjectRef<Canary>) -> Option<Instant> {
        lock(&self.schedule).get(key).map(|due| due.at)
    }

    /// Sets the next tick's due time; what a tick at rest saw before it no longer counts.
    pub fn set_due(&self, key: &ObjectRef<Canary>, at: Instant) {
        lock(&self.schedule).insert(
            key.clone(),
            Due {
                at,
                at_rest: None,
                when_ready: None,
            },
        );
    }

    /// Lets the readiness of `workload` bring the next tick forward, until the next due time is
    /// set.
    pub fn tick_when_ready(&self, key: &ObjectRef<Canary>, workload: Workload) {
        if let Some(due) = lock(&self.schedule).get_mut(key) {
            due.when_ready = Some(workload);
        }
    }

    /// The workload whose readiness the last tick waited for, if it did.
    pub fn waits_for_ready(&self, key: &ObjectRef<Canary>) -> Option<Workload> {
        lock(&self.schedule).get(key)?.when_ready
    }

    /// The next due time of a canary whose last tick at rest found nothing to do, with what
    /// `holds` makes of what that tick saw (`None` from it: the next tick must run).
    pub fn at_rest<T>(
        &self,
        key: &ObjectRef<Canary>,
        holds: impl FnOnce(&crate::at_rest::Memo) -> Option<T>,
    ) -> Option<(Instant, T)> {
        let schedule = lock(&self.schedule);
        let due = schedule.get(key)?;
        Some((due.at, holds(due.at_rest.as_ref()?)?))
    }

    /// Moves the next due time of a canary at rest whose tick was skipped, keeping what its last
    /// tick saw.
    pub fn keep_resting(&self, key: &ObjectRef<Canary>, at: Instant) {
        if let Some(due) = lock(&self.schedule).get_mut(key) {
            due.at = at;
        }
    }

    /// Records what a tick at rest that found nothing to do saw, until the next due time is set.
    pub fn rest(&self, key: &ObjectRef<Canary>, memo: crate::at_rest::Memo) {
        if let Some(due) = lock(&self.schedule).get_mut(key) {
            due.at_rest = Some(memo);
        }
    }

    pub fn simulated(&self, key: &ObjectRef<Canary>) -> Option<CanaryStatus> {
        lock(&self.simulated).get(key).cloned()
    }

    pub fn simulated_status(&self, key: &ObjectRef<Canary>, status: Option<CanaryStatus>) {
        let mut simulated = lock(&self.simulated);
        match status {
            Some(s) => simulated.insert(key.clone(), s),
            None => simulated.remove(key),
        };
    }

    /// Records a status write of `canary` (the copy it was decided on) that the API server answered
    /// with `written`.
    pub fn wrote_status(&self, canary: &Canary, written: Box<Canary>) {
        self.own_writes.wrote(
            &ObjectRef::from_obj(canary),
            canary.metadata.resource_version.as_deref(),
            Arc::from(written),
        );
    }

    /// Drops everything kept about a canary that is gone: its series (a deleted Failed canary
    /// would keep `CanaryFailed` firing), schedule, reports, event aggregation and backoff.
    pub fn forget(&self, key: &ObjectRef<Canary>) {
        lock(&self.schedule).remove(key);
        self.own_writes.forget(key);
        lock(&self.reported).remove(key);
        lock(&self.simulated).remove(key);
        lock(&self.failures).remove(key);
        self.judge_series.forget(key);
        self.cache.track_configs(key, Default::default());
        self.cache.targets.set(key, Default::default());
        let namespace = key.namespace.clone().unwrap_or_default();
        for target in self.metrics.forget(&namespace, &key.name) {
            self.cache.forget_target(&namespace, &target);
        }
        self.recorder.forget(&namespace, &key.name);
    }

    /// Forgets every remembered canary that `present` (the watched canaries) no longer holds.
    /// Returns how many were forgotten.
    pub fn forget_absent(&self, present: &HashSet<ObjectRef<Canary>>) -> usize {
        let mut remembered: HashSet<ObjectRef<Canary>> = HashSet::new();
        remembered.extend(lock(&self.schedule).keys().cloned());
        remembered.extend(self.own_writes.canaries());
        remembered.extend(lock(&self.reported).keys().cloned());
        remembered.extend(lock(&self.simulated).keys().cloned());
        remembered.extend(lock(&self.failures).keys().cloned());
        remembered.extend(self.cache.targets.referencing());
        remembered.extend(
            self.metrics
                .canaries()
                .into_iter()
                .map(|c| ObjectRef::new(&c.name).within(&c.namespace)),
        );
        remembered.extend(
            self.recorder
                .canaries()
                .into_iter()
                .map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)),
        );
        let gone: Vec<_> = remembered.difference(present).cloned().collect();
        for key in &gone {
            tracing::debug!(canary = %key.name, namespace = ?key.namespace, "forgetting a canary that is no longer watched");
            self.forget(key);
        }
        gone.len()
    }

    /// Counts a failed tick of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: &ObjectRef<Canary>) -> std::time::Duration {
        let mut failures = lock(&self.failures);
        let n = failures.entry(key.clone()).or_insert(0);
        let delay = crate::backoff::RETRY.delay(*n);
        *n = n.saturating_add(1);
        delay
    }

    /// A tick of `key` went through: the next failure starts the backoff over.
    pub fn succeeded(&self, key: &ObjectRef<Canary>) {
        lock(&self.failures).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        flags: Flags,
    }

    /// A context whose client points nowhere: these tests touch only its memory.
    fn context() -> Context {
        use clap::Parser;
        let flags = Cli::parse_from(["controller"]).flags;
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        Context::new(
            client,
            flags,
            Arc::new(Metrics::new(false)),
            Caller::new().unwrap(),
            None,
            None,
        )
    }

    #[tokio::test]
    async fn failed_ticks_back_off_until_one_succeeds() {
        let ctx = context();
        let key = ObjectRef::new("podinfo").within("test");
        let other = ObjectRef::new("other").within("test");
        let waits: Vec<u64> = (0..4).map(|_| ctx.failed(&key).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40]);
        assert_eq!(ctx.failed(&other).as_secs(), 5, "per canary");
        ctx.succeeded(&key);
        assert_eq!(ctx.failed(&key).as_secs(), 5, "a success starts over");
    }

    #[tokio::test]
    async fn canaries_no_longer_watched_are_forgotten_entirely() {
        let ctx = context();
        let gone = ObjectRef::new("gone").within("test");
        let kept = ObjectRef::new("kept").within("test");
        for key in [&gone, &kept] {
            ctx.set_due(key, Instant::now());
            ctx.failed(key);
            ctx.first_report(key, "warning");
            ctx.metrics.set_phase(
                &key.name,
                "test",
                &key.name,
                flagger_api::CanaryPhase::Failed,
            );
        }
        let present: HashSet<_> = [kept.clone()].into();
        assert_eq!(ctx.forget_absent(&present), 1);
        assert!(ctx.due(&gone).is_none() && ctx.due(&kept).is_some());
        let text = ctx.metrics.encode().unwrap();
        assert!(!text.contains(r#"canary="gone""#), "{text}");
        assert!(text.contains(r#"canary="kept""#), "{text}");
        assert_eq!(ctx.forget_absent(&present), 0, "nothing left to forget");
    }

    #[test]
    fn prometheus_providers_are_shared_per_address_and_bounded() {
        let cache = PrometheusCache::default();
        let a = cache.get("http://127.0.0.1:9090").unwrap();
        let again = cache.get("http://127.0.0.1:9090").unwrap();
        assert!(Arc::ptr_eq(&a, &again), "same address, same provider");
        let b = cache.get("http://127.0.0.1:9091").unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("not a url").is_err(), "bad address is an error");
        assert_eq!(cache.len(), 2, "errors are not cached");
        for i in 0..PROMETHEUS_CACHE_MAX {
            cache
                .get(&format!("http://127.0.0.1:{}", 10_000 + i))
                .unwrap();
        }
        assert!(cache.len() <= PROMETHEUS_CACHE_MAX);
    }
}
