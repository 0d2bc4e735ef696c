//! The series every canary has: `flagger_canary_status`, the one-hot `flagger_canary_phase`,
//! `flagger_canary_weight`, `flagger_canary_analysis_start_timestamp_seconds` and
//! `flagger_canary_duration_seconds`, kept as plain values per canary and target and written out
//! when `/metrics` is scraped.
//!
//! As prometheus-client families they were sixteen hash-table entries per canary, each with its
//! own label set and an allocated metric (~2.5 KB per canary, measured at 1 000 canaries: the
//! largest part of the controller's metrics, and ~25 MB at ten thousand). Here a canary's target
//! costs one small record; the label sets exist only while a scrape writes them.

use std::collections::HashMap;

use flagger_api::CanaryPhase;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::Exemplar;

use crate::metrics::{CanaryLabels, PhaseLabels, Shared, TargetLabels, WeightLabels};

/// Prometheus' Go client defaults, which Flagger's histogram uses.
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The phases `flagger_canary_phase` has one series for.
const PHASES: [CanaryPhase; 11] = [
    CanaryPhase::Initializing,
    CanaryPhase::Initialized,
    CanaryPhase::Waiting,
    CanaryPhase::Progressing,
    CanaryPhase::WaitingPromotion,
    CanaryPhase::Promoting,
    CanaryPhase::Finalising,
    CanaryPhase::Succeeded,
    CanaryPhase::Failed,
    CanaryPhase::Terminating,
    CanaryPhase::Terminated,
];

/// One canary's series for one target. A canary that changes its `targetRef` gets a record for
/// the new target; the old one keeps its last values until the canary goes.
#[derive(Clone, Debug)]
pub struct TargetSeries {
    pub target: Shared,
    phase: Option<CanaryPhase>,
    run_start: Option<f64>,
    /// Primary and canary weight.
    weights: Option<(i64, i64)>,
    duration: Option<Box<TickDurations>>,
}

/// The tick-duration histogram: per bucket counts (not cumulative), the last one `+Inf`.
#[derive(Clone, Debug, Default)]
struct TickDurations {
    sum: f64,
    count: u64,
    buckets: [u64; DURATION_BUCKETS.len() + 1],
}

impl TargetSeries {
    pub fn new(target: Shared) -> TargetSeries {
        TargetSeries {
            target,
            phase: None,
            run_start: None,
            weights: None,
            duration: None,
        }
    }

    pub fn set_phase(&mut self, phase: CanaryPhase) {
        self.phase = Some(phase);
    }

    /// The run's start while the canary is in an active phase, 0 when it is idle (so an alert
    /// can measure a run's age): set when a run becomes active, kept while it is.
    pub fn set_run_start(&mut self, phase: CanaryPhase, now: jiff::Timestamp) {
        let active = matches!(
            phase,
            CanaryPhase::Progressing
                | CanaryPhase::WaitingPromotion
                | CanaryPhase::Promoting
                | CanaryPhase::Finalising
        );
        let start = self.run_start.get_or_insert(0.0);
        if !active {
            *start = 0.0;
        } else if *start == 0.0 {
            *start = now.as_millisecond() as f64 / 1000.0;
        }
    }

    pub fn observe_duration(&mut self, seconds: f64) {
        let histogram = self.duration.get_or_insert_with(Default::default);
        histogram.sum += seconds;
        histogram.count += 1;
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|upper| seconds <= *upper)
            .unwrap_or(DURATION_BUCKETS.len());
        histogram.buckets[bucket] += 1;
    }

    pub fn set_weights(&mut self, primary: i64, canary: i64) {
        self.weights = Some((primary, canary));
    }
}

/// One canary's series as a scrape writes them.
pub struct Row {
    pub namespace: Shared,
    pub canary: Shared,
    pub series: TargetSeries,
}

/// `flagger_canary_status`'s values, Flagger's codes.
fn status_code(phase: CanaryPhase) -> i64 {
    match phase {
        CanaryPhase::Progressing => 0,
        CanaryPhase::Failed => 2,
        _ => 1,
    }
}

