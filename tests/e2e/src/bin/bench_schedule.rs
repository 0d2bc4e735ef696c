//! Schedule fidelity of the controller on the local cluster (issue 7): how long a canary run really takes
//! compared with what the core plans. Prints numbers, asserts nothing. Run it inside the cluster's netns,
//! normally through `hack/bench schedule`.
//!
//! Per configuration (`SCHEDULE_INTERVALS` × `SCHEDULE_COUNTS`), in a fresh namespace with a fresh
//! `flagger-rs controller` (traefik provider, default `-threadiness`, `-min-analysis-interval=1s`): N Deployments
//! and N Canaries, canary strategy (stepWeight 10, maxWeight 50), each tick past the first weight step running
//! 2 metric checks, each a real instant query against the cluster's Prometheus through a MetricTemplate whose
//! result is always in range (`count(up)` ≥ 1, `max(scrape_duration_seconds)` ≤ 10): the checks cost what a
//! Prometheus round trip costs, and no traffic is needed for them to pass (a failed check would add ticks and is
//! reported). All N targets get a new image at once, `SCHEDULE_ROUNDS` times one after the other.
//!
//! Measured per canary and round, from watch events timestamped when the bench receives them: the first
//! `Progressing` after the image change (tick 0, the tick that detects the new revision) to `Succeeded`.
//! Planned: `flagger_core::plan` of the same Canary (normalised with the controller's settings) — the healthy
//! schedule's `promoteAfterSeconds`, i.e. (index of the tick that reaches `Succeeded`) × interval.
//! Fidelity = measured / planned: 1.0 is a run exactly on the planned cadence; above, the ticks came late.
//! Tick gap: time between consecutive distinct (phase, canaryWeight) states of a run; the plan changes one of
//! them on every tick, so a gap is the controller's real tick spacing (planned: exactly the interval).
//! Readiness waits: ticks the controller spent waiting for the canary or primary Deployment to be rolled out
//! (its `… not ready` log lines within the run). Each is one tick the plan cannot know of (the plan assumes
//! ready workloads); the "cadence" fidelity divides by (ticks + waits) × interval instead, so it shows the
//! controller's timing alone, whatever the cluster's rollout speed.
//!
//! Environment: `SCHEDULE_COUNTS` ("1 20"), `SCHEDULE_INTERVALS` ("5s 10s"), `SCHEDULE_ROUNDS` (2),
//! `SCHEDULE_THREADINESS` (the controller's `-threadiness`; unset: its default), `FLAGGER_RS_BIN`, `BENCH_OUT` (a
//! file the final table is also written to).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use e2e::bench::{self, Child, free_port, now_ms, summarize, wait_local};
use e2e::controller::{self as ctl, canaries, create_canary, set_image};
use e2e::objects::{APP_PORT, App};
use e2e::{PROMETHEUS, TestNamespace, apply, with_namespace};
use futures::TryStreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};

/// Versions the targets go through, one per round (the first is the initial one).
const VERSIONS: [&str; 6] = ["6.0.0", "6.0.1", "6.0.2", "6.0.3", "6.0.4", "6.0.5"];

fn canary(name: &str, namespace: &str, interval: &str) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "provider": "traefik",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 120,
            "service": {"port": APP_PORT, "targetPort": APP_PORT},
            "analysis": {
                "interval": interval,
                "threshold": 2,
                "stepWeight": 10,
                "maxWeight": 50,
                "metrics": [
                    {"name": "targets", "interval": "1m", "thresholdRange": {"min": 1},
                     "templateRef": {"name": "targets"}},
                    {"name": "scrape-duration", "interval": "1m", "thresholdRange": {"max": 10},
                     "templateRef": {"name": "scrape-duration"}},
                ],
            },
        },
    })
}

