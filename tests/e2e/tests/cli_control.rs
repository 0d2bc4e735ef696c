//! `flagger-rs promote|abort|pause|resume|retry` on the local cluster (issue 19), each while a GitOps-style
//! loop server-side applies the original Canary manifest every 2 s under its own field manager, as Flux
//! would: the request lives in metadata annotations the loop never sets, so the loop does not undo it.
//! Each action takes effect once, with one Kubernetes Event and one alert (an AlertProvider posting to a
//! receiver in the test) naming who asked, as the API server authenticated them; asking again is answered
//! and changes nothing.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::bench::{Receiver, wait_local};
use e2e::controller::{
    self as ctl, Loadtester, blue_green_canary, canaries, count_events, create_canary, deploy,
    image_of, primary_generation, set_image, start_controller, status, step, wait_canary,
    wait_phase,
};
use e2e::objects::App;
use e2e::{TestNamespace, skip_unless_e2e, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::Notify;

const APP: &str = "podinfo";
/// Initialisation: primary rollout (kwok pods are Ready at once) plus one tick.
const INIT: Duration = Duration::from_secs(60);
/// A run of a few 1 s ticks, a promotion or a rollback.
const RUN: Duration = Duration::from_secs(90);
/// From a request to its answer, its alert, or a few more ticks.
const ANSWER: Duration = Duration::from_secs(60);
/// Iterations no run in these tests reaches by itself: only a request ends it.
const ENDLESS: u32 = 10_000;
/// The GitOps loop: an apply every 2 s, at most this many (a bound far above any test's length).
const SYNC_EVERY: Duration = Duration::from_secs(2);
const MAX_SYNCS: u32 = 300;

/// A Flux-like loop: server-side applies `manifest` (the Canary as committed) every 2 s with field
/// manager `flux`, until stopped.
struct GitOps {
    stop: Arc<Notify>,
    applied: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<e2e::Result<u32>>,
}

impl GitOps {
    fn start(api: Api<DynamicObject>, manifest: Value) -> GitOps {
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let applied = Arc::new(AtomicU32::new(0));
        let count = applied.clone();
        let task = tokio::spawn(async move {
            let object: DynamicObject = serde_json::from_value(manifest)?;
            let params = PatchParams::apply("flux").force();
            for applied in 0..MAX_SYNCS {
                api.patch(APP, &params, &Patch::Apply(&object))
                    .await
                    .context("the GitOps loop's apply")?;
                count.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    () = stopped.notified() => return Ok(applied + 1),
                    () = tokio::time::sleep(SYNC_EVERY) => {}
                }
            }
            Ok(MAX_SYNCS)
        });
        GitOps {
            stop,
            applied,
            task,
        }
    }

    /// Stops the loop; how many applies it made.
    async fn stop(self) -> e2e::Result<u32> {
        self.stop.notify_one();
        self.task.await?
    }
}

/// The namespace's controller, the alert receiver, the GitOps loop and who the test client is.
struct Scene {
    controller: ctl::Proc,
    alerts: Receiver,
    gitops: GitOps,
    user: String,
}

/// An AlertProvider of type slack posting every severity to a receiver in the test.
async fn alert_receiver(ns: &TestNamespace) -> e2e::Result<Receiver> {
    let receiver = Receiver::start().await?;
    e2e::controller::create_slack_provider(
        ns,
        "on-call",
        &format!("{}/slack", receiver.url),
        Some("flagger-rs"),
    )
    .await?;
    Ok(receiver)
}

/// Who the API server says the test's client is: the name the controller's answers must carry.
async fn whoami(ns: &TestNamespace) -> e2e::Result<String> {
    let reviews: Api<SelfSubjectReview> = Api::all(ns.client.clone());
    let review = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .context("SelfSubjectReview")?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .context("the cluster did not say who the test client is")
}

