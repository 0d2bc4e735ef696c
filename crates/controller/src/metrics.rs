//! The controller's own Prometheus metrics, with Flagger's names, types and labels so dashboards
//! and rules written for Flagger keep working, plus the phase and rollback series flagger-rs adds.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use flagger_api::CanaryPhase;

use crate::canary_series::{self, Row, TargetSeries};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub version: String,
    pub mesh_provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

/// A label value a canary's series share (its namespace, name and target appear in up to 16 of
/// them): held once per canary, and only referenced by the label sets built from it.
pub type Shared = Arc<str>;

/// `name` is the *target* name, as in Flagger.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub name: Shared,
    pub namespace: Shared,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WeightLabels {
    pub workload: Shared,
    pub namespace: Shared,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    pub name: String,
    pub namespace: String,
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub name: String,
    pub namespace: String,
    pub deployment_strategy: String,
    pub analysis_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub name: Shared,
    pub namespace: Shared,
    pub canary: Shared,
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RollbackLabels {
    pub name: String,
    pub namespace: String,
    pub canary: String,
    pub deployment_strategy: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

/// An API request by its HTTP method (`WATCH` for a GET that streams) and the resource it names
/// (`deployments`, `canaries/status`; `discovery` for the API's own descriptions).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub resource: String,
}

/// The API requests the controller sent, counted where they leave its client.
pub type ApiRequests = Family<RequestLabels, Counter>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryLabels {
    pub name: Shared,
    pub namespace: Shared,
    pub canary: Shared,
}

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    /// The families: each holds its lock while a scrape writes it.
    registry: Registry,
    /// Every canary's own series (see `canary_series`), written from a copy with no lock held.
    canary_registry: Registry,
    pub info: Family<InfoLabels, Gauge>,
    pub canary_total: Family<NamespaceLabels, Gauge>,
    pub metric_analysis: Family<MetricLabels, FloatGauge>,
    pub successes: Family<OutcomeLabels, Counter>,
    pub failures: Family<OutcomeLabels, Counter>,
    pub rollbacks: Family<RollbackLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Canary reconciles a watched object's change asked for, by the object's kind.
    pub watch_triggers: Family<ErrorLabels, Counter>,
    /// Requests sent to the API server; the client counts into it (see `ratelimit`).
    pub api_requests: ApiRequests,
    /// Where a late tick's time went (see `timings`).
    pub timings: crate::timings::Timings,
    /// Each canary's own series (see `canary_series`), and the label sets of its series in the
    /// families above. prometheus-client cannot list a family's series, and a deleted canary's
    /// series must go (its `phase="Failed"` would keep the `CanaryFailed` alert firing), so the
    /// labels are remembered as they are created. Shared with the collector that writes the
    /// canaries' own series at scrape time.
    owned: Arc<Mutex<HashMap<CanaryId, Owned>>>,
}

/// A canary by namespace and name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct CanaryId {
    pub namespace: String,
    pub name: String,
}

/// One canary's label values, its own series, and what [`Metrics::forget`] removes for it from
/// the families.
struct Owned {
    namespace: Shared,
    canary: Shared,
    /// Per target the canary has had series for (a canary may change its `targetRef`).
    targets: Vec<TargetSeries>,
    metrics: HashSet<MetricLabels>,
    outcomes: HashSet<OutcomeLabels>,
    rollbacks: HashSet<RollbackLabels>,
}

impl Owned {
    fn new(namespace: &str, canary: &str) -> Owned {
        Owned {
            namespace: namespace.into(),
            canary: canary.into(),
            targets: Vec::new(),
            metrics: HashSet::new(),
            outcomes: HashSet::new(),
            rollbacks: HashSet::new(),
        }
    }

    /// The canary's series for `target`.
    fn target(&mut self, target: &str) -> &mut TargetSeries {
        let index = match self.targets.iter().position(|t| &*t.target == target) {
            Some(index) => index,
            None => {
                // Room for this one only: nearly every canary has one target all its life.
                self.targets.reserve_exact(1);
                self.targets.push(TargetSeries::new(target.into()));
                self.targets.len() - 1
            }
        };
        &mut self.targets[index]
    }
}

/// Writes every canary's [`TargetSeries`] when `/metrics` is scraped.
struct CanaryCollector(Arc<Mutex<HashMap<CanaryId, Owned>>>);

impl std::fmt::Debug for CanaryCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CanaryCollector")
    }
}