/// The healthy plan of `canary` as the controller of this bench normalises it: (ticks, planned seconds).
fn planned(canary: &Value) -> e2e::Result<(u32, u64)> {
    let c: flagger_api::Canary = serde_json::from_value(canary.clone())?;
    let settings = flagger_core::Settings {
        mesh_provider: "kubernetes".into(),
        min_interval: Duration::from_secs(1),
        dry_run: false,
    };
    let spec = flagger_core::normalize(&c, &settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = flagger_core::plan::plan(&spec, None);
    let secs = plan
        .promote_after_seconds
        .context("the plan never promotes")?;
    let ticks = plan.steps.last().map_or(0, |s| s.tick);
    Ok((ticks, secs))
}

/// A distinct `(phase, canaryWeight, failedChecks)` of a Canary with the time the watch delivered it.
#[derive(Clone, Debug)]
struct State {
    at_ms: f64,
    name: String,
    phase: String,
    failed_checks: i64,
}

/// Every distinct `(phase, canaryWeight, failedChecks)` of the namespace's Canaries, from a watch.
struct States {
    recs: Arc<Mutex<Vec<State>>>,
    task: tokio::task::JoinHandle<()>,
}

impl States {
    fn start(api: Api<DynamicObject>) -> States {
        let recs = Arc::new(Mutex::new(Vec::new()));
        let sink = recs.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            let mut stream = std::pin::pin!(stream);
            let mut last: HashMap<String, (String, i64, i64)> = HashMap::new();
            while let Ok(Some(obj)) = stream.try_next().await {
                let at_ms = now_ms();
                let name = obj.metadata.name.clone().unwrap_or_default();
                let st = ctl::status(&obj);
                let int = |k: &str| st.get(k).and_then(Value::as_i64).unwrap_or(0);
                let key = (
                    ctl::phase(&obj).to_string(),
                    int("canaryWeight"),
                    int("failedChecks"),
                );
                if last.get(&name) == Some(&key) {
                    continue;
                }
                last.insert(name.clone(), key.clone());
                if let Ok(mut v) = sink.lock()
                    && v.len() < 100_000
                {
                    v.push(State {
                        at_ms,
                        name,
                        phase: key.0,
                        failed_checks: key.2,
                    });
                }
            }
        });
        States { recs, task }
    }

    fn of(&self, name: &str, after_ms: f64) -> Vec<State> {
        self.recs
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|r| r.name == name && r.at_ms >= after_ms)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn first(&self, name: &str, after_ms: f64, phase: &str) -> Option<State> {
        self.of(name, after_ms)
            .into_iter()
            .find(|r| r.phase == phase)
    }
}

