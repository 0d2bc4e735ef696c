//! The builtin `request-success-rate` / `request-duration` checks of every service-mesh provider, answered by the
//! cluster's Prometheus from the series the testapp exports for the requests it really serves (no mesh data plane
//! runs here; see crates/testapp/src/mesh_series.rs).
//!
//! One namespace laid out as Flagger lays out two canaries: `bad` (canary 30 % errors, primary healthy) and `good`
//! (canary healthy, primary 30 % errors), each with `<name>`, `<name>-canary` and `<name>-primary` Services. Pods
//! get a bounded number of requests on their pod IPs, then each provider's checks run through
//! `flagger_providers::metrics::check_metric`, the code path of the controller (query-set selection, rendering,
//! Prometheus query, unit conversion). The primaries' opposite health shows that each selector picks the canary
//! only; where a mesh keys its series by workload (or Knative revision), the primary is also checked as a target of
//! its own. APISIX keys its series by route: the canaries' pods say they are reached through Flagger's canary
//! ApisixRoute, the primaries' through the user's. Knative keys them by revision: every pod carries Knative's
//! revision label (canary `<name>-00002`, primary `<name>-00001`) and the check gets the revision under analysis as
//! the controller passes it.
//!
//! Run: `hack/e2e mesh_builtin`. The routers of these meshes are not involved.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::objects::{self, APP_PORT, App};
use e2e::traffic::Run;
use e2e::{PROMETHEUS, Result, TestNamespace, apply, poll_until, skip_unless_e2e, wait_for};
use flagger_api::{Canary, CanaryMetric};
use flagger_providers::metrics::builtin::QuerySet;
use flagger_providers::metrics::prometheus::{PrometheusOptions, PrometheusProvider};
use flagger_providers::metrics::{CheckContext, MetricKind, check_metric};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use serde_json::json;

const ERROR_RATE: &str = "0.3";
const CANARY_LATENCY_MS: f64 = 40.0;
const PRIMARY_LATENCY_MS: f64 = 5.0;
/// Requests per pod: a multiple of 10, so a 30 % pod fails exactly 30 % of them (errors are spread evenly).
const WARM_UP: usize = 10;
const REQUESTS: usize = 200;
const TOLERANCE: f64 = 5.0;

/// What a provider's series are keyed by, hence which workloads its checks can select and how.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keyed {
    /// The workload: a primary can be queried as a target too.
    Workload,
    /// The `-canary` Service: canaries only.
    CanaryService,
    /// Flagger's canary ApisixRoute `<routeRef>-<target>-canary`: canaries only, the Canary names its routeRef.
    ApisixRoute,
    /// The revision under analysis, which the controller passes as the query's `route`: primaries too.
    KnativeRevision,
}

/// Each mesh provider, the query set its builtin checks must use, and what its series are keyed by.
const PROVIDERS: [(&str, QuerySet, Keyed); 10] = [
    ("istio", QuerySet::Istio, Keyed::Workload),
    ("linkerd", QuerySet::Linkerd, Keyed::Workload),
    ("osm", QuerySet::Osm, Keyed::Workload),
    ("appmesh", QuerySet::AppMesh, Keyed::Workload),
    ("appmesh:v1beta2", QuerySet::AppMesh, Keyed::Workload),
    ("kuma", QuerySet::Kuma, Keyed::CanaryService),
    ("contour", QuerySet::Contour, Keyed::CanaryService),
    ("gloo", QuerySet::Gloo, Keyed::CanaryService),
    ("apisix", QuerySet::Apisix, Keyed::ApisixRoute),
    ("knative", QuerySet::Knative, Keyed::KnativeRevision),
];

impl Keyed {
    fn selects_primaries(self) -> bool {
        matches!(self, Keyed::Workload | Keyed::KnativeRevision)
    }
}

/// The user's ApisixRoute of canary `canary` (its `routeRef`).
fn apisix_route_ref(canary: &str) -> String {
    format!("{canary}-route")
}

/// A workload of the namespace and what its checks must read.
struct Workload {
    name: &'static str,
    replicas: i32,
    failing: bool,
    latency_ms: f64,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "bad",
        replicas: 2,
        failing: true,
        latency_ms: CANARY_LATENCY_MS,
    },
    Workload {
        name: "bad-primary",
        replicas: 1,
        failing: false,
        latency_ms: PRIMARY_LATENCY_MS,
    },
    Workload {
        name: "good",
        replicas: 2,
        failing: false,
        latency_ms: CANARY_LATENCY_MS,
    },
    Workload {
        name: "good-primary",
        replicas: 1,
        failing: true,
        latency_ms: PRIMARY_LATENCY_MS,
    },
];

