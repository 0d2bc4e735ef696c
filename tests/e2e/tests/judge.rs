//! The statistical judge (`analysis.judge`) with real traffic: a `flagger-rs controller` child runs a Traefik
//! canary whose latency metric is a MetricTemplate over the mean request latency the testapp exports per
//! workload (Istio's `istio_request_duration_milliseconds` series, scraped by the netns' Prometheus), rendered
//! for the canary (`{{ target }}` = podinfo) and for the baseline (`podinfo-primary`). The primary answers in
//! 100 ms (pod annotation); the fixed threshold of the same metric is 500 ms.
//!
//! * a version answering in 120 ms — 20 % slower, well inside 500 ms — is judged High and rolled back after
//!   `threshold` failed looks, with the figures in `status.judge` and in the Warning events;
//! * a version answering in 100 ms, like the primary, is promoted without a failed check;
//! * a version that gets no traffic holds: Progressing with the judge's inconclusive message in the `Promoted`
//!   condition, no failed check, no step, over several ticks.
//!
//! An error metric judged on counts (`totalTemplateRef`): the errors and the requests each workload served,
//! from Istio's `istio_requests_total`, with the testapp failing a fraction of requests (pod annotation). The
//! primary fails 10 % of them; a version failing 20 % — twice the primary's rate — is judged High on its error
//! counts and rolled back.
//!
//! Run: `hack/e2e judge`.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::analysis::{
    ensure_promoted_without_failures, ensure_rolled_back_at_threshold, run_version,
    warnings_containing,
};
use e2e::controller::{
    Proc, Recorder, canaries, condition, events_for, install_crds, start_controller_named, status,
    step, wait_canary, wait_phase,
};
use e2e::gateway::apply_value;
use e2e::objects::{App, deployment_available, ingress_route};
use e2e::{PROMETHEUS, Result, TestNamespace, apply, skip_unless_e2e, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::DynamicObject;
use serde_json::{Value, json};

const APP: &str = "podinfo";
const LATENCY_MS: &str = "testapp.flagger-rs.dev/latency-ms";
const ERROR_RATE: &str = "testapp.flagger-rs.dev/error-rate";
const THRESHOLD: i64 = 2;
const INIT: Duration = Duration::from_secs(90);
const RUN: Duration = Duration::from_secs(180);
const RPS: usize = 40;

/// Mean latency in milliseconds of the workload `{{ target }}` over the metric's interval.
const MEAN_LATENCY: &str = concat!(
    r#"sum(rate(istio_request_duration_milliseconds_sum{destination_workload_namespace="{{ namespace }}",destination_workload="{{ target }}"}[{{ interval }}]))"#,
    " / ",
    r#"sum(rate(istio_request_duration_milliseconds_count{destination_workload_namespace="{{ namespace }}",destination_workload="{{ target }}"}[{{ interval }}]))"#,
);

/// Server errors of the workload `{{ target }}` over the metric's interval (none yet is zero, not no data).
const ERROR_COUNT: &str = r#"sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ target }}",response_code=~"5.."}[{{ interval }}])) or vector(0)"#;
/// Requests of the workload `{{ target }}` over the metric's interval.
const REQUEST_COUNT: &str = r#"sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ target }}"}[{{ interval }}]))"#;

fn latency_canary() -> Value {
    canary(json!({
        "name": "latency", "interval": "10s", "thresholdRange": {"max": 500},
        "templateRef": {"name": "mean-latency"},
        "judge": {"direction": "increase", "criticality": "critical"},
    }))
}

/// Counted over one analysis interval, as the judge adds up every tick's counts.
fn errors_canary() -> Value {
    canary(json!({
        "name": "errors", "interval": "3s",
        "templateRef": {"name": "error-count"},
        "judge": {"criticality": "critical", "totalTemplateRef": {"name": "request-count"}},
    }))
}

fn canary(metric: Value) -> Value {
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
                "interval": "3s", "threshold": THRESHOLD, "stepWeight": 20, "maxWeight": 60,
                "judge": {"minSamples": 8},
                "metrics": [metric],
            },
        },
    })
}

fn version(tag: &str, latency_ms: u32) -> App<'_> {
    App::new(APP, tag, 1).annotate(LATENCY_MS, &latency_ms.to_string())
}

