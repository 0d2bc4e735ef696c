//! Whole canary runs of each service-mesh provider (istio, linkerd, osm, App Mesh, Kuma) decided by its builtin metrics: a `flagger-rs controller` child
//! runs a weighted canary whose `request-success-rate` (min 99) and `request-duration` (max 500 ms) checks query
//! the cluster's Prometheus (the `-metrics-server` flag) in that mesh's own metric names. A healthy version is
//! promoted; a version answering 500 to 30 % of requests is rolled back after exactly `threshold` failed checks.
//!
//! No mesh data plane runs here: a bounded background load goes straight to the canary and primary Services
//! (kube-proxy in the netns), and the testapp exports, for every request a pod serves, the series that mesh's
//! proxies would (crates/testapp/src/mesh_series.rs), scraped every second. The builtin queries select by
//! workload, so the load need not follow the routed weights: each workload gets a steady share.
//!
//! Run: `hack/e2e mesh_analysis`.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::analysis::{
    Target, ensure_promoted_without_failures, ensure_rolled_back_on_success_rate, metric_records,
    run_version_on,
};
use e2e::controller::{
    canaries, create_canary, deploy, install_crds, start_controller, wait_phase,
};
use e2e::objects::{APP_PORT, App};
use e2e::{PROMETHEUS, Result, TestNamespace, skip_unless_e2e, with_namespace};
use k8s_openapi::api::core::v1::Service;
use kube::api::DynamicObject;
use serde_json::json;

const APP: &str = "podinfo";
const ERROR_RATE: &str = "testapp.flagger-rs.dev/error-rate";
const LATENCY_MS: &str = "testapp.flagger-rs.dev/latency-ms";
/// The healthy version's latency: every request sleeps this long, so its P99 check reads a real, nonzero value.
const HEALTHY_LATENCY_MS: f64 = 20.0;
const THRESHOLD: i64 = 2;
/// Requests per second to each of the canary and primary Services.
const RPS: usize = 60;
const INIT: Duration = Duration::from_secs(90);
const RUN: Duration = Duration::from_secs(150);

/// A weighted canary of `provider` on the builtin checks. The 3 s interval leaves every check a few scrapes of
/// the new canary pod inside its 10 s rate window, so the first check already has data.
fn canary(provider: &str, app: &str) -> serde_json::Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": app},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "progressDeadlineSeconds": 60,
            "service": {"port": APP_PORT, "targetPort": APP_PORT},
            "analysis": {
                "interval": "3s", "threshold": THRESHOLD, "stepWeight": 20, "maxWeight": 60,
                "metrics": [
                    {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}},
                    {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 500}},
                ],
            },
        },
    })
}

/// `http://<ClusterIP>:<port>/` of Service `name`.
async fn service_url(ns: &TestNamespace, name: &str) -> Result<String> {
    let svc = ns.api::<Service>().get(name).await?;
    let ip = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .with_context(|| format!("Service {name} has no ClusterIP"))?;
    Ok(format!("http://{ip}:{APP_PORT}/"))
}

/// The last checks of the healthy run read the canary's real series: a 100 % success rate, and a P99 no lower
/// than the latency every request slept (and under the 500 ms maximum, which is why it passed).
fn ensure_healthy_values(done: &DynamicObject) -> Result<()> {
    let records = metric_records(done);
    eprintln!("healthy run records: {records:#?}");
    let value = |name: &str| {
        records
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.value)
            .with_context(|| format!("no {name} value: {records:#?}"))
    };
    let rate = value("request-success-rate")?;
    ensure!(rate == 100.0, "success rate {rate} for a healthy version");
    let p99 = value("request-duration")?;
    ensure!(
        (HEALTHY_LATENCY_MS..500.0).contains(&p99),
        "P99 {p99} ms for {HEALTHY_LATENCY_MS} ms latency"
    );
    Ok(())
}

/// One provider's pair of runs; `series` is the metric its success-rate query reads.
async fn healthy_promotes_errors_roll_back(provider: &str, series: &str) -> Result<()> {
    healthy_promotes_errors_roll_back_of(provider, series, APP).await
}