/// Writes the families of `rows`. The series named by target alone (status, weight, duration) are
/// written once per namespace and target even if two canaries name the same target, as a family
/// holds one series per label set (a scrape with a duplicate series is refused).
pub fn encode(rows: &mut [Row], mut encoder: DescriptorEncoder) -> std::fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    rows.sort_by(|a, b| {
        (&a.namespace, &a.series.target, &a.canary).cmp(&(
            &b.namespace,
            &b.series.target,
            &b.canary,
        ))
    });
    // The first row of each namespace and target.
    let unique: Vec<usize> = (0..rows.len())
        .filter(|&i| {
            i == 0
                || rows[i].namespace != rows[i - 1].namespace
                || rows[i].series.target != rows[i - 1].series.target
        })
        .collect();
    let target_labels = |row: &Row| TargetLabels {
        name: row.series.target.clone(),
        namespace: row.namespace.clone(),
    };

    family(
        &mut encoder,
        "canary_status",
        "Last canary analysis result (0 = Progressing, 1 = other phases, 2 = Failed).",
        MetricType::Gauge,
        unique.iter().map(|&i| &rows[i]),
        |s| s.phase.is_some(),
        |row, m| match row.series.phase {
            Some(phase) => m
                .encode_family(&target_labels(row))?
                .encode_gauge(&status_code(phase)),
            None => Ok(()),
        },
    )?;
    family(
        &mut encoder,
        "canary_weight",
        "The virtual service destination weight current value.",
        MetricType::Gauge,
        unique.iter().map(|&i| &rows[i]),
        |s| s.weights.is_some(),
        |row, m| {
            let Some((primary, canary)) = row.series.weights else {
                return Ok(());
            };
            let target = &row.series.target;
            let primary_workload: Shared = format!("{target}-primary").into();
            for (workload, weight) in [(primary_workload, primary), (target.clone(), canary)] {
                m.encode_family(&WeightLabels {
                    workload,
                    namespace: row.namespace.clone(),
                })?
                .encode_gauge(&weight)?;
            }
            Ok(())
        },
    )?;
    family(
        &mut encoder,
        "canary_duration_seconds",
        "Seconds spent performing canary analysis.",
        MetricType::Histogram,
        unique.iter().map(|&i| &rows[i]),
        |s| s.duration.is_some(),
        |row, m| {
            let Some(histogram) = &row.series.duration else {
                return Ok(());
            };
            let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(histogram.buckets)
                .collect();
            m.encode_family(&target_labels(row))?.encode_histogram(
                histogram.sum,
                histogram.count,
                &buckets,
                None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
            )
        },
    )?;
    family(
        &mut encoder,
        "canary_phase",
        "Current phase of each canary, one series per phase (1 = current).",
        MetricType::Gauge,
        rows.iter(),
        |s| s.phase.is_some(),
        |row, m| {
            let Some(current) = row.series.phase else {
                return Ok(());
            };
            for phase in PHASES {
                m.encode_family(&PhaseLabels {
                    name: row.series.target.clone(),
                    namespace: row.namespace.clone(),
                    canary: row.canary.clone(),
                    phase: phase.as_str(),
                })?
                .encode_gauge(&i64::from(phase == current))?;
            }
            Ok(())
        },
    )?;
    family(
        &mut encoder,
        "canary_analysis_start_timestamp_seconds",
        "Unix time the current canary run started; 0 when idle.",
        MetricType::Gauge,
        rows.iter(),
        |s| s.run_start.is_some(),
        |row, m| match row.series.run_start {
            Some(start) => m
                .encode_family(&CanaryLabels {
                    name: row.series.target.clone(),
                    namespace: row.namespace.clone(),
                    canary: row.canary.clone(),
                })?
                .encode_gauge(&start),
            None => Ok(()),
        },
    )
}

/// One family: its descriptor, then what `series` writes for each row. Nothing at all when no row
/// has a series of it, as the registry leaves out an empty family.
fn family<'r>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    rows: impl Iterator<Item = &'r Row> + Clone,
    present: fn(&TargetSeries) -> bool,
    series: impl Fn(&Row, &mut MetricEncoder) -> std::fmt::Result,
) -> std::fmt::Result {
    if !rows.clone().any(|row| present(&row.series)) {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for row in rows {
        series(row, &mut metric)?;
    }
    Ok(())
}