/// `first` behind an IngressRoute, the MetricTemplates, the controller and `canary` (Initialized). Returns
/// the controller and the route's host.
async fn setup(ns: &TestNamespace, first: App<'_>, canary: Value) -> Result<(Proc, String)> {
    install_crds(&ns.client).await?;
    let host = format!("{}.judge.test", ns.name);
    let deployments = ns.api::<Deployment>();
    apply(&deployments, &first.deployment()?).await?;
    wait_for(&deployments, APP, "available", INIT, deployment_available()).await?;
    apply_value(
        &ns.client,
        Some(&ns.name),
        serde_json::to_value(ingress_route(APP, &host, APP)?)?,
    )
    .await?;
    for (name, query) in [
        ("mean-latency", MEAN_LATENCY),
        ("error-count", ERROR_COUNT),
        ("request-count", REQUEST_COUNT),
    ] {
        apply_value(
            &ns.client,
            Some(&ns.name),
            json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
                "metadata": {"name": name},
                "spec": {"provider": {"type": "prometheus", "address": PROMETHEUS}, "query": query},
            }),
        )
        .await?;
    }
    let controller = start_controller_named(
        &ns.name,
        "controller",
        &["-metrics-server=http://127.0.0.1:1"],
    )?;
    apply_value(&ns.client, Some(&ns.name), canary).await?;
    wait_phase(&canaries(ns), APP, "Initialized", INIT, &controller).await?;
    Ok((controller, host))
}

fn judge_status(obj: &DynamicObject) -> &Value {
    &status(obj)["judge"]
}

#[tokio::test]
async fn judge_rolls_back_a_slower_version_promotes_an_equal_one_and_holds_without_traffic()
-> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("judge", |ns| async move {
        let (controller, host) = setup(&ns, version("6.0.0", 100), latency_canary()).await?;

        // As fast as the primary: promoted, never a failed check.
        let (done, rec) = run_version(
            &ns,
            &controller,
            &host,
            version("6.0.1", 100),
            "Succeeded",
            RPS,
            RUN,
        )
        .await?;
        eprintln!("status.judge: {:#}", judge_status(&done));
        ensure_promoted_without_failures(&rec, &[20, 40, 60])?;
        let judge = judge_status(&done);
        ensure!(
            judge["decision"] == "Pass",
            "last look of the promoted run: {judge:#}"
        );
        let metric = &judge["metrics"][0];
        ensure!(
            metric["verdict"] == "Pass" && metric["canarySamples"].as_u64() >= Some(8),
            "{judge:#}"
        );

        // 20 % slower, far inside the 500 ms threshold: High, rolled back after THRESHOLD failed looks.
        let (done, rec) = run_version(
            &ns,
            &controller,
            &host,
            version("6.0.2", 120),
            "Failed",
            RPS,
            RUN,
        )
        .await?;
        eprintln!("status.judge: {:#}", judge_status(&done));
        ensure_rolled_back_at_threshold(&done, &rec, THRESHOLD)?;
        let judge = judge_status(&done);
        ensure!(judge["decision"] == "Fail", "{judge:#}");
        let metric = &judge["metrics"][0];
        ensure!(metric["verdict"] == "High", "{judge:#}");
        let effect = metric["effect"].as_f64().context("no effect size")?;
        ensure!(
            (0.1..0.4).contains(&effect),
            "effect {effect} for 120 ms against 100 ms: {judge:#}"
        );
        let (canary_ms, primary_ms) = (metric["canary"].as_f64(), metric["primary"].as_f64());
        ensure!(
            canary_ms.is_some_and(|c| c < 500.0)
                && primary_ms.is_some_and(|p| p < canary_ms.unwrap_or(0.0)),
            "canary {canary_ms:?} ms inside the fixed threshold, above the primary's {primary_ms:?}"
        );
        ensure!(
            metric["pValue"].as_f64().is_some_and(|p| p < 0.05),
            "{judge:#}"
        );
        let events = events_for(&ns, "Canary", APP).await?;
        let halts = warnings_containing(
            &events,
            "the judge failed the canary against podinfo-primary",
        );
        ensure!(
            halts.len() >= THRESHOLD as usize,
            "no judge halt events: {events:#?}"
        );
        ensure!(
            halts[0].contains("latency High"),
            "the event names the metric and its verdict: {}",
            halts[0]
        );
        let primary = ns
            .api::<Deployment>()
            .get(&format!("{APP}-primary"))
            .await?;
        let image = e2e::controller::template_image(primary.spec.as_ref().map(|s| &s.template));
        ensure!(
            image.ends_with(":6.0.1"),
            "primary image {image} after rollback"
        );

        // No traffic: too little data for the judge, the canary holds at its first step and says why.
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        apply(
            &ns.api::<Deployment>(),
            &version("6.0.3", 100).deployment()?,
        )
        .await?;
        let inconclusive = |o: &DynamicObject| {
            condition(o, "Promoted").is_some_and(|(_, _, m)| m.contains("judge inconclusive"))
        };
        let held = wait_canary(
            &api,
            APP,
            "held by an inconclusive judge",
            RUN,
            &controller,
            inconclusive,
        )
        .await?;
        let first = e2e::analysis::last_record_iteration(&held);
        // Three more held ticks (each writes its check records), bounded by the wait.
        let later = wait_canary(&api, APP, "three more held ticks", RUN, &controller, |o| {
            e2e::analysis::last_record_iteration(o) >= first + 3
        })
        .await?;
        let (_, reason, message) =
            condition(&later, "Promoted").context("no Promoted condition")?;
        eprintln!("held: {reason}: {message}; observed: {}", recorder.render());
        let now = step(&later);
        ensure!(
            now.phase == "Progressing" && now.failed_checks == 0,
            "{now}: {}",
            recorder.render()
        );
        ensure!(message.contains("too little data for latency"), "{message}");
        ensure!(
            recorder
                .steps()
                .iter()
                .all(|s| s.weight <= 20 && s.failed_checks == 0),
            "no step and no failure while held: {}",
            recorder.render()
        );
        ensure!(
            judge_status(&later)["decision"] == "Inconclusive",
            "{:#}",
            judge_status(&later)
        );
        let events = events_for(&ns, "Canary", APP).await?;
        ensure!(
            !warnings_containing(&events, "advancement: judge inconclusive").is_empty(),
            "no hold event: {events:#?}"
        );
        drop(controller);
        Ok(())
    })
    .await
}