/// The same for a Deployment, Canary and apex named `app`.
async fn healthy_promotes_errors_roll_back_of(
    provider: &str,
    series: &str,
    app: &str,
) -> Result<()> {
    with_namespace(
        &format!("meshrun-{}", provider.replace([':', '.'], "-")),
        |ns| async move {
            install_crds(&ns.client).await?;
            deploy(&ns, &App::new(app, "6.0.0", 1), |_| {}).await?;
            let controller = start_controller(
                &ns.name,
                &[
                    &format!("-mesh-provider={provider}"),
                    &format!("-metrics-server={PROMETHEUS}"),
                ],
            )?;
            create_canary(&ns, canary(provider, app)).await?;
            wait_phase(&canaries(&ns), app, "Initialized", INIT, &controller).await?;
            // The apex Service sends to the primary, `-canary` to the canary (no endpoints until a run scales it up).
            let targets = [
                Target::url(service_url(&ns, app).await?),
                Target::url(service_url(&ns, &format!("{app}-canary")).await?),
            ];

            let healthy =
                App::new(app, "6.0.1", 1).annotate(LATENCY_MS, &HEALTHY_LATENCY_MS.to_string());
            let (done, rec) = run_version_on(
                &ns,
                &controller,
                targets.to_vec(),
                healthy,
                "Succeeded",
                RPS,
                RUN,
            )
            .await?;
            ensure_promoted_without_failures(&rec, &[20, 40, 60])?;
            ensure_healthy_values(&done)?;

            let bad = App::new(app, "6.0.2", 1).annotate(ERROR_RATE, "0.3");
            let (done, rec) =
                run_version_on(&ns, &controller, targets.to_vec(), bad, "Failed", RPS, RUN).await?;
            ensure_rolled_back_on_success_rate(&ns, app, &done, &rec, THRESHOLD, series).await?;
            drop(controller);
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn mesh_analysis_istio_healthy_promotes_errors_roll_back() -> Result<()> {
    skip_unless_e2e!();
    healthy_promotes_errors_roll_back("istio", "istio_requests_total").await
}

#[tokio::test]
async fn mesh_analysis_linkerd_healthy_promotes_errors_roll_back() -> Result<()> {
    skip_unless_e2e!();
    healthy_promotes_errors_roll_back("linkerd", "response_total").await
}

#[tokio::test]
async fn mesh_analysis_osm_healthy_promotes_errors_roll_back() -> Result<()> {
    skip_unless_e2e!();
    healthy_promotes_errors_roll_back("osm", "osm_request_total").await
}

/// App Mesh's builtin queries read Envoy's cluster series, which name the canary's Service.
#[tokio::test]
async fn mesh_analysis_appmesh_healthy_promotes_errors_roll_back() -> Result<()> {
    skip_unless_e2e!();
    healthy_promotes_errors_roll_back("appmesh:v1beta2", "envoy_cluster_upstream_rq").await
}

/// Kuma's TrafficRoute is cluster-scoped and named after the apex, and its builtin queries name Envoy
/// clusters after the target: a Deployment name of its own keeps this run clear of the other Kuma test.
#[tokio::test]
async fn mesh_analysis_kuma_healthy_promotes_errors_roll_back() -> Result<()> {
    skip_unless_e2e!();
    healthy_promotes_errors_roll_back_of("kuma", "envoy_cluster_upstream_rq", "podinfo-kuma").await
}

/// Contour's builtin queries read Envoy's cluster series `<namespace>_<service>_<port>` of the canary Service.
#[tokio::test]
async fn mesh_analysis_contour_healthy_promotes_errors_roll_back() -> Result<()> {
    skip_unless_e2e!();
    healthy_promotes_errors_roll_back("contour", "envoy_cluster_upstream_rq").await
}

/// Gloo's builtin queries read Envoy's cluster series of the canary Upstream
/// (`<namespace>-<target>-canaryupstream-<port>_<namespace>`).
#[tokio::test]
async fn mesh_analysis_gloo_healthy_promotes_errors_roll_back() -> Result<()> {
    skip_unless_e2e!();
    healthy_promotes_errors_roll_back("gloo", "envoy_cluster_upstream_rq").await
}
