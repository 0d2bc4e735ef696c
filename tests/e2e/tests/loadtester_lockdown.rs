//! The loadtester's `-namespace-regexp` against the real controller (issue 15): it judges the namespace the
//! controller puts in the webhook payload, which is always the canary's own; nothing a canary's author writes
//! in the webhook changes it. Run with `hack/e2e lockdown` (skipped, passing, when FLAGGER_E2E is unset).

use std::time::Duration;

use anyhow::ensure;
use e2e::controller::{
    self as ctl, Loadtester, blue_green_canary, canaries, create_canary, deploy, events_for,
    set_image, start_controller_named, wait_phase,
};
use e2e::objects::App;
use e2e::{TestNamespace, skip_unless_e2e, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;

const APP: &str = "podinfo";
const INIT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(90);

/// A run whose pre-rollout hook asks the loadtester to run a command, with metadata that tries to name
/// another namespace; returns once the canary is `Initialized` and the image changed.
async fn start_run(
    ns: &TestNamespace,
    controller: &ctl::Proc,
    lt: &Loadtester,
    claim: &str,
) -> e2e::Result<()> {
    let hooks = json!([{"name": "smoke", "type": "pre-rollout", "url": lt.at("/"), "timeout": "10s",
        "metadata": {"type": "bash", "cmd": "echo smoke", "namespace": claim}}]);
    deploy(ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
    create_canary(ns, blue_green_canary(APP, "1s", 2, hooks)).await?;
    wait_phase(&canaries(ns), APP, "Initialized", INIT, controller).await?;
    set_image(&ns.api::<Deployment>(), APP, "6.0.1").await?;
    Ok(())
}

/// A loadtester locked to namespace A: A's canary runs its command and is promoted; B's canary, whose
/// webhook metadata claims namespace A, is refused (403) because the controller reports B, and rolls back.
#[tokio::test]
async fn lockdown_namespace_regexp_judges_the_namespace_the_controller_reports() -> e2e::Result<()>
{
    skip_unless_e2e!();
    with_namespace("lockdown-a", |a| async move {
        with_namespace("lockdown-b", |b| async move {
            ctl::install_crds(&a.client).await?;
            let lt = Loadtester::start_with(&a.name, &[&format!("-namespace-regexp=^{}$", a.name)])
                .await?;
            let controller_a = start_controller_named(&a.name, "controller-a", &[])?;
            let controller_b = start_controller_named(&b.name, "controller-b", &[])?;
            start_run(&a, &controller_a, &lt, &a.name).await?;
            start_run(&b, &controller_b, &lt, &a.name).await?;
            let (canaries_a, canaries_b) = (canaries(&a), canaries(&b));
            let (promoted, failed) = tokio::join!(
                wait_phase(&canaries_a, APP, "Succeeded", RUN, &controller_a),
                wait_phase(&canaries_b, APP, "Failed", RUN, &controller_b),
            );
            promoted?;
            failed?;
            let events = events_for(&b, "Canary", APP).await?;
            ensure!(
                events
                    .iter()
                    .any(|(_, _, m, _)| m.contains("smoke") && m.contains("Forbidden")),
                "B's refused hook is not in its events: {events:#?}"
            );
            let log = lt.proc.log();
            ensure!(
                log.contains("namespace not allowed") && log.contains(&b.name),
                "the loadtester did not log B's refusal:\n{}",
                lt.proc.log_tail()
            );
            let primary: Api<Deployment> = b.api();
            let image = ctl::image_of(&primary.get(&format!("{APP}-primary")).await?);
            ensure!(
                image.ends_with(":6.0.0"),
                "B's primary {image} after the refused run"
            );
            Ok(())
        })
        .await
    })
    .await
}
