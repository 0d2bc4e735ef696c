//! Flagger's router scenarios that `routers.rs` and `analysis.rs` leave out, with real requests through
//! Traefik: rollbacks on the `gatewayapi` router (Traefik's Gateway API provider) and on the `nginx` router
//! (Traefik's ingress-nginx provider), the nginx lifecycle script, and a blue/green run on the `gatewayapi`
//! router. docs/flagger-scenarios.md maps each to Flagger's script.
//!
//! Where Flagger's scripts make a version fail with a load of requests to `/status/500`, the testapp answers 500
//! to a share of the requests a pod serves (its pod-template annotation), so the errors reach Prometheus the same
//! way healthy requests do; the checks read the testapp's per-workload `response_total` series (Linkerd's names,
//! which the testapp exports for every pod) because ingress-nginx's and Envoy's own metrics do not exist here.
//!
//! Run: `hack/e2e scenario` (skipped, passing, when FLAGGER_E2E is unset).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use e2e::analysis::{Load, Target, ensure_rolled_back_at_threshold, metric_records};
use e2e::controller::{
    Proc, Recorder, canaries, create_canary, deploy, image_of, install_crds, phase,
    primary_generation, start_controller, status, wait_canary, wait_phase,
};
use e2e::gateway::{apply_value, httproutes};
use e2e::hooks::HookCatcher;
use e2e::objects::{APP_PORT, App, deployment_available};
use e2e::traffic::Run;
use e2e::{PROMETHEUS, Result, TRAEFIK_WEB, TestNamespace, poll_until, skip_unless_e2e, wait_for};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use serde_json::{Value, json};

const APP: &str = "podinfo";
const OLD: &str = "6.0.0";
const NEW: &str = "6.0.1";
const ERROR_RATE: &str = "testapp.flagger-rs.dev/error-rate";
/// Half the requests fail: far over the 1 % the checks allow, whatever the rate window holds.
const FAILING: &str = "0.5";
const THRESHOLD: i64 = 2;
/// Requests per second through Traefik while a version is analysed.
const RPS: usize = 40;
const INIT: Duration = Duration::from_secs(90);
const RUN: Duration = Duration::from_secs(150);

#[derive(Clone, Copy, Debug)]
enum Router {
    Nginx,
    GatewayApi,
}

impl Router {
    fn flag(self) -> &'static str {
        match self {
            Router::Nginx => "nginx",
            Router::GatewayApi => "gatewayapi:v1",
        }
    }

    /// What the user (not the router) creates so Traefik routes `host` to the canary's objects.
    async fn setup(self, ns: &TestNamespace, host: &str) -> Result<()> {
        match self {
            Router::Nginx => e2e::nginx::install(ns, APP, host).await,
            Router::GatewayApi => e2e::gateway::install(ns).await,
        }
    }

    fn canary(self, host: &str, analysis: Value) -> Value {
        let mut spec = json!({
            "provider": self.flag(),
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "progressDeadlineSeconds": 60,
            "service": {"port": APP_PORT, "targetPort": APP_PORT},
            "analysis": analysis,
        });
        match self {
            Router::Nginx => {
                spec["ingressRef"] =
                    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": APP});
            }
            Router::GatewayApi => {
                spec["service"]["hosts"] = json!([host]);
                spec["service"]["gatewayRefs"] = json!([{"name": "gateway"}]);
            }
        }
        json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": APP}, "spec": spec})
    }

    /// Once initialised: Traefik has taken the route the router wrote.
    async fn routed(self, ns: &TestNamespace) -> Result<()> {
        match self {
            Router::Nginx => Ok(()),
            Router::GatewayApi => {
                e2e::gateway::wait_accepted(ns, APP, Duration::from_secs(30)).await
            }
        }
    }
}