/// A blue/green Canary of 1 s ticks alerting on every severity.
fn manifest(iterations: u32, webhooks: Value) -> Value {
    let mut canary = blue_green_canary(APP, "1s", iterations, webhooks);
    canary["spec"]["analysis"]["alerts"] =
        json!([{"name": "on-call", "severity": "info", "providerRef": {"name": "on-call"}}]);
    canary
}

/// Target, Canary, controller, receiver; initialised; a new revision started; the GitOps loop running.
async fn scene(ns: &TestNamespace, canary: Value) -> e2e::Result<Scene> {
    ctl::install_crds(&ns.client).await?;
    let alerts = alert_receiver(ns).await?;
    let controller = start_controller(&ns.name, &[])?;
    deploy(ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
    create_canary(ns, canary.clone()).await?;
    wait_phase(&canaries(ns), APP, "Initialized", INIT, &controller).await?;
    let gitops = GitOps::start(canaries(ns), canary);
    set_image(&ns.api::<Deployment>(), APP, "6.0.1").await?;
    Ok(Scene {
        controller,
        alerts,
        gitops,
        user: whoami(ns).await?,
    })
}

/// What `flagger-rs ARGS -n NS` did: exit success, stdout, stderr.
async fn cli(ns: &TestNamespace, args: &[&str]) -> e2e::Result<(bool, String, String)> {
    let out = tokio::process::Command::new(ctl::binary()?)
        .args(args)
        .args(["-n", &ns.name, "--timeout", "60s"])
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running flagger-rs {args:?}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs a request that must be accepted; its answer names the test's user.
async fn accepted(
    ns: &TestNamespace,
    scene: &Scene,
    args: &[&str],
    answer: &str,
) -> e2e::Result<()> {
    let (ok, out, err) = cli(ns, args).await?;
    let want = format!("{answer} by {}", scene.user);
    ensure!(
        ok && out.contains(&want),
        "flagger-rs {args:?}: success {ok}, want {want:?}\nstdout: {out}\nstderr: {err}\ncontroller log tail:\n{}",
        scene.controller.log_tail()
    );
    Ok(())
}

/// Runs a request that must be refused with `why`, changing nothing.
async fn refused(ns: &TestNamespace, args: &[&str], why: &str) -> e2e::Result<()> {
    let (ok, out, err) = cli(ns, args).await?;
    ensure!(
        !ok && err.contains(why),
        "flagger-rs {args:?}: success {ok}, want a refusal saying {why:?}\nstdout: {out}\nstderr: {err}"
    );
    Ok(())
}

/// Exactly one Event and one alert carry `answer` (e.g. "Promotion requested by alice"). Called after a
/// later request was answered: the controller answers one request per tick and sends a tick's alerts
/// before the next tick, so any repeat of the first would be there by now.
async fn once(ns: &TestNamespace, scene: &Scene, answer: &str) -> e2e::Result<()> {
    let text = format!("{answer} by {}", scene.user);
    let events = count_events(ns, APP, &format!("{APP}.{}: {text}", ns.name)).await?;
    ensure!(events == 1, "{events} events {text:?}");
    let alerts = wait_local("the request's alert", ANSWER, || {
        let hits = scene.alerts.hits();
        let n = hits.iter().filter(|h| h.body.contains(&text)).count();
        (n > 0).then_some(n)
    })
    .await
    .with_context(|| format!("alerts: {:#?}", scene.alerts.hits()))?;
    ensure!(alerts == 1, "{alerts} alerts {text:?}");
    let hit = scene
        .alerts
        .hits()
        .into_iter()
        .find(|h| h.body.contains(&text))
        .context("the alert")?;
    let body: Value = serde_json::from_str(&hit.body).context("Slack payload is not JSON")?;
    ensure!(
        body.to_string().contains("Requested by") && body.to_string().contains(&scene.user),
        "the alert's fields do not name the requester: {body}"
    );
    Ok(())
}

/// After the last request, the loop re-applies the original manifest twice more; then the request is still
/// there and answered, the phase is `phase`, and each of `answers` still has exactly one event and alert.
async fn finish(
    ns: &TestNamespace,
    scene: Scene,
    phase: &str,
    answers: &[&str],
) -> e2e::Result<()> {
    let api = canaries(ns);
    let before = api.get(APP).await?;
    let from = scene.gitops.applied.load(Ordering::SeqCst);
    wait_local("two more applies of the original manifest", ANSWER, || {
        (scene.gitops.applied.load(Ordering::SeqCst) >= from + 2).then_some(())
    })
    .await?;
    let after = api.get(APP).await?;
    let annotations = after.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        annotations.get("flagger-rs.dev/request-id")
            == before
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("flagger-rs.dev/request-id")),
        "the GitOps loop changed the request: {annotations:?}"
    );
    ensure!(
        step(&after).phase == phase
            && status(&after)["lastRequest"] == status(&before)["lastRequest"],
        "after the loop's applies: {}, lastRequest {}",
        step(&after),
        status(&after)["lastRequest"]
    );
    for answer in answers {
        once(ns, &scene, answer).await?;
    }
    let syncs = scene.gitops.stop().await?;
    eprintln!("GitOps loop: {syncs} applies of the original manifest during the test");
    Ok(())
}

