//! The `skipper` router with real traffic through a real Skipper (built from `github.com/zalando/skipper`,
//! run as this cluster's ingress controller by [`e2e::skipper::Skipper`]) and judged by Flagger's builtin
//! Skipper queries over Skipper's own route metrics, scraped by the cluster's Prometheus.
//!
//! podinfo 6.0.0 behind Ingress `podinfo` (class `skipper`) → Canary (stepWeight 20, maxWeight 60, interval 3s,
//! threshold 2, builtin `request-success-rate` and `request-duration`, `confirm-traffic-increase` and
//! `confirm-promotion` gates the test holds at every step) under a paced background load through Skipper:
//! * 6.0.1 (healthy): at each canary weight the split measured over bounded request runs through Skipper is
//!   within ±5 points of the weight and the canary Ingress carries those backend weights; promoted without a
//!   failed check; then every reply comes from 6.0.1 and the canary Ingress is switched off (`False()`).
//! * 6.0.2 answering 500 to 30 % of requests: rolled back after exactly `threshold` failed
//!   `request-success-rate` checks over `skipper_response_duration_seconds_bucket`; 100 % back on 6.0.1.
//!
//!
//! Blue/green (iterations 3, a `confirm-promotion` gate held by the test): held at the gate after the iterations,
//! 6.0.0 still answers everything; once the gate lets the switch through (canary Ingress weights 0/100) 6.0.1
//! takes every reply through Skipper while the gate holds promotion, then after promotion every reply still comes
//! from 6.0.1, now the primary, and the canary Ingress is switched off.
//!
//! Run: `hack/e2e skipper` (builds Skipper once into the cache, then runs this file's test).

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::analysis::{
    Load, Target, ensure_promoted_without_failures, ensure_rolled_back_on_success_rate,
};
use e2e::controller::{
    Proc, Recorder, canaries, install_crds, start_controller_named, step, wait_canary, wait_phase,
};
use e2e::gateway::apply_value;
use e2e::hooks::HookCatcher;
use e2e::objects::{APP_PORT, App, deployment_available};
use e2e::skipper::Skipper;
use e2e::traffic::Run;
use e2e::{PROMETHEUS, Result, TestNamespace, apply, poll_until, skip_unless_e2e, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use serde_json::json;

const APP: &str = "podinfo";
const OLD: &str = "6.0.0";
const NEW: &str = "6.0.1";
const BAD: &str = "6.0.2";
const THRESHOLD: i64 = 2;
const TOLERANCE: f64 = 5.0;
const STEPS: [u32; 3] = [20, 40, 60];
const MEASURE_REQUESTS: usize = 600;
const RUN: Duration = Duration::from_secs(180);
const WEIGHTS: &str = "zalando.org/backend-weights";
const PREDICATE: &str = "zalando.org/skipper-predicate";

fn canary(gate: &str) -> serde_json::Value {
    let analysis = json!({
        "interval": "3s", "threshold": THRESHOLD, "stepWeight": 20, "maxWeight": 60,
        "metrics": [
            {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}},
            {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 500}},
        ],
        // One gate before every increase and before promotion, so the run holds at each weight,
        // the last one included, while the split is measured.
        "webhooks": [
            {"name": "gate", "type": "confirm-traffic-increase", "url": gate},
            {"name": "promotion-gate", "type": "confirm-promotion", "url": gate},
        ],
    });
    canary_with(analysis)
}

fn canary_with(analysis: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": APP},
        "spec": {
            "provider": "skipper",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": APP},
            "progressDeadlineSeconds": 60,
            "metricsServer": PROMETHEUS,
            "service": {"port": APP_PORT, "targetPort": APP_PORT},
            "analysis": analysis,
        },
    })
}

/// The user's objects: the Skipper IngressClass and Ingress `podinfo` for `host`.
async fn ingress(ns: &TestNamespace, host: &str) -> Result<()> {
    apply_value(
        &ns.client,
        None,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "skipper"},
            "spec": {"controller": "zalando.org/skipper"},
        }),
    )
    .await?;
    apply_value(
        &ns.client,
        Some(&ns.name),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": APP},
            "spec": {"ingressClassName": "skipper", "rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": APP, "port": {"number": APP_PORT}}},
            }]}}]},
        }),
    )
    .await
}

/// Share of `version` in `count` replies through Skipper; every request must be answered by podinfo.
async fn share(skipper: &Skipper, host: &str, version: &str, count: usize) -> Result<f64> {
    let report = Run::new(&skipper.url, count).host(host).drive().await?;
    let ok: usize = report.by_version.values().sum();
    ensure!(
        ok == count,
        "only {ok}/{count} answered by podinfo through Skipper: statuses {:?}, errors {:?}",
        report.by_status,
        report.error_samples
    );
    Ok(report.version_share(version))
}

