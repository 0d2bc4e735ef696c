//! The controller at scale on the local cluster (issue 16): N blue/green canaries (1-replica Deployment
//! targets, interval 10 s, 3 iterations, no metrics) on one controller. Prints numbers, asserts nothing. Run it
//! inside the cluster's netns, normally through `hack/bench scale`.
//!
//! Per N (`SCALE_COUNTS`), in a fresh namespace with a fresh `flagger-rs controller` restricted to it (or, with
//! `SCALE_NAMESPACES` > 1, spread over that many fresh namespaces with the controller watching them all):
//! * init: N Deployments and Canaries created, then the controller started; time until all are `Initialized`;
//! * idle: a `SCALE_IDLE_SECONDS` window: the controller's RSS and CPU (from /proc) and the API server's
//!   non-WATCH requests (`apiserver_request_total`) above an equally long window before the controller started;
//! * reaction: `SCALE_SAMPLE` canaries get a new image one at a time: image patched → `Progressing` seen;
//! * mass rollout: every target gets a new image at once: per canary (Succeeded seen − patch) ÷ the planned
//!   duration (`flagger_core::plan`'s `promoteAfterSeconds`), and the makespan (first patch → last Succeeded);
//!   CPU seconds of the controller and of the cluster's own processes (API server, etcd, controller-manager,
//!   scheduler, kwok: those of this network namespace, from /proc) during it, to show where the time went.
//!
//! Beside each canary's duration ÷ plan, the time its target or primary Deployment was rolling out during its run
//! (as `kubectl rollout status` decides, seen by a watch): the cluster's share, and what is left to the controller.
//!
//! `SCALE_UNRELATED` (0): that many ConfigMaps and as many Secrets no canary references are created in the
//! namespace before the controller starts (the memory of the caches must not follow them).
//!
//! `SCALE_CHECKS` (0; 1; 2): every canary's analysis also has one metric check against the cluster's Prometheus
//! (a MetricTemplate whose query names the canary's target) and one `rollback` webhook to a loadtester the bench
//! starts (its closed rollback gate), so every analysis tick of every canary makes one query and one webhook
//! call; the queries Prometheus answered and the gate checks the loadtester logged during the mass rollout are
//! printed. With 2, the canaries start without them; after the first mass rollout every canary is given them
//! and all roll out once more: both measured on one initialisation (at 10 000 canaries, over an hour here).
//!
//! `SCALE_PROGRESS_DEADLINE` (unset: Flagger's 600 s): each canary's `progressDeadlineSeconds`. A canary
//! whose Deployment the cluster does not roll out within it fails (rolled back); with thousands patched
//! at once a slow cluster needs more (measured at 10 000 here: 16 pods created a second, so the last
//! canaries' pods came after 10 minutes).
//!
//! `SCALE_NAMESPACES` (1): canary i and its target go to namespace i mod that count. The cluster's own
//! controllers do work per object event that grows with the objects of the same namespace (the Endpoints and
//! EndpointSlice controllers match every Service of a pod's namespace, the Deployment and ReplicaSet controllers
//! list the ReplicaSets and pods of theirs), so at thousands of canaries one namespace measures the cluster more
//! than the controller; spread, each namespace holds what a team's would.
//!
//! Environment: `SCALE_COUNTS` ("100"), `SCALE_SAMPLE` (20), `SCALE_IDLE_SECONDS` (30), `SCALE_UNRELATED` (0),
//! `SCALE_ROLLOUT` (1; 0 stops after the idle window), `SCALE_MASS` (1; 0 stops after the sampled reactions, for
//! counts whose mass rollout the client budget makes longer than the run can wait; `reactions`: each mass
//! rollout is measured until every canary is Progressing and one plan's time after that, for a cluster that
//! cannot roll them all out: reactions, their order and budget, and the controller's memory with every canary
//! running, but no durations), `SCALE_CHECKS` (0),
//! `SCALE_THREADINESS` (the controller's `-threadiness`; unset: its default), `SCALE_QPS` (its `-kubeconfig-qps`,
//! with a burst of 2.5 × that; unset: 100 and 250, its defaults), `FLAGGER_RS_BIN`, `BENCH_OUT` (a file the final table is also written to).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use e2e::bench::{
    self, Child, Counts, Rec, Tracker, cpu_seconds, delta, free_port, now_ms, peak_rss_kib,
    request_counts, rss_kib, summarize, total, wait_local,
};
use e2e::controller::{self as ctl, Loadtester, blue_green_canary, canaries};
use e2e::objects::App;
use e2e::tick_timings::TickTimings;
use e2e::{TestNamespace, apply, with_namespace};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

const INTERVAL: &str = "10s";
const ITERATIONS: u32 = 3;
/// The controller's `-kubeconfig-qps` default, which the bench keeps unless `SCALE_QPS` is set.
const CLIENT_QPS: usize = 100;

/// The controller's client budget for this run (`SCALE_QPS`, else its default).
fn client_qps() -> usize {
    env_usize("SCALE_QPS", CLIENT_QPS)
}
/// Requests the bench itself keeps in flight when it creates or patches many objects.
const IN_FLIGHT: usize = 32;
/// The cluster's own processes, by `comm` (truncated to 15 characters by the kernel).
const CLUSTER: [&str; 5] = [
    "kube-apiserver",
    "etcd",
    "kube-controller",
    "kube-scheduler",
    "kwok",
];

/// `SCALE_MASS=reactions`: a mass rollout ends once every canary reacted (see the module doc).
fn reactions_only() -> bool {
    std::env::var("SCALE_MASS").is_ok_and(|v| v.trim() == "reactions")
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// When each canary was first seen in `phase` at or after `after_ms`, from one snapshot of the tracker.
fn firsts(tracker: &Tracker, phase: &str, after_ms: f64) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for r in tracker.canaries() {
        if r.at_ms >= after_ms && r.phase == phase {
            out.entry(r.name).or_insert(r.at_ms);
        }
    }
    out
}

