//! The analysis of one tick: hooks, then metrics; the first failure
//! is one failed check, and the threshold-th failure rolls back in the same tick, not one interval later.

use flagger_api::analysis::HookType;
use flagger_api::status::{AnalysisRecords, CanaryPhase, CheckKind, CheckRecord};

use flagger_judge::Decision;

use crate::action::{EventName, EventType, FailedCheck, Need, Reason};
use crate::judging;
use crate::normalize::{MetricCheck, MetricKind, NoDataPolicy};
use crate::observation::{MetricOutcome, MetricResult};
use crate::rollback::{failed_checks_reason, rollback};
use crate::status::{StatusExt, set_promoted_message};
use crate::tick::{Flow, Stop, Tick, after};

/// Tick number within the run for check records; 1 is the first analysis tick.
pub(crate) fn record_iteration(t: &Tick) -> i32 {
    // Records are cleared at run start, and a first tick without pre-rollout hooks leaves none.
    match t.start.records().iter().map(|r| r.iteration).max() {
        Some(last) => last + 1,
        None if t.first_analysis => 1,
        None => 2,
    }
}

/// How many failed checks of earlier ticks the status keeps. `threshold` usually bounds them, but
/// it may be set as high as 2^31 (a canary that should hold rather than roll back): without this cap
/// a failing canary's status would grow by a record every tick until the API server refused it.
pub(crate) const MAX_KEPT_FAILURES: usize = 32;

/// Keeps the latest tick's records and the latest failed checks of the run, the ones alerts list.
pub(crate) fn record(t: &mut Tick, record: CheckRecord) {
    let n = record.iteration;
    let records = t
        .status
        .canary_analysis
        .get_or_insert_with(AnalysisRecords::default)
        .iterations
        .get_or_insert_with(Vec::new);
    records.retain(|r| r.iteration == n || (r.failed && r.kind != CheckKind::Gate));
    let earlier_failures = records.iter().filter(|r| r.iteration != n).count();
    if earlier_failures >= MAX_KEPT_FAILURES {
        // Records are appended in tick order, so the oldest failures come first.
        let mut drop = earlier_failures + 1 - MAX_KEPT_FAILURES;
        records.retain(|r| {
            let keep = r.iteration == n || drop == 0;
            if !keep {
                drop -= 1;
            }
            keep
        });
    }
    records.push(record);
}

pub(crate) fn new_record(
    t: &Tick,
    kind: CheckKind,
    name: &str,
    failed: bool,
    message: Option<String>,
) -> CheckRecord {
    CheckRecord {
        iteration: record_iteration(t),
        time: t.now,
        kind,
        name: name.to_string(),
        value: None,
        threshold: None,
        failed,
        message,
    }
}

/// The message of a failed check's record: the event text, plus the rendered query when there is one, so
/// `status.canaryAnalysis` shows what was asked as well as the answer (issue 7).
fn record_message(check: &FailedCheck) -> String {
    match &check.query {
        Some(query) if !query.is_empty() => format!("{} (query: {query})", check.message),
        _ => check.message.clone(),
    }
}

/// Counts one failed check; rolls back when it reaches the threshold.
fn fail(t: &mut Tick, check: FailedCheck) -> Flow {
    let mut rec = new_record(
        t,
        check.kind,
        &check.name,
        true,
        Some(record_message(&check)),
    );
    rec.value = check.value;
    rec.threshold = check.threshold.clone();
    record(t, rec);
    t.event_with(
        EventType::Warning,
        EventName::CheckFailed,
        check.message.clone(),
        Reason::CheckFailed {
            check: Box::new(check.clone()),
        },
    );
    let f = t.status.failed() + 1;
    t.status.set_failed(f);
    if f >= t.spec.threshold {
        let reason = failed_checks_reason(t, Some(check));
        return Err(rollback(t, reason));
    }
    Err(Stop::End)
}

fn hook_check(
    t: &mut Tick,
    kind: HookType,
    record_kind: CheckKind,
    halt: &str,
    passed_event: Option<&str>,
) -> Flow {
    let run = t.hooks(kind, CanaryPhase::Progressing, false)?;
    for hook in run.passed {
        let rec = new_record(t, record_kind, &hook.name, false, None);
        record(t, rec);
        if let Some(text) = passed_event {
            t.normal(EventName::Other, format!("{text} {} passed", hook.name));
        }
    }
    if let Some((hook, err)) = run.stopped_by {
        let message = format!(
            "Halt {} advancement {halt} {} failed {err}",
            t.spec.key(),
            hook.name
        );
        return fail(
            t,
            FailedCheck {
                kind: record_kind,
                name: hook.name.clone(),
                value: None,
                threshold: None,
                query: None,
                message,
            },
        );
    }
    Ok(())
}

/// `pre-rollout` hooks of the first analysis tick.
pub(crate) fn pre_rollout(t: &mut Tick) -> Flow {
    t.normal(
        EventName::AnalysisStarted,
        format!("Starting canary analysis for {}", t.spec.target_key()),
    );
    hook_check(
        t,
        HookType::PreRollout,
        CheckKind::PreRollout,
        "pre-rollout check",
        Some("Pre-rollout check"),
    )
}