fn iterations(canary: &DynamicObject) -> i64 {
    step(canary).iterations
}

#[tokio::test]
async fn cli_control_promote_under_a_gitops_loop_promotes_once_and_a_second_promote_changes_nothing()
-> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("cli-promote", |ns| async move {
        let scene = scene(&ns, manifest(ENDLESS, json!([]))).await?;
        let api = canaries(&ns);
        let deployments: Api<Deployment> = ns.api();
        wait_canary(&api, APP, "progressing", RUN, &scene.controller, |c| {
            step(c).phase == "Progressing" && iterations(c) >= 2
        })
        .await?;
        let generation = primary_generation(&deployments, APP).await?;
        accepted(
            &ns,
            &scene,
            &["promote", APP, "--yes"],
            "Promotion requested",
        )
        .await?;
        wait_phase(&api, APP, "Succeeded", RUN, &scene.controller).await?;
        ctl::ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;

        let before = api.get(APP).await?;
        refused(&ns, &["promote", APP, "--yes"], "already promoted").await?;
        let after = api.get(APP).await?;
        ensure!(step(&after).phase == "Succeeded", "phase {}", step(&after));
        ensure!(
            status(&after)["lastRequest"]["accepted"] == false,
            "lastRequest: {}",
            status(&after)["lastRequest"]
        );
        ensure!(
            primary_generation(&deployments, APP).await? == generation.map(|g| g + 1),
            "the second promote wrote the primary again"
        );
        ensure!(
            status(&after)["lastPromotedSpec"] == status(&before)["lastPromotedSpec"],
            "the second promote changed the promoted revision"
        );
        finish(&ns, scene, "Succeeded", &["Promotion requested"]).await
    })
    .await
}

#[tokio::test]
async fn cli_control_abort_under_a_gitops_loop_rolls_back_once() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("cli-abort", |ns| async move {
        let scene = scene(&ns, manifest(ENDLESS, json!([]))).await?;
        let api = canaries(&ns);
        let deployments: Api<Deployment> = ns.api();
        wait_canary(&api, APP, "progressing", RUN, &scene.controller, |c| {
            step(c).phase == "Progressing" && iterations(c) >= 1
        })
        .await?;
        accepted(&ns, &scene, &["abort", APP], "Rollback requested").await?;
        wait_phase(&api, APP, "Failed", RUN, &scene.controller).await?;
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.0"),
            "the primary changed: {}",
            image_of(&primary)
        );
        refused(&ns, &["abort", APP], "already rolled back").await?;
        let rollbacks = count_events(&ns, APP, "Canary failed!").await?;
        ensure!(rollbacks == 1, "{rollbacks} rollbacks");
        finish(&ns, scene, "Failed", &["Rollback requested"]).await
    })
    .await
}