impl Drop for States {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Row {
    count: usize,
    interval: String,
    ticks: u32,
    planned_s: u64,
    /// Milliseconds, one per canary and round.
    measured: Vec<f64>,
    /// measured / ((ticks + readiness waits) × interval), one per canary and round.
    cadence: Vec<f64>,
    waits: usize,
    gaps: Vec<f64>,
    notes: Vec<String>,
}

/// Log lines of the controller within `[from, to]` (epoch ms) saying the canary or primary Deployment of
/// `name` is not rolled out yet: one per tick spent waiting.
fn not_ready_ticks(log: &str, name: &str, namespace: &str, from: f64, to: f64) -> usize {
    let canary = format!(" {name}.{namespace} not ready");
    let primary = format!(" {name}-primary.{namespace} not ready");
    log.lines()
        .map(bench::strip_ansi)
        .filter(|l| l.contains(&canary) || l.contains(&primary))
        .filter_map(|l| bench::parse_time_ms(l.split_whitespace().next()?))
        .filter(|t| (from..=to).contains(t))
        .count()
}

async fn apply_template(ns: &TestNamespace, name: &str, query: &str) -> e2e::Result<()> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("flagger.app", "v1beta1", "MetricTemplate"),
        "metrictemplates",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": name},
        "spec": {"provider": {"type": "prometheus", "address": PROMETHEUS}, "query": query},
    }))?;
    api.patch(
        name,
        &PatchParams::apply(e2e::FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .with_context(|| format!("applying MetricTemplate {name}"))?;
    Ok(())
}

fn threadiness() -> Option<u16> {
    std::env::var("SCHEDULE_THREADINESS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

async fn one(ns: TestNamespace, count: usize, interval: &str, rounds: usize) -> e2e::Result<Row> {
    ctl::install_crds(&ns.client).await?;
    apply_template(&ns, "targets", "count(up)").await?;
    apply_template(&ns, "scrape-duration", "max(scrape_duration_seconds)").await?;
    let deployments: Api<Deployment> = ns.api();
    let names: Vec<String> = (0..count).map(|i| format!("s-{i:02}")).collect();
    let (ticks, planned_s) = planned(&canary("plan", &ns.name, interval))?;
    for name in &names {
        apply(&deployments, &App::new(name, VERSIONS[0], 1).deployment()?).await?;
        create_canary(&ns, canary(name, &ns.name, interval)).await?;
    }
    let states = States::start(canaries(&ns));
    let kubeconfig = ctl::controller_kubeconfig()?;
    let mut args = vec![
        "controller".to_string(),
        format!("-kubeconfig={}", kubeconfig.display()),
        format!("-namespace={}", ns.name),
        "-mesh-provider=kubernetes".into(),
        "-min-analysis-interval=1s".into(),
        "-include-label-prefix=app.kubernetes.io".into(),
        format!("-port={}", free_port()?),
        "-log-level=info".into(),
        "-zap-encoding=console".into(),
    ];
    args.extend(threadiness().map(|n| format!("-threadiness={n}")));
    let mut controller = Child::spawn(
        &format!("controller-{count}-{interval}"),
        &ctl::binary()?,
        &args,
    )?;
    for name in &names {
        wait_local(
            &format!("{name} Initialized"),
            Duration::from_secs(300),
            || states.first(name, 0.0, "Initialized"),
        )
        .await
        .with_context(|| format!("controller log: {}", controller.log.display()))?;
    }
    let mut row = Row {
        count,
        interval: interval.to_string(),
        ticks,
        planned_s,
        measured: Vec::new(),
        cadence: Vec::new(),
        waits: 0,
        gaps: Vec::new(),
        notes: Vec::new(),
    };
    // A run that is late by more than 3× its plan is reported, not waited for.
    let bound = Duration::from_secs(planned_s * 3 + 120);
    let interval_ms = planned_s as f64 * 1000.0 / f64::from(ticks.max(1));
    for round in 1..=rounds {
        let version = VERSIONS[round % VERSIONS.len()];
        let t0 = now_ms();
        for name in &names {
            set_image(&deployments, name, version).await?;
        }
        let patched_s = (now_ms() - t0) / 1000.0;
        let mut ends = Vec::new();
        for name in &names {
            let end = wait_local(
                &format!("{name} Succeeded or Failed (round {round})"),
                bound,
                || {
                    states
                        .of(name, t0)
                        .into_iter()
                        .find(|r| r.phase == "Failed" || r.phase == "Succeeded")
                },
            )
            .await
            .with_context(|| format!("controller log: {}", controller.log.display()))?;
            ends.push((name, end));
        }
        let log = controller.log_text();
        for (name, end) in ends {
            let run = states.of(name, t0);
            let Some(start) = run.iter().find(|r| r.phase == "Progressing") else {
                row.notes
                    .push(format!("{name} round {round}: no Progressing seen"));
                continue;
            };
            if end.phase == "Failed" {
                row.notes.push(format!("{name} round {round}: Failed"));
                continue;
            }
            let failed = run.iter().map(|r| r.failed_checks).max().unwrap_or(0);
            if failed > 0 {
                row.notes.push(format!(
                    "{name} round {round}: {failed} failed check(s), extra ticks"
                ));
            }
            let measured = end.at_ms - start.at_ms;
            let waits = not_ready_ticks(&log, name, &ns.name, start.at_ms, end.at_ms);
            row.waits += waits;
            row.measured.push(measured);
            row.cadence
                .push(measured / ((f64::from(ticks) + waits as f64) * interval_ms));
            let ticks: Vec<&State> = run
                .iter()
                .filter(|r| r.at_ms >= start.at_ms && r.at_ms <= end.at_ms)
                .collect();
            row.gaps
                .extend(ticks.windows(2).map(|w| w[1].at_ms - w[0].at_ms));
        }
        println!(
            "{count} canaries, interval {interval}, round {round}: images patched in {patched_s:.2} s, \
             measured p50 {} s (planned {planned_s} s)",
            summarize(&row.measured).map_or("-".into(), |s| bench::secs(s.p50))
        );
    }
    controller.ensure_running()?;
    drop(states);
    Ok(row)
}

#[tokio::main]
async fn main() -> e2e::Result<()> {
    if std::env::var_os("KUBECONFIG").is_none() {
        bail!("KUBECONFIG is unset: run inside the cluster's netns (hack/bench does)");
    }
    let list = |key: &str, default: &str| -> Vec<String> {
        std::env::var(key)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.into())
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let counts: Vec<usize> = list("SCHEDULE_COUNTS", "1 20")
        .iter()
        .filter_map(|v| v.parse().ok())
        .filter(|n| (1..=100).contains(n))
        .collect();
    let intervals = list("SCHEDULE_INTERVALS", "5s 10s");
    let rounds: usize = std::env::var("SCHEDULE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .clamp(1, VERSIONS.len() - 1);
    let load_start = bench::loadavg();
    println!("load average at start: {load_start}");
    let mut rows = Vec::new();
    for interval in &intervals {
        for &count in &counts {
            let cell = Arc::new(Mutex::new(None));
            let sink = cell.clone();
            let interval = interval.clone();
            tokio::time::timeout(
                Duration::from_secs(1800),
                with_namespace("bench-schedule", |ns| async move {
                    let row = one(ns, count, &interval, rounds).await?;
                    *sink.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(row);
                    Ok(())
                }),
            )
            .await
            .with_context(|| format!("{count} canaries: timed out"))??;
            if let Some(row) = cell.lock().ok().and_then(|mut c| c.take()) {
                rows.push(row);
            }
        }
    }
    let mut out = format!(
        "\n## flagger-rs schedule fidelity ({rounds} rounds per configuration)\n\
         settings: traefik provider, canary strategy stepWeight 10 maxWeight 50, 2 MetricTemplate checks per \
         analysis tick against the cluster's Prometheus, controller {} (-threadiness {}); load average at \
         start: {load_start}, at the end: {}\n\
         fidelity = (Succeeded seen − first Progressing seen) / planned, planned = flagger_core::plan's \
         promoteAfterSeconds = ticks × interval; tick gap = time between consecutive (phase, weight) states\n\n\
         | canaries | interval | ticks | planned (s) | runs | measured p50 (s) | measured max (s) | fidelity p50 | \
         fidelity max | readiness waits | cadence fidelity p50 | cadence fidelity max | tick gap min (s) | \
         tick gap p50 (s) | tick gap max (s) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ctl::binary()?.display(),
        threadiness().map_or("default".to_string(), |n| n.to_string()),
        bench::loadavg()
    );
    let mut notes = String::new();
    for r in &rows {
        let planned_ms = r.planned_s as f64 * 1000.0;
        let (n, p50, max) =
            summarize(&r.measured).map_or((0, f64::NAN, f64::NAN), |s| (s.n, s.p50, s.max));
        let gaps = summarize(&r.gaps);
        let cadence = summarize(&r.cadence);
        out.push_str(&format!(
            "\n| {} | {} | {} | {} | {n} | {} | {} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} |",
            r.count,
            r.interval,
            r.ticks,
            r.planned_s,
            bench::secs(p50),
            bench::secs(max),
            p50 / planned_ms,
            max / planned_ms,
            r.waits,
            cadence
                .as_ref()
                .map_or("-".into(), |c| format!("{:.3}", c.p50)),
            cadence
                .as_ref()
                .map_or("-".into(), |c| format!("{:.3}", c.max)),
            gaps.as_ref().map_or("-".into(), |g| bench::secs(g.min)),
            gaps.as_ref().map_or("-".into(), |g| bench::secs(g.p50)),
            gaps.as_ref().map_or("-".into(), |g| bench::secs(g.max)),
        ));
        for note in &r.notes {
            notes.push_str(&format!("note ({} × {}): {note}\n", r.count, r.interval));
        }
    }
    out.push('\n');
    out.push_str(&notes);
    println!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT")
        && !path.is_empty()
    {
        std::fs::write(&path, &out).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}