/// The error rate of the target's pods in percent, from the requests they really served.
async fn error_rate_template(ns: &TestNamespace) -> Result<()> {
    let served = |filter: &str| {
        format!(
            r#"sum(rate(response_total{{namespace="{{{{ namespace }}}}",deployment="{{{{ target }}}}",direction="inbound"{filter}}}[{{{{ interval }}}}]))"#
        )
    };
    let query = format!(
        "100 - {} / {} * 100",
        served(r#",classification!="failure""#),
        served("")
    );
    apply_value(
        &ns.client,
        Some(&ns.name),
        json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": "error-rate"},
            "spec": {"provider": {"type": "prometheus", "address": PROMETHEUS}, "query": query},
        }),
    )
    .await
}

/// A progressive analysis to 40 % on the error rate (max 1 %). `noData: hold` because the first tick can come
/// before Prometheus has a rate over the new canary pod's requests.
fn error_rate_analysis(threshold: i64) -> Value {
    json!({
        "interval": "2s", "threshold": threshold, "stepWeight": 20, "maxWeight": 40,
        "metrics": [{
            "name": "error-rate", "templateRef": {"name": "error-rate"}, "interval": "6s",
            "thresholdRange": {"max": 1}, "noData": "hold",
        }],
    })
}

/// podinfo `OLD` and the user's routing for `router`, the error-rate template, a controller for `router` and
/// the Canary with `analysis`, initialised and served by Traefik. Returns the controller and the host.
async fn initialised(
    ns: &TestNamespace,
    router: Router,
    analysis: Value,
) -> Result<(Proc, String)> {
    install_crds(&ns.client).await?;
    let host = format!("{}.scenarios.test", ns.name);
    deploy(ns, &App::new(APP, OLD, 1), |_| {}).await?;
    wait_for(
        &ns.api::<Deployment>(),
        APP,
        "available",
        INIT,
        deployment_available(),
    )
    .await?;
    router.setup(ns, &host).await?;
    error_rate_template(ns).await?;
    let flag = format!("-mesh-provider={}", router.flag());
    let controller = start_controller(&ns.name, &[flag.as_str()])?;
    create_canary(ns, router.canary(&host, analysis)).await?;
    wait_phase(&canaries(ns), APP, "Initialized", INIT, &controller).await?;
    router.routed(ns).await?;
    until_served(&host, OLD).await?;
    Ok((controller, host))
}