#[tokio::test]
async fn cli_control_pause_holds_the_run_under_a_gitops_loop_while_checks_run_and_resume_goes_on()
-> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("cli-pause", |ns| async move {
        // A rollout check the test sees: every analysis tick posts to the receiver's /check.
        let checks = Receiver::start().await?;
        let hook = json!([{"name": "smoke", "type": "rollout", "url": format!("{}/check", checks.url),
            "timeout": "5s"}]);
        let scene = scene(&ns, manifest(ENDLESS, hook)).await?;
        let api = canaries(&ns);
        wait_canary(&api, APP, "progressing", RUN, &scene.controller, |c| {
            step(c).phase == "Progressing" && iterations(c) >= 1
        })
        .await?;
        accepted(&ns, &scene, &["pause", APP], "Pause requested").await?;
        let held = api.get(APP).await?;
        ensure!(
            status(&held)["pausedBy"] == scene.user.as_str(),
            "pausedBy: {}",
            status(&held)["pausedBy"]
        );
        let at = iterations(&held);
        let seen = checks.hits().len();
        // Three more checks ran (a tick each) while paused...
        wait_local("three checks while paused", ANSWER, || {
            (checks.hits().len() >= seen + 3).then_some(())
        })
        .await
        .with_context(|| scene.controller.log_tail())?;
        refused(&ns, &["pause", APP], "already paused").await?;
        // ...and the run took no step.
        let still = api.get(APP).await?;
        ensure!(
            step(&still).phase == "Progressing" && iterations(&still) == at,
            "paused at iteration {at}, now {}",
            step(&still)
        );
        accepted(&ns, &scene, &["resume", APP], "Resume requested").await?;
        wait_canary(&api, APP, "stepping again", RUN, &scene.controller, |c| {
            iterations(c) > at
        })
        .await?;
        let resumed = api.get(APP).await?;
        ensure!(status(&resumed).get("pausedBy").is_none(), "still paused");
        refused(&ns, &["resume", APP], "not paused").await?;
        finish(
            &ns,
            scene,
            "Progressing",
            &["Pause requested", "Resume requested"],
        )
        .await
    })
    .await
}

#[tokio::test]
async fn cli_control_retry_under_a_gitops_loop_runs_the_failed_revision_again_once()
-> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("cli-retry", |ns| async move {
        // The pre-rollout check passes once the test creates this file: the first run fails, the retry passes.
        let flag = std::env::temp_dir().join(format!("flagger-rs-e2e-{}-ready", ns.name));
        let _ = std::fs::remove_file(&flag);
        let lt = Loadtester::start(&ns.name).await?;
        let hook = json!([{"name": "acceptance-test", "type": "pre-rollout", "url": lt.at("/"),
            "timeout": "5s", "metadata": {"type": "bash", "cmd": format!("test -e {}", flag.display())}}]);
        let scene = scene(&ns, manifest(2, hook)).await?;
        let api = canaries(&ns);
        let deployments: Api<Deployment> = ns.api();
        wait_phase(&api, APP, "Failed", RUN, &scene.controller).await?;
        refused(&ns, &["promote", APP, "--yes"], "`retry` analyses this revision again").await?;
        let generation = primary_generation(&deployments, APP).await?;
        std::fs::write(&flag, "ready").context("creating the flag file")?;
        accepted(&ns, &scene, &["retry", APP], "Retry requested").await?;
        wait_phase(&api, APP, "Succeeded", RUN, &scene.controller).await?;
        ctl::ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        refused(&ns, &["retry", APP], "only a failed canary can be retried").await?;
        let starts = count_events(&ns, APP, "New revision detected!").await?;
        ensure!(starts == 2, "{starts} run starts, want the first run and one retry");
        let _ = std::fs::remove_file(&flag);
        finish(&ns, scene, "Succeeded", &["Retry requested"]).await
    })
    .await
}
