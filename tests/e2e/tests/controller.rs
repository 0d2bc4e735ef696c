//! The controller on the local cluster (issue 6): each test runs its own
//! `flagger-rs controller -namespace=<its namespace>` (the `flagger-rs` RBAC identity) and, where webhooks are
//! involved, its own `flagger-rs loadtester` on a loopback port. Run with `hack/e2e` (skipped, passing, when
//! FLAGGER_E2E is unset). Every wait is a watch with a timeout whose failure message carries the Canary status and
//! the controller's log tail.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{
    self as ctl, Loadtester, Recorder, blue_green_canary, canaries, condition, create_canary,
    deploy, image_of, phase, set_image, start_controller, template_image, wait_canary, wait_event,
    wait_phase, wait_replicas,
};
use e2e::objects::App;
use e2e::{TestNamespace, apply, skip_unless_e2e, wait_for, with_namespace};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DeleteParams;
use kube::runtime::wait::conditions;
use kube::{Api, ResourceExt as _};
use serde_json::{Value, json};

/// Initialisation: primary rollout (kwok pods are Ready at once) plus one tick.
const INIT: Duration = Duration::from_secs(60);
/// A whole run of 2-3 iterations at 1-2 s, with webhooks.
const RUN: Duration = Duration::from_secs(90);
const APP: &str = "podinfo";

type CanaryCondition = fn(&kube::api::DynamicObject) -> bool;

fn bash(cmd: &str) -> Value {
    json!({"type": "bash", "cmd": cmd})
}

/// Creates the Deployment and the Canary and waits for `Initialized`.
async fn initialised(ns: &TestNamespace, controller: &ctl::Proc, canary: Value) -> e2e::Result<()> {
    deploy(ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
    create_canary(ns, canary).await?;
    wait_phase(&canaries(ns), APP, "Initialized", INIT, controller).await?;
    Ok(())
}

/// (1) Initialisation: primary Deployment, the three Services, the target scaled to 0, Promoted=True.
#[tokio::test]
async fn initialisation_creates_primary_and_services() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-init", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, blue_green_canary(APP, "2s", 3, json!([]))).await?;
        let recorder = Recorder::start(&canaries(&ns), APP);
        let canary = wait_phase(&canaries(&ns), APP, "Initialized", INIT, &controller).await?;
        let promoted = condition(&canary, "Promoted");
        ensure!(
            promoted.as_ref().is_some_and(|(s, _, _)| s == "True"),
            "condition Promoted: {promoted:?}"
        );

        let deployments: Api<Deployment> = ns.api();
        let primary = deployments
            .get(&format!("{APP}-primary"))
            .await
            .context("primary Deployment")?;
        ensure!(
            image_of(&primary).ends_with(":6.0.0"),
            "primary image {}",
            image_of(&primary)
        );
        ensure!(
            primary
                .owner_references()
                .iter()
                .any(|o| o.kind == "Canary" && o.name == APP),
            "primary not owned by the Canary: {:?}",
            primary.owner_references()
        );
        wait_replicas(&deployments, APP, 0, &controller).await?;

        let services: Api<Service> = ns.api();
        for (svc, selects) in [
            (APP.to_string(), format!("{APP}-primary")),
            (format!("{APP}-primary"), format!("{APP}-primary")),
            (format!("{APP}-canary"), APP.to_string()),
        ] {
            let s = services
                .get(&svc)
                .await
                .with_context(|| format!("Service {svc}"))?;
            let selector = s
                .spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default();
            ensure!(
                selector.get("app") == Some(&selects),
                "Service {svc} selector {selector:?}, want app={selects}"
            );
            let port = s
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .and_then(|p| p.first())
                .map(|p| p.port);
            ensure!(port == Some(9898), "Service {svc} port {port:?}");
        }
        eprintln!("observed: {}", recorder.render());
        Ok(())
    })
    .await
}

