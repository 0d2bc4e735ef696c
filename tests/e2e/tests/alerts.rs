//! Rollback notifications on the local cluster (issue 8): a canary whose pre-rollout webhook exits 1 is rolled
//! back, and
//! - the controller's `/metrics`, scraped by the cluster's Prometheus with deploy/monitoring/rules.yaml loaded
//!   (hack/cluster/up; group interval 1 s), make `CanaryRollback` fire; Alertmanager delivers it to the cluster's
//!   receiver exactly once, and later its resolution;
//! - the direct path: an `AlertProvider` of type slack, named by `analysis.alerts`, posts the rollback message,
//!   with its reason, to a receiver inside the test.
//!
//! Both tests share the cluster's one Prometheus, Alertmanager and receiver with every other test, so they pick
//! their alerts out by the `namespace` label of their own (unique) namespace.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use e2e::bench::{Receiver, free_port, wait_local};
use e2e::controller::{
    self as ctl, Loadtester, blue_green_canary, canaries, create_canary, set_image,
    start_controller, wait_phase,
};
use e2e::monitoring::{self, ScrapeTarget, received_alerts};
use e2e::objects::App;
use e2e::{PROMETHEUS, TestNamespace, apply, poll_until, skip_unless_e2e, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

const APP: &str = "podinfo";
/// Initialisation: primary rollout (kwok pods are Ready at once) plus one tick.
const INIT: Duration = Duration::from_secs(60);
/// Two failing pre-rollout ticks of 1 s.
const RUN: Duration = Duration::from_secs(90);
/// Scrape (1 s) + rule evaluation (1 s) + Alertmanager (group_wait 0 s) + delivery, with room for a busy machine.
const ALERT: Duration = Duration::from_secs(60);
/// `CanaryRollback` resolves once the rollback leaves the rule's 1 m window.
const RESOLVED: Duration = Duration::from_secs(150);

/// A pre-rollout hook on the test's loadtester that always fails.
fn failing_hook(lt: &Loadtester) -> Value {
    json!([{"name": "acceptance-test", "type": "pre-rollout", "url": lt.at("/"), "timeout": "5s",
        "metadata": {"type": "bash", "cmd": "echo failing on purpose; exit 1"}}])
}

/// Deploys the target and the Canary, waits for `Initialized`, changes the image and waits for `Failed`.
async fn roll_back(ns: &TestNamespace, controller: &ctl::Proc, canary: Value) -> e2e::Result<()> {
    let deployments: kube::Api<Deployment> = ns.api();
    apply(&deployments, &App::new(APP, "6.0.0", 1).deployment()?).await?;
    create_canary(ns, canary).await?;
    let api = canaries(ns);
    wait_phase(&api, APP, "Initialized", INIT, controller).await?;
    set_image(&deployments, APP, "6.0.1").await?;
    wait_phase(&api, APP, "Failed", RUN, controller).await?;
    Ok(())
}

/// Rollback → controller metrics → Prometheus (shipped rules) → Alertmanager → receiver: one firing
/// `CanaryRollback` naming this canary, then its resolution, and no second firing in between.
#[tokio::test]
async fn rollback_alert_reaches_the_alertmanager_receiver_once() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("alerts-am", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let port = free_port()?;
        let target = ScrapeTarget::register(&ns.name, port)?;
        let controller = start_controller(&ns.name, &[&format!("-port={port}")])?;
        let lt = Loadtester::start(&ns.name).await?;
        monitoring::wait_scraped(PROMETHEUS, &target.instance, ALERT)
            .await
            .with_context(|| format!("controller log tail:\n{}", controller.log_tail()))?;

        let t0 = Instant::now();
        roll_back(&ns, &controller, blue_green_canary(APP, "1s", 3, failing_hook(&lt))).await?;
        let t_failed = t0.elapsed();

        // The receiver has no watch API: a bounded poll of what Alertmanager delivered.
        let firing = poll_until("CanaryRollback at the receiver", ALERT, || async {
            let got = received_alerts(&ns.name, "CanaryRollback").await?;
            Ok(got.into_iter().find(|a| a.status == "firing"))
        })
        .await
        .with_context(|| format!("controller log tail:\n{}", controller.log_tail()))?;
        let t_firing = t0.elapsed();
        ensure!(
            firing.label("canary") == APP && firing.label("name") == APP,
            "alert for another canary: {firing:?}"
        );
        ensure!(
            firing.label("reason") == "failed_checks",
            "rollback reason label: {firing:?}"
        );
        ensure!(
            firing.label("severity") == "critical" && firing.label("job") == "flagger-rs",
            "labels: {firing:?}"
        );
        let summary = firing.annotations.get("summary").cloned().unwrap_or_default();
        ensure!(
            summary == format!("Canary {}/{APP} rolled back (failed_checks)", ns.name),
            "summary annotation: {summary:?}"
        );

        // Once the alert has resolved, everything Alertmanager sent about this rollback is at the receiver.
        let all = poll_until("CanaryRollback resolved at the receiver", RESOLVED, || async {
            let got = received_alerts(&ns.name, "CanaryRollback").await?;
            Ok(got.iter().any(|a| a.status == "resolved").then_some(got))
        })
        .await?;
        let t_resolved = t0.elapsed();
        let firings: Vec<_> = all.iter().filter(|a| a.status == "firing").collect();
        ensure!(
            firings.len() == 1,
            "one rollback, {} firing CanaryRollback notifications: {all:#?}",
            firings.len()
        );
        ensure!(
            all.iter().all(|a| a.labels == firing.labels),
            "CanaryRollback notifications with different labels: {all:#?}"
        );
        eprintln!(
            "image change → Failed {:.1} s, → CanaryRollback firing at the receiver {:.1} s, → resolved {:.1} s",
            t_failed.as_secs_f64(),
            t_firing.as_secs_f64(),
            t_resolved.as_secs_f64()
        );
        drop(target);
        Ok(())
    })
    .await
}

