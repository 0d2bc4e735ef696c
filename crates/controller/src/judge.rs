//! The statistical judge's side of a tick (`Need::Judge`): query each judged metric for the
//! baseline, keep both sides' samples of the run, and let the core look at them
//! ([`flagger_core::judging::look`]). Deciding is the core's job; this only gathers.
//!
//! Samples are kept in memory per canary and run (the checksum of the revision under test): a
//! new revision starts afresh, a deleted canary is forgotten, and a restarted controller gathers
//! again (the judge holds until it has enough).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use flagger_api::analysis::CrossNamespaceRef;
use flagger_api::{Canary, CanaryStatus};
use flagger_core::judging::Samples;
use flagger_core::{EventType, MetricOutcome, Observation, RolloutSpec};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::context::{Context, lock};

/// Samples kept per side of a metric: a run of a day at a 10 s interval needs about 8 640; older
/// ones go first, so memory stays bounded whatever a run's length.
const MAX_SAMPLES: usize = 4096;

/// One side's reading of a metric in one tick: its value and, for a metric judged on counts,
/// the requests that value is out of.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Reading {
    value: f64,
    total: Option<f64>,
}

/// Both sides' readings of one metric.
#[derive(Default)]
struct Sides {
    canary: VecDeque<Reading>,
    primary: VecDeque<Reading>,
}

/// One run's readings of every judged metric.
#[derive(Default)]
struct Run {
    checksum: String,
    metrics: BTreeMap<String, Sides>,
}

/// This tick's reading of one metric per side (`None`: the side had no value).
struct Tick {
    name: String,
    canary: Option<Reading>,
    primary: Option<Reading>,
}

/// One side of everything gathered for a metric in the run, as the core takes it.
#[derive(Debug, Default, PartialEq)]
struct Side {
    values: Vec<f64>,
    /// In step with `values` for a metric judged on counts, else empty.
    totals: Vec<f64>,
}

impl Side {
    fn of(readings: &VecDeque<Reading>) -> Self {
        Side {
            values: readings.iter().map(|r| r.value).collect(),
            totals: readings.iter().filter_map(|r| r.total).collect(),
        }
    }
}

/// The readings of every canary's current run.
#[derive(Default)]
pub struct Series(Mutex<HashMap<ObjectRef<Canary>, Run>>);

impl Series {
    /// Adds this tick's readings and returns everything gathered in the run, as (metric,
    /// canary, primary).
    fn add(
        &self,
        key: &ObjectRef<Canary>,
        checksum: &str,
        tick: &[Tick],
    ) -> Vec<(String, Side, Side)> {
        let mut all = lock(&self.0);
        let run = all.entry(key.clone()).or_default();
        if run.checksum != checksum {
            *run = Run {
                checksum: checksum.to_string(),
                metrics: BTreeMap::new(),
            };
        }
        for t in tick {
            let sides = run.metrics.entry(t.name.clone()).or_default();
            for (side, reading) in [
                (&mut sides.canary, t.canary),
                (&mut sides.primary, t.primary),
            ] {
                let usable =
                    |r: &Reading| r.value.is_finite() && r.total.is_none_or(f64::is_finite);
                if let Some(r) = reading.filter(usable) {
                    if side.len() >= MAX_SAMPLES {
                        side.pop_front();
                    }
                    side.push_back(r);
                }
            }
        }
        run.metrics
            .iter()
            .map(|(name, s)| (name.clone(), Side::of(&s.canary), Side::of(&s.primary)))
            .collect()
    }