/// (2) Blue/green: a pre-rollout `bash` acceptance test and a `cmd` load test answered by the real loadtester,
/// iterations, promotion; the primary runs the new image and the target is back at 0.
#[tokio::test]
async fn blue_green_promotion_with_loadtester_hooks() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-bg", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let lt = Loadtester::start(&ns.name).await?;
        let canary_url = format!("http://{APP}-canary.{}.svc.cluster.local:9898/", ns.name);
        let hooks = json!([
            {"name": "acceptance-test", "type": "pre-rollout", "url": lt.at("/"), "timeout": "15s",
             "metadata": bash(&format!("curl -sf --max-time 5 {canary_url} | grep -q 6.0.1"))},
            {"name": "load-test", "type": "rollout", "url": lt.at("/"), "timeout": "5s",
             "metadata": {"type": "cmd", "cmd": format!("hey -z 2s -q 10 -c 2 {canary_url}")}},
        ]);
        initialised(&ns, &controller, blue_green_canary(APP, "2s", 3, hooks)).await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();
        let generation = deployments
            .get(&format!("{APP}-primary"))
            .await?
            .metadata
            .generation;

        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Progressing", INIT, &controller).await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        let steps = recorder.steps();
        eprintln!("observed: {}", recorder.render());

        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.1"),
            "primary image {}",
            image_of(&primary)
        );
        ensure!(
            primary.metadata.generation == generation.map(|g| g + 1),
            "primary generation {:?} after one promotion from {generation:?}",
            primary.metadata.generation
        );
        wait_replicas(&deployments, APP, 0, &controller).await?;
        ensure!(
            steps.iter().all(|s| s.failed_checks == 0),
            "a check failed: {}",
            recorder.render()
        );
        let max_iter = steps.iter().map(|s| s.iterations).max().unwrap_or(0);
        ensure!(
            max_iter >= 3,
            "iterations reached {max_iter}: {}",
            recorder.render()
        );
        ensure!(
            steps.iter().any(|s| s.phase == "Promoting"),
            "no Promoting phase: {}",
            recorder.render()
        );
        // One event (and so one alert) per transition: a reconcile on a cache that predates the last status
        // write must not repeat it.
        let events = ctl::events_for(&ns, "Canary", APP).await?;
        for prefix in [
            "Initialization done!",
            "New revision detected!",
            "Copying",
            "Promotion completed!",
        ] {
            let n: i32 = events
                .iter()
                .filter(|(_, _, m, _)| m.starts_with(prefix))
                .map(|(_, _, _, n)| n)
                .sum();
            ensure!(n == 1, "{n} events {prefix:?}: {events:#?}");
        }
        Ok(())
    })
    .await
}

/// (3) Rollback: a pre-rollout hook that exits 1 fails `threshold` (2) times → Failed, the canary is scaled to 0
/// and the primary keeps the old image.
#[tokio::test]
async fn failing_webhook_rolls_back() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-rb", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let lt = Loadtester::start(&ns.name).await?;
        let hooks = json!([
            {"name": "acceptance-test", "type": "pre-rollout", "url": lt.at("/"), "timeout": "5s",
             "metadata": bash("echo failing on purpose; exit 1")},
        ]);
        initialised(&ns, &controller, blue_green_canary(APP, "1s", 3, hooks)).await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();

        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Failed", RUN, &controller).await?;
        eprintln!("observed: {}", recorder.render());
        wait_replicas(&deployments, APP, 0, &controller).await?;
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.0"),
            "primary image {}",
            image_of(&primary)
        );
        ensure!(
            recorder.steps().iter().any(|s| s.failed_checks >= 1),
            "no failed check was recorded: {}",
            recorder.render()
        );
        ensure!(
            !recorder.steps().iter().any(|s| s.phase == "Promoting"),
            "promoted despite the failing hook: {}",
            recorder.render()
        );
        Ok(())
    })
    .await
}