/// The direct path: `analysis.alerts` → AlertProvider (type slack, `address` = a receiver in the test) gets the
/// rollback message, naming the canary, the reason and the failed check.
#[tokio::test]
async fn rollback_message_reaches_the_alert_provider() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("alerts-direct", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let slack = Receiver::start().await?;
        ctl::create_slack_provider(
            &ns,
            "on-call",
            &format!("{}/slack", slack.url),
            Some("flagger-rs"),
        )
        .await?;
        let controller = start_controller(&ns.name, &[])?;
        let lt = Loadtester::start(&ns.name).await?;

        let mut canary = blue_green_canary(APP, "1s", 3, failing_hook(&lt));
        canary["spec"]["analysis"]["alerts"] =
            json!([{"name": "on-call", "severity": "error", "providerRef": {"name": "on-call"}}]);
        let t0 = Instant::now();
        roll_back(&ns, &controller, canary).await?;

        let key = format!("{APP}.{}", ns.name);
        // Fed by the in-process receiver: no request per check.
        let hit = wait_local("rollback message at the AlertProvider", ALERT, || {
            slack
                .hits()
                .into_iter()
                .find(|h| h.body.contains("threshold reached"))
        })
        .await
        .with_context(|| {
            format!(
                "received: {:#?}\ncontroller log tail:\n{}",
                slack.hits(),
                controller.log_tail()
            )
        })?;
        eprintln!(
            "image change → rollback message {:.1} s: {}",
            t0.elapsed().as_secs_f64(),
            hit.body
        );
        ensure!(hit.path == "/slack", "posted to {}", hit.path);
        let body: Value = serde_json::from_str(&hit.body).context("Slack payload is not JSON")?;
        ensure!(body["channel"] == "deployments", "channel: {body}");
        let text = body.to_string();
        ensure!(text.contains(&key), "message does not name {key}: {text}");
        ensure!(
            text.contains("Failed checks threshold reached 2"),
            "message does not name the reason: {text}"
        );
        ensure!(
            text.contains("acceptance-test"),
            "message does not name the failed check: {text}"
        );
        // Severity error: the run's info messages (new revision, …) are filtered out.
        let others: Vec<_> = slack
            .hits()
            .into_iter()
            .filter(|h| !h.body.contains("threshold reached"))
            .map(|h| h.body)
            .collect();
        ensure!(
            others.iter().all(|b| !b.contains("New revision detected")),
            "info messages reached an error-severity provider: {others:#?}"
        );
        Ok(())
    })
    .await
}
