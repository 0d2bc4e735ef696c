//! Production hardening on the local cluster (issue 15): what the controller keeps about a deleted
//! canary, how many Events a stuck canary leaves, and what a webhook answer can put into them. Run with
//! `hack/e2e hardening` (skipped, passing, when FLAGGER_E2E is unset).

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::bench::free_port;
use e2e::controller::{
    self as ctl, Loadtester, blue_green_canary, canaries, create_canary, deploy, events_for,
    set_image, start_controller, wait_event, wait_phase,
};
use e2e::hooks::HookCatcher;
use e2e::objects::App;
use e2e::{TestNamespace, poll_until, skip_unless_e2e, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

const APP: &str = "podinfo";
/// Initialisation: primary rollout (kwok pods are Ready at once) plus one tick.
const INIT: Duration = Duration::from_secs(60);
/// A failing run of a few 1 s ticks.
const RUN: Duration = Duration::from_secs(90);

/// Deploys the target and `canary`, waits for `Initialized`, then starts a run with a new image.
async fn start_run(ns: &TestNamespace, controller: &ctl::Proc, canary: Value) -> e2e::Result<()> {
    deploy(ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
    create_canary(ns, canary).await?;
    wait_phase(&canaries(ns), APP, "Initialized", INIT, controller).await?;
    let deployments: Api<Deployment> = ns.api();
    set_image(&deployments, APP, "6.0.1").await?;
    Ok(())
}

async fn scrape(port: u16) -> e2e::Result<String> {
    let (status, body) =
        e2e::traffic::get(&format!("http://127.0.0.1:{port}/metrics"), None).await?;
    ensure!(status == 200, "GET /metrics: HTTP {status}");
    Ok(body)
}

/// The controller's `/metrics` lines about namespace `ns`.
fn series_of(metrics: &str, ns: &str) -> Vec<String> {
    let label = format!("namespace=\"{ns}\"");
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .map(String::from)
        .collect()
}

/// A Failed canary is deleted: every series about it leaves `/metrics` (before, `phase="Failed"` stayed at 1
/// and the shipped `CanaryFailed` alert fired until the controller restarted).
#[tokio::test]
async fn hardening_deleted_canary_leaves_no_series() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("hard-forget", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let catcher = HookCatcher::start().await?;
        let port = free_port()?;
        let controller = start_controller(&ns.name, &[&format!("-port={port}")])?;
        let hooks = json!([{"name": "acceptance", "type": "pre-rollout", "url": catcher.at("/fail")}]);
        start_run(&ns, &controller, blue_green_canary(APP, "1s", 3, hooks)).await?;
        wait_phase(&canaries(&ns), APP, "Failed", RUN, &controller).await?;

        let failed = format!(
            "flagger_canary_phase{{name=\"{APP}\",namespace=\"{}\",canary=\"{APP}\",phase=\"Failed\"}} 1",
            ns.name
        );
        let before = scrape(port).await?;
        ensure!(before.contains(&failed), "no {failed:?} in\n{before}");
        let kept = series_of(&before, &ns.name).len();

        canaries(&ns)
            .delete(APP, &DeleteParams::default())
            .await
            .context("deleting the Canary")?;
        // /metrics has no watch: a bounded poll. The deletion's watch event forgets the canary at once;
        // the bound is far above one tick only so a busy machine does not fail the test.
        let left = poll_until("the deleted canary's series gone", Duration::from_secs(30), || async {
            let now = scrape(port).await?;
            let left = series_of(&now, &ns.name);
            Ok(left.is_empty().then_some(left))
        })
        .await
        .with_context(|| format!("controller log tail:\n{}", controller.log_tail()))?;
        eprintln!("{kept} series about the canary before the deletion, {} after", left.len());
        Ok(())
    })
    .await
}