/// (4) Gates: confirm-rollout closed → Waiting with the target at 0, opened → Progressing; confirm-promotion closed
/// → WaitingPromotion, opened → Succeeded.
#[tokio::test]
async fn confirm_rollout_and_promotion_gates() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-gate", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let lt = Loadtester::start(&ns.name).await?;
        let hooks = json!([
            {"name": "rollout-gate", "type": "confirm-rollout", "url": lt.at("/gate/check")},
            {"name": "promotion-gate", "type": "confirm-promotion", "url": lt.at("/gate/check")},
        ]);
        initialised(&ns, &controller, blue_green_canary(APP, "1s", 2, hooks)).await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();

        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Waiting", INIT, &controller).await?;
        let target = deployments.get(APP).await?;
        ensure!(
            target.spec.as_ref().and_then(|s| s.replicas) == Some(0),
            "target scaled up while waiting for approval"
        );
        lt.gate("/gate/open", APP, &ns.name).await?;
        wait_phase(&api, APP, "Progressing", RUN, &controller).await?;
        // The same gate (keyed by canary) answers confirm-promotion: close it before the iterations are done.
        lt.gate("/gate/close", APP, &ns.name).await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.0"),
            "promoted while the gate was closed: primary image {}",
            image_of(&primary)
        );
        lt.gate("/gate/open", APP, &ns.name).await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        eprintln!("observed: {}", recorder.render());
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.1"),
            "primary image {}",
            image_of(&primary)
        );
        Ok(())
    })
    .await
}

/// (5) Rollback gate: /rollback/open during the analysis → Failed, primary unchanged.
#[tokio::test]
async fn rollback_gate_rolls_back() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-rbgate", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let lt = Loadtester::start(&ns.name).await?;
        let hooks = json!([
            {"name": "rollback", "type": "rollback", "url": lt.at("/rollback/check")},
        ]);
        // Long enough that only the gate can end the run.
        initialised(&ns, &controller, blue_green_canary(APP, "1s", 60, hooks)).await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();

        set_image(&deployments, APP, "6.0.1").await?;
        wait_canary(
            &api,
            APP,
            "Progressing with an iteration",
            RUN,
            &controller,
            |o| phase(o) == "Progressing" && ctl::step(o).iterations >= 1,
        )
        .await?;
        lt.gate("/rollback/open", APP, &ns.name).await?;
        wait_phase(&api, APP, "Failed", RUN, &controller).await?;
        lt.gate("/rollback/close", APP, &ns.name).await?;
        eprintln!("observed: {}", recorder.render());
        wait_replicas(&deployments, APP, 0, &controller).await?;
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.0"),
            "primary image {}",
            image_of(&primary)
        );
        Ok(())
    })
    .await
}

/// When an Event last said what it says, in whole seconds (as core/v1 Events keep it).
fn said_at(event: &k8s_openapi::api::core::v1::Event) -> e2e::Result<i64> {
    event
        .last_timestamp
        .as_ref()
        .or(event.first_timestamp.as_ref())
        .map(|t| t.0.as_second())
        .with_context(|| format!("event without a timestamp: {:?}", event.message))
}

