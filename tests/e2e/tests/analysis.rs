//! Canary analysis with real traffic and real metrics (issue 7 "Must show"): a `flagger-rs
//! controller` child runs Traefik canaries (TraefikService router) whose checks query the netns' Prometheus, which
//! scrapes Traefik every second. Traffic comes from a bounded, paced driver through Traefik's `web` entry point;
//! the testapp pods' error rate and latency come from pod-template annotations.
//!
//! * builtin `request-success-rate` (min 99) and `request-duration` (max 500 ms): a healthy version is promoted, a
//!   version answering 500 to 30 % of requests is rolled back after exactly `threshold` failed checks, the failing
//!   value and the rendered query in the Warning event and in `status.canaryAnalysis`;
//! * a latency MetricTemplate (histogram_quantile over `traefik_service_request_duration_seconds_bucket`) rolls
//!   back a version with 800 ms latency;
//! * Prometheus unreachable mid-analysis (`spec.metricsServer` switched to a closed loopback port): every check
//!   fails as in Flagger and the canary is rolled back after `threshold`;
//! * the same with `noData: hold` (issue 7): the canary neither advances nor counts failures while Prometheus is
//!   unreachable, says why, and is promoted once Prometheus is back; a failing `dryRun` metric is never counted.
//!
//! Run: `hack/cluster/exec env FLAGGER_E2E=1 cargo test -p e2e --test analysis` (needs `cargo build -p flagger-rs`).

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::analysis::{
    Load, Target, ensure_promoted_without_failures, ensure_rolled_back_at_threshold,
    ensure_rolled_back_on_success_rate, metric_records, run_version,
    warnings_containing as kind_of,
};
use e2e::controller::{
    Proc, Recorder, canaries, condition, events_for, install_crds, phase, start_controller_named,
    status, step, wait_canary, wait_phase,
};
use e2e::objects::{App, deployment_available, ingress_route};
use e2e::{PROMETHEUS, Result, TRAEFIK_WEB, TestNamespace, apply, skip_unless_e2e, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

const APP: &str = "podinfo";
const ERROR_RATE: &str = "testapp.flagger-rs.dev/error-rate";
const LATENCY_MS: &str = "testapp.flagger-rs.dev/latency-ms";
const THRESHOLD: i64 = 2;
const INIT: Duration = Duration::from_secs(90);
const RUN: Duration = Duration::from_secs(150);

// --- fixture ----------------------------------------------------------------------------------------------------

async fn apply_dynamic(ns: &TestNamespace, ar: &ApiResource, obj: Value) -> Result<()> {
    e2e::gateway::apply_resource(ns, ar, obj).await?;
    Ok(())
}

fn resource(group: &str, kind: &str, plural: &str, version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// A Traefik canary with `metrics`; interval 3s, stepWeight 20, maxWeight 60, threshold 2.
fn canary(metrics: Value, step: u32) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": APP},
        "spec": {
            "provider": "traefik",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "progressDeadlineSeconds": 60,
            "metricsServer": PROMETHEUS,
            "service": {"port": e2e::objects::APP_PORT, "targetPort": e2e::objects::APP_PORT},
            "analysis": {
                "interval": "3s", "threshold": THRESHOLD, "stepWeight": step, "maxWeight": 60,
                "metrics": metrics,
            },
        },
    })
}

fn builtin_metrics() -> Value {
    json!([
        {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}},
        {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 500}},
    ])
}

/// Namespace fixture: podinfo 6.0.0, IngressRoute `podinfo` → TraefikService `podinfo`, the controller, the
/// Canary (Initialized). Returns the controller and the IngressRoute host.
async fn setup(ns: &TestNamespace, canary: Value) -> Result<(Proc, String)> {
    install_crds(&ns.client).await?;
    let host = format!("{}.analysis.test", ns.name);
    let deployments: Api<Deployment> = ns.api();
    apply(&deployments, &App::new(APP, "6.0.0", 1).deployment()?).await?;
    wait_for(&deployments, APP, "available", INIT, deployment_available()).await?;
    let route = serde_json::to_value(ingress_route(APP, &host, APP)?)?;
    apply_dynamic(
        ns,
        &resource("traefik.io", "IngressRoute", "ingressroutes", "v1alpha1"),
        route,
    )
    .await?;
    let controller = start_controller_named(
        &ns.name,
        "controller",
        &["-metrics-server=http://127.0.0.1:1"],
    )?;
    apply_dynamic(
        ns,
        &resource("flagger.app", "Canary", "canaries", "v1beta1"),
        canary,
    )
    .await?;
    wait_phase(&canaries(ns), APP, "Initialized", INIT, &controller).await?;
    Ok((controller, host))
}

// --- tests --------------------------------------------------------------------------------------------------------