/// Bounded poll until Skipper's served split is within the tolerance of `want` % (it reloads routes by polling).
async fn until_split(skipper: &Skipper, host: &str, version: &str, want: f64) -> Result<()> {
    poll_until(
        &format!("Skipper serving {want}% {version} for {host}"),
        Duration::from_secs(60),
        || async move {
            let s = share(skipper, host, version, 100).await?;
            Ok(((s - want).abs() <= TOLERANCE).then_some(()))
        },
    )
    .await
}

/// The canary Ingress' `(weights, predicate)` annotations.
async fn canary_ingress(ns: &TestNamespace) -> Result<(serde_json::Value, String)> {
    let api: Api<Ingress> = ns.api();
    let ing = api.get(&format!("{APP}-canary")).await?;
    let a = ing.metadata.annotations.unwrap_or_default();
    let weights = serde_json::from_str(a.get(WEIGHTS).context("no backend weights")?)?;
    Ok((weights, a.get(PREDICATE).cloned().unwrap_or_default()))
}

async fn expect_canary_ingress(ns: &TestNamespace, primary: u32, canary: u32) -> Result<()> {
    let (weights, predicate) = canary_ingress(ns).await?;
    let want = json!({"podinfo-primary": primary, "podinfo-canary": canary});
    ensure!(weights == want, "backend weights {weights}, want {want}");
    let switch = if canary == 0 {
        "False()"
    } else {
        "Weight(100)"
    };
    ensure!(
        predicate == switch,
        "predicate {predicate:?}, want {switch:?}"
    );
    Ok(())
}

async fn healthy_run_measured_per_step(
    ns: &TestNamespace,
    ctrl: &Proc,
    skipper: &Skipper,
    host: &str,
    gate: &HookCatcher,
) -> Result<()> {
    let api = canaries(ns);
    let rec = Recorder::start(&api, APP);
    let deployments: Api<Deployment> = ns.api();
    apply(&deployments, &App::new(APP, NEW, 1).deployment()?).await?;
    for w in STEPS {
        gate.open_gate("/gate");
        let at = wait_canary(
            &api,
            APP,
            &format!("at canary weight {w}"),
            RUN,
            ctrl,
            |o| step(o).weight >= i64::from(w) || step(o).phase == "Failed",
        )
        .await?;
        gate.close_gate("/gate");
        ensure!(
            step(&at).weight == i64::from(w),
            "the gate closed too late: {}",
            rec.render()
        );
        expect_canary_ingress(ns, 100 - w, w).await?;
        until_split(skipper, host, NEW, f64::from(w)).await?;
        let measured = share(skipper, host, NEW, MEASURE_REQUESTS).await?;
        let still = step(&api.get(APP).await?);
        ensure!(
            still.weight == i64::from(w),
            "the weight moved during the measurement: {}",
            rec.render()
        );
        eprintln!(
            "MEASURED skipper: canary weight {w} -> {measured:.1}% of {MEASURE_REQUESTS} replies from {NEW}"
        );
        ensure!(
            (measured - f64::from(w)).abs() <= TOLERANCE,
            "canary share {measured:.1}% at weight {w} (±{TOLERANCE})"
        );
    }
    gate.open_gate("/gate");
    wait_phase(&api, APP, "Succeeded", RUN, ctrl).await?;
    eprintln!("healthy run: {}", rec.render());
    ensure_promoted_without_failures(&rec, &STEPS.map(i64::from))?;
    expect_canary_ingress(ns, 100, 0).await?;
    until_split(skipper, host, NEW, 100.0).await?;
    let after = share(skipper, host, NEW, 200).await?;
    eprintln!("MEASURED skipper: after promotion {after:.1}% of 200 replies from {NEW}");
    ensure!(
        after == 100.0,
        "after promotion only {after:.1}% from {NEW}"
    );
    Ok(())
}