/// Waits until every one of `names` was seen in one of `phases` at or after `after_ms`. The times come
/// from the tracker's watch, so checking twice a second loses no precision.
async fn wait_all(
    tracker: &Tracker,
    names: &[String],
    phases: &[&str],
    after_ms: f64,
    timeout: Duration,
) -> e2e::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen: Vec<_> = phases
            .iter()
            .map(|phase| firsts(tracker, phase, after_ms))
            .collect();
        let missing = names
            .iter()
            .filter(|n| !seen.iter().any(|s| s.contains_key(*n)))
            .count();
        if missing == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{missing} of {} canaries not {} after {timeout:?}",
                names.len(),
                phases.join(" or ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The canaries' analysis interval.
fn interval_ms() -> e2e::Result<f64> {
    let interval = flagger_api::duration::parse(INTERVAL).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(interval.as_secs_f64() * 1000.0)
}

/// The planned duration of one run of the bench's canary, in seconds.
fn planned_seconds() -> e2e::Result<u64> {
    let mut value = blue_green_canary("plan", INTERVAL, ITERATIONS, json!([]));
    value["metadata"]["namespace"] = json!("plan");
    let c: flagger_api::Canary = serde_json::from_value(value)?;
    let settings = flagger_core::Settings {
        mesh_provider: "kubernetes".into(),
        min_interval: Duration::from_secs(1),
        dry_run: false,
    };
    let spec = flagger_core::normalize(&c, &settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    flagger_core::plan::plan(&spec, None)
        .promote_after_seconds
        .context("the plan never promotes")
}

/// Prints `requests` (counted by method and resource) per canary, the most frequent first.
fn print_per_canary(what: &str, requests: Counts, count: usize) {
    let mut by_resource: Vec<_> = requests.into_iter().collect();
    by_resource.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "requests per canary {what}, by method and resource: {}",
        by_resource
            .iter()
            .map(|((method, resource), n)| format!("{method} {resource} {:.2}", n / count as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The controller's own count of the requests it sent (`flagger_api_requests_total`), watches left out: by
/// method and resource.
async fn controller_requests(http: &reqwest::Client, port: u16) -> e2e::Result<Counts> {
    Ok(requests_in(&controller_exposition(http, port).await?))
}

/// The requests counted in one scrape of the controller's `/metrics` (see [`controller_requests`]).
fn requests_in(text: &str) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("flagger_api_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let method = label("method");
        if method == "WATCH" {
            continue;
        }
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        *counts.entry((method, label("resource"))).or_default() += value;
    }
    counts
}

/// The controller's `/metrics`.
async fn controller_exposition(http: &reqwest::Client, port: u16) -> e2e::Result<String> {
    Ok(http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// All requests and, of those, the writes (POST, PUT, PATCH, DELETE).
fn requests_and_writes(counts: &Counts) -> (f64, f64) {
    let writes = counts
        .iter()
        .filter(|((method, _), _)| method != "GET")
        .map(|(_, n)| n)
        .sum();
    (total(counts), writes)
}

/// Queries Prometheus has answered (`prometheus_http_requests_total` of its query endpoint).
async fn prometheus_queries(http: &reqwest::Client) -> f64 {
    let Ok(resp) = http
        .get(format!("{}/metrics", e2e::PROMETHEUS))
        .send()
        .await
    else {
        return 0.0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{")
                && l.contains("handler=\"/api/v1/query\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}

/// Calls of the loadtester's gate checks so far, from its log.
fn gate_checks(loadtester: Option<&Loadtester>) -> usize {
    loadtester.map_or(0, |lt| lt.proc.log().matches("check\"").count())
}

/// How far out of order the canaries reacted: taken in the order the API server wrote their
/// patches (the resourceVersions it answered with; the answers of parallel patches arrive in
/// another order), the most any one reacted before one written earlier (0 when every reaction kept
/// the order), and which two canaries that was (answer and reaction times in s after the first
/// patch).
fn largest_inversion(
    patched: &HashMap<String, f64>,
    written: &HashMap<String, u64>,
    reacted: &HashMap<String, f64>,
    first_patch: f64,
) -> (f64, String) {
    let mut order: Vec<(u64, f64, f64, &str)> = patched
        .iter()
        .filter_map(|(name, at)| {
            Some((*written.get(name)?, *at, *reacted.get(name)?, name.as_str()))
        })
        .collect();
    order.sort_by_key(|o| o.0);
    let order: Vec<(f64, f64, &str)> = order.into_iter().map(|(_, at, r, n)| (at, r, n)).collect();
    let mut latest: Option<(f64, f64, &str)> = None;
    let mut largest: (f64, String) = (0.0, String::new());
    let s = |ms: f64| (ms - first_patch) / 1000.0;
    for (at, reacted, name) in order {
        if let Some((early_at, early_reacted, early)) = latest {
            if early_reacted - reacted > largest.0 {
                largest = (
                    early_reacted - reacted,
                    format!(
                        "{early} written first, answered at {:.1} s, reacted at {:.1} s; {name} answered at {:.1} s, reacted at {:.1} s",
                        s(early_at),
                        s(early_reacted),
                        s(at),
                        s(reacted)
                    ),
                );
            }
            if reacted <= early_reacted {
                continue;
            }
        }
        latest = Some((at, reacted, name));
    }
    largest
}

/// Per Deployment, the times its rollout started or completed, in the order the tracker saw them.
fn rollout_timelines(records: &[Rec]) -> HashMap<&str, Vec<(f64, bool)>> {
    let mut timelines: HashMap<&str, Vec<(f64, bool)>> = HashMap::new();
    for r in records {
        let timeline = timelines.entry(r.name.as_str()).or_default();
        if timeline
            .last()
            .is_none_or(|(_, done)| *done != r.rolled_out)
        {
            timeline.push((r.at_ms, r.rolled_out));
        }
    }
    timelines
}

/// The spans, within [from, to], in which any of `deployments` was rolling out, overlaps merged, in order.
fn rollout_spans(
    timelines: &HashMap<&str, Vec<(f64, bool)>>,
    deployments: &[&str],
    from: f64,
    to: f64,
) -> Vec<(f64, f64)> {
    let mut spans: Vec<(f64, f64)> = Vec::new();
    for name in deployments {
        let Some(timeline) = timelines.get(name) else {
            continue;
        };
        let mut started: Option<f64> = None;
        for &(at, done) in timeline {
            match (started, done) {
                (None, false) => started = Some(at),
                (Some(s), true) => {
                    spans.push((s, at));
                    started = None;
                }
                _ => {}
            }
        }
        if let Some(s) = started {
            spans.push((s, to));
        }
    }
    let mut clipped: Vec<(f64, f64)> = spans
        .into_iter()
        .map(|(s, e)| (s.max(from), e.min(to)))
        .filter(|(s, e)| e > s)
        .collect();
    clipped.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (s, e) in clipped {
        match merged.last_mut() {
            Some((_, end)) if s <= *end => *end = end.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// How long any of the spans of [`rollout_spans`] lasted: the time a canary's run waited for the cluster
/// rather than for the controller.
fn rolling_out_ms(spans: &[(f64, f64)]) -> f64 {
    spans.iter().map(|(s, e)| e - s).sum()
}

/// What the cluster's rollouts added to a canary's run beyond its plan. The plan gives a Deployment the
/// controller changed one interval (its readiness is asked at the next tick); a tick that finds it still rolling
/// out waits for it, and the run goes on when the rollout ends, so each span adds what it lasts beyond an
/// interval. A span is counted from the rollout's start, which comes after the tick that wrote the change: a tick
/// late by itself, or slow to write, is left to the controller's share.
fn waits_beyond_plan_ms(spans: &[(f64, f64)], interval_ms: f64) -> f64 {
    spans
        .iter()
        .map(|(s, e)| (e - s - interval_ms).max(0.0))
        .sum()
}

/// CPU seconds of the processes of this network namespace named in [`CLUSTER`], by name.
fn cluster_cpu() -> BTreeMap<&'static str, f64> {
    let ours = std::fs::read_link("/proc/self/ns/net").ok();
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() != ours {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if let Some(name) = CLUSTER.iter().find(|c| comm.trim() == **c) {
            *out.entry(*name).or_default() += cpu_seconds(pid);
        }
    }
    out
}

fn cpu_delta(
    a: &BTreeMap<&'static str, f64>,
    b: &BTreeMap<&'static str, f64>,
) -> BTreeMap<&'static str, f64> {
    b.iter()
        .map(|(k, v)| (*k, v - a.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// Runs `make(i)` for `0..n` with [`IN_FLIGHT`] requests at a time.
async fn in_parallel<F, Fut>(n: usize, make: F) -> e2e::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = e2e::Result<()>>,
{
    let mut results = futures::stream::iter((0..n).map(make)).buffer_unordered(IN_FLIGHT);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}

/// The namespaces of one run: the bench's own (created and deleted by `with_namespace`) and, with
/// `SCALE_NAMESPACES` > 1, more created beside it for the canaries to spread over.
struct Spaces {
    main: TestNamespace,
    extra: Vec<String>,
}

impl Spaces {
    async fn create(main: TestNamespace, count: usize) -> e2e::Result<Spaces> {
        let api: Api<Namespace> = Api::all(main.client.clone());
        let mut extra = Vec::new();
        for j in 1..count.max(1) {
            let name = format!("{}-{j}", main.name);
            let ns: Namespace = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"flagger-rs.dev/e2e": "true"}},
            }))?;
            api.create(&PostParams::default(), &ns).await?;
            extra.push(name);
        }
        Ok(Spaces { main, extra })
    }

    fn spread(&self) -> bool {
        !self.extra.is_empty()
    }

    /// The namespace of canary `i`.
    fn of(&self, i: usize) -> &str {
        match i % (self.extra.len() + 1) {
            0 => &self.main.name,
            j => &self.extra[j - 1],
        }
    }

    fn deployments(&self, i: usize) -> Api<Deployment> {
        Api::namespaced(self.main.client.clone(), self.of(i))
    }

    fn canaries(&self, i: usize) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.main.client.clone(),
            self.of(i),
            &ctl::canary_resource(),
        )
    }

    /// What the tracker watches: the bench's namespace, or every namespace when spread.
    fn watched(&self) -> (Api<DynamicObject>, Api<Deployment>) {
        if self.spread() {
            (
                Api::all_with(self.main.client.clone(), &ctl::canary_resource()),
                Api::all(self.main.client.clone()),
            )
        } else {
            (canaries(&self.main), self.main.api())
        }
    }

    /// Deletes the namespaces created beside the bench's own without waiting: the bench's own is
    /// deleted (and waited for) by `with_namespace`, and `hack/cluster/down` removes what is left.
    async fn delete_extra(&self) {
        let api: Api<Namespace> = Api::all(self.main.client.clone());
        for name in &self.extra {
            if let Err(e) = api.delete(name, &DeleteParams::background()).await {
                eprintln!("warning: deleting namespace {name}: {e}");
            }
        }
    }
}

/// When the canaries check a metric and call a webhook (`SCALE_CHECKS`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checks {
    /// Never.
    Without,
    /// From their creation.
    Always,
    /// Not in the first mass rollout; every canary is then given them and all roll out again.
    Second,
}

impl Checks {
    fn from_env() -> Checks {
        match env_usize("SCALE_CHECKS", 0) {
            0 => Checks::Without,
            1 => Checks::Always,
            _ => Checks::Second,
        }
    }
}

/// What the canaries' checks need: the MetricTemplate is created in `ns`, the loadtester started; the
/// returned loadtester must outlive the runs that call it.
async fn start_checks(ns: &TestNamespace) -> e2e::Result<Loadtester> {
    let template = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("flagger.app", "v1beta1", "MetricTemplate"),
        "metrictemplates",
    );
    // A query Prometheus evaluates over its real series and that differs per canary, so no cache
    // between the controller and Prometheus can answer it.
    e2e::gateway::apply_resource(
        ns,
        &template,
        json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": "scrapes"},
            "spec": {
                "provider": {"type": "prometheus", "address": e2e::PROMETHEUS},
                "query": r#"count(up{job!="{{ namespace }}-{{ target }}"}) or vector(1)"#,
            },
        }),
    )
    .await?;
    Loadtester::start(&ns.name).await
}

/// The bench's canary, with the metric check and the webhook when `loadtester` is there.
fn bench_canary(
    name: &str,
    namespace: &str,
    template_namespace: &str,
    loadtester: Option<&Loadtester>,
) -> Value {
    let mut canary = blue_green_canary(name, INTERVAL, ITERATIONS, json!([]));
    canary["metadata"]["namespace"] = json!(namespace);
    if let Some(deadline) = std::env::var("SCALE_PROGRESS_DEADLINE")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        canary["spec"]["progressDeadlineSeconds"] = json!(deadline);
    }
    if let Some(lt) = loadtester {
        canary["spec"]["analysis"] =
            checked_analysis(&canary["spec"]["analysis"], template_namespace, lt);
    }
    canary
}

/// `analysis` with one metric check and one webhook more.
fn checked_analysis(analysis: &Value, template_namespace: &str, lt: &Loadtester) -> Value {
    let mut analysis = analysis.clone();
    // The loadtester's rollback gate, closed: asked every analysis tick, never rolls back, and
    // logs each call, so the bench can count them.
    analysis["webhooks"] = json!([{
        "name": "rollback-gate", "type": "rollback", "url": lt.at("/rollback/check"), "timeout": "10s",
    }]);
    analysis["metrics"] = json!([{
        "name": "scrapes", "interval": "1m", "thresholdRange": {"min": 0},
        "templateRef": {"name": "scrapes", "namespace": template_namespace},
    }]);
    analysis
}

/// ConfigMaps and Secrets no canary references, 1 KiB of data each.
async fn create_unrelated(ns: &TestNamespace, n: usize) -> e2e::Result<()> {
    let configmaps: Api<ConfigMap> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let data = "x".repeat(1024);
    in_parallel(n, |i| {
        let (configmaps, secrets, data) = (configmaps.clone(), secrets.clone(), data.clone());
        async move {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("unrelated-{i}")}, "data": {"v": data},
            }))?;
            configmaps.create(&PostParams::default(), &cm).await?;
            let s: Secret = serde_json::from_value(json!({
                "metadata": {"name": format!("unrelated-{i}")}, "stringData": {"v": data},
            }))?;
            secrets.create(&PostParams::default(), &s).await?;
            Ok(())
        }
    })
    .await
}