/// `rollout` hooks, then metrics, of every later analysis tick.
///
/// Issue 7: a failing `dryRun` metric is reported and the tick goes on; a `noData: hold` metric
/// without a value (no data, or the query failed) holds the tick, unless a later metric fails
/// for real, or the hold has lasted longer than `progressDeadlineSeconds`.
pub(crate) fn analyse(t: &mut Tick) -> Flow {
    hook_check(
        t,
        HookType::Rollout,
        CheckKind::Webhook,
        "external check",
        None,
    )?;
    let spec = t.spec;
    let mut held: Option<String> = None;
    for (i, check) in spec.metrics.iter().enumerate() {
        let Some(result) = t.obs.metric(&check.name) else {
            let names = spec.metrics[i..].iter().map(|m| m.name.clone()).collect();
            return Err(Stop::Need(Need::Metrics { names }));
        };
        let verdict = evaluate(spec.key(), check, result);
        let mut rec = new_record(t, CheckKind::Metric, &check.name, false, None);
        rec.threshold = check.threshold.clone();
        if let MetricOutcome::Value(v) = result.outcome {
            rec.value = Some(v);
        }
        if check.judge.is_some()
            && matches!(
                result.outcome,
                MetricOutcome::NoData(_) | MetricOutcome::QueryFailed(_)
            )
        {
            // No sample this tick: the judge counts the samples it has and holds until enough
            // have been gathered, rather than failing a canary that had no traffic yet.
            rec.message = Some(format!(
                "no sample for the judge this tick: {}",
                message_of(result)
            ));
            record(t, rec);
            continue;
        }
        let Err(failed) = verdict else {
            record(t, rec);
            continue;
        };
        if check.dry_run {
            let message = format!(
                "Dry-run metric {} failed (not counted): {}",
                check.name, failed.message
            );
            rec.message = Some(record_message(&FailedCheck {
                message: message.clone(),
                ..failed
            }));
            record(t, rec);
            t.warning(EventName::Other, message);
            continue;
        }
        let missing = match &result.outcome {
            MetricOutcome::NoData(_) => Some("no data"),
            MetricOutcome::QueryFailed(_) => Some("query failed"),
            MetricOutcome::Value(_) | MetricOutcome::Error(_) => None,
        };
        let Some(missing) = missing.filter(|_| check.no_data == NoDataPolicy::Hold) else {
            return fail(t, failed);
        };
        let since = *t.status.held_since.get_or_insert(t.now);
        if after(since, spec.progress_deadline) < t.now {
            let message = format!(
                "{} (noData: hold for longer than the progress deadline of {}s)",
                failed.message,
                spec.progress_deadline.as_secs()
            );
            return fail(t, FailedCheck { message, ..failed });
        }
        let why = format!("metric {} {missing}: {}", check.name, failed.message);
        rec.message = Some(record_message(&FailedCheck {
            message: format!("hold: {why}"),
            ..failed
        }));
        record(t, rec);
        held.get_or_insert(why);
    }
    if let Some(why) = held {
        return Err(hold(t, "noData: hold", why));
    }
    judge(t)?;
    t.status.held_since = None;
    set_promoted_message(&mut t.status, None, &t.spec.target_kind, t.now);
    Ok(())
}

/// The statistical judge's look at everything gathered in the run (`analysis.judge`): a pass
/// goes on, a fail is one failed check, a marginal or inconclusive look holds the canary.
fn judge(t: &mut Tick) -> Flow {
    if t.spec.judge.is_none() {
        return Ok(());
    }
    let Some(report) = t.obs.judge.clone() else {
        return Err(Stop::Need(Need::Judge));
    };
    t.status.judge = Some(report.status.clone());
    match report.decision {
        Decision::Pass => Ok(()),
        Decision::Fail => fail(t, judging::failed_check(t.spec, &report)),
        Decision::Marginal | Decision::Inconclusive => {
            Err(hold(t, "judge", judging::hold_reason(&report)))
        }
    }
}

fn message_of(result: &MetricResult) -> &str {
    match &result.outcome {
        MetricOutcome::NoData(m) | MetricOutcome::QueryFailed(m) | MetricOutcome::Error(m) => m,
        MetricOutcome::Value(_) => "",
    }
}

/// A tick spent waiting (for a `noData: hold` metric, or for the judge): no step, no failed
/// check, and the event and the `Promoted` condition say which metric and why.
fn hold(t: &mut Tick, cause: &str, why: String) -> Stop {
    let message = format!("Canary analysis held ({cause}): {why}");
    set_promoted_message(
        &mut t.status,
        Some(message.clone()),
        &t.spec.target_kind,
        t.now,
    );
    t.warning(
        EventName::Other,
        format!("Hold {} advancement: {why}", t.spec.key()),
    );
    Stop::End
}