/// A run waiting for a rollout goes on when the rollout ends, not at its next interval. The
/// target's `minReadySeconds` (copied to the primary) keeps the canary's rollout, and then the
/// primary's, going past the tick after it began; the tick that goes on comes sooner after the
/// waiting tick than an interval, for the canary (the analysis starts) and for the primary (the
/// run moves on to `Finalising`).
#[tokio::test]
async fn a_run_goes_on_when_the_rollout_it_waited_for_ends() -> e2e::Result<()> {
    const INTERVAL_SECONDS: i64 = 10;
    // Longer than an interval, so each rollout outlasts the tick after it by ~2 s.
    const MIN_READY_SECONDS: i64 = 12;
    // The waiting tick and the next one, a rollout's end apart; an interval apart if the wait
    // lasted until the next scheduled tick. Timestamps are whole seconds: one of slack each side.
    const WITHIN: i64 = INTERVAL_SECONDS - 2;
    skip_unless_e2e!();
    with_namespace("ctl-ready", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |d| {
            d["spec"]["minReadySeconds"] = json!(MIN_READY_SECONDS);
        })
        .await?;
        create_canary(
            &ns,
            blue_green_canary(APP, &format!("{INTERVAL_SECONDS}s"), 1, json!([])),
        )
        .await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;

        let key = format!("{APP}.{}", ns.name);
        let message_starts = |prefix: String| {
            move |e: &k8s_openapi::api::core::v1::Event| {
                e.message.as_deref().is_some_and(|m| m.starts_with(&prefix))
            }
        };
        let waited = wait_event(
            &ns,
            APP,
            "the canary found rolling out",
            RUN,
            &controller,
            message_starts(format!("canary deployment {key} not ready")),
        )
        .await?;
        let started = wait_event(
            &ns,
            APP,
            "the analysis started",
            RUN,
            &controller,
            message_starts(format!("Starting canary analysis for {key}")),
        )
        .await?;
        let canary_gap = said_at(&started)? - said_at(&waited)?;

        let copied = wait_event(
            &ns,
            APP,
            "the promotion",
            RUN,
            &controller,
            message_starts(format!("Copying {key} template spec")),
        )
        .await?;
        let copied_at = said_at(&copied)?;
        // The primary was found rolling out while initialising too; this is the wait after the copy.
        let primary_waited = wait_event(
            &ns,
            APP,
            "the primary found rolling out",
            RUN,
            &controller,
            |e| {
                message_starts(format!("{APP}-primary.{} not ready", ns.name))(e)
                    && said_at(e).is_ok_and(|at| at >= copied_at)
            },
        )
        .await?;
        let finalising = wait_canary(&api, APP, "Finalising", RUN, &controller, |o| {
            phase(o) == "Finalising"
        })
        .await?;
        let routed_at = serde_json::from_value::<Time>(
            ctl::status(&finalising)["lastTransitionTime"].clone(),
        )
        .context("Finalising without a lastTransitionTime")?
        .0
        .as_second();
        let primary_gap = routed_at - said_at(&primary_waited)?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        eprintln!(
            "ready-wait: the canary's rollout ended {canary_gap} s after the tick that waited for it, \
             the primary's {primary_gap} s after (interval {INTERVAL_SECONDS} s)"
        );
        ensure!(
            (0..=WITHIN).contains(&canary_gap),
            "the analysis started {canary_gap} s after the tick that found the canary rolling out"
        );
        ensure!(
            (0..=WITHIN).contains(&primary_gap),
            "the run went on to Finalising {primary_gap} s after the tick that found the primary rolling out"
        );
        Ok(())
    })
    .await
}

/// (10) skipAnalysis: a new revision goes straight to Succeeded.
#[tokio::test]
async fn skip_analysis_promotes_at_once() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-skip", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let mut canary = blue_green_canary(APP, "2s", 3, json!([]));
        canary["spec"]["skipAnalysis"] = json!(true);
        initialised(&ns, &controller, canary).await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();

        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        eprintln!("observed: {}", recorder.render());
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.1"),
            "primary image {}",
            image_of(&primary)
        );
        ensure!(
            recorder.steps().iter().all(|s| s.iterations == 0),
            "analysis iterations ran: {}",
            recorder.render()
        );
        Ok(())
    })
    .await
}