/// (1) Builtin metrics: healthy 6.0.1 is promoted; 6.0.2 with 30 % of 500s is rolled back after exactly
/// `threshold` failed checks, with the value and query in the Warning event and the status records.
#[tokio::test]
async fn builtin_metrics_promote_healthy_and_roll_back_errors() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("analysis-builtin", |ns| async move {
        let (controller, host) = setup(&ns, canary(builtin_metrics(), 20)).await?;
        // Asked while initialising, as Flagger does: the canary's Prometheus answers.
        let events = events_for(&ns, "Canary", APP).await?;
        ensure!(
            events.iter().any(|(kind, _, message, _)| kind == "Normal"
                && message == "all the metrics providers are available!"),
            "no availability event: {events:#?}"
        );

        // Healthy version: promoted, never a failed check.
        let (done, rec) = run_version(
            &ns,
            &controller,
            &host,
            App::new(APP, "6.0.1", 1),
            "Succeeded",
            60,
            RUN,
        )
        .await?;
        ensure_promoted_without_failures(&rec, &[20, 40, 60])?;
        eprintln!("healthy run records: {:?}", metric_records(&done));

        // 30 % errors: rolled back after exactly THRESHOLD failed checks.
        let bad = App::new(APP, "6.0.2", 1).annotate(ERROR_RATE, "0.3");
        let (done, rec) = run_version(&ns, &controller, &host, bad, "Failed", 60, RUN).await?;
        ensure_rolled_back_on_success_rate(
            &ns,
            APP,
            &done,
            &rec,
            THRESHOLD,
            "traefik_service_request_duration_seconds_bucket",
        )
        .await?;
        drop(controller);
        Ok(())
    })
    .await
}

/// (2) A latency MetricTemplate over Traefik's duration buckets fails for a version with 800 ms latency.
#[tokio::test]
async fn latency_template_rolls_back_slow_version() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("analysis-latency", |ns| async move {
        install_crds(&ns.client).await?;
        apply_dynamic(
            &ns,
            &resource("flagger.app", "MetricTemplate", "metrictemplates", "v1beta1"),
            json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
                "metadata": {"name": "latency"},
                "spec": {
                    "provider": {"type": "prometheus", "address": PROMETHEUS},
                    "query": r#"histogram_quantile(0.99, sum(rate(traefik_service_request_duration_seconds_bucket{service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd"}[{{ interval }}])) by (le))"#,
                },
            }),
        )
        .await?;
        // noData: hold — the first tick can come before Prometheus has a rate over the new canary's
        // requests; that tick must neither count a failure without a value nor advance.
        let metrics = json!([{
            "name": "latency", "interval": "10s", "thresholdRange": {"max": 0.5},
            "templateRef": {"name": "latency"}, "noData": "hold",
        }]);
        let (controller, host) = setup(&ns, canary(metrics, 20)).await?;
        let slow = App::new(APP, "6.0.1", 1).annotate(LATENCY_MS, "800");
        let (done, rec) = run_version(&ns, &controller, &host, slow, "Failed", 40, RUN).await?;
        ensure_rolled_back_at_threshold(&done, &rec, THRESHOLD)?;
        let records = metric_records(&done);
        eprintln!("records: {records:#?}");
        let failed: Vec<_> = records.iter().filter(|r| r.failed).collect();
        ensure!(failed.len() == THRESHOLD as usize, "want {THRESHOLD} failed records: {records:#?}");
        for r in failed {
            ensure!(r.name == "latency", "failed record {}: {}", r.name, r.message);
            let v = r.value.with_context(|| format!("no value: {}", r.message))?;
            ensure!(v > 0.5, "P99 {v}s for 800 ms latency");
        }
        let events = events_for(&ns, "Canary", APP).await?;
        let halts = kind_of(&events, "advancement latency");
        eprintln!("Warning events: {halts:#?}");
        ensure!(halts.len() >= THRESHOLD as usize, "no latency halt events: {events:#?}");
        let primary: Api<Deployment> = ns.api();
        let image = e2e::controller::template_image(
            primary.get(&format!("{APP}-primary")).await?.spec.as_ref().map(|s| &s.template),
        );
        ensure!(image.ends_with(":6.0.0"), "primary image {image} after rollback");
        drop(controller);
        Ok(())
    })
    .await
}

