//! Metric-check throughput of the Prometheus provider against the real Prometheus of the local cluster (issue 7):
//! prints numbers, asserts nothing. Run inside the cluster's netns:
//! `hack/cluster/exec cargo run -p e2e --bin bench_checks` (KUBECONFIG and the netns come from `exec`).
//!
//! Setup: one namespace with podinfo behind Service `podinfo-canary`, TraefikService `podinfo` (weighted, 100 to
//! `podinfo-canary`, as the traefik router writes it) and an IngressRoute, and a paced, bounded
//! traffic driver through Traefik so `traefik_service_*{service="<ns>-podinfo-canary-9898@kubernetescrd"}` has
//! data (the builtin traefik queries return values, not "no data"). Then `BENCH_CANARIES` canaries × the 2 builtin
//! metrics (`request-success-rate`, `request-duration`, traefik query set, interval 1m): one check = render the
//! builtin query for that canary + one instant query + unit conversion, as crates/controller/src/checks.rs does.
//!
//! Modes, each `BENCH_ROUNDS` rounds of canaries × 2 checks:
//! * `per-check client`: a new PrometheusProvider (HTTP client) per check, like the controller today;
//! * `shared client`: one provider for all checks (connection reuse);
//!
//! each with all checks of a round in flight at once (`BENCH_CONCURRENCY`, default = all) and sequentially.
//!
//! Environment: `BENCH_CANARIES` (100), `BENCH_ROUNDS` (5), `BENCH_CONCURRENCY` (canaries × 2).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use e2e::objects::{App, deployment_available, ingress_route, service, weighted_traefik_service};
use e2e::traffic::Run;
use e2e::{PROMETHEUS, Result, TRAEFIK_WEB, TestNamespace, apply, poll_until, wait_for};
use flagger_providers::metrics::builtin::{BuiltinMetric, QuerySet, to_threshold_unit};
use flagger_providers::metrics::prometheus::{PrometheusOptions, PrometheusProvider};
use flagger_providers::metrics::{MetricError, MetricProvider, QueryModel};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    values: usize,
    no_data: usize,
    errors: usize,
    first_error: Option<String>,
    latencies: Vec<Duration>,
}

/// One check: render + query + conversion. `shared` is reused when given, else a provider is built for the check.
async fn check(
    shared: Option<Arc<PrometheusProvider>>,
    model: &QueryModel,
    metric: BuiltinMetric,
) -> (Duration, std::result::Result<Option<f64>, String>) {
    let start = Instant::now();
    let set = QuerySet::Traefik;
    let out = async {
        let query = set.render(metric, model).map_err(|e| e.to_string())?;
        let provider = match shared {
            Some(p) => p,
            None => Arc::new(
                PrometheusProvider::new(PrometheusOptions::new(PROMETHEUS))
                    .map_err(|e| e.to_string())?,
            ),
        };
        match provider.run_query(&query, Duration::from_secs(60)).await {
            Ok(s) => Ok(Some(to_threshold_unit(s.value, set.raw_unit(metric)))),
            Err(MetricError::NoValues(_)) => Ok(None),
            Err(MetricError::QueryFailed(m)) => Err(m),
        }
    }
    .await;
    (start.elapsed(), out)
}