/// (9) revertOnDeletion: the finalizer is added; deleting the Canary scales the target back up, points the user's
/// apex Service at it again and removes the finalizer, so the Canary goes away.
#[tokio::test]
async fn revert_on_deletion_restores_the_target() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-revert", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        // The apex Service is the user's: a controller-created one is owned by the Canary and goes
        // with it.
        apply(&ns.api::<Service>(), &App::new(APP, "6.0.0", 1).service()?).await?;
        let mut canary = blue_green_canary(APP, "2s", 3, json!([]));
        canary["spec"]["revertOnDeletion"] = json!(true);
        initialised(&ns, &controller, canary).await?;
        let apex = ns.api::<Service>().get(APP).await?;
        let selector = apex.spec.and_then(|s| s.selector).unwrap_or_default();
        ensure!(
            selector.get("app").map(|s| s.as_str()) == Some("podinfo-primary"),
            "apex Service selector {selector:?} after initialisation"
        );
        let api = canaries(&ns);
        let obj = wait_canary(&api, APP, "holding the finalizer", INIT, &controller, |o| {
            o.finalizers().iter().any(|f| f == "finalizer.flagger.app")
        })
        .await?;
        let deployments: Api<Deployment> = ns.api();
        wait_replicas(&deployments, APP, 0, &controller).await?;

        api.delete(APP, &DeleteParams::default()).await?;
        let uid = obj.uid().unwrap_or_default();
        tokio::time::timeout(
            INIT,
            kube::runtime::wait::await_condition(api.clone(), APP, conditions::is_deleted(&uid)),
        )
        .await
        .with_context(|| {
            format!(
                "Canary not gone after {INIT:?}; controller log tail:\n{}",
                controller.log_tail()
            )
        })??;
        wait_replicas(&deployments, APP, 1, &controller).await?;
        let apex = ns.api::<Service>().get(APP).await?;
        let selector = apex.spec.and_then(|s| s.selector).unwrap_or_default();
        ensure!(
            selector.get("app").map(String::as_str) == Some(APP),
            "apex Service selector {selector:?} after revert"
        );
        Ok(())
    })
    .await
}

/// (6) Config tracking: the ConfigMap gets a `-primary` copy used by the primary; changing its data starts a run
/// that promotes the new data.
#[tokio::test]
async fn config_map_change_starts_an_analysis() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-config", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let configmaps: Api<ConfigMap> = ns.api();
        let cm = |v: &str| -> e2e::Result<ConfigMap> {
            Ok(serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "podinfo-config"},
                "data": {"color": v},
            }))?)
        };
        apply(&configmaps, &cm("blue")?).await?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |d| {
            d["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
                json!([{"configMapRef": {"name": "podinfo-config"}}]);
        })
        .await?;
        create_canary(&ns, blue_green_canary(APP, "1s", 2, json!([]))).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        let copy = configmaps
            .get("podinfo-config-primary")
            .await
            .context("primary ConfigMap copy")?;
        ensure!(
            copy.data
                .as_ref()
                .and_then(|d| d.get("color"))
                .map(String::as_str)
                == Some("blue"),
            "copy data {:?}",
            copy.data
        );
        let deployments: Api<Deployment> = ns.api();
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        let refs = serde_json::to_string(&primary.spec.as_ref().map(|s| &s.template))?;
        ensure!(
            refs.contains("podinfo-config-primary"),
            "primary does not use the copy: {refs}"
        );

        let recorder = Recorder::start(&api, APP);
        apply(&configmaps, &cm("green")?).await?;
        wait_phase(&api, APP, "Progressing", INIT, &controller).await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        eprintln!("observed: {}", recorder.render());
        let copy = configmaps.get("podinfo-config-primary").await?;
        ensure!(
            copy.data
                .as_ref()
                .and_then(|d| d.get("color"))
                .map(String::as_str)
                == Some("green"),
            "copy not promoted: {:?}",
            copy.data
        );
        Ok(())
    })
    .await
}