/// A MetricTemplate whose provider does not answer while the canary initialises: reported as a
/// Warning naming the template (Flagger's text), and initialisation still completes: the provider
/// may be up by the time analysis starts.
#[tokio::test]
async fn unreachable_metric_provider_is_reported_while_initialising() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("analysis-online", |ns| async move {
        install_crds(&ns.client).await?;
        // A port nothing listens on: bound, then released.
        let closed = e2e::bench::free_port()?;
        apply_dynamic(
            &ns,
            &resource("flagger.app", "MetricTemplate", "metrictemplates", "v1beta1"),
            json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
                "metadata": {"name": "offline"},
                "spec": {
                    "provider": {"type": "prometheus", "address": format!("http://127.0.0.1:{closed}")},
                    "query": "vector(1)",
                },
            }),
        )
        .await?;
        let metrics = json!([{
            "name": "offline", "interval": "10s", "thresholdRange": {"min": 1},
            "templateRef": {"name": "offline"},
        }]);
        let (controller, _host) = setup(&ns, canary(metrics, 20)).await?;
        let events = events_for(&ns, "Canary", APP).await?;
        let reported = kind_of(&events, "Error checking metric providers: MetricTemplate offline.");
        eprintln!("availability warnings: {reported:#?}");
        ensure!(
            reported
                .iter()
                .any(|m| m.contains("is not available") && m.contains(&format!("127.0.0.1:{closed}"))),
            "no availability warning naming the template's address: {events:#?}"
        );
        drop(controller);
        Ok(())
    })
    .await
}

/// (3) Prometheus unreachable mid-analysis: checks pass at the first step, then `spec.metricsServer` is switched
/// to a closed loopback port; each tick counts one failed check (Flagger's default) and the canary rolls back
/// after `threshold`.
#[tokio::test]
async fn prometheus_unreachable_mid_analysis_rolls_back() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("analysis-unreach", |ns| async move {
        // stepWeight 10: six steps leave time to cut Prometheus off before promotion.
        let (controller, host) = setup(&ns, canary(builtin_metrics(), 10)).await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        let load = Load::start(
            vec![Target::with_host(TRAEFIK_WEB, host.clone())],
            60,
            RUN + Duration::from_secs(30),
        );
        let deployments: Api<Deployment> = ns.api();
        apply(&deployments, &App::new(APP, "6.0.1", 1).deployment()?).await?;
        // A passing metric check recorded in this run, with the real Prometheus.
        wait_canary(&api, APP, "a passing metric check", RUN, &controller, |o| {
            metric_records(o)
                .iter()
                .any(|r| !r.failed && r.value.is_some())
        })
        .await?;
        // A port nothing listens on: bound, then released.
        let closed = e2e::bench::free_port()?;
        let patch = json!({"spec": {"metricsServer": format!("http://127.0.0.1:{closed}")}});
        api.patch(APP, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let result = wait_phase(&api, APP, "Failed", RUN, &controller).await;
        let replies = load.finish().await?;
        eprintln!("observed: {}; load: {replies:?}", recorder.render());
        let done = result?;
        ensure_rolled_back_at_threshold(&done, &recorder, THRESHOLD)?;
        let records = metric_records(&done);
        eprintln!("records: {records:#?}");
        let failed: Vec<_> = records.iter().filter(|r| r.failed).collect();
        ensure!(
            failed.len() == THRESHOLD as usize,
            "want {THRESHOLD} failed records: {records:#?}"
        );
        for r in &failed {
            ensure!(
                r.value.is_none(),
                "an unreachable Prometheus gave a value: {}",
                r.message
            );
            ensure!(
                r.message.contains(&format!("127.0.0.1:{closed}")),
                "message without the address: {}",
                r.message
            );
        }
        let events = events_for(&ns, "Canary", APP).await?;
        let errors = kind_of(&events, "query failed");
        eprintln!("Warning events: {errors:#?}");
        ensure!(
            errors.len() >= THRESHOLD as usize,
            "no query-failed events: {events:#?}"
        );
        drop(controller);
        Ok(())
    })
    .await
}

fn held_message(obj: &DynamicObject) -> Option<String> {
    condition(obj, "Promoted")
        .map(|(_, _, message)| message)
        .filter(|m| m.contains("held (noData: hold)"))
}