fn failing<'a>(tag: &'a str, error_rate: &'a str) -> App<'a> {
    App::new(APP, tag, 1).annotate(ERROR_RATE, error_rate)
}

#[tokio::test]
async fn judge_counts_rolls_back_twice_the_primarys_error_rate() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("judge-counts", |ns| async move {
        let (controller, host) = setup(&ns, failing("6.0.0", "0.1"), errors_canary()).await?;
        let (done, rec) = run_version(
            &ns,
            &controller,
            &host,
            failing("6.0.1", "0.2"),
            "Failed",
            RPS,
            RUN,
        )
        .await?;
        eprintln!("status.judge: {:#}", judge_status(&done));
        ensure_rolled_back_at_threshold(&done, &rec, THRESHOLD)?;
        let judge = judge_status(&done);
        ensure!(judge["decision"] == "Fail", "{judge:#}");
        let metric = &judge["metrics"][0];
        ensure!(metric["verdict"] == "High", "{judge:#}");
        // Error rates and their ratio, from the counts.
        let (canary, primary) = (metric["canary"].as_f64(), metric["primary"].as_f64());
        ensure!(
            canary.is_some_and(|c| (0.1..0.3).contains(&c))
                && primary.is_some_and(|p| (0.05..0.15).contains(&p)),
            "error rates {canary:?} and {primary:?}: {judge:#}"
        );
        ensure!(
            metric["lower"].as_f64().is_some_and(|l| l > 1.0),
            "the rate ratio's interval excludes 1: {judge:#}"
        );
        let events = events_for(&ns, "Canary", APP).await?;
        let halts = warnings_containing(
            &events,
            "the judge failed the canary against podinfo-primary",
        );
        ensure!(
            halts
                .first()
                .is_some_and(|h| h.contains("errors High (canary") && h.contains("errors of")),
            "the event gives the counts: {halts:#?}"
        );
        drop(controller);
        Ok(())
    })
    .await
}