/// (12) Kill-and-resume: SIGKILL the controller in Progressing (after an iteration), in Promoting and in
/// Finalising, each time starting a new one; the run still ends Succeeded with one promotion (primary generation
/// +1, one "Copying" event) and no iteration regression.
#[tokio::test]
async fn killed_controller_resumes_the_run() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-kill", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let mut controller = start_controller(&ns.name, &[])?;
        initialised(&ns, &controller, blue_green_canary(APP, "2s", 3, json!([]))).await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();
        let generation = deployments
            .get(&format!("{APP}-primary"))
            .await?
            .metadata
            .generation;

        set_image(&deployments, APP, "6.0.1").await?;
        let kill_points: [(&str, CanaryCondition); 3] = [
            ("Progressing with an iteration", |o| {
                phase(o) == "Progressing" && ctl::step(o).iterations >= 1
            }),
            ("Promoting", |o| phase(o) == "Promoting"),
            ("Finalising", |o| phase(o) == "Finalising"),
        ];
        let mut killed = Vec::new();
        for (n, (what, cond)) in kill_points.into_iter().enumerate() {
            let seen = wait_canary(&api, APP, what, RUN, &controller, cond).await?;
            controller.ensure_running()?;
            controller.kill().await?;
            killed.push(ctl::step(&seen).to_string());
            controller =
                ctl::start_controller_named(&ns.name, &format!("controller-{}", n + 2), &[])?;
        }
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        let steps = recorder.steps();
        eprintln!("killed at: {}", killed.join(", "));
        eprintln!("observed: {}", recorder.render());

        ctl::ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        let copies = ctl::count_events(&ns, APP, "Copying").await?;
        ensure!(copies == 1, "{copies} promotion events");
        let progressing: Vec<i64> = steps
            .iter()
            .filter(|s| s.phase == "Progressing")
            .map(|s| s.iterations)
            .collect();
        ensure!(
            progressing.windows(2).all(|w| w[0] <= w[1]),
            "iterations regressed: {}",
            recorder.render()
        );
        recorder.ensure_promoted_once()?;
        wait_replicas(&deployments, APP, 0, &controller).await?;
        Ok(())
    })
    .await
}

/// (7) HPA: `<hpa>-primary` targets `<target>-primary`.
#[tokio::test]
async fn hpa_gets_a_primary_copy() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-hpa", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let hpas: Api<HorizontalPodAutoscaler> = ns.api();
        apply(&hpas, &e2e::objects::hpa(APP, 2, 4)?).await?;
        let mut canary = blue_green_canary(APP, "2s", 3, json!([]));
        canary["spec"]["autoscalerRef"] = e2e::objects::autoscaler_ref(APP);
        initialised(&ns, &controller, canary).await?;
        let primary = hpas
            .get(&format!("{APP}-primary"))
            .await
            .context("primary HPA")?;
        let spec = primary.spec.context("primary HPA has no spec")?;
        ensure!(
            spec.scale_target_ref.name == format!("{APP}-primary"),
            "primary HPA targets {}",
            spec.scale_target_ref.name
        );
        ensure!(
            spec.min_replicas == Some(2) && spec.max_replicas == 4,
            "primary HPA bounds {:?}/{}",
            spec.min_replicas,
            spec.max_replicas
        );
        Ok(())
    })
    .await
}