/// The target's pod template changed in one write, as `kubectl set image` plus `kubectl annotate` in a single
/// patch would: the image and version label of `version`, the testapp's error rate (removed with `None`), and
/// any other pod annotations.
async fn set_template(
    ns: &TestNamespace,
    version: &str,
    error_rate: Option<&str>,
    other: &[(&str, &str)],
) -> Result<()> {
    let mut annotations = json!({ ERROR_RATE: error_rate });
    for (k, v) in other {
        annotations[*k] = json!(v);
    }
    let patch = json!({"spec": {"template": {
        "metadata": {"labels": {"app.kubernetes.io/version": version}, "annotations": annotations},
        "spec": {"containers": [{"name": "podinfod", "image": format!("ghcr.io/stefanprodan/podinfo:{version}")}]},
    }}});
    ns.api::<Deployment>()
        .patch(APP, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .with_context(|| format!("setting the template of {APP} to {version}"))?;
    Ok(())
}

/// Bounded poll until every one of 50 requests through Traefik is answered by `version` (Traefik loads routes
/// asynchronously).
async fn until_served(host: &str, version: &str) -> Result<()> {
    poll_until(
        &format!("Traefik serving only {version} for {host}"),
        Duration::from_secs(60),
        || async move {
            let report = Run::new(TRAEFIK_WEB, 50).host(host).drive().await?;
            Ok((report.ok() == 50 && report.version_share(version) == 100.0).then_some(()))
        },
    )
    .await
}

/// Background load through Traefik for one analysed run.
fn load(host: &str) -> Load {
    Load::start(
        vec![Target::with_host(TRAEFIK_WEB, host)],
        RPS,
        RUN + Duration::from_secs(30),
    )
}

/// Ships `version` with `error_rate` under load and awaits the end of the run it starts (the phase may already
/// be the wanted one from the run before, so the end counts only once the new revision is recorded); fails
/// unless that run ends `want`. Returns the final Canary and what the run went through.
async fn run_to(
    ns: &TestNamespace,
    controller: &Proc,
    host: &str,
    template: (&str, Option<&str>, &[(&str, &str)]),
    want: &str,
) -> Result<(kube::api::DynamicObject, Recorder)> {
    let api = canaries(ns);
    let before = status(&api.get(APP).await?)["lastAppliedSpec"].clone();
    let recorder = Recorder::start(&api, APP);
    let load = load(host);
    let (version, error_rate, other) = template;
    set_template(ns, version, error_rate, other).await?;
    let end = wait_canary(
        &api,
        APP,
        "the new revision's run ended",
        RUN,
        controller,
        |o| status(o)["lastAppliedSpec"] != before && matches!(phase(o), "Succeeded" | "Failed"),
    )
    .await;
    let replies = load.finish().await?;
    eprintln!(
        "{version} (error rate {error_rate:?}) -> {want}? observed: {}; load replies by status: {replies:?}",
        recorder.render()
    );
    let end = end?;
    ensure!(
        phase(&end) == want,
        "the run of {version} ended {}, want {want}: {}\nstatus: {}\ncontroller log tail:\n{}",
        phase(&end),
        recorder.render(),
        status(&end),
        controller.log_tail()
    );
    Ok((end, recorder))
}

/// A run rolled back by the error-rate check: exactly `threshold` failed checks, each reading the errors the
/// canary's pods served through Traefik; the primary still runs `OLD` and Traefik sends everything to it.
async fn ensure_rolled_back(
    ns: &TestNamespace,
    host: &str,
    done: &kube::api::DynamicObject,
    rec: &Recorder,
    threshold: i64,
) -> Result<()> {
    ensure_rolled_back_at_threshold(done, rec, threshold)?;
    for r in metric_records(done).iter().filter(|r| r.failed) {
        let v = r
            .value
            .with_context(|| format!("failed check without a value: {}", r.message))?;
        ensure!(
            r.name == "error-rate" && v > 1.0,
            "failed check {} = {v}: {}",
            r.name,
            r.message
        );
    }
    let primary = ns
        .api::<Deployment>()
        .get(&format!("{APP}-primary"))
        .await?;
    ensure!(
        image_of(&primary).ends_with(&format!(":{OLD}")),
        "primary runs {} after the rollback",
        image_of(&primary)
    );
    until_served(host, OLD).await
}

/// Flagger's `test/gatewayapi/test-canary.sh` rollback and `test/nginx` rollback: a version answering 500 to
/// half its requests, reached through `router` by real requests, is rolled back after `threshold` failed checks.
async fn rollback_through(router: Router, prefix: &str) -> Result<()> {
    e2e::with_namespace(prefix, |ns| async move {
        let (controller, host) = initialised(&ns, router, error_rate_analysis(THRESHOLD)).await?;
        let (done, rec) =
            run_to(&ns, &controller, &host, (NEW, Some(FAILING), &[]), "Failed").await?;
        ensure_rolled_back(&ns, &host, &done, &rec, THRESHOLD).await?;
        ensure!(
            rec.steps().iter().any(|s| s.weight > 0),
            "the canary never got traffic: {}",
            rec.render()
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn gatewayapi_canary_scenario_rolls_back_errors_through_traefik() -> Result<()> {
    skip_unless_e2e!();
    rollback_through(Router::GatewayApi, "fsr-gw-rollback").await
}

#[tokio::test]
async fn nginx_canary_scenario_rolls_back_errors_through_traefik() -> Result<()> {
    skip_unless_e2e!();
    rollback_through(Router::Nginx, "fsr-nginx-rollback").await
}

/// The `pod-template-hash` labels of the primary's pods.
async fn primary_pod_hashes(ns: &TestNamespace) -> Result<Vec<String>> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={APP}-primary")))
        .await?;
    let mut hashes: Vec<String> = pods
        .items
        .iter()
        .filter_map(|p| p.labels().get("pod-template-hash").cloned())
        .collect();
    hashes.sort();
    Ok(hashes)
}

/// Flagger's `test/nginx/test-lifecycle.sh` on the nginx router: a failing version is rolled back; setting
/// the target back to what the primary runs starts nothing (the controller records the revision, the canary
/// stays Failed, the primary is not rewritten and keeps its pods); the failing version again is analysed and
/// rolled back again; then, with a higher threshold as the script re-applies it, a pod-template annotation
/// change on the (now healthy) version is a new revision that is analysed and promoted once.
#[tokio::test]
async fn nginx_lifecycle_scenario_reverting_to_the_primary_starts_nothing_and_a_retry_promotes()
-> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("fsr-nginx-lifecycle", |ns| async move {
        let router = Router::Nginx;
        let (controller, host) = initialised(&ns, router, error_rate_analysis(THRESHOLD)).await?;
        let api = canaries(&ns);
        let deployments: Api<Deployment> = ns.api();

        let (done, rec) =
            run_to(&ns, &controller, &host, (NEW, Some(FAILING), &[]), "Failed").await?;
        ensure_rolled_back(&ns, &host, &done, &rec, THRESHOLD).await?;

        // Back to the primary's version: the controller takes the revision in and nothing else happens.
        let generation = primary_generation(&deployments, APP).await?;
        let pods = primary_pod_hashes(&ns).await?;
        ensure!(!pods.is_empty(), "the primary has no pods");
        let failed_revision = status(&done)["lastAppliedSpec"].clone();
        set_template(&ns, OLD, None, &[]).await?;
        let seen = wait_canary(&api, APP, "the revert taken in", INIT, &controller, |o| {
            let s = status(o);
            s["lastAppliedSpec"] != failed_revision && s["lastAppliedSpec"] == s["lastPromotedSpec"]
        })
        .await?;
        ensure!(
            phase(&seen) == "Failed",
            "reverting to the primary's version left phase {}",
            phase(&seen)
        );
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            primary.metadata.generation == generation,
            "the primary was rewritten: generation {generation:?} -> {:?}",
            primary.metadata.generation
        );
        let now = primary_pod_hashes(&ns).await?;
        ensure!(
            now == pods,
            "the primary's pods changed: {pods:?} -> {now:?}"
        );

        // The failing version again: a new run, rolled back again.
        let (done, rec) =
            run_to(&ns, &controller, &host, (NEW, Some(FAILING), &[]), "Failed").await?;
        ensure!(
            rec.steps().iter().any(|s| s.phase == "Progressing"),
            "the failing version shipped again was not analysed: {}",
            rec.render()
        );
        ensure_rolled_back(&ns, &host, &done, &rec, THRESHOLD).await?;

        // Retry: the script re-applies the Canary with threshold 5 and changes a pod-template annotation; here
        // that change also drops the injected errors, as the script's healthy load does.
        api.patch(
            APP,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"analysis": {"threshold": 5}}})),
        )
        .await?;
        let generation = primary_generation(&deployments, APP).await?;
        let (_, rec) = run_to(
            &ns,
            &controller,
            &host,
            (NEW, None, &[("thisis", "theway")]),
            "Succeeded",
        )
        .await?;
        rec.ensure_promoted_once()?;
        e2e::controller::ensure_primary_promoted_once(&deployments, APP, NEW, generation).await?;
        until_served(&host, NEW).await?;
        Ok(())
    })
    .await
}

