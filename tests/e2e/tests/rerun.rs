//! Runs that start over on the local cluster: a tracked ConfigMap edited again mid-analysis restarts the analysis,
//! and the `flagger.app/reset` annotation re-runs a failed revision and restarts a running one.
//! Run with `hack/e2e` (skipped, passing, when FLAGGER_E2E is unset).

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{
    self as ctl, Recorder, blue_green_canary, canaries, count_events, create_canary, deploy,
    image_of, phase, set_image, start_controller, wait_canary, wait_phase, wait_replicas,
};
use e2e::hooks::HookCatcher;
use e2e::objects::App;
use e2e::{apply, skip_unless_e2e, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

const INIT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(90);
const APP: &str = "podinfo";
const CONFIG: &str = "podinfo-config";

fn config(color: &str) -> e2e::Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIG},
        "data": {"color": color},
    }))?)
}

fn color_of(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref()?.get("color").map(String::as_str)
}

fn last_handled_reset(o: &DynamicObject) -> Option<&str> {
    ctl::status(o)
        .get("lastHandledReset")
        .and_then(Value::as_str)
}

async fn annotate_reset(api: &Api<DynamicObject>, token: &str) -> e2e::Result<()> {
    let patch = json!({"metadata": {"annotations": {"flagger.app/reset": token}}});
    api.patch(APP, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("annotating flagger.app/reset={token}"))?;
    Ok(())
}

/// The ConfigMap edited during `Progressing` restarts the analysis: back to iteration 0 with a "Restarting
/// analysis" event, then one promotion of the last data.
#[tokio::test]
async fn config_edit_mid_analysis_restarts_it() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("rerun-config", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let configmaps: Api<ConfigMap> = ns.api();
        apply(&configmaps, &config("blue")?).await?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |d| {
            d["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
                json!([{"configMapRef": {"name": CONFIG}}]);
        })
        .await?;
        create_canary(&ns, blue_green_canary(APP, "2s", 4, json!([]))).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        let deployments: Api<Deployment> = ns.api();
        let generation = deployments
            .get(&format!("{APP}-primary"))
            .await?
            .metadata
            .generation;
        let recorder = Recorder::start(&api, APP);

        apply(&configmaps, &config("green")?).await?;
        let seen = wait_canary(&api, APP, "two iterations in", RUN, &controller, |o| {
            phase(o) == "Progressing" && ctl::step(o).iterations >= 2
        })
        .await?;
        let before = ctl::step(&seen).iterations;
        apply(&configmaps, &config("red")?).await?;
        wait_canary(
            &api,
            APP,
            "restarted at iteration 0",
            RUN,
            &controller,
            |o| phase(o) == "Progressing" && ctl::step(o).iterations == 0,
        )
        .await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        eprintln!(
            "restarted from iteration {before}; observed: {}",
            recorder.render()
        );

        let restarts = count_events(&ns, APP, "New revision detected! Restarting analysis").await?;
        ensure!(restarts == 1, "{restarts} restart events");
        let copy = configmaps.get(&format!("{CONFIG}-primary")).await?;
        ensure!(
            color_of(&copy) == Some("red"),
            "primary ConfigMap {:?}, want the last edit",
            copy.data
        );
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            primary.metadata.generation == generation.map(|g| g + 1),
            "primary generation {:?}, want one promotion after {generation:?}",
            primary.metadata.generation
        );
        recorder.ensure_promoted_once()?;
        Ok(())
    })
    .await
}

/// (S20) A revision failed by a closed pre-rollout gate is run again by `flagger.app/reset=1` once the gate is
/// open; `flagger.app/reset=2` during that run restarts it; the revision is promoted once.
#[tokio::test]
async fn reset_annotation_reruns_and_restarts() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("rerun-reset", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &[])?;
        let spec_hooks = json!([
            {"name": "acceptance", "type": "pre-rollout", "url": hooks.at("/gate"), "timeout": "5s"},
        ]);
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, blue_green_canary(APP, "2s", 4, spec_hooks)).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        let deployments: Api<Deployment> = ns.api();
        let recorder = Recorder::start(&api, APP);

        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Failed", RUN, &controller).await?;
        wait_replicas(&deployments, APP, 0, &controller).await?;

        hooks.open_gate("/gate");
        annotate_reset(&api, "1").await?;
        let seen = wait_canary(&api, APP, "re-run after reset 1", RUN, &controller, |o| {
            phase(o) == "Progressing" && ctl::step(o).iterations >= 2
        })
        .await?;
        ensure!(
            last_handled_reset(&seen) == Some("1"),
            "lastHandledReset {:?}",
            last_handled_reset(&seen)
        );
        annotate_reset(&api, "2").await?;
        let seen = wait_canary(&api, APP, "restarted by reset 2", RUN, &controller, |o| {
            phase(o) == "Progressing" && ctl::step(o).iterations == 0 && last_handled_reset(o) == Some("2")
        })
        .await?;
        ensure!(
            ctl::step(&seen).weight == 0 && ctl::step(&seen).failed_checks == 0,
            "restart left {}",
            ctl::step(&seen)
        );
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        eprintln!("observed: {}", recorder.render());

        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.1"),
            "primary image {}",
            image_of(&primary)
        );
        ensure!(
            primary.metadata.generation == Some(2),
            "primary generation {:?}, want the initial write and one promotion",
            primary.metadata.generation
        );
        recorder.ensure_promoted_once()?;
        Ok(())
    })
    .await
}