#[tokio::test]
async fn skipper_canary_split_promotion_and_rollback_on_skipper_metrics() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("skipper", |ns| async move {
        install_crds(&ns.client).await?;
        let skipper = Skipper::start(&ns.name).await?;
        let host = format!("{}.skipper.test", ns.name);
        let deployments: Api<Deployment> = ns.api();
        apply(&deployments, &App::new(APP, OLD, 1).deployment()?).await?;
        wait_for(&deployments, APP, "available", RUN, deployment_available()).await?;
        // The user's Ingress names the apex Service `podinfo`, which the controller creates at initialisation.
        ingress(&ns, &host).await?;

        let gate = HookCatcher::start().await?;
        let ctrl = start_controller_named(
            &ns.name,
            "controller",
            &[
                "-mesh-provider=skipper",
                "-metrics-server=http://127.0.0.1:1",
            ],
        )?;
        apply_value(&ns.client, Some(&ns.name), canary(&gate.at("/gate"))).await?;
        wait_phase(&canaries(&ns), APP, "Initialized", RUN, &ctrl).await?;
        expect_canary_ingress(&ns, 100, 0).await?;
        // The canary Ingress is off at weight 0: the user's Ingress serves, through the apex Service to the primary.
        until_split(&skipper, &host, OLD, 100.0).await?;

        // A paced background load so every check has requests on the canary's route in its window.
        let load = Load::start(
            vec![Target::with_host(skipper.url.clone(), host.clone())],
            40,
            2 * RUN,
        );
        healthy_run_measured_per_step(&ns, &ctrl, &skipper, &host, &gate).await?;

        let api = canaries(&ns);
        let rec = Recorder::start(&api, APP);
        let bad = App::new(APP, BAD, 1).annotate("testapp.flagger-rs.dev/error-rate", "0.3");
        apply(&deployments, &bad.deployment()?).await?;
        let done = wait_phase(&api, APP, "Failed", RUN, &ctrl).await;
        let replies = load.finish().await?;
        eprintln!(
            "failed run: {}; load replies by status: {replies:?}",
            rec.render()
        );
        let done = done?;
        ensure_rolled_back_on_success_rate(
            &ns,
            APP,
            &done,
            &rec,
            THRESHOLD,
            "skipper_response_duration_seconds_bucket",
        )
        .await?;
        expect_canary_ingress(&ns, 100, 0).await?;
        until_split(&skipper, &host, NEW, 100.0).await?;
        let after = share(&skipper, &host, NEW, 200).await?;
        eprintln!("MEASURED skipper: after rollback {after:.1}% of 200 replies from {NEW}");
        ensure!(after == 100.0, "after rollback only {after:.1}% from {NEW}");
        drop(ctrl);
        Ok(())
    })
    .await
}

/// Blue/green through Skipper: after the iterations and the promotion gate the canary Ingress switches all traffic
/// to the new version (the run held at the gate again while it is measured), then promotion leaves every reply on
/// it via the primary.
#[tokio::test]
async fn skipper_blue_green_switches_all_traffic_and_promotes() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("skipper-bg", |ns| async move {
        install_crds(&ns.client).await?;
        let skipper = Skipper::start(&ns.name).await?;
        let host = format!("{}.skipper.test", ns.name);
        let deployments: Api<Deployment> = ns.api();
        apply(&deployments, &App::new(APP, OLD, 1).deployment()?).await?;
        wait_for(&deployments, APP, "available", RUN, deployment_available()).await?;
        ingress(&ns, &host).await?;

        let gate = HookCatcher::start().await?;
        let ctrl = start_controller_named(&ns.name, "controller", &["-mesh-provider=skipper"])?;
        let analysis = json!({
            "interval": "3s", "threshold": THRESHOLD, "iterations": 3,
            "webhooks": [{"name": "promotion-gate", "type": "confirm-promotion", "url": gate.at("/gate")}],
        });
        apply_value(&ns.client, Some(&ns.name), canary_with(analysis)).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", RUN, &ctrl).await?;
        expect_canary_ingress(&ns, 100, 0).await?;
        until_split(&skipper, &host, OLD, 100.0).await?;

        let rec = Recorder::start(&api, APP);
        apply(&deployments, &App::new(APP, NEW, 1).deployment()?).await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &ctrl).await?;
        // As in Flagger, the switch comes after the promotion gate opens: held there, the primary still serves.
        expect_canary_ingress(&ns, 100, 0).await?;
        until_split(&skipper, &host, OLD, 100.0).await?;
        // Open for the switch only: the gate is asked again before promotion, so closing it once the switch is
        // recorded holds the run with all traffic on the new version while it is measured.
        gate.open_gate("/gate");
        let switched = wait_canary(&api, APP, "switched to the canary", RUN, &ctrl, |o| {
            step(o).iterations > 3 || step(o).phase == "Succeeded"
        })
        .await?;
        gate.close_gate("/gate");
        ensure!(
            step(&switched).phase != "Succeeded",
            "the gate closed too late: {}",
            rec.render()
        );
        expect_canary_ingress(&ns, 0, 100).await?;
        until_split(&skipper, &host, NEW, 100.0).await?;
        let held = share(&skipper, &host, NEW, 200).await?;
        eprintln!("MEASURED skipper blue/green: switched {held:.1}% of 200 replies from {NEW}");
        ensure!(held == 100.0, "switched, only {held:.1}% from {NEW}");
        ensure!(
            step(&api.get(APP).await?).phase != "Succeeded",
            "promoted during the measurement: {}",
            rec.render()
        );

        gate.open_gate("/gate");
        wait_phase(&api, APP, "Succeeded", RUN, &ctrl).await?;
        eprintln!("blue/green run: {}", rec.render());
        expect_canary_ingress(&ns, 100, 0).await?;
        until_split(&skipper, &host, NEW, 100.0).await?;
        let after = share(&skipper, &host, NEW, 200).await?;
        eprintln!("MEASURED skipper blue/green: after promotion {after:.1}% of 200 replies from {NEW}");
        ensure!(after == 100.0, "after promotion only {after:.1}% from {NEW}");
        drop(ctrl);
        Ok(())
    })
    .await
}