/// `(primary, canary)` weights of the HTTPRoute `podinfo`'s first rule.
fn route_weights(route: &Value) -> Option<(i64, i64)> {
    let refs = route["spec"]["rules"][0]["backendRefs"].as_array()?;
    let weight = |name: String| {
        refs.iter()
            .find(|b| b["name"] == name.as_str())
            .and_then(|b| b["weight"].as_i64())
    };
    Some((
        weight(format!("{APP}-primary"))?,
        weight(format!("{APP}-canary"))?,
    ))
}

/// Records every distinct consecutive `(primary, canary)` of the HTTPRoute, and the latest, until dropped.
struct RouteWeights {
    seen: Arc<Mutex<Vec<(i64, i64)>>>,
    latest: tokio::sync::watch::Receiver<Option<(i64, i64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl RouteWeights {
    fn watch(ns: &TestNamespace) -> RouteWeights {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let (tx, latest) = tokio::sync::watch::channel(None);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={APP}"));
        let stream = watcher(httproutes(ns), cfg).applied_objects();
        let task = tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Some(Ok(route)) = stream.next().await {
                let Some(w) = serde_json::to_value(&route)
                    .ok()
                    .as_ref()
                    .and_then(route_weights)
                else {
                    continue;
                };
                if let Ok(mut seen) = sink.lock()
                    && seen.last() != Some(&w)
                {
                    seen.push(w);
                }
                let _ = tx.send(Some(w));
            }
        });
        RouteWeights { seen, latest, task }
    }