async fn round(
    models: &[QueryModel],
    shared: Option<Arc<PrometheusProvider>>,
    concurrency: usize,
    tally: &mut Tally,
) -> Duration {
    let start = Instant::now();
    let jobs = models.iter().flat_map(|m| {
        [
            BuiltinMetric::RequestSuccessRate,
            BuiltinMetric::RequestDuration,
        ]
        .map(|metric| (m, metric))
    });
    let mut results = futures::stream::iter(jobs)
        .map(|(m, metric)| check(shared.clone(), m, metric))
        .buffer_unordered(concurrency.max(1));
    while let Some((took, r)) = results.next().await {
        tally.latencies.push(took);
        match r {
            Ok(Some(_)) => tally.values += 1,
            Ok(None) => tally.no_data += 1,
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
            }
        }
    }
    start.elapsed()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn bench(ns: TestNamespace) -> Result<()> {
    let canaries = env_usize("BENCH_CANARIES", 100);
    let rounds = env_usize("BENCH_ROUNDS", 5);
    let concurrency = env_usize("BENCH_CONCURRENCY", canaries * 2);

    // Workload with Traefik metrics for `<ns>-podinfo-canary-9898@kubernetescrd`.
    let deployments: Api<Deployment> = ns.api();
    apply(&deployments, &App::new("podinfo", "6.0.1", 1).deployment()?).await?;
    wait_for(
        &deployments,
        "podinfo",
        "available",
        Duration::from_secs(90),
        deployment_available(),
    )
    .await?;
    let services: Api<Service> = ns.api();
    apply(&services, &service("podinfo-canary", "podinfo")?).await?;
    let host = format!("{}.bench.test", ns.name);
    // As the traefik router writes it: an IngressRoute to a weighted TraefikService, whose child services Traefik
    // labels `<ns>-<svc>-<port>@kubernetescrd` (a Service named directly in an IngressRoute is labelled
    // `<ns>-<route>-<hash>@kubernetescrd` instead, which the builtin query does not match).
    let apply_traefik = |kind: &'static str, plural: &'static str, obj: DynamicObject| {
        let api: Api<DynamicObject> = Api::namespaced_with(
            ns.client.clone(),
            &ns.name,
            &e2e::objects::traefik_resource(kind, plural),
        );
        async move {
            api.patch(
                "podinfo",
                &PatchParams::apply(e2e::FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("applying {kind} podinfo"))
        }
    };
    apply_traefik(
        "TraefikService",
        "traefikservices",
        weighted_traefik_service("podinfo", &[("podinfo-canary", 100)])?,
    )
    .await?;
    apply_traefik(
        "IngressRoute",
        "ingressroutes",
        ingress_route("podinfo", &host, "podinfo")?,
    )
    .await?;
    e2e::wait_endpoints(
        &ns.client,
        &ns.name,
        "podinfo-canary",
        1,
        Duration::from_secs(60),
    )
    .await?;

    // Paced background traffic (~50 rps), bounded by count and time, stopped at the end.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let traffic_host = host.clone();
    let traffic = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(100));
        for _ in 0..6000 {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            pace.tick().await;
            let mut run = Run::new(TRAEFIK_WEB, 5).host(&traffic_host);
            run.deadline = Duration::from_secs(5);
            let _ = run.drive().await;
        }
    });
    struct Abort(tokio::task::JoinHandle<()>, Arc<AtomicBool>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
            self.0.abort();
        }
    }
    let _traffic = Abort(traffic, stop);

    let model = |i: usize| QueryModel {
        name: format!("podinfo-{i}"),
        namespace: ns.name.clone(),
        target: "podinfo".into(),
        service: "podinfo".into(),
        ingress: "podinfo".into(),
        route: "podinfo".into(),
        interval: "1m".into(),
        variables: Default::default(),
    };
    let models: Vec<QueryModel> = (0..canaries).map(model).collect();
    // Prometheus has the series once both builtin queries return values.
    let probe = models[0].clone();
    poll_until(
        "builtin traefik queries returning values",
        Duration::from_secs(60),
        || {
            let probe = probe.clone();
            async move {
                let (_, a) = check(None, &probe, BuiltinMetric::RequestSuccessRate).await;
                let (_, b) = check(None, &probe, BuiltinMetric::RequestDuration).await;
                Ok(matches!((a, b), (Ok(Some(_)), Ok(Some(_)))).then_some(()))
            }
        },
    )
    .await?;

    println!(
        "bench_checks: {canaries} canaries × 2 builtin traefik metrics, {rounds} rounds, Prometheus {PROMETHEUS}"
    );
    println!(
        "{:<18} {:>11} {:>8} {:>10} {:>9} {:>9} {:>9} {:>7} {:>7} {:>6}",
        "mode",
        "concurrency",
        "checks",
        "checks/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "values",
        "nodata",
        "errors"
    );
    let shared = Arc::new(
        PrometheusProvider::new(PrometheusOptions::new(PROMETHEUS))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    for (mode, provider) in [
        ("per-check client", None),
        ("shared client", Some(shared.clone())),
    ] {
        for conc in [concurrency, 1] {
            let mut tally = Tally::default();
            let mut wall = Duration::ZERO;
            for _ in 0..rounds {
                wall += round(&models, provider.clone(), conc, &mut tally).await;
            }
            let n = tally.latencies.len();
            tally.latencies.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{:<18} {:>11} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>7} {:>6}",
                mode,
                conc,
                n,
                n as f64 / wall.as_secs_f64(),
                ms(pct(&tally.latencies, 0.5)),
                ms(pct(&tally.latencies, 0.99)),
                ms(pct(&tally.latencies, 1.0)),
                tally.values,
                tally.no_data,
                tally.errors
            );
            if let Some(e) = tally.first_error {
                eprintln!("  first error ({mode}, concurrency {conc}): {e}");
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::var_os("KUBECONFIG").is_none() {
        bail!(
            "run inside the cluster's netns: hack/cluster/exec cargo run -p e2e --bin bench_checks"
        );
    }
    e2e::with_namespace("bench-checks", bench).await
}