impl Workload {
    fn app(&self) -> App<'static> {
        let app = App::new(self.name, "1.0.0", self.replicas)
            .annotate(
                "testapp.flagger-rs.dev/latency-ms",
                &format!("{}", self.latency_ms),
            )
            .annotate("testapp.flagger-rs.dev/apisix-route", &self.apisix_route());
        if self.failing {
            app.annotate("testapp.flagger-rs.dev/error-rate", ERROR_RATE)
        } else {
            app
        }
    }

    /// The Deployment, its pods labelled as the pods of a Knative revision are.
    fn deployment(&self) -> Result<Deployment> {
        let mut d = self.app().deployment()?;
        d.spec
            .as_mut()
            .and_then(|s| s.template.metadata.as_mut())
            .context("deployment without pod metadata")?
            .labels
            .get_or_insert_default()
            .insert("serving.knative.dev/revision".into(), self.revision());
        Ok(d)
    }

    fn is_canary(&self) -> bool {
        !self.name.ends_with("-primary")
    }

    /// The canary this workload belongs to (its own name, or the primary's without `-primary`).
    fn canary(&self) -> &'static str {
        self.name.trim_end_matches("-primary")
    }

    /// `<ApisixRoute>/<http rule>` reaching the pods: Flagger's canary route for the canary, the user's for the
    /// primary.
    fn apisix_route(&self) -> String {
        let user = apisix_route_ref(self.canary());
        if self.is_canary() {
            format!("{user}-{}-canary/http", self.canary())
        } else {
            format!("{user}/http")
        }
    }

    /// The Knative revision: the canary runs the newer one.
    fn revision(&self) -> String {
        let generation = if self.is_canary() { 2 } else { 1 };
        format!("{}-{generation:05}", self.canary())
    }

    fn want_success_rate(&self) -> f64 {
        if self.failing { 70.0 } else { 100.0 }
    }
}

/// Flagger's Services for canary `name`: the apex and `-primary` select the primary, `-canary` the canary.
async fn services(ns: &TestNamespace, name: &str) -> Result<()> {
    let api = ns.api::<Service>();
    let primary = format!("{name}-primary");
    apply(&api, &objects::service(name, &primary)?).await?;
    apply(&api, &objects::service(&primary, &primary)?).await?;
    apply(&api, &objects::service(&format!("{name}-canary"), name)?).await?;
    Ok(())
}

async fn pod_ips(ns: &TestNamespace, app: &str) -> Result<Vec<String>> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?;
    pods.items
        .iter()
        .map(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .context("pod without IP")
        })
        .collect()
}

/// `count` requests to every pod, bounded in time; every one must be answered (200 or the injected 500).
/// Returns the slowest request as the client saw it.
async fn drive(ips: &[String], count: usize) -> Result<Duration> {
    let mut slowest = Duration::ZERO;
    for ip in ips {
        let url = format!("http://{ip}:{APP_PORT}/");
        let report = Run::new(&url, count).drive().await?;
        ensure!(
            report.complete && report.sent == count && report.errors == 0,
            "traffic to {ip}: {report:?}"
        );
        slowest = slowest.max(report.slowest);
    }
    Ok(slowest)
}

/// Waits until Prometheus has scraped `total` requests of the namespace (Prometheus has no watch).
async fn wait_counted(namespace: &str, total: usize) -> Result<()> {
    let query =
        format!(r#"sum(istio_requests_total{{destination_workload_namespace="{namespace}"}})"#);
    poll_until(
        &format!("Prometheus counting {total} requests in {namespace}"),
        Duration::from_secs(60),
        || {
            let query = query.clone();
            async move {
                let got = e2e::traffic::prom_query(&query).await?;
                let n = got.first().map_or(0.0, |(_, v)| *v);
                Ok((n as usize == total).then_some(()))
            }
        },
    )
    .await
}

fn canary(namespace: &str, provider: &str, target: &str, keyed: Keyed) -> Result<Canary> {
    let mut canary = json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": target, "namespace": namespace},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "service": {"port": APP_PORT},
            "analysis": {"interval": "10s", "threshold": 1},
        }
    });
    if keyed == Keyed::ApisixRoute {
        canary["spec"]["routeRef"] = json!({
            "apiVersion": "apisix.apache.org/v2",
            "kind": "ApisixRoute",
            "name": apisix_route_ref(target),
        });
    }
    Ok(serde_json::from_value(canary)?)
}

fn metric(name: &str) -> Result<CanaryMetric> {
    Ok(serde_json::from_value(
        json!({"name": name, "interval": "1m"}),
    )?)
}

