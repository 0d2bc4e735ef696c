//! Metric-check throughput of the Prometheus provider against the real Prometheus of the local cluster (issue 7):
//! prints numbers, asserts nothing. Run inside the cluster's netns:
//! `hack/cluster/exec cargo run -p e2e --bin bench_checks` (KUBECONFIG and the netns come from `exec`).
//!
//! Setup: one namespace with podinfo behind Service `podinfo-canary`, TraefikService `podinfo` (weighted, 100 to
//! `podinfo-canary`, as the traefik router writes it) and an IngressRoute, and a paced, bounded
//! traffic driver through Traefik so `traefik_service_*{service="<ns>-podinfo-canary-9898@kubernetescrd"}` has
//! data (the builtin traefik queries return values, not "no data"). Then `BENCH_CANARIES` canaries × the 2 builtin
//! metrics (`request-success-rate`, `request-duration`, traefik query set, interval 1m): one check =
//! `flagger_providers::metrics::check_metric` for that canary (classify, render the builtin query, one instant
//! query, unit conversion), the path crates/controller/src/checks.rs runs after its cluster lookups.
//!
//! Modes, each `BENCH_ROUNDS` rounds of canaries × 2 checks:
//! * `per-check client`: a new PrometheusProvider (HTTP client) per check, as the controller once did;
//! * `shared client`: one provider for all checks (connection reuse), as the controller does now;
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
use flagger_api::{Canary, CanaryMetric};
use flagger_providers::metrics::prometheus::{PrometheusOptions, PrometheusProvider};
use flagger_providers::metrics::{CheckContext, CheckError, check_metric};
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

/// One check as the controller runs it. `shared` is reused when given, else a provider is built for the check.
async fn check(
    shared: Option<Arc<PrometheusProvider>>,
    canary: &Canary,
    metric: &CanaryMetric,
) -> (Duration, std::result::Result<Option<f64>, String>) {
    let start = Instant::now();
    let out = async {
        let provider = match shared {
            Some(p) => p,
            None => Arc::new(
                PrometheusProvider::new(PrometheusOptions::new(PROMETHEUS))
                    .map_err(|e| e.to_string())?,
            ),
        };
        let ctx = CheckContext {
            canary,
            mesh_provider: "traefik",
            prometheus: Ok(provider.as_ref()),
            route_override: None,
        };
        match check_metric(&ctx, metric, None).await.value {
            Ok(v) => Ok(Some(v)),
            Err(CheckError::NoValues(_)) => Ok(None),
            Err(e) => Err(format!("{e:?}")),
        }
    }
    .await;
    (start.elapsed(), out)
}

/// The two builtin metrics, each over the last minute.
fn builtin_metrics() -> Result<[CanaryMetric; 2]> {
    let metric = |name: &str| -> Result<CanaryMetric> {
        Ok(serde_json::from_value(
            serde_json::json!({"name": name, "interval": "1m"}),
        )?)
    };
    Ok([metric("request-success-rate")?, metric("request-duration")?])
}

async fn round(
    canaries: &[Canary],
    metrics: &[CanaryMetric],
    shared: Option<Arc<PrometheusProvider>>,
    concurrency: usize,
    tally: &mut Tally,
) -> Duration {
    let start = Instant::now();
    let jobs = canaries
        .iter()
        .flat_map(|c| metrics.iter().map(move |metric| (c, metric)));
    let mut results = futures::stream::iter(jobs)
        .map(|(c, metric)| check(shared.clone(), c, metric))
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

    // Only the canaries' names differ: what the builtin traefik queries use is the same for all.
    let canary = |i: usize| -> Result<Canary> {
        Ok(serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": format!("podinfo-{i}"), "namespace": ns.name},
            "spec": {
                "provider": "traefik",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {},
            },
        }))?)
    };
    let models = (0..canaries).map(canary).collect::<Result<Vec<_>>>()?;
    let metrics = builtin_metrics()?;
    // Prometheus has the series once both builtin queries return values.
    poll_until(
        "builtin traefik queries returning values",
        Duration::from_secs(60),
        || {
            let (probe, metrics) = (&models[0], &metrics);
            async move {
                let (_, a) = check(None, probe, &metrics[0]).await;
                let (_, b) = check(None, probe, &metrics[1]).await;
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
                wall += round(&models, &metrics, provider.clone(), conc, &mut tally).await;
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