    fn seen(&self) -> Vec<(i64, i64)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Awaits `want` as the HTTPRoute's weights.
    async fn until(&self, want: (i64, i64), controller: &Proc) -> Result<()> {
        let mut latest = self.latest.clone();
        let timeout = Duration::from_secs(60);
        match tokio::time::timeout(timeout, latest.wait_for(|w| *w == Some(want))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("HTTPRoute watch ended while waiting for {want:?}"),
            Err(_) => bail!(
                "HTTPRoute weights {want:?} not seen after {timeout:?}; so far {:?}; controller log tail:\n{}",
                self.seen(),
                controller.log_tail()
            ),
        }
    }
}

impl Drop for RouteWeights {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Flagger's `test/gatewayapi/test-bg.sh` on the gatewayapi router, with real requests through Traefik: during
/// the iterations the HTTPRoute stays 100/0 and every request reaches the primary (`OLD`) although the canary
/// runs `NEW`; after the iterations all traffic switches to the canary for one analysed tick (held there by
/// closing the confirm-promotion gate, and every request then reaches `NEW`); once released the primary is
/// promoted, the route goes back to 100/0 and every request reaches `NEW` on the primary.
#[tokio::test]
async fn gatewayapi_blue_green_scenario_switches_traffic_only_at_promotion() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("fsr-gw-bluegreen", |ns| async move {
        let hooks = HookCatcher::start().await?;
        // Long enough an interval that the gate is closed again before the tick after the switch.
        let analysis = json!({
            "interval": "5s", "threshold": THRESHOLD, "iterations": 3,
            "webhooks": [{"name": "promotion-gate", "type": "confirm-promotion", "url": hooks.at("/gate")}],
        });
        let (controller, host) = initialised(&ns, Router::GatewayApi, analysis).await?;
        let api = canaries(&ns);
        let weights = RouteWeights::watch(&ns);
        let recorder = Recorder::start(&api, APP);
        set_template(&ns, NEW, None, &[]).await?;

        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        let target = ns.api::<Deployment>().get(APP).await?;
        let ready = target.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        ensure!(ready >= 1 && image_of(&target).ends_with(NEW), "the canary is not running {NEW}");
        ensure!(weights.seen() == [(100, 0)], "weights during the iterations: {:?}", weights.seen());
        until_served(&host, OLD).await?;

        hooks.open_gate("/gate");
        weights.until((0, 100), &controller).await?;
        hooks.close_gate("/gate");
        until_served(&host, NEW).await?;
        let held = api.get(APP).await?;
        ensure!(
            phase(&held) != "Succeeded",
            "promoted while the gate was closed: {}",
            recorder.render()
        );

        hooks.open_gate("/gate");
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        weights.until((100, 0), &controller).await?;
        until_served(&host, NEW).await?;
        let want = [(100, 0), (0, 100), (100, 0)];
        ensure!(weights.seen() == want, "weights {:?}, want {want:?}", weights.seen());
        recorder.ensure_promoted_once()?;
        let primary = ns.api::<Deployment>().get(&format!("{APP}-primary")).await?;
        ensure!(image_of(&primary).ends_with(NEW), "primary runs {}", image_of(&primary));
        Ok(())
    })
    .await
}