impl Collector for CanaryCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        // Copied out under the lock and written without it: ticks record into this map, and
        // writing ten thousand canaries' series takes far longer than copying their values.
        let mut rows: Vec<Row> = {
            let owned = crate::context::lock(&self.0);
            owned
                .values()
                .flat_map(|o| {
                    o.targets.iter().map(|series| Row {
                        namespace: o.namespace.clone(),
                        canary: o.canary.clone(),
                        series: series.clone(),
                    })
                })
                .collect()
        };
        canary_series::encode(&mut rows, encoder)
    }
}

impl Metrics {
    /// In dry-run every series carries `dry_run="true"`, so a shadow controller's numbers never mix
    /// with the real one's.
    pub fn new(dry_run: bool) -> Metrics {
        let new_registry = || {
            if dry_run {
                Registry::with_prefix_and_labels(
                    "flagger",
                    [("dry_run".into(), "true".into())].into_iter(),
                )
            } else {
                Registry::with_prefix("flagger")
            }
        };
        let mut registry = new_registry();
        let mut canary_registry = new_registry();
        let metrics = Metrics {
            info: Family::default(),
            canary_total: Family::default(),
            metric_analysis: Family::default(),
            successes: Family::default(),
            failures: Family::default(),
            rollbacks: Family::default(),
            reconcile_errors: Family::default(),
            watch_triggers: Family::default(),
            api_requests: Family::default(),
            timings: crate::timings::Timings::default(),
            owned: Arc::new(Mutex::new(HashMap::new())),
            registry: Registry::default(),
            canary_registry: Registry::default(),
        };
        registry.register(
            "info",
            "Flagger version and mesh provider information",
            metrics.info.clone(),
        );
        registry.register(
            "canary_total",
            "Total number of canary object",
            metrics.canary_total.clone(),
        );
        registry.register(
            "canary_metric_analysis",
            "Last canary analysis result per metric",
            metrics.metric_analysis.clone(),
        );
        // prometheus-client appends `_total` to counters: these become Flagger's
        // flagger_canary_successes_total and flagger_canary_failures_total.
        registry.register(
            "canary_successes",
            "Total number of canary successes",
            metrics.successes.clone(),
        );
        registry.register(
            "canary_failures",
            "Total number of canary failures",
            metrics.failures.clone(),
        );
        registry.register(
            "canary_rollbacks",
            "Rollbacks performed, by reason",
            metrics.rollbacks.clone(),
        );
        // prometheus-client appends `_total`: flagger_reconcile_errors_total.
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind of error (kube, runaway, effect)",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "watch_triggers",
            "Canary reconciles requested by the change of a watched object, by the object's kind",
            metrics.watch_triggers.clone(),
        );
        // flagger_api_requests_total: what the controller asks of the API server, e.g. that an
        // idle canary asks nothing and what a rollout costs against `-kubeconfig-qps`.
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API server, by HTTP method (WATCH for a watch) and resource",
            metrics.api_requests.clone(),
        );
        metrics.timings.register(&mut registry);
        // flagger_canary_status, _phase, _weight, _duration_seconds and
        // _analysis_start_timestamp_seconds.
        canary_registry.register_collector(Box::new(CanaryCollector(metrics.owned.clone())));
        Metrics {
            registry,
            canary_registry,
            ..metrics
        }
    }

    /// Counts the canaries a watched object's change maps to.
    pub fn watch_triggered(&self, kind: &str, canaries: usize) {
        self.watch_triggers
            .get_or_create(&ErrorLabels { kind: kind.into() })
            .inc_by(canaries as u64);
    }

    /// Counts one failed reconcile.
    pub fn reconcile_error(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { kind: kind.into() })
            .inc();
    }

    /// Runs `record` on the canary's entry, under the lock [`Metrics::forget`] takes: a series is
    /// never created for a canary after its series were forgotten by a concurrent delete.
    fn own<R>(&self, namespace: &str, canary: &str, record: impl FnOnce(&mut Owned) -> R) -> R {
        let mut owned = crate::context::lock(&self.owned);
        let entry = owned
            .entry(CanaryId {
                namespace: namespace.into(),
                name: canary.into(),
            })
            .or_insert_with(|| Owned::new(namespace, canary));
        record(entry)
    }

    /// The canaries that have series, for the sweep that forgets the ones no longer watched.
    pub fn canaries(&self) -> Vec<CanaryId> {
        crate::context::lock(&self.owned).keys().cloned().collect()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// The exposition, written to `out` as it is encoded.
    pub fn encode_into(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        self.encode_families(out)?;
        self.encode_canaries(out)?;
        self.encode_end(out)
    }

    /// The exposition's first part: the families, each holding its lock while it is written (a
    /// writer must not wait on anything a tick could hold up; see `scrape`).
    pub fn encode_families(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &self.registry)
    }

    /// The exposition's second part, most of it at scale: every canary's own series, written
    /// from a copy with no lock held, so its writer may wait.
    pub fn encode_canaries(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &self.canary_registry)
    }

    /// The exposition's end marker.
    pub fn encode_end(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_eof(out)
    }

    /// Records a canary's phase, which `flagger_canary_status` (Flagger's code values) and the
    /// one-hot `flagger_canary_phase` report. Ticks record it through [`Metrics::record_tick`];
    /// tests set it alone.
    #[cfg(test)]
    pub fn set_phase(&self, canary: &str, namespace: &str, target: &str, phase: CanaryPhase) {
        self.own(namespace, canary, |o| o.target(target).set_phase(phase));
    }

    /// `flagger_canary_analysis_start_timestamp_seconds`: set when a run becomes active, kept
    /// while it is, 0 when the canary is idle (so `CanaryStuck` can measure a run's age).
    #[cfg(test)]
    pub fn set_run_start(
        &self,
        canary: &str,
        namespace: &str,
        target: &str,
        phase: CanaryPhase,
        now: jiff::Timestamp,
    ) {
        self.own(namespace, canary, |o| {
            o.target(target).set_run_start(phase, now)
        });
    }

    /// What every tick records, under one lookup of the canary's entry: its phase (see
    /// [`Metrics::set_phase`]), its run's start (see [`Metrics::set_run_start`]) and how long the
    /// tick took (`flagger_canary_duration_seconds`).
    pub fn record_tick(
        &self,
        canary: &str,
        namespace: &str,
        target: &str,
        phase: CanaryPhase,
        now: jiff::Timestamp,
        took: f64,
    ) {
        self.own(namespace, canary, |o| {
            let series = o.target(target);
            series.set_run_start(phase, now);
            series.observe_duration(took);
            series.set_phase(phase);
        });
    }

    /// `flagger_canary_metric_analysis`: the last value of a metric check.
    pub fn set_metric_value(
        &self,
        canary: &str,
        target: &str,
        namespace: &str,
        metric: &str,
        value: f64,
    ) {
        let labels = MetricLabels {
            name: target.into(),
            namespace: namespace.into(),
            metric: metric.into(),
        };
        self.metric_analysis.get_or_create(&labels).set(value);
        self.own(namespace, canary, |o| {
            o.metrics.insert(labels);
        });
    }

    /// `flagger_canary_successes_total` (skipped or completed analysis).
    pub fn count_success(&self, canary: &str, labels: OutcomeLabels) {
        self.successes.get_or_create(&labels).inc();
        let namespace = labels.namespace.clone();
        self.own(&namespace, canary, |o| {
            o.outcomes.insert(labels);
        });
    }

    /// `flagger_canary_failures_total` and the rollback's `flagger_canary_rollbacks_total`.
    pub fn count_rollback(&self, outcome: OutcomeLabels, rollback: RollbackLabels) {
        self.failures.get_or_create(&outcome).inc();
        self.rollbacks.get_or_create(&rollback).inc();
        let (namespace, canary) = (rollback.namespace.clone(), rollback.canary.clone());
        self.own(&namespace, &canary, |o| {
            o.outcomes.insert(outcome);
            o.rollbacks.insert(rollback);
        });
    }

    /// `flagger_canary_total` per namespace, from the watched canaries.
    pub fn set_canary_totals(&self, totals: &std::collections::BTreeMap<String, i64>) {
        self.canary_total.clear();
        for (namespace, count) in totals {
            self.canary_total
                .get_or_create(&NamespaceLabels {
                    namespace: namespace.clone(),
                })
                .set(*count);
        }
    }

    /// `flagger_canary_weight` of the primary and canary workloads.
    pub fn set_weights(
        &self,
        canary: &str,
        namespace: &str,
        target: &str,
        primary: i64,
        canary_weight: i64,
    ) {
        self.own(namespace, canary, |o| {
            o.target(target).set_weights(primary, canary_weight)
        });
    }

    /// Drops every series of a canary that is gone (deleted, or no longer watched), so neither
    /// alerts nor dashboards keep reporting it. Returns the targets it had series for.
    pub fn forget(&self, namespace: &str, canary: &str) -> Vec<String> {
        // Held until every series is gone (see `own`).
        let mut canaries = crate::context::lock(&self.owned);
        let Some(owned) = canaries.remove(&CanaryId {
            namespace: namespace.into(),
            name: canary.into(),
        }) else {
            return Vec::new();
        };
        for labels in &owned.metrics {
            self.metric_analysis.remove(labels);
        }
        for labels in &owned.outcomes {
            self.successes.remove(labels);
            self.failures.remove(labels);
        }
        for labels in &owned.rollbacks {
            self.rollbacks.remove(labels);
        }
        owned.targets.iter().map(|t| t.target.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(metrics: &Metrics) -> String {
        metrics.encode().unwrap()
    }

    #[test]
    fn names_and_types_are_flaggers() {
        let metrics = Metrics::new(false);
        metrics
            .info
            .get_or_create(&InfoLabels {
                version: "1.0.0".into(),
                mesh_provider: "kubernetes".into(),
            })
            .set(1);
        metrics
            .canary_total
            .get_or_create(&NamespaceLabels {
                namespace: "test".into(),
            })
            .set(1);
        metrics.set_weights("podinfo", "test", "podinfo", 90, 10);
        let outcome = OutcomeLabels {
            name: "podinfo".into(),
            namespace: "test".into(),
            deployment_strategy: "canary".into(),
            analysis_status: "completed".into(),
        };
        metrics.successes.get_or_create(&outcome).inc();
        metrics.failures.get_or_create(&outcome).inc();
        metrics.record_tick(
            "podinfo",
            "test",
            "podinfo",
            CanaryPhase::Progressing,
            jiff::Timestamp::now(),
            0.2,
        );
        let text = exposition(&metrics);
        for expected in [
            "# TYPE flagger_info gauge",
            r#"flagger_info{version="1.0.0",mesh_provider="kubernetes"} 1"#,
            r#"flagger_canary_total{namespace="test"} 1"#,
            r#"flagger_canary_status{name="podinfo",namespace="test"} 0"#,
            r#"flagger_canary_weight{workload="podinfo-primary",namespace="test"} 90"#,
            r#"flagger_canary_weight{workload="podinfo",namespace="test"} 10"#,
            "# TYPE flagger_canary_duration_seconds histogram",
            r#"flagger_canary_duration_seconds_bucket{le="0.25",name="podinfo",namespace="test"} 1"#,
            "# TYPE flagger_canary_successes counter",
            r#"flagger_canary_successes_total{name="podinfo",namespace="test",deployment_strategy="canary",analysis_status="completed"} 1"#,
            r#"flagger_canary_failures_total{name="podinfo",namespace="test",deployment_strategy="canary",analysis_status="completed"} 1"#,
            r#"flagger_canary_phase{name="podinfo",namespace="test",canary="podinfo",phase="Progressing"} 1"#,
            r#"flagger_canary_phase{name="podinfo",namespace="test",canary="podinfo",phase="Failed"} 0"#,
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn status_gauge_uses_flaggers_code_values() {
        let metrics = Metrics::new(false);
        for (phase, value) in [
            (CanaryPhase::Progressing, 0),
            (CanaryPhase::Failed, 2),
            (CanaryPhase::Succeeded, 1),
            (CanaryPhase::WaitingPromotion, 1),
        ] {
            metrics.set_phase("c", "ns", "t", phase);
            let text = exposition(&metrics);
            let line = format!(r#"flagger_canary_status{{name="t",namespace="ns"}} {value}"#);
            assert!(text.contains(&line), "{phase}: missing {line:?}");
            let ones = text
                .lines()
                .filter(|l| l.starts_with("flagger_canary_phase{") && l.ends_with(" 1"))
                .count();
            assert_eq!(ones, 1, "exactly one current phase");
        }
    }

    #[test]
    fn a_canary_that_changes_target_gets_series_for_the_new_one_in_the_same_phase() {
        let metrics = Metrics::new(false);
        metrics.set_phase("c", "ns", "old", CanaryPhase::Succeeded);
        metrics.set_phase("c", "ns", "old", CanaryPhase::Succeeded);
        metrics.set_phase("c", "ns", "new", CanaryPhase::Succeeded);
        let text = exposition(&metrics);
        for target in ["old", "new"] {
            let line = format!(
                r#"flagger_canary_phase{{name="{target}",namespace="ns",canary="c",phase="Succeeded"}} 1"#
            );
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        metrics.forget("ns", "c");
        assert!(!exposition(&metrics).contains("flagger_canary_phase{"));
    }

    #[test]
    fn run_start_is_kept_while_active_and_cleared_when_idle() {
        let metrics = Metrics::new(false);
        let t0 = jiff::Timestamp::from_second(1000).unwrap();
        let t1 = jiff::Timestamp::from_second(2000).unwrap();
        let line = |m: &Metrics| {
            exposition(m)
                .lines()
                .find(|l| l.starts_with("flagger_canary_analysis_start_timestamp_seconds{"))
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
        };
        metrics.set_run_start("c", "ns", "t", CanaryPhase::Progressing, t0);
        metrics.set_run_start("c", "ns", "t", CanaryPhase::Promoting, t1);
        assert_eq!(line(&metrics).as_deref(), Some("1000.0"));
        metrics.set_run_start("c", "ns", "t", CanaryPhase::Succeeded, t1);
        assert_eq!(line(&metrics).as_deref(), Some("0.0"));
    }

    #[test]
    fn dry_run_series_are_labelled() {
        let metrics = Metrics::new(true);
        metrics.set_phase("c", "ns", "t", CanaryPhase::Initialized);
        assert!(exposition(&metrics).contains(r#"dry_run="true""#));
    }

    #[test]
    fn a_deleted_canary_leaves_no_series() {
        let metrics = Metrics::new(false);
        let outcome = |ns: &str| OutcomeLabels {
            name: "t".into(),
            namespace: ns.into(),
            deployment_strategy: "canary".into(),
            analysis_status: "completed".into(),
        };
        for ns in ["ns", "other"] {
            metrics.set_phase("c", ns, "t", CanaryPhase::Failed);
            metrics.set_run_start(
                "c",
                ns,
                "t",
                CanaryPhase::Progressing,
                jiff::Timestamp::now(),
            );
            metrics.set_weights("c", ns, "t", 50, 50);
            metrics.set_metric_value("c", "t", ns, "error-rate", 1.5);
            metrics.count_success("c", outcome(ns));
            metrics.count_rollback(
                outcome(ns),
                RollbackLabels {
                    name: "t".into(),
                    namespace: ns.into(),
                    canary: "c".into(),
                    deployment_strategy: "canary".into(),
                    reason: "failed_checks".into(),
                },
            );
            metrics.record_tick(
                "c",
                ns,
                "t",
                CanaryPhase::Failed,
                jiff::Timestamp::now(),
                0.1,
            );
        }
        assert_eq!(metrics.canaries().len(), 2);
        metrics.forget("ns", "c");
        let text = exposition(&metrics);
        assert!(!text.contains(r#"namespace="ns""#), "{text}");
        assert!(
            text.contains(
                r#"flagger_canary_phase{name="t",namespace="other",canary="c",phase="Failed"} 1"#
            ),
            "another namespace's canary of the same name keeps its series:\n{text}"
        );
        assert_eq!(
            metrics.canaries(),
            vec![CanaryId {
                namespace: "other".into(),
                name: "c".into()
            }]
        );
        metrics.forget("ns", "c");
    }

    #[test]
    fn two_canaries_of_one_target_write_its_target_series_once() {
        let metrics = Metrics::new(false);
        for canary in ["a", "b"] {
            metrics.set_phase(canary, "ns", "shared", CanaryPhase::Succeeded);
            metrics.set_weights(canary, "ns", "shared", 100, 0);
        }
        let text = exposition(&metrics);
        let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(count("flagger_canary_status{"), 1, "{text}");
        assert_eq!(count("flagger_canary_weight{"), 2, "{text}");
        assert_eq!(
            count("flagger_canary_phase{"),
            2 * 11,
            "one-hot per canary: {text}"
        );
    }

    #[test]
    fn a_histogram_counts_each_tick_in_its_bucket() {
        let metrics = Metrics::new(false);
        for took in [0.003, 0.2, 0.2, 30.0] {
            metrics.record_tick(
                "c",
                "ns",
                "t",
                CanaryPhase::Succeeded,
                jiff::Timestamp::now(),
                took,
            );
        }
        let text = exposition(&metrics);
        for expected in [
            r#"flagger_canary_duration_seconds_bucket{le="0.005",name="t",namespace="ns"} 1"#,
            r#"flagger_canary_duration_seconds_bucket{le="0.1",name="t",namespace="ns"} 1"#,
            r#"flagger_canary_duration_seconds_bucket{le="0.25",name="t",namespace="ns"} 3"#,
            r#"flagger_canary_duration_seconds_bucket{le="10.0",name="t",namespace="ns"} 3"#,
            r#"flagger_canary_duration_seconds_bucket{le="+Inf",name="t",namespace="ns"} 4"#,
            r#"flagger_canary_duration_seconds_count{name="t",namespace="ns"} 4"#,
            r#"flagger_canary_duration_seconds_sum{name="t",namespace="ns"} 30.403"#,
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn reconcile_errors_are_counted_by_kind() {
        let metrics = Metrics::new(false);
        metrics.reconcile_error("kube");
        metrics.reconcile_error("kube");
        let text = exposition(&metrics);
        assert!(
            text.contains(r#"flagger_reconcile_errors_total{kind="kube"} 2"#),
            "{text}"
        );
    }
}