struct Row {
    count: usize,
    unrelated: usize,
    init_s: f64,
    idle_requests: f64,
    idle_breakdown: String,
    idle_cpu_pct: f64,
    rss_mib: f64,
    /// The controller's largest RSS over the whole run (initialisation and rollouts included).
    peak_rss_mib: f64,
    reaction: Vec<f64>,
    /// Every target patched at once: one, or two with `SCALE_CHECKS=2` (without the checks, then with).
    masses: Vec<Mass>,
    load: String,
}

/// What one mass rollout (every target patched at once) measured.
#[derive(Default)]
struct Mass {
    /// Whether every canary checked a metric and called a webhook during it.
    checked: bool,
    ratio: Vec<f64>,
    /// Per canary: the seconds its target or primary Deployment was rolling out (the cluster's share
    /// of the run: controller-manager, scheduler, kwok).
    cluster_rollout: Vec<f64>,
    /// Per canary: (duration − `cluster_rollout`) ÷ plan, the share left to the controller.
    ratio_less_rollout: Vec<f64>,
    /// Per canary, from its reaction (where `plan()` starts: the tick that detects the new revision) to
    /// Succeeded, less what the cluster's rollouts added beyond its plan, ÷ plan: the controller's
    /// lateness against the plan given the cluster's pace (see [`waits_beyond_plan_ms`]). The reaction's own
    /// delay is measured apart, against the client budget.
    ratio_less_waits: Vec<f64>,
    reaction: Vec<f64>,
    /// The controller's writes per canary from the first patch until every canary was Progressing.
    writes_per_reaction: f64,
    /// The same with reads: everything that waited for the client's tokens.
    requests_per_reaction: f64,
    /// What the client budget makes necessary for the last reaction: N × writes ÷ QPS + 1 s.
    budget_s: f64,
    inversion_s: f64,
    /// The controller's requests (watches aside) per canary over the whole rollout.
    requests_per_rollout: f64,
    makespan_s: f64,
    succeeded: usize,
    /// Rolled back instead (the cluster did not roll a canary out within its progress deadline).
    failed: usize,
    /// Ended once every canary reacted (`SCALE_MASS=reactions`): no outcome awaited.
    reactions_only: bool,
    cpu: BTreeMap<&'static str, f64>,
}