/// (4) issue 7: the builtin metrics with `noData: hold` and a `dryRun` metric that fails at every tick. Prometheus
/// unreachable mid-analysis holds the canary (same weight, no failed check, over several intervals) and the
/// Promoted condition and a Warning event say which metric and why; with Prometheus back the run goes on and is
/// promoted, the dry-run failures never counted.
#[tokio::test]
async fn prometheus_unreachable_with_no_data_hold_holds_then_proceeds() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("analysis-hold", |ns| async move {
        let metrics = json!([
            {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}, "noData": "hold"},
            {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 500}, "noData": "hold"},
            {"name": "always-one", "query": "vector(1)", "thresholdRange": {"max": 0}, "dryRun": true},
        ]);
        let mut spec = canary(metrics, 10);
        // Far beyond the few held ticks below: the hold must end because Prometheus is back, not on the deadline.
        spec["spec"]["progressDeadlineSeconds"] = json!(600);
        let (controller, host) = setup(&ns, spec).await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        let load = Load::start(vec![Target::with_host(TRAEFIK_WEB, host.clone())], 60, RUN + Duration::from_secs(60));
        let deployments: Api<Deployment> = ns.api();
        apply(&deployments, &App::new(APP, "6.0.1", 1).deployment()?).await?;
        wait_canary(&api, APP, "a passing metric check", RUN, &controller, |o| {
            metric_records(o)
                .iter()
                .any(|r| r.name == "request-success-rate" && !r.failed && r.value.is_some())
        })
        .await?;

        let closed = e2e::bench::free_port()?;
        let patch = json!({"spec": {"metricsServer": format!("http://127.0.0.1:{closed}")}});
        api.patch(APP, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let first = wait_canary(&api, APP, "held", RUN, &controller, |o| {
            held_message(o).is_some() || phase(o) != "Progressing"
        })
        .await?;
        let message = held_message(&first)
            .with_context(|| format!("not held: {}", recorder.render()))?;
        ensure!(
            message.contains("metric request-success-rate query failed")
                && message.contains(&format!("127.0.0.1:{closed}")),
            "Promoted condition: {message}"
        );
        let held_at = step(&first);
        let from = e2e::analysis::last_record_iteration(&first);
        // Three more held ticks (one record set per tick), or anything else that ends the wait.
        let later = wait_canary(&api, APP, "held for three more ticks", RUN, &controller, |o| {
            held_message(o).is_none() || e2e::analysis::last_record_iteration(o) >= from + 3
        })
        .await?;
        ensure!(
            held_message(&later).is_some() && step(&later) == held_at,
            "the hold did not last: {} then {}; observed {}",
            held_at,
            step(&later),
            recorder.render()
        );
        let records = metric_records(&later);
        eprintln!("held records: {records:#?}");
        ensure!(
            records.iter().any(|r| r.name == "request-success-rate"
                && r.value.is_none()
                && !r.failed
                && r.message.starts_with("hold: metric request-success-rate query failed")),
            "no hold record: {records:#?}"
        );
        let events = events_for(&ns, "Canary", APP).await?;
        let holds = kind_of(&events, &format!("Hold {APP}.{} advancement: metric", ns.name));
        ensure!(holds.len() >= 3, "want 3 hold events: {events:#?}");

        // Prometheus back: the run goes on to promotion.
        let patch = json!({"spec": {"metricsServer": PROMETHEUS}});
        api.patch(APP, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let result = wait_phase(&api, APP, "Succeeded", RUN, &controller).await;
        let replies = load.finish().await?;
        eprintln!("observed: {}; load: {replies:?}", recorder.render());
        let done = result?;
        let steps = recorder.steps();
        ensure!(
            steps.iter().all(|s| s.failed_checks == 0 && s.phase != "Failed"),
            "a failed check was counted: {}",
            recorder.render()
        );
        ensure!(
            steps.windows(2).all(|w| w[1].phase != "Progressing" || w[1].weight >= w[0].weight),
            "the weight went back: {}",
            recorder.render()
        );
        ensure!(
            status(&done).get("heldSince").is_none(),
            "heldSince left after the run: {}",
            status(&done)
        );
        let events = events_for(&ns, "Canary", APP).await?;
        let dry = kind_of(&events, "Dry-run metric always-one failed (not counted)");
        ensure!(
            dry.len() >= 3,
            "want a dry-run report per tick: {events:#?}"
        );
        drop(controller);
        Ok(())
    })
    .await
}

/// (5) A query answering with several series: the last one is used, the check passes and the canary is
/// promoted, and a Warning event names the metric and how many series came back.
#[tokio::test]
async fn several_series_use_the_last_and_warn() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("analysis-series", |ns| async move {
        // Two series with no traffic needed: the label tells them apart.
        let query = r#"label_replace(vector(1), "s", "a", "", "") or label_replace(vector(2), "s", "b", "", "")"#;
        let metrics = json!([{"name": "two-series", "query": query, "thresholdRange": {"max": 5}}]);
        let (controller, host) = setup(&ns, canary(metrics, 20)).await?;
        let (done, _) = run_version(&ns, &controller, &host, App::new(APP, "6.0.1", 1), "Succeeded", 5, RUN).await?;
        let records = metric_records(&done);
        ensure!(
            records.iter().any(|r| r.name == "two-series" && !r.failed && r.value.is_some_and(|v| v == 1.0 || v == 2.0)),
            "want a passing two-series record: {records:#?}"
        );
        let events = events_for(&ns, "Canary", APP).await?;
        let warnings = kind_of(&events, "Metric two-series: query returned 2 series, using the last one");
        ensure!(!warnings.is_empty(), "no several-series warning: {events:#?}");
        drop(controller);
        Ok(())
    })
    .await
}