    pub fn forget(&self, key: &ObjectRef<Canary>) {
        lock(&self.0).remove(key);
    }

    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Queries the judged metrics for the baseline (and, for metrics judged on counts, the requests
/// of both sides), adds both sides' readings (the canary's values are this tick's metric
/// results) and puts the core's look into the observation.
pub async fn fulfil(
    ctx: &Context,
    canary: &Canary,
    spec: &RolloutSpec,
    status: &CanaryStatus,
    observation: &mut Observation,
) {
    let Some(judge) = spec.judge.as_ref() else {
        return;
    };
    // The baseline is the same query with `{{ target }}` naming the baseline workload.
    let mut baseline = canary.clone();
    baseline.spec.target_ref.name = judge.baseline.clone();
    // The canary side renders as its metric checks did (a Knative target's revision under test).
    let knative_revision = canary
        .spec
        .target_ref
        .is_knative_service()
        .then(|| observation.revision.clone());
    let mut tick = Vec::new();
    for metric in &spec.metrics {
        let Some(judging) = metric.judge.as_ref() else {
            continue;
        };
        let canary_value = observation
            .metrics
            .iter()
            .find(|r| r.name == metric.name)
            .and_then(|r| value(&r.outcome));
        let primary_value = query(ctx, canary, &baseline, &metric.name, None).await;
        let (canary, primary) = match &judging.total {
            None => (canary_value.map(continuous), primary_value.map(continuous)),
            Some(total) => {
                let canary_total = query(
                    ctx,
                    canary,
                    &counting_requests(canary, &metric.name, total),
                    &metric.name,
                    knative_revision.as_deref(),
                )
                .await;
                let primary_total = query(
                    ctx,
                    canary,
                    &counting_requests(&baseline, &metric.name, total),
                    &metric.name,
                    None,
                )
                .await;
                (
                    counted(canary_value, canary_total),
                    counted(primary_value, primary_total),
                )
            }
        };
        tick.push(Tick {
            name: metric.name.clone(),
            canary,
            primary,
        });
    }
    let key = ObjectRef::from_obj(canary);
    let gathered = ctx
        .judge_series
        .add(&key, &crate::fulfil::checksum(status), &tick);
    let samples: Vec<Samples<'_>> = gathered
        .iter()
        .map(|(name, canary, primary)| Samples {
            name,
            canary: &canary.values,
            primary: &primary.values,
            canary_totals: &canary.totals,
            primary_totals: &primary.totals,
        })
        .collect();
    let looks = flagger_core::plan::checks_to_promote(spec);
    observation.judge = flagger_core::judging::look(spec, &samples, looks);
}

/// Runs one judge query (`rendered` says what `{{ target }}` and the template are); a failed
/// query is a Warning event on the canary and no reading, never a failed check by itself.
async fn query(
    ctx: &Context,
    canary: &Canary,
    rendered: &Canary,
    metric: &str,
    knative_revision: Option<&str>,
) -> Option<f64> {
    let checked = crate::checks::run(ctx, rendered, metric, knative_revision).await;
    let target = &rendered.spec.target_ref.name;
    match &checked.result.outcome {
        MetricOutcome::Value(v) => Some(*v),
        MetricOutcome::Error(message) => {
            let message = format!("Judge {target}: {message}");
            ctx.recorder
                .record(canary, EventType::Warning, &message)
                .await;
            None
        }
        outcome => {
            tracing::debug!(canary = %canary.name_any(), metric, target, ?outcome, "no judge sample this tick");
            None
        }
    }
}

/// The canary (or baseline) with the named metric's template swapped for the one that counts its
/// requests: the same rendering path as the metric itself, so `{{ target }}`, `{{ interval }}`
/// and the template variables mean the same in both queries.
fn counting_requests(canary: &Canary, metric: &str, total: &CrossNamespaceRef) -> Canary {
    let mut counting = canary.clone();
    for m in counting.spec.analysis.metrics.iter_mut().flatten() {
        if m.name == metric {
            m.template_ref = Some(total.clone());
            m.query = None;
        }
    }
    counting
}

fn continuous(value: f64) -> Reading {
    Reading { value, total: None }
}

/// Errors and requests are one reading only together: either alone would skew the rate.
fn counted(errors: Option<f64>, total: Option<f64>) -> Option<Reading> {
    Some(Reading {
        value: errors?,
        total: Some(total?),
    })
}

fn value(outcome: &MetricOutcome) -> Option<f64> {
    match outcome {
        MetricOutcome::Value(v) => Some(*v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ObjectRef<Canary> {
        ObjectRef::new("podinfo").within("test")
    }

    fn tick(name: &str, canary: Option<Reading>, primary: Option<Reading>) -> Tick {
        Tick {
            name: name.into(),
            canary,
            primary,
        }
    }

    #[test]
    fn a_run_keeps_bounded_samples_and_a_new_run_starts_afresh() {
        let series = Series::default();
        let mut last = Vec::new();
        for i in 0..(MAX_SAMPLES + 10) {
            let v = i as f64;
            last = series.add(&key(), "a", &[tick("latency", Some(continuous(v)), None)]);
        }
        let (_, canary, primary) = &last[0];
        assert_eq!(canary.values.len(), MAX_SAMPLES);
        assert_eq!(canary.values[0], 10.0, "the oldest go first");
        assert!(
            canary.totals.is_empty(),
            "a continuous metric has no totals"
        );
        assert!(
            primary.values.is_empty(),
            "a side without values gathers none"
        );
        let fresh = series.add(
            &key(),
            "b",
            &[tick(
                "latency",
                Some(continuous(1.0)),
                Some(continuous(f64::NAN)),
            )],
        );
        assert_eq!(fresh[0].1.values, vec![1.0]);
        assert!(fresh[0].2.values.is_empty(), "NaN is no sample");
        series.forget(&key());
        assert!(series.is_empty());
    }

    #[test]
    fn counts_are_gathered_only_as_errors_with_their_requests() {
        let series = Series::default();
        let ticks = [
            (Some(2.0), Some(100.0)),
            (Some(1.0), None),
            (None, Some(100.0)),
            (Some(0.0), Some(f64::NAN)),
            (Some(3.0), Some(120.0)),
        ];
        let mut last = Vec::new();
        for (errors, total) in ticks {
            let reading = counted(errors, total);
            last = series.add(&key(), "a", &[tick("errors", reading, reading)]);
        }
        let (_, canary, primary) = &last[0];
        let want = Side {
            values: vec![2.0, 3.0],
            totals: vec![100.0, 120.0],
        };
        assert_eq!(canary, &want, "a tick missing either count adds nothing");
        assert_eq!(primary, &want);
    }

    #[test]
    fn the_requests_query_renders_the_metric_with_the_total_template() {
        let canary: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 80},
                "analysis": {"interval": "1m", "threshold": 2, "metrics": [
                    {"name": "latency", "templateRef": {"name": "latency"}},
                    {"name": "errors", "templateRef": {"name": "errors"}, "interval": "2m",
                     "templateVariables": {"route": "api"},
                     "judge": {"totalTemplateRef": {"name": "requests", "namespace": "flagger"}}},
                ]},
            },
        }))
        .unwrap();
        let total = CrossNamespaceRef {
            name: "requests".into(),
            namespace: Some("flagger".into()),
        };
        let counting = counting_requests(&canary, "errors", &total);
        let metrics = counting.spec.analysis.metrics.as_ref().unwrap();
        assert_eq!(metrics[1].template_ref.as_ref(), Some(&total));
        assert_eq!(metrics[1].interval.as_deref(), Some("2m"), "same interval");
        assert_eq!(
            metrics[1].template_variables,
            canary.spec.analysis.metrics.as_ref().unwrap()[1].template_variables,
            "same variables"
        );
        assert_eq!(
            metrics[0].template_ref.as_ref().map(|t| t.name.as_str()),
            Some("latency"),
            "other metrics untouched"
        );
        assert_eq!(counting.spec.target_ref, canary.spec.target_ref);
    }
}