/// A rollout webhook that always fails, under a threshold the run never reaches, fails the same check on
/// each of 100 ticks with the same Warning: that must leave one Event whose count is the number of ticks,
/// not one Event per tick.
#[tokio::test]
async fn hardening_hundred_repeats_of_an_event_leave_one_event() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("hard-events", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let mut catcher = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &[])?;
        let hooks = json!([{"name": "load", "type": "rollout", "url": catcher.at("/fail")}]);
        let mut canary = blue_green_canary(APP, "1s", 3, hooks);
        canary["spec"]["analysis"]["threshold"] = json!(1000);
        start_run(&ns, &controller, canary).await?;
        const TICKS: usize = 100;
        catcher
            .wait_count("/fail", TICKS, Duration::from_secs(TICKS as u64 * 3))
            .await?;
        let message = format!(
            "Halt {APP}.{} advancement external check load failed {} returned HTTP 500",
            ns.name,
            catcher.at("/fail")
        );
        // Past the burst, the writes of one canary's Events are spaced by the rate limit (30 s): the count
        // catches up with the ticks at the next write.
        let event = wait_event(
            &ns,
            APP,
            "with count 100",
            Duration::from_secs(90),
            &controller,
            |e| {
                e.message.as_deref() == Some(message.as_str())
                    && e.count.unwrap_or(1) >= TICKS as i32
            },
        )
        .await?;
        let failed_ticks = catcher.count("/fail");
        let same: Vec<_> = events_for(&ns, "Canary", APP)
            .await?
            .into_iter()
            .filter(|(_, _, m, _)| *m == message)
            .collect();
        eprintln!(
            "{failed_ticks} failing ticks: {} Event(s) {:?}, count {:?}",
            same.len(),
            event.metadata.name,
            event.count
        );
        ensure!(
            same.len() == 1,
            "one Event for the repeated message, found {same:#?}"
        );
        let count = same[0].3;
        ensure!(
            (TICKS as i32..=failed_ticks as i32).contains(&count),
            "count {count} after {failed_ticks} failing ticks"
        );
        Ok(())
    })
    .await
}

const TOKEN: &str = "lt-token-2718281828";

/// A Secret `lt-token` holding [`TOKEN`] under `token`, and the webhook field naming it.
async fn token_secret(ns: &TestNamespace) -> e2e::Result<Value> {
    let secrets: Api<Secret> = ns.api();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "lt-token"},
        "stringData": {"token": TOKEN},
    }))?;
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .context("creating the Secret")?;
    Ok(json!({"name": "lt-token", "key": "token"}))
}

/// A receiver that echoes the request's headers in its error page: the token the controller sent it from a
/// Secret must not reach the canary's Events (nor the controller's log).
#[tokio::test]
async fn hardening_a_secret_echoed_by_a_webhook_stays_out_of_events() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("hard-secret", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let catcher = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &[])?;
        let token = token_secret(&ns).await?;
        let hooks = json!([{"name": "acceptance", "type": "pre-rollout", "url": catcher.at("/echo"),
            "bearerTokenSecretRef": token}]);
        start_run(&ns, &controller, blue_green_canary(APP, "1s", 3, hooks)).await?;
        wait_phase(&canaries(&ns), APP, "Failed", RUN, &controller).await?;
        let events = events_for(&ns, "Canary", APP).await?;
        let echoed: Vec<_> = events
            .iter()
            .filter(|(_, _, m, _)| m.contains("acceptance"))
            .collect();
        eprintln!("events about the echoing hook: {echoed:#?}");
        ensure!(
            echoed
                .iter()
                .any(|(_, _, m, _)| m.contains("Bearer [redacted]")),
            "the echoed header should be in the events, redacted: {events:#?}"
        );
        ensure!(
            events.iter().all(|(_, _, m, _)| !m.contains(TOKEN)),
            "the token is in an event: {events:#?}"
        );
        ensure!(
            !controller.log().contains(TOKEN),
            "the token is in the controller's log"
        );
        Ok(())
    })
    .await
}

/// The loadtester started with `-bearer-token` refuses calls without it, and the controller sends it from
/// the Secret a webhook names: the run's pre-rollout and rollout commands run and the canary is promoted.
#[tokio::test]
async fn hardening_webhooks_call_a_loadtester_that_requires_a_token() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("hard-token", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let lt = Loadtester::start_with(&ns.name, &[&format!("-bearer-token={TOKEN}")]).await?;
        let anonymous = lt
            .gate("/gate/check", APP, &ns.name)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        ensure!(
            anonymous.contains("401"),
            "a call without the token: {anonymous:?}"
        );
        let controller = start_controller(&ns.name, &[])?;
        let token = token_secret(&ns).await?;
        let hooks = json!([
            {"name": "smoke", "type": "pre-rollout", "url": lt.at("/"), "timeout": "10s",
             "bearerTokenSecretRef": token, "metadata": {"type": "bash", "cmd": "echo smoke"}},
            {"name": "load", "type": "rollout", "url": lt.at("/"), "timeout": "10s",
             "bearerTokenSecretRef": token, "metadata": {"cmd": "echo load {{ canaryWeight }}"}},
        ]);
        start_run(&ns, &controller, blue_green_canary(APP, "1s", 2, hooks)).await?;
        wait_phase(&canaries(&ns), APP, "Succeeded", RUN, &controller).await?;
        Ok(())
    })
    .await
}