impl Row {
    /// What is read when the run ends: the machine's load and the controller's peak RSS.
    fn ended(mut self, pid: u32) -> Row {
        self.load = bench::loadavg();
        self.peak_rss_mib = peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
        self
    }
}

async fn one(ns: TestNamespace, count: usize, unrelated: usize) -> e2e::Result<Row> {
    ctl::install_crds(&ns.client).await?;
    let spaces = Spaces::create(ns, env_usize("SCALE_NAMESPACES", 1)).await?;
    let row = run(&spaces, count, unrelated).await;
    spaces.delete_extra().await;
    row
}

async fn run(spaces: &Spaces, count: usize, unrelated: usize) -> e2e::Result<Row> {
    let ns = &spaces.main;
    let names: Vec<String> = (0..count).map(|i| format!("c-{i:05}")).collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let deployments_of = |name: &str| spaces.deployments(index.get(name).copied().unwrap_or(0));
    let planned_ms = planned_seconds()? as f64 * 1000.0;
    let checks = Checks::from_env();
    let mut loadtester = match checks {
        Checks::Always => Some(start_checks(ns).await?),
        Checks::Without | Checks::Second => None,
    };
    let t = now_ms();
    in_parallel(count, |i| {
        let (deployments, api, name) = (spaces.deployments(i), spaces.canaries(i), &names[i]);
        let canary = bench_canary(name, spaces.of(i), &ns.name, loadtester.as_ref());
        async move {
            apply(&deployments, &App::new(name, "6.0.0", 1).deployment()?).await?;
            let canary: DynamicObject = serde_json::from_value(canary)?;
            api.create(&PostParams::default(), &canary)
                .await
                .context("creating the Canary")?;
            Ok(())
        }
    })
    .await?;
    println!(
        "{count} targets and canaries created in {} s, in {} namespace(s)",
        bench::secs(now_ms() - t),
        spaces.extra.len() + 1
    );
    if unrelated > 0 {
        let t = now_ms();
        create_unrelated(ns, unrelated).await?;
        println!(
            "{unrelated} ConfigMaps and {unrelated} Secrets created in {} s",
            bench::secs(now_ms() - t)
        );
    }
    let idle_secs = env_usize("SCALE_IDLE_SECONDS", 30) as u64;
    // The cluster's own requests (controller-manager, scheduler, kwok) with no controller running.
    let a = request_counts(&ns.client).await?;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let baseline = delta(&a, &request_counts(&ns.client).await?);

    let (watched_canaries, watched_deployments) = spaces.watched();
    let tracker = Tracker::start(watched_canaries, watched_deployments);
    let kubeconfig = ctl::controller_kubeconfig()?;
    let port = free_port()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut args = vec![
        "controller".to_string(),
        format!("-kubeconfig={}", kubeconfig.display()),
        "-mesh-provider=kubernetes".into(),
        "-min-analysis-interval=1s".into(),
        format!("-port={port}"),
        "-log-level=info".into(),
        "-zap-encoding=console".into(),
    ];
    if !spaces.spread() {
        args.push(format!("-namespace={}", ns.name));
    }
    if client_qps() != CLIENT_QPS {
        // Flagger's burst default (250) is 2.5 × its QPS; the same ratio for another budget.
        args.push(format!("-kubeconfig-qps={}", client_qps()));
        args.push(format!("-kubeconfig-burst={}", client_qps() * 5 / 2));
    }
    if let Ok(n) = std::env::var("SCALE_THREADINESS")
        && !n.trim().is_empty()
    {
        args.push(format!("-threadiness={}", n.trim()));
    }
    let started = now_ms();
    let mut controller = Child::spawn(&format!("controller-{count}"), &ctl::binary()?, &args)?;
    let pid = controller.pid;
    // The local cluster, not the controller, sets the pace of initialisation: at 10 000 canaries it
    // creates ~12 canaries' objects a second at first and ~1 a second at the end, so the bound allows
    // one second per canary.
    let init_bound = Duration::from_secs(300 + count as u64);
    wait_all(&tracker, &names, &["Initialized"], 0.0, init_bound)
        .await
        .with_context(|| format!("controller log: {}", controller.log.display()))?;
    let init_s = (now_ms() - started) / 1000.0;
    let initialized: Vec<f64> = firsts(&tracker, "Initialized", started)
        .into_values()
        .map(|at| at - started)
        .collect();
    println!(
        "{count} canaries Initialized in {init_s:.1} s (first / p50 at {} / {} s); controller RSS peak {:.1} MiB",
        p(&initialized, |s| s.min, 1000.0, 1),
        p(&initialized, |s| s.p50, 1000.0, 1),
        peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0
    );
    // Everything the controller asked since it started was its initialisation.
    print_per_canary(
        "initialisation",
        controller_requests(&http, port).await?,
        count,
    );

    // Idle: 10 s to settle, then the window.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let a = request_counts(&ns.client).await?;
    let cpu_a = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let cpu_b = cpu_seconds(pid);
    let during = delta(&a, &request_counts(&ns.client).await?);
    let above: Counts = during
        .iter()
        .map(|(k, v)| (k.clone(), v - baseline.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    let idle_breakdown = above
        .iter()
        .map(|((verb, res), n)| format!("{verb} {res} {n:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rss_mib = rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    controller.ensure_running()?;
    // Printed as soon as known: at 10 000 canaries the rollouts after it can outlast the session.
    println!(
        "{count} canaries idle: {:.2} API requests/s above baseline ({idle_breakdown}), {:.1} % of a core, RSS {rss_mib:.1} MiB",
        total(&above) / idle_secs as f64,
        (cpu_b - cpu_a) / idle_secs as f64 * 100.0,
    );

    let mut row = Row {
        count,
        unrelated,
        init_s,
        idle_requests: total(&above),
        idle_breakdown,
        idle_cpu_pct: (cpu_b - cpu_a) / idle_secs as f64 * 100.0,
        rss_mib,
        peak_rss_mib: 0.0,
        reaction: Vec::new(),
        masses: Vec::new(),
        load: String::new(),
    };
    if env_usize("SCALE_ROLLOUT", 1) == 0 {
        return Ok(row.ended(pid));
    }
    // Reaction, one sampled canary at a time; each run is left to finish before the mass rollout.
    let sample = env_usize("SCALE_SAMPLE", 20).min(count);
    let step = (count / sample.max(1)).max(1);
    let sampled: Vec<&String> = names.iter().step_by(step).take(sample).collect();
    let mut reaction = Vec::new();
    let first_sample = now_ms();
    let react_bound = Duration::from_secs(120);
    for name in &sampled {
        let t = now_ms();
        ctl::set_image(&deployments_of(name), name, "6.0.1").await?;
        let seen = wait_local(&format!("{name} Progressing"), react_bound, || {
            tracker.canary_after(name, t, |r| r.phase == "Progressing")
        })
        .await?;
        reaction.push(seen.at_ms - t);
    }
    println!(
        "{count} canaries: new revision → Progressing p50 / p99 / max {} / {} / {} s, {} sampled one at a time",
        p(&reaction, |s| s.p50, 1000.0, 2),
        p(&reaction, |s| s.p99, 1000.0, 2),
        p(&reaction, |s| s.max, 1000.0, 2),
        reaction.len(),
    );
    let done_bound = Duration::from_secs(planned_ms as u64 / 1000 * 3 + 120);
    let sampled: Vec<String> = sampled.into_iter().cloned().collect();
    wait_all(&tracker, &sampled, &["Succeeded"], first_sample, done_bound).await?;
    row.reaction = reaction;
    if env_usize("SCALE_MASS", 1) == 0 {
        return Ok(row.ended(pid));
    }
    let mass = Rollout {
        spaces,
        names: &names,
        tracker: &tracker,
        http: &http,
        port,
        pid,
        planned_ms,
    };
    row.masses
        .push(mass.all_at_once("6.0.2", loadtester.as_ref()).await?);
    if checks == Checks::Second {
        let lt = start_checks(ns).await?;
        let t = now_ms();
        in_parallel(count, |i| {
            let api = spaces.canaries(i);
            let analysis = checked_analysis(
                &blue_green_canary(&names[i], INTERVAL, ITERATIONS, json!([]))["spec"]["analysis"],
                &ns.name,
                &lt,
            );
            let name = names[i].clone();
            async move {
                let patch = json!({"spec": {"analysis": analysis}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .context("giving a Canary its checks")?;
                Ok(())
            }
        })
        .await?;
        println!(
            "{count} canaries given a metric check and a webhook in {} s",
            bench::secs(now_ms() - t)
        );
        loadtester = Some(lt);
        row.masses
            .push(mass.all_at_once("6.0.3", loadtester.as_ref()).await?);
    }
    controller.ensure_running()?;
    drop(tracker);
    drop(loadtester);
    Ok(row.ended(pid))
}

/// What a mass rollout needs of the run: its canaries, the tracker watching them, the controller.
struct Rollout<'a> {
    spaces: &'a Spaces,
    names: &'a [String],
    tracker: &'a Tracker,
    http: &'a reqwest::Client,
    /// The controller's metrics port and process.
    port: u16,
    pid: u32,
    planned_ms: f64,
}

impl Rollout<'_> {
    /// Every target given `image` at once; measured until every canary Succeeded (or the bound).
    async fn all_at_once(&self, image: &str, loadtester: Option<&Loadtester>) -> e2e::Result<Mass> {
        let (names, tracker, http, port) = (self.names, self.tracker, self.http, self.port);
        let count = names.len();
        let planned_ms = self.planned_ms;
        let cpu_before = (cpu_seconds(self.pid), cluster_cpu());
        // One scrape for both counts: at 10 000 canaries a scrape is tens of MB the controller builds.
        let scrape_before = controller_exposition(http, port).await?;
        let requests_before = requests_in(&scrape_before);
        let timings_before = TickTimings::parse(&scrape_before);
        drop(scrape_before);
        let checks_before = (prometheus_queries(http).await, gate_checks(loadtester));
        let patched: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let written: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let first_patch = now_ms();
        in_parallel(count, |i| {
            let (deployments, name) = (self.spaces.deployments(i), names[i].clone());
            let (patched, written) = (patched.clone(), written.clone());
            async move {
                let version = ctl::set_image(&deployments, &name, image).await?;
                if let Ok(mut p) = patched.lock() {
                    p.insert(name.clone(), now_ms());
                }
                if let (Ok(mut w), Some(v)) = (written.lock(), version.and_then(|v| v.parse().ok()))
                {
                    w.insert(name, v);
                }
                Ok(())
            }
        })
        .await?;
        let mass_bound = Duration::from_secs(planned_ms as u64 / 1000 * 10 + 300 + count as u64);
        // The writes of the reactions: counted until the last canary is Progressing (they include
        // the early canaries' first analysis ticks, so this is an upper bound).
        let reacted = wait_all(tracker, names, &["Progressing"], first_patch, mass_bound).await;
        let requests_reacted = controller_requests(http, port).await?;
        let outcome = match reacted {
            Ok(()) if reactions_only() => {
                // Every canary running at once: what the controller holds then is the point.
                tokio::time::sleep(Duration::from_millis(planned_ms as u64)).await;
                Ok(())
            }
            // A canary the cluster does not roll out within its progress deadline fails, as it
            // should: the run ends when every canary has ended, either way.
            Ok(()) => {
                wait_all(
                    tracker,
                    names,
                    &["Succeeded", "Failed"],
                    first_patch,
                    mass_bound,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let scrape_after = controller_exposition(http, port).await?;
        let requests_after = requests_in(&scrape_after);
        println!("where the controller's time went during the mass rollout:");
        for line in TickTimings::parse(&scrape_after)
            .since(&timings_before)
            .lines()
        {
            println!("  {line}");
        }
        let mut mass = Mass {
            checked: loadtester.is_some(),
            reactions_only: reactions_only(),
            ..Mass::default()
        };
        if loadtester.is_some() {
            println!(
                "during the mass rollout: {:.0} queries answered by Prometheus, {} rollback-gate checks logged by the loadtester",
                prometheus_queries(http).await - checks_before.0,
                gate_checks(loadtester) - checks_before.1
            );
        }
        let progressing = firsts(tracker, "Progressing", first_patch);
        let succeeded = firsts(tracker, "Succeeded", first_patch);
        let failed = firsts(tracker, "Failed", first_patch);
        mass.failed = names
            .iter()
            .filter(|n| failed.contains_key(*n) && !succeeded.contains_key(*n))
            .count();
        let patched = patched.lock().map(|p| p.clone()).unwrap_or_default();
        let mut last = first_patch;
        let deployment_records = tracker.deployments();
        let timelines = rollout_timelines(&deployment_records);
        let interval_ms = interval_ms()?;
        for name in names {
            let Some(&at) = patched.get(name) else {
                continue;
            };
            let reacted = progressing.get(name).copied();
            if let Some(p) = reacted {
                mass.reaction.push(p - at);
            }
            if let Some(&done) = succeeded.get(name) {
                mass.ratio.push((done - at) / planned_ms);
                last = last.max(done);
                let primary = format!("{name}-primary");
                let spans = rollout_spans(&timelines, &[name, &primary], at, done);
                let rolling = rolling_out_ms(&spans);
                mass.cluster_rollout.push(rolling / 1000.0);
                mass.ratio_less_rollout
                    .push((done - at - rolling) / planned_ms);
                if let Some(reacted) = reacted {
                    let since_reaction =
                        rollout_spans(&timelines, &[name, &primary], reacted, done);
                    let waits = waits_beyond_plan_ms(&since_reaction, interval_ms);
                    mass.ratio_less_waits
                        .push((done - reacted - waits) / planned_ms);
                }
            }
        }
        let (reacted_requests, reacted_writes) =
            requests_and_writes(&delta(&requests_before, &requests_reacted));
        mass.writes_per_reaction = reacted_writes / count as f64;
        mass.requests_per_reaction = reacted_requests / count as f64;
        mass.budget_s = count as f64 * mass.writes_per_reaction / client_qps() as f64 + 1.0;
        let written = written.lock().map(|w| w.clone()).unwrap_or_default();
        let (inversion_ms, inverted) =
            largest_inversion(&patched, &written, &progressing, first_patch);
        mass.inversion_s = inversion_ms / 1000.0;
        if !inverted.is_empty() {
            println!("largest reaction-order inversion: {inverted}");
        }
        let rollout_requests = delta(&requests_before, &requests_after);
        mass.requests_per_rollout = total(&rollout_requests) / count as f64;
        print_per_canary("rollout", rollout_requests, count);
        let cpu_after = (cpu_seconds(self.pid), cluster_cpu());
        mass.cpu = cpu_delta(&cpu_before.1, &cpu_after.1);
        mass.cpu.insert("flagger-rs", cpu_after.0 - cpu_before.0);
        if let Err(e) = outcome {
            println!("not every canary ended: {e:#}");
        }
        println!(
            "{count} patched at once: → Progressing p50 / p99 / max {} / {} / {} s, the client budget's line {:.1} s, largest inversion {:.1} s, controller RSS {:.1} MiB (peak {:.1} MiB)",
            p(&mass.reaction, |s| s.p50, 1000.0, 1),
            p(&mass.reaction, |s| s.p99, 1000.0, 1),
            p(&mass.reaction, |s| s.max, 1000.0, 1),
            mass.budget_s,
            mass.inversion_s,
            bench::rss_kib(self.pid).unwrap_or(0) as f64 / 1024.0,
            peak_rss_kib(self.pid).unwrap_or(0) as f64 / 1024.0,
        );
        mass.succeeded = mass.ratio.len();
        mass.makespan_s = (last - first_patch) / 1000.0;
        Ok(mass)
    }
}

fn p(sample: &[f64], f: impl Fn(&bench::Summary) -> f64, scale: f64, digits: usize) -> String {
    summarize(sample).map_or("-".into(), |s| format!("{:.*}", digits, f(&s) / scale))
}

#[tokio::main]
async fn main() -> e2e::Result<()> {
    if std::env::var_os("KUBECONFIG").is_none() {
        bail!("KUBECONFIG is unset: run inside the cluster's netns (hack/bench does)");
    }
    let counts: Vec<usize> = std::env::var("SCALE_COUNTS")
        .unwrap_or_else(|_| "100".into())
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .filter(|n| (1..=20_000).contains(n))
        .collect();
    let unrelated = env_usize("SCALE_UNRELATED", 0);
    let with_checks = match Checks::from_env() {
        Checks::Without => "no metrics",
        Checks::Always => {
            "one Prometheus metric check and one loadtester webhook per canary and tick"
        }
        Checks::Second => {
            "no metrics in the first mass rollout; one Prometheus metric check and one loadtester webhook per canary and tick in the second"
        }
    };
    let planned = planned_seconds()?;
    let threadiness = std::env::var("SCALE_THREADINESS")
        .map(|n| format!(" -threadiness={}", n.trim()))
        .unwrap_or_default();
    let threadiness = format!("{threadiness} -kubeconfig-qps={}", client_qps());
    let load_start = bench::loadavg();
    println!("load average at start: {load_start}");
    let namespaces = match env_usize("SCALE_NAMESPACES", 1) {
        0 | 1 => "one namespace".to_string(),
        n => format!("spread over {n} namespaces"),
    };
    let mut rows = Vec::new();
    for &count in &counts {
        let cell = Arc::new(Mutex::new(None));
        let sink = cell.clone();
        // A bound for a run that hangs, not a measure: 10 000 canaries take over an hour here.
        tokio::time::timeout(
            Duration::from_secs(3600 + 2 * count as u64),
            with_namespace("bench-scale", |ns| async move {
                let row = one(ns, count, unrelated).await?;
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
    let mut out = format!(
        "\n## flagger-rs at scale\n\
         settings: blue/green, interval {INTERVAL}, {ITERATIONS} iterations, {with_checks}, 1-replica Deployment \
         targets {namespaces}, planned run {planned} s; controller {}{threadiness}; load average at start: {load_start}\n\n\
         | canaries | unrelated ConfigMaps + Secrets | all Initialized (s) | idle API requests/s above baseline | \
         idle CPU (% of a core) | RSS idle / peak (MiB) | new revision → Progressing p50 / p99 (s), sampled | \
         mass rollout checks | \
         all patched: → Progressing p50 / p99 / max (s) | client budget for the last reaction (s): N × writes ÷ QPS + 1 | \
         writes / requests per reaction | most any canary reacted ahead of one written earlier (s) | \
         all patched: duration ÷ plan p50 / p99 | the cluster's Deployment rollouts per canary p50 / p99 (s) | \
         duration less those ÷ plan p50 / p99 | from the reaction, less what those added beyond an interval each ÷ plan p50 / p99 | makespan (s) | Succeeded (Failed) | requests per canary rollout | \
         CPU s during the rollout | load at end |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ctl::binary()?.display(),
    );
    let idle_secs = env_usize("SCALE_IDLE_SECONDS", 30) as f64;
    let mut notes = String::new();
    for r in &rows {
        let run = format!(
            "| {} | {} | {:.1} | {:.2} | {:.2} | {:.1} / {:.1} | {} / {} |",
            r.count,
            r.unrelated,
            r.init_s,
            r.idle_requests / idle_secs,
            r.idle_cpu_pct,
            r.rss_mib,
            r.peak_rss_mib,
            p(&r.reaction, |s| s.p50, 1000.0, 2),
            p(&r.reaction, |s| s.p99, 1000.0, 2),
        );
        if r.masses.is_empty() {
            out.push_str(&format!(
                "\n{run} not run | – | – | – | – | – | – | – | – | – | – | – | – | – | {} |",
                r.load
            ));
        }
        for m in &r.masses {
            let cpu = m
                .cpu
                .iter()
                .map(|(k, v)| format!("{k} {v:.0}"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "\n{run} {} | {} / {} / {} | {:.1} | {:.1} / {:.1} | {:.1} | {} / {} | {} / {} | {} / {} | {} / {} | {:.1} | {}{} of {} ({}) | {:.1} | {cpu} | {} |",
                if m.checked { "metric + webhook" } else { "none" },
                p(&m.reaction, |s| s.p50, 1000.0, 1),
                p(&m.reaction, |s| s.p99, 1000.0, 1),
                p(&m.reaction, |s| s.max, 1000.0, 1),
                m.budget_s,
                m.writes_per_reaction,
                m.requests_per_reaction,
                m.inversion_s,
                p(&m.ratio, |s| s.p50, 1.0, 2),
                p(&m.ratio, |s| s.p99, 1.0, 2),
                p(&m.cluster_rollout, |s| s.p50, 1.0, 1),
                p(&m.cluster_rollout, |s| s.p99, 1.0, 1),
                p(&m.ratio_less_rollout, |s| s.p50, 1.0, 2),
                p(&m.ratio_less_rollout, |s| s.p99, 1.0, 2),
                p(&m.ratio_less_waits, |s| s.p50, 1.0, 2),
                p(&m.ratio_less_waits, |s| s.p99, 1.0, 2),
                m.makespan_s,
                if m.reactions_only { "not awaited: ".to_string() } else { String::new() },
                m.succeeded,
                r.count,
                m.failed,
                m.requests_per_rollout,
                r.load,
            ));
        }
        if !r.idle_breakdown.is_empty() {
            notes.push_str(&format!(
                "idle requests above baseline ({} canaries): {}\n",
                r.count, r.idle_breakdown
            ));
        }
    }
    out.push_str("\n\n");
    out.push_str(&notes);
    println!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT")
        && !path.is_empty()
    {
        std::fs::write(&path, &out).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_time_counts_overlaps_once_and_stays_in_the_run() {
        let rec = |at_ms: f64, name: &str, rolled_out: bool| Rec {
            at_ms,
            name: name.into(),
            phase: String::new(),
            failed_checks: 0,
            transition: String::new(),
            replicas: 1,
            rolled_out,
        };
        let records = [
            rec(0.0, "a", true),
            rec(10.0, "a", false),
            rec(30.0, "a", true),
            rec(20.0, "a-primary", false),
            rec(40.0, "a-primary", true),
            rec(90.0, "a-primary", false),
            rec(5.0, "other", false),
        ];
        let timelines = rollout_timelines(&records);
        // 10–40 (two overlapping rollouts) and 90 until the run ends at 100.
        let rolling = |deployments: &[&str], from, to| {
            rolling_out_ms(&rollout_spans(&timelines, deployments, from, to))
        };
        assert_eq!(rolling(&["a", "a-primary"], 0.0, 100.0), 40.0);
        // Only what falls inside the run counts.
        assert_eq!(rolling(&["a", "a-primary"], 25.0, 95.0), 20.0);
        assert_eq!(rolling(&["missing"], 0.0, 100.0), 0.0);
    }

    #[test]
    fn a_rollout_within_its_interval_adds_nothing_to_the_plan_and_a_longer_one_what_it_lasts_beyond()
     {
        let interval = 10_000.0;
        assert_eq!(waits_beyond_plan_ms(&[], interval), 0.0);
        // Ready by the tick after the change: what the plan gives it.
        assert_eq!(waits_beyond_plan_ms(&[(0.0, 9_900.0)], interval), 0.0);
        assert_eq!(waits_beyond_plan_ms(&[(0.0, 10_000.0)], interval), 0.0);
        // Waited for past that tick, the run going on when it ends; each wait on its own.
        assert_eq!(
            waits_beyond_plan_ms(&[(0.0, 10_500.0), (50_000.0, 75_000.0)], interval),
            15_500.0
        );
    }
}