/// Runs one builtin check of `provider` for `target` as the controller would and returns its value.
/// `revision`: the Knative revision under analysis, which the controller passes for Knative targets.
async fn check(
    prometheus: &PrometheusProvider,
    canary: &Canary,
    (provider, want_set): (&str, QuerySet),
    revision: Option<&str>,
    name: &str,
) -> Result<f64> {
    let ctx = CheckContext {
        canary,
        mesh_provider: provider,
        prometheus: Ok(prometheus),
        route_override: revision,
    };
    let out = check_metric(&ctx, &metric(name)?, None).await;
    let MetricKind::Builtin { set, .. } = out.kind else {
        anyhow::bail!("{provider} {name}: not a builtin check: {:?}", out.kind);
    };
    ensure!(
        set == want_set,
        "{provider} selected the {} query set",
        set.name()
    );
    ensure!(
        out.warnings.is_empty(),
        "{provider} {name}: {:?}",
        out.warnings
    );
    out.value
        .map_err(|e| anyhow::anyhow!("{provider} {name}: {e:?} (query {:?})", out.query))
}

/// Every check of one provider: success rate and P99 of each workload its queries can select.
/// `slowest[i]` is the slowest request the client saw for `WORKLOADS[i]`.
async fn check_provider(
    prometheus: &PrometheusProvider,
    namespace: &str,
    slowest: &[Duration],
    (provider, set, keyed): (&str, QuerySet, Keyed),
) -> Vec<String> {
    let mut failures = Vec::new();
    for (w, slowest) in WORKLOADS
        .iter()
        .zip(slowest)
        .filter(|(w, _)| w.is_canary() || keyed.selects_primaries())
    {
        let result = async {
            let c = canary(namespace, provider, w.name, keyed)?;
            let revision = (keyed == Keyed::KnativeRevision).then(|| w.revision());
            let run = |name| check(prometheus, &c, (provider, set), revision.as_deref(), name);
            let rate = run("request-success-rate").await?;
            let p99 = run("request-duration").await?;
            eprintln!(
                "{provider:>16} {:>13}: success {rate:6.2} %, P99 {p99} ms (slowest request seen by the client {:.0} ms)",
                w.name,
                slowest.as_secs_f64() * 1000.0
            );
            ensure!(
                (rate - w.want_success_rate()).abs() <= TOLERANCE,
                "success rate {rate} %, want {} ± {TOLERANCE}",
                w.want_success_rate()
            );
            // Bounds that hold however loaded the machine is (no timing guess): every request slept the
            // configured latency, a bucket boundary, so the P99 lies in a bucket above it; the server measured
            // no request longer than the client saw the slowest, and a bucket's upper bound is at most twice
            // its lower one, so the interpolated P99 is at most twice that.
            let low = w.latency_ms;
            let high = 2.0 * slowest.as_secs_f64() * 1000.0;
            ensure!(
                p99 >= low && p99 <= high,
                "P99 {p99} ms, want within [{low}, {high}] ms (configured latency, twice the slowest request)"
            );
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if let Err(e) = result {
            failures.push(format!("{provider} {}: {e:#}", w.name));
        }
    }
    failures
}

#[tokio::test]
async fn mesh_builtin_checks_read_the_canarys_real_success_rate_and_latency() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("meshmetrics", |ns| async move {
        // Services first, so the testapp names every request by them from the first one on.
        for name in ["bad", "good"] {
            services(&ns, name).await?;
        }
        let deployments = ns.api::<Deployment>();
        for w in &WORKLOADS {
            apply(&deployments, &w.deployment()?).await?;
        }
        let mut ips = Vec::new();
        for w in &WORKLOADS {
            wait_for(
                &deployments,
                w.name,
                "Available",
                Duration::from_secs(60),
                objects::deployment_available(),
            )
            .await?;
            let pods = pod_ips(&ns, w.name).await?;
            ensure!(
                pods.len() == usize::try_from(w.replicas)?,
                "{}: pods {pods:?}",
                w.name
            );
            ips.push(pods);
        }
        let pods: usize = ips.iter().map(Vec::len).sum();
        // A first burst creates every series (both status classes) before the measured traffic, so the rate
        // over the window sees that traffic as increase rather than as the series' first value.
        let mut slowest = vec![Duration::ZERO; WORKLOADS.len()];
        for (count, total) in [(WARM_UP, WARM_UP), (REQUESTS, WARM_UP + REQUESTS)] {
            for (ips, slowest) in ips.iter().zip(slowest.iter_mut()) {
                *slowest = (*slowest).max(drive(ips, count).await?);
            }
            wait_counted(&ns.name, pods * total).await?;
        }

        let prometheus = PrometheusProvider::new(PrometheusOptions::new(PROMETHEUS))?;
        let mut failures = Vec::new();
        for provider in PROVIDERS {
            failures.extend(check_provider(&prometheus, &ns.name, &slowest, provider).await);
        }
        ensure!(
            failures.is_empty(),
            "failed checks:\n{}",
            failures.join("\n")
        );
        Ok(())
    })
    .await
}
