//! Canary analysis under real traffic: a paced, bounded background load, and what a finished run's status and
//! events must say about its builtin metric checks (shared by the ingress and mesh analysis tests, which differ
//! only in where the load goes and which provider's series the queries read).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use kube::api::DynamicObject;
use kube::{Api, ResourceExt as _};

use crate::controller::{Proc, Recorder, canaries, events_for, status, wait_phase};
use crate::objects::App;
use crate::traffic::Run;
use crate::{Result, TestNamespace};

/// Where the load sends requests: a URL, with a `Host` header when an ingress routes by host.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub host: Option<String>,
}

impl Target {
    pub fn url(url: impl Into<String>) -> Target {
        Target {
            url: url.into(),
            host: None,
        }
    }

    pub fn with_host(url: impl Into<String>, host: impl Into<String>) -> Target {
        Target {
            url: url.into(),
            host: Some(host.into()),
        }
    }
}

/// Paced traffic to every target (≈ `rps` requests per second each), until stopped or `max` elapsed.
pub struct Load {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<Result<BTreeMap<u16, usize>>>>,
}

impl Load {
    pub fn start(targets: Vec<Target>, rps: usize, max: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            // 10 rounds a second, each a bounded run of rps/10 requests per target; at most `max` / 100 ms rounds.
            let mut pace = tokio::time::interval(Duration::from_millis(100));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let per_round = (rps / 10).max(1);
            let rounds = max.as_millis() / 100;
            let mut by_status = BTreeMap::new();
            for _ in 0..rounds {
                if flag.load(Ordering::SeqCst) || start.elapsed() >= max {
                    break;
                }
                pace.tick().await;
                for target in &targets {
                    let mut run = Run::new(&target.url, per_round);
                    if let Some(host) = &target.host {
                        run = run.host(host);
                    }
                    run.concurrency = per_round;
                    run.deadline = Duration::from_secs(5);
                    let report = run.drive().await?;
                    for (code, n) in report.by_status {
                        *by_status.entry(code).or_default() += n;
                    }
                    *by_status.entry(0).or_default() += report.errors;
                }
            }
            Ok(by_status)
        });
        Load {
            stop,
            task: Some(task),
        }
    }

    /// Stops the load and returns the replies by status (0 = transport error).
    pub async fn finish(mut self) -> Result<BTreeMap<u16, usize>> {
        self.stop.store(true, Ordering::SeqCst);
        let task = self.task.take().context("load already finished")?;
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .context("load task did not stop within 20s")?
            .context("load task panicked")?
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One metric check record of the current run (`status.canaryAnalysis.iterations[]` of kind `metric`).
#[derive(Debug, Clone)]
pub struct MetricRecord {
    pub name: String,
    pub value: Option<f64>,
    pub failed: bool,
    pub message: String,
}

pub fn metric_records(obj: &DynamicObject) -> Vec<MetricRecord> {
    status(obj)["canaryAnalysis"]["iterations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == "metric")
        .map(|r| MetricRecord {
            name: r["name"].as_str().unwrap_or_default().to_string(),
            value: r["value"].as_f64(),
            failed: r["failed"].as_bool().unwrap_or(false),
            message: r["message"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// The tick number of the latest check records (`status.canaryAnalysis.iterations[].iteration`).
pub fn last_record_iteration(obj: &DynamicObject) -> i64 {
    status(obj)["canaryAnalysis"]["iterations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["iteration"].as_i64())
        .max()
        .unwrap_or(0)
}

pub fn failed_checks(obj: &DynamicObject) -> i64 {
    status(obj)["failedChecks"].as_i64().unwrap_or(0)
}

/// "Rolled back after exactly `threshold` failed checks" as the status shows it: `failedChecks` climbs to
/// `threshold - 1`, the `threshold`-th failure rolls back in its own tick and the rollback resets `failedChecks`
/// to 0 (as Flagger does); the run's failed check records number exactly `threshold`.
pub fn ensure_rolled_back_at_threshold(
    done: &DynamicObject,
    rec: &Recorder,
    threshold: i64,
) -> Result<()> {
    let steps = rec.steps();
    let max_seen = steps.iter().map(|s| s.failed_checks).max().unwrap_or(0);
    ensure!(
        max_seen == threshold - 1 && failed_checks(done) == 0,
        "failedChecks went to {max_seen} (want {}), {} at Failed: {}",
        threshold - 1,
        failed_checks(done),
        rec.render()
    );
    ensure!(
        !steps.iter().any(|s| s.phase == "Promoting"),
        "promoted: {}",
        rec.render()
    );
    let failed = metric_records(done)
        .into_iter()
        .filter(|r| r.failed)
        .count();
    ensure!(
        failed == usize::try_from(threshold)?,
        "{failed} failed metric records, want {threshold}: {:#?}",
        metric_records(done)
    );
    Ok(())
}

/// The Warning messages containing `needle`, one per occurrence: a repeated event is one Event with a
/// `count`, as client-go's recorder aggregates them.
pub fn warnings_containing(events: &[(String, String, String, i32)], needle: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(t, _, m, _)| t == "Warning" && m.contains(needle))
        .flat_map(|(_, _, m, n)| std::iter::repeat_n(m.clone(), usize::try_from(*n).unwrap_or(1)))
        .collect()
}

/// A healthy version's run: no failed check at any point, and every weight of `weights` served.
pub fn ensure_promoted_without_failures(rec: &Recorder, weights: &[i64]) -> Result<()> {
    let steps = rec.steps();
    ensure!(
        steps.iter().all(|s| s.failed_checks == 0),
        "healthy version had failed checks: {}",
        rec.render()
    );
    for w in weights {
        ensure!(
            steps
                .iter()
                .any(|s| s.phase == "Progressing" && s.weight == *w),
            "weight {w} never observed: {}",
            rec.render()
        );
    }
    Ok(())
}

/// A version answering 500 to 30 % of requests, rolled back by the builtin `request-success-rate` (min 99):
/// exactly `threshold` failed checks, each that metric with a value reflecting the errors and a message naming
/// the halt and the provider's series (`series`, e.g. `istio_requests_total`); as many Warning events, the latest
/// carrying the rendered query and the value.
pub async fn ensure_rolled_back_on_success_rate(
    ns: &TestNamespace,
    canary: &str,
    done: &DynamicObject,
    rec: &Recorder,
    threshold: i64,
    series: &str,
) -> Result<()> {
    ensure_rolled_back_at_threshold(done, rec, threshold)?;
    let records = metric_records(done);
    eprintln!("failed run records: {records:#?}");
    for r in records.iter().filter(|r| r.failed) {
        let message = &r.message;
        ensure!(
            r.name == "request-success-rate",
            "failed record {}: {message}",
            r.name
        );
        let v = r
            .value
            .with_context(|| format!("failed record without value: {message}"))?;
        // Below the 99 % minimum (that is why it failed) and far from 0: the value reflects the injected
        // errors. How far below depends on how many error samples the rate window held at that tick, so no
        // tighter band holds on a loaded machine.
        ensure!(
            (50.0..99.0).contains(&v),
            "success rate {v} for 30 % errors"
        );
        ensure!(
            message.contains("advancement success rate") && message.contains(series),
            "record message lacks the halt text or the query over {series}: {message}"
        );
    }
    let needle = "advancement success rate";
    let events = events_for(ns, "Canary", canary).await?;
    let halts = warnings_containing(&events, needle);
    eprintln!("Warning events: {halts:#?}");
    ensure!(
        halts.len() >= usize::try_from(threshold)?,
        "want {threshold} halt events, got {events:#?}"
    );
    ensure_event_query(ns, canary, needle, series).await
}

/// The Warning event of a failed metric carries the rendered query (over `series`) and the value, as
/// annotations `flagger-rs.dev/query` and `flagger-rs.dev/value`.
pub async fn ensure_event_query(
    ns: &TestNamespace,
    canary: &str,
    needle: &str,
    series: &str,
) -> Result<()> {
    let api: Api<k8s_openapi::api::core::v1::Event> = ns.api();
    let list = api
        .list(&kube::api::ListParams::default().fields(&format!(
            "involvedObject.kind=Canary,involvedObject.name={canary}"
        )))
        .await?;
    let ev = list
        .items
        .iter()
        .find(|e| e.message.as_deref().is_some_and(|m| m.contains(needle)))
        .with_context(|| format!("no event {needle:?}"))?;
    let ann = ev.annotations();
    eprintln!("event {:?} annotations {ann:?}", ev.message);
    let query = ann.get("flagger-rs.dev/query").cloned().unwrap_or_default();
    ensure!(
        query.contains(series),
        "Warning event without the query over {series}: {ev:#?}"
    );
    ensure!(
        ann.get("flagger-rs.dev/value").is_some(),
        "Warning event without the value: {ev:#?}"
    );
    Ok(())
}

/// Deploys `app` (its canary is the Canary of the same name) and runs it to the end phase `want` under `rps`
/// requests per second through Traefik's web entry point for `host`, waiting at most `run`; prints what the
/// recorder saw and the replies by status, and returns the final Canary with its recorder.
pub async fn run_version(
    ns: &TestNamespace,
    controller: &Proc,
    host: &str,
    app: App<'_>,
    want: &str,
    rps: usize,
    run: Duration,
) -> Result<(DynamicObject, Recorder)> {
    let targets = vec![Target::with_host(crate::TRAEFIK_WEB, host)];
    run_version_on(ns, controller, targets, app, want, rps, run).await
}

/// [`run_version`] with the load sent to `targets` (a mesh's Services instead of an ingress).
pub async fn run_version_on(
    ns: &TestNamespace,
    controller: &Proc,
    targets: Vec<Target>,
    app: App<'_>,
    want: &str,
    rps: usize,
    run: Duration,
) -> Result<(DynamicObject, Recorder)> {
    let api = canaries(ns);
    let recorder = Recorder::start(&api, app.name);
    let load = Load::start(targets, rps, run + Duration::from_secs(30));
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = ns.api();
    crate::apply(&deployments, &app.deployment()?).await?;
    let started = tokio::time::Instant::now();
    let end = wait_phase(&api, app.name, want, run, controller).await;
    let elapsed = started.elapsed();
    let replies = load.finish().await?;
    eprintln!(
        "{} -> {want}? after {elapsed:?}; observed: {}; load replies by status: {replies:?}",
        app.version,
        recorder.render()
    );
    Ok((end?, recorder))
}