/// (8) DaemonSet target: initialised (primary DaemonSet, target parked by the scale-to-zero node selector) and
/// promoted.
#[tokio::test]
async fn daemonset_is_initialised_and_promoted() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-ds", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let name = "podinfo-ds";
        let mut value = serde_json::to_value(App::new(name, "6.0.0", 1).deployment()?)?;
        value["kind"] = json!("DaemonSet");
        if let Some(spec) = value["spec"].as_object_mut() {
            spec.remove("replicas");
        }
        let ds: DaemonSet = serde_json::from_value(value)?;
        let daemonsets: Api<DaemonSet> = ns.api();
        apply(&daemonsets, &ds).await?;
        let mut canary = blue_green_canary(name, "1s", 2, json!([]));
        canary["spec"]["targetRef"]["kind"] = json!("DaemonSet");
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, name, "Initialized", INIT, &controller).await?;
        let primary = daemonsets
            .get(&format!("{name}-primary"))
            .await
            .context("primary DaemonSet")?;
        ensure!(
            template_image(primary.spec.as_ref().map(|s| &s.template)).ends_with(":6.0.0"),
            "primary image"
        );
        let parked = |d: Option<&DaemonSet>| {
            d.and_then(|d| d.spec.as_ref())
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.node_selector.as_ref())
                .is_some_and(|n| n.contains_key("flagger.app/scale-to-zero"))
        };
        wait_for(&daemonsets, name, "parked", Duration::from_secs(30), parked).await?;

        let recorder = Recorder::start(&api, name);
        set_image(&daemonsets, name, "6.0.1").await?;
        wait_phase(&api, name, "Progressing", INIT, &controller).await?;
        wait_phase(&api, name, "Succeeded", RUN, &controller).await?;
        eprintln!("observed: {}", recorder.render());
        let primary = daemonsets.get(&format!("{name}-primary")).await?;
        ensure!(
            template_image(primary.spec.as_ref().map(|s| &s.template)).ends_with(":6.0.1"),
            "primary not promoted"
        );
        wait_for(
            &daemonsets,
            name,
            "parked again",
            Duration::from_secs(30),
            parked,
        )
        .await?;
        Ok(())
    })
    .await
}

/// (11) Dry-run: the controller decides and reports (DryRun events, log lines) but creates no primary and writes
/// no status; the target keeps its replicas.
#[tokio::test]
async fn dry_run_changes_nothing() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-dry", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &["-dry-run"])?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, blue_green_canary(APP, "1s", 2, json!([]))).await?;
        // Its reports are the only thing it may write: a DryRun event about the initialisation.
        wait_event(&ns, APP, "with reason DryRun", INIT, &controller, |e| {
            e.reason.as_deref() == Some("DryRun")
        })
        .await?;
        let deployments: Api<Deployment> = ns.api();
        ensure!(
            deployments
                .get_opt(&format!("{APP}-primary"))
                .await?
                .is_none(),
            "a dry-run controller created the primary"
        );
        let target = deployments.get(APP).await?;
        ensure!(
            target.spec.as_ref().and_then(|s| s.replicas) == Some(1),
            "a dry-run controller scaled the target"
        );
        for svc in [
            format!("{APP}-primary"),
            format!("{APP}-canary"),
            APP.to_string(),
        ] {
            ensure!(
                ns.api::<Service>().get_opt(&svc).await?.is_none(),
                "a dry-run controller created Service {svc}"
            );
        }
        let canary = canaries(&ns).get(APP).await?;
        ensure!(
            canary.data.get("status").is_none_or(Value::is_null),
            "a dry-run controller wrote the status: {}",
            ctl::status(&canary)
        );
        ensure!(
            canary.finalizers().is_empty(),
            "finalizers {:?}",
            canary.finalizers()
        );
        ensure!(
            controller.log().contains("dry-run"),
            "nothing logged as dry-run; log tail:\n{}",
            controller.log_tail()
        );
        Ok(())
    })
    .await
}