/// Go's `time.Duration` text of a number of milliseconds, as Flagger prints durations
/// (`500ms`, `1.515s`, `1m30s`); fractions of a millisecond are dropped, as in Go.
fn millis(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v.is_sign_positive() { "+Inf" } else { "-Inf" }.to_string();
    }
    // Saturates on overflow; whole milliseconds as Go's conversion truncates.
    let ms = v as i64;
    if ms == 0 {
        return "0s".into();
    }
    let sign = if v.is_sign_negative() { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let (secs, frac) = (ms / 1000, ms % 1000);
    let frac = if frac == 0 {
        String::new()
    } else {
        format!(".{frac:03}").trim_end_matches('0').to_string()
    };
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{sign}{s}{frac}s"),
        (0, m) => format!("{sign}{m}m{s}{frac}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}{frac}s"),
    }
}

/// Judges one metric result against its thresholds, as an analysis tick does; `key` is the
/// canary's `name.namespace` that the failure message names. Public so a dry check of the live
/// queries (`validate --cluster`) says pass or fail exactly as the next tick would.
pub fn evaluate(key: &str, check: &MetricCheck, result: &MetricResult) -> Result<(), FailedCheck> {
    let failed = |value: Option<f64>, message: String| FailedCheck {
        kind: CheckKind::Metric,
        name: check.name.clone(),
        value,
        threshold: check.threshold.clone(),
        query: result.query.clone(),
        message,
    };
    let v = match &result.outcome {
        MetricOutcome::Value(v) => *v,
        MetricOutcome::NoData(message)
        | MetricOutcome::QueryFailed(message)
        | MetricOutcome::Error(message) => {
            return Err(failed(None, message.clone()));
        }
    };
    let below = check.min.filter(|min| v < *min || v.is_nan());
    let above = check.max.filter(|max| v > *max || v.is_nan());
    let (op, bound) = match (below, above) {
        (Some(min), _) => ("<", min),
        (None, Some(max)) => (">", max),
        (None, None) => return Ok(()),
    };
    let message = match check.kind {
        MetricKind::SuccessRate => {
            format!("Halt {key} advancement success rate {v:.2}% {op} {bound}%")
        }
        MetricKind::Duration => format!(
            "Halt {key} advancement request duration {} {op} {}",
            millis(v),
            millis(bound)
        ),
        MetricKind::Custom => format!("Halt {key} advancement {} {v:.2} {op} {bound}", check.name),
    };
    Err(failed(Some(v), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration_check(max: f64) -> MetricCheck {
        MetricCheck {
            name: "request-duration".into(),
            kind: MetricKind::Duration,
            min: None,
            max: Some(max),
            threshold: Some(format!("max {max}")),
            dry_run: false,
            no_data: NoDataPolicy::Fail,
            judge: None,
        }
    }

    fn value(v: f64) -> MetricResult {
        MetricResult {
            name: "request-duration".into(),
            query: None,
            outcome: MetricOutcome::Value(v),
        }
    }

    #[test]
    fn a_maximum_fails_values_above_it_and_nan() {
        let check = duration_check(500.0);
        assert!(evaluate("podinfo.test", &check, &value(500.0)).is_ok());
        let above = evaluate("podinfo.test", &check, &value(1515.0)).unwrap_err();
        assert_eq!(
            above.message,
            "Halt podinfo.test advancement request duration 1.515s > 500ms"
        );
        assert_eq!(above.value, Some(1515.0));
        assert!(evaluate("podinfo.test", &check, &value(f64::NAN)).is_err());
    }

    #[test]
    fn durations_switch_to_seconds_at_one_second() {
        assert_eq!(millis(999.0), "999ms");
        assert_eq!(millis(1000.0), "1s");
        assert_eq!(millis(-1000.0), "-1s");
    }

    #[test]
    fn durations_print_as_go_does() {
        for (ms, want) in [
            (0.0, "0s"),
            (0.9, "0s"),
            (500.0, "500ms"),
            (1500.0, "1.5s"),
            (1515.7, "1.515s"),
            (60_000.0, "1m0s"),
            (90_000.0, "1m30s"),
            (3_600_000.0, "1h0m0s"),
            (3_723_004.0, "1h2m3.004s"),
            (-1500.0, "-1.5s"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(millis(ms), want, "{ms}");
        }
    }

    #[test]
    fn failed_check_record_message_carries_the_query() {
        let check = |query: Option<&str>| FailedCheck {
            kind: CheckKind::Metric,
            name: "request-success-rate".into(),
            value: Some(70.0),
            threshold: Some("min 99".into()),
            query: query.map(str::to_string),
            message: "Halt podinfo.test advancement success rate 70.00% < 99%".into(),
        };
        let table = [
            (
                Some("sum(rate(x[10s]))"),
                "Halt podinfo.test advancement success rate 70.00% < 99% (query: sum(rate(x[10s])))",
            ),
            (
                None,
                "Halt podinfo.test advancement success rate 70.00% < 99%",
            ),
            (
                Some(""),
                "Halt podinfo.test advancement success rate 70.00% < 99%",
            ),
        ];
        for (query, want) in table {
            assert_eq!(record_message(&check(query)), want, "query {query:?}");
        }
    }
}