/// A provider flagger-rs has no router for is refused before anything is written: Valid=False naming the
/// provider, a Warning event, and the cluster as it was — no primary, no generated Service, the user's own apex
/// Service still selecting their pods, the target not scaled, no finalizer. Every name the Canary schema allows has
/// a router now, so the provider comes from the `-mesh-provider` flag: an SMI version no router writes.
#[tokio::test]
async fn unimplemented_provider_leaves_the_cluster_untouched() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-unimpl", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let mut controller = start_controller(&ns.name, &["-mesh-provider=smi:v1alpha4"])?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let user_service: Service = serde_json::from_value(json!({
            "metadata": {"name": APP},
            "spec": {"selector": {"app": APP}, "ports": [{"name": "http", "port": 9898}]},
        }))?;
        let before = apply(&ns.api::<Service>(), &user_service).await?;
        let mut canary = blue_green_canary(APP, "1s", 2, json!([]));
        // No spec.provider: the flag's default applies.
        canary["spec"]
            .as_object_mut()
            .and_then(|spec| spec.remove("provider"));
        create_canary(&ns, canary).await?;
        let obj = wait_canary(&canaries(&ns), APP, "Valid=False", INIT, &controller, |o| {
            condition(o, "Valid").is_some_and(|(s, _, _)| s == "False")
        })
        .await?;
        let valid = condition(&obj, "Valid");
        ensure!(
            valid
                .as_ref()
                .is_some_and(|(_, reason, message)| reason == "NotImplemented"
                    && message.contains(
                        "provider smi:v1alpha4 (the -mesh-provider default) is not implemented"
                    )),
            "Valid condition: {valid:?}"
        );
        let ev = wait_event(&ns, APP, "naming the provider", INIT, &controller, |e| {
            e.type_.as_deref() == Some("Warning")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("smi:v1alpha4"))
        })
        .await?;
        eprintln!("warning event: {:?}", ev.message);
        ensure!(
            ns.api::<Deployment>()
                .get_opt(&format!("{APP}-primary"))
                .await?
                .is_none(),
            "a primary was created for a provider that cannot run"
        );
        for svc in [format!("{APP}-primary"), format!("{APP}-canary")] {
            ensure!(
                ns.api::<Service>().get_opt(&svc).await?.is_none(),
                "Service {svc} was created for a provider that cannot run"
            );
        }
        let after = ns.api::<Service>().get(APP).await?;
        ensure!(
            after.spec.as_ref().and_then(|s| s.selector.clone())
                == before.spec.as_ref().and_then(|s| s.selector.clone())
                && after.metadata.resource_version == before.metadata.resource_version,
            "the user's apex Service was changed: {:?}",
            after.spec
        );
        let target = ns.api::<Deployment>().get(APP).await?;
        ensure!(
            target.spec.as_ref().and_then(|s| s.replicas) == Some(1),
            "the target was scaled"
        );
        let canary = canaries(&ns).get(APP).await?;
        ensure!(
            canary.finalizers().is_empty(),
            "finalizers {:?}",
            canary.finalizers()
        );
        controller.ensure_running()?;
        Ok(())
    })
    .await
}

/// Invalid input: `service.port: 0` passes the schema but not the controller: Valid=False with a Warning
/// event; the controller keeps running and initialises a valid canary next to it.
#[tokio::test]
async fn invalid_canary_is_reported_and_others_proceed() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("ctl-invalid", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let mut controller = start_controller(&ns.name, &[])?;
        let bad = "broken";
        deploy(&ns, &App::new(bad, "6.0.0", 1), |_| {}).await?;
        let mut canary = blue_green_canary(bad, "1s", 2, json!([]));
        canary["spec"]["service"]["port"] = json!(0);
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        let obj = wait_canary(&api, bad, "Valid=False", INIT, &controller, |o| {
            condition(o, "Valid").is_some_and(|(s, _, _)| s == "False")
        })
        .await?;
        eprintln!("Valid condition: {:?}", condition(&obj, "Valid"));
        let ev = wait_event(&ns, bad, "of type Warning", INIT, &controller, |e| {
            e.type_.as_deref() == Some("Warning")
        })
        .await?;
        eprintln!("warning event: {:?}", ev.message);
        ensure!(
            ns.api::<Deployment>()
                .get_opt(&format!("{bad}-primary"))
                .await?
                .is_none(),
            "an invalid canary was initialised"
        );

        initialised(&ns, &controller, blue_green_canary(APP, "1s", 2, json!([]))).await?;
        controller.ensure_running()?;
        Ok(())
    })
    .await
}
