//! Chaos on the local cluster (issue 15): a run goes through a fault and still ends in the right phase, with
//! exactly one promotion or rollback, one post-rollout hook call and one terminal alert, counted at real HTTP
//! receivers of the test. The faults: the kube-apiserver killed and restarted mid-promotion; etcd paused for
//! 30 s during analysis; a metrics server that answers after 20 s (beyond the query timeout); a webhook
//! receiver that never answers; watches that break with 410 Gone while the target changes.
//!
//! The faults hit the whole cluster, so the scenarios of this file run one at a time (the other test files run
//! in other processes, never at the same time). Run with `hack/e2e chaos` (skipped, passing, when FLAGGER_E2E is
//! unset).

use std::time::Duration;

use anyhow::ensure;
use e2e::bench::wait_local;
use e2e::chaos::{
    ClusterProcess, SlowProxy, WatchBreaker, wait_api_server, wait_phase_through_outages,
};
use e2e::controller::{
    self as ctl, Recorder, blue_green_canary, canaries, create_canary, deploy,
    ensure_primary_promoted_once, events_for, image_of, phase, set_image, start_controller,
    wait_canary, wait_phase,
};
use e2e::hooks::HookCatcher;
use e2e::objects::App;
use e2e::{TestNamespace, skip_unless_e2e, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

/// Initialisation: primary rollout (kwok pods are Ready at once) plus one tick.
const INIT: Duration = Duration::from_secs(60);
/// A run of a few 1 s ticks, through a fault that lasts up to 30 s and the backoff after it.
const RUN: Duration = Duration::from_secs(180);
/// A terminal alert or post-rollout hook after the phase is written.
const NOTIFY: Duration = Duration::from_secs(30);
/// Longer than the 30 s cap of the recorder's watch backoff.
const RELIST: Duration = Duration::from_secs(60);

/// One scenario at a time: each fault is the whole cluster's.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One canary of a scenario, its receivers at paths of the test's [`HookCatcher`] named after it.
struct Subject<'a> {
    name: &'a str,
    catcher: &'a HookCatcher,
}

/// A run under way: its status record and the primary's generation before it.
struct Run {
    rec: Recorder,
    primary_generation: Option<i64>,
}

impl<'a> Subject<'a> {
    fn new(name: &'a str, catcher: &'a HookCatcher) -> Self {
        Subject { name, catcher }
    }

    fn post_path(&self) -> String {
        format!("/post/{}", self.name)
    }

    fn slack_path(&self) -> String {
        format!("/slack/{}", self.name)
    }

    /// A blue/green canary of `iterations` 1 s ticks with a post-rollout hook and an alert provider of its own,
    /// plus `hooks`.
    fn canary(&self, iterations: u32, hooks: Value) -> Value {
        let mut all = vec![
            json!({"name": "notify", "type": "post-rollout", "url": self.catcher.at(&self.post_path())}),
        ];
        all.extend(hooks.as_array().cloned().unwrap_or_default());
        let mut canary = blue_green_canary(self.name, "1s", iterations, Value::Array(all));
        canary["spec"]["progressDeadlineSeconds"] = json!(600);
        canary["spec"]["analysis"]["alerts"] =
            json!([{"name": "on-call", "severity": "info", "providerRef": {"name": self.name}}]);
        canary
    }

    async fn create_alert_provider(&self, ns: &TestNamespace) -> e2e::Result<()> {
        ctl::create_slack_provider(ns, self.name, &self.catcher.at(&self.slack_path()), None).await
    }

    /// Deploys the target at 6.0.0 and the canary, waits for `Initialized`, starts recording the canary's
    /// status, calls `before_change` and changes the image to 6.0.1.
    async fn start_run(
        &self,
        ns: &TestNamespace,
        controller: &ctl::Proc,
        canary: Value,
        before_change: impl FnOnce(),
    ) -> e2e::Result<Run> {
        self.create_alert_provider(ns).await?;
        deploy(ns, &App::new(self.name, "6.0.0", 1), |_| {}).await?;
        create_canary(ns, canary).await?;
        let api = canaries(ns);
        wait_phase(&api, self.name, "Initialized", INIT, controller).await?;
        let deployments: Api<Deployment> = ns.api();
        let primary_generation = deployments
            .get(&format!("{}-primary", self.name))
            .await?
            .metadata
            .generation;
        let rec = Recorder::start(&api, self.name);
        before_change();
        set_image(&deployments, self.name, "6.0.1").await?;
        Ok(Run {
            rec,
            primary_generation,
        })
    }

    fn alerts_containing(&self, text: &str) -> usize {
        let path = self.slack_path();
        self.catcher
            .calls()
            .iter()
            .filter(|c| c.path == path && c.body.to_string().contains(text))
            .count()
    }

    /// The run ended in `want` (Succeeded or Failed) once: one post-rollout call, one terminal alert and none
    /// of the other outcome, one promotion of the primary (or none, for a rollback), `Promoting` or `Failed`
    /// entered once.
    async fn ensure_one_outcome(
        &self,
        ns: &TestNamespace,
        run: &Run,
        want: &str,
    ) -> e2e::Result<()> {
        let (rec, primary_generation) = (&run.rec, run.primary_generation);
        let obj = canaries(ns).get(self.name).await?;
        ensure!(
            phase(&obj) == want,
            "{} is {}, want {want}",
            self.name,
            phase(&obj)
        );
        // The alerts' texts (not the events'): "Canary analysis completed successfully, promotion finished.",
        // "Failed checks threshold reached <n>".
        let (terminal, other) = if want == "Succeeded" {
            ("promotion finished", "threshold reached")
        } else {
            ("threshold reached", "promotion finished")
        };
        wait_local(&format!("{} alert {terminal:?}", self.name), NOTIFY, || {
            (self.alerts_containing(terminal) > 0).then_some(())
        })
        .await?;
        let post = self.post_path();
        wait_local(&format!("{} post-rollout hook", self.name), NOTIFY, || {
            (self.catcher.count(&post) > 0).then_some(())
        })
        .await?;
        let deployments: Api<Deployment> = ns.api();
        if want == "Succeeded" {
            rec.ensure_promoted_once()?;
            ensure_primary_promoted_once(&deployments, self.name, "6.0.1", primary_generation)
                .await?;
        } else {
            let primary = deployments.get(&format!("{}-primary", self.name)).await?;
            ensure!(
                image_of(&primary).ends_with(":6.0.0"),
                "primary image {} after a rollback",
                image_of(&primary)
            );
            ensure!(
                primary.metadata.generation == primary_generation,
                "primary written during a run that rolled back: generation {:?}, was {primary_generation:?}",
                primary.metadata.generation
            );
        }
        // The recorder's own watch may still be backing off after an outage (kube's default backoff
        // waits up to 30 s between retries): its record is complete once its relist has shown the
        // end phase the API server already reports.
        wait_local(&format!("{} recorded as {want}", self.name), RELIST, || {
            rec.steps().iter().any(|s| s.phase == want).then_some(())
        })
        .await?;
        let entered = rec.steps().iter().filter(|s| s.phase == want).count();
        ensure!(
            entered == 1,
            "{want} entered {entered} times: {}",
            rec.render()
        );
        ensure!(
            self.alerts_containing(terminal) == 1 && self.alerts_containing(other) == 0,
            "{}: {} alerts {terminal:?}, {} {other:?}: {:#?}",
            self.name,
            self.alerts_containing(terminal),
            self.alerts_containing(other),
            self.catcher
                .calls()
                .iter()
                .filter(|c| c.path == self.slack_path())
                .collect::<Vec<_>>()
        );
        let posts = self.catcher.count(&post);
        ensure!(posts == 1, "{}: {posts} post-rollout hook calls", self.name);
        eprintln!("{}: {}", self.name, rec.render());
        Ok(())
    }
}

/// The kube-apiserver is SIGKILLed the moment the canary is seen `Promoting` and started again: the controller
/// rides out the refused connections and finishes the promotion once, without a second copy of the primary.
#[tokio::test]
async fn chaos_api_server_killed_and_restarted_mid_promotion() -> e2e::Result<()> {
    skip_unless_e2e!();
    let _cluster = CLUSTER.lock().await;
    with_namespace("chaos-apiserver", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let catcher = HookCatcher::start().await?;
        let subject = Subject::new("podinfo", &catcher);
        let controller = start_controller(&ns.name, &[])?;
        let run = subject
            .start_run(&ns, &controller, subject.canary(3, json!([])), || {})
            .await?;
        let api = canaries(&ns);
        wait_phase(&api, subject.name, "Promoting", RUN, &controller).await?;
        ClusterProcess::API_SERVER.kill_and_restart().await?;
        wait_api_server(&ns.client, Duration::from_secs(120)).await?;
        wait_phase_through_outages(&api, subject.name, "Succeeded", RUN, &controller).await?;
        subject.ensure_one_outcome(&ns, &run, "Succeeded").await?;
        ensure!(
            controller.log().contains("error") || controller.log().contains("WARN"),
            "the controller logged nothing about the outage"
        );
        Ok(())
    })
    .await
}

/// etcd is paused (SIGSTOP) for 30 s while the analysis runs: the API server stalls, the controller's requests
/// hang or fail, and once etcd resumes the run goes on where it was and is promoted once.
#[tokio::test]
async fn chaos_etcd_paused_for_30s_during_analysis() -> e2e::Result<()> {
    skip_unless_e2e!();
    let _cluster = CLUSTER.lock().await;
    with_namespace("chaos-etcd", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let catcher = HookCatcher::start().await?;
        let subject = Subject::new("podinfo", &catcher);
        let controller = start_controller(&ns.name, &[])?;
        let run = subject
            .start_run(&ns, &controller, subject.canary(8, json!([])), || {})
            .await?;
        let api = canaries(&ns);
        wait_canary(&api, subject.name, "in analysis", RUN, &controller, |o| {
            phase(o) == "Progressing" && ctl::step(o).iterations >= 1
        })
        .await?;
        {
            let _paused = ClusterProcess::ETCD.pause()?;
            // The fault's duration, not a wait for anything.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        wait_api_server(&ns.client, Duration::from_secs(120)).await?;
        wait_phase_through_outages(&api, subject.name, "Succeeded", RUN, &controller).await?;
        subject.ensure_one_outcome(&ns, &run, "Succeeded").await?;
        Ok(())
    })
    .await
}

/// The metric's Prometheus answers only after 20 s, far beyond the provider's query timeout. Its late answer
/// would pass the check (the query is `vector(1)`, within range): a run that waited for it would be promoted.
/// The controller gives up at the timeout, counts a failed check per tick and rolls back at the threshold.
#[tokio::test]
async fn chaos_prometheus_answering_after_20s_fails_the_checks() -> e2e::Result<()> {
    skip_unless_e2e!();
    let _cluster = CLUSTER.lock().await;
    with_namespace("chaos-slowprom", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let catcher = HookCatcher::start().await?;
        let slow = SlowProxy::start("127.0.0.1:9090", Duration::from_secs(20)).await?;
        let subject = Subject { name: "podinfo", catcher: &catcher };
        let templates: Api<DynamicObject> = Api::namespaced_with(
            ns.client.clone(),
            &ns.name,
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("flagger.app", "v1beta1", "MetricTemplate"),
                "metrictemplates",
            ),
        );
        let template: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": "slow"},
            "spec": {"provider": {"type": "prometheus", "address": slow.url}, "query": "vector(1)"},
        }))?;
        templates.create(&PostParams::default(), &template).await?;
        let controller = start_controller(&ns.name, &[])?;
        let mut canary = subject.canary(5, json!([]));
        canary["spec"]["analysis"]["metrics"] =
            json!([{"name": "late", "interval": "1m", "thresholdRange": {"max": 2}, "templateRef": {"name": "slow"}}]);
        let run = subject.start_run(&ns, &controller, canary, || {}).await?;
        let api = canaries(&ns);
        wait_phase(&api, subject.name, "Failed", RUN, &controller).await?;
        subject.ensure_one_outcome(&ns, &run, "Failed").await?;
        ensure!(slow.connections() >= 2, "{} queries reached the slow Prometheus", slow.connections());
        let events = events_for(&ns, "Canary", subject.name).await?;
        let halts: Vec<_> = events.iter().filter(|(_, _, m, _)| m.contains("late")).collect();
        eprintln!("{} queries to the slow Prometheus; events about the metric: {halts:#?}", slow.connections());
        ensure!(!halts.is_empty(), "no event names the timed-out metric: {events:#?}");
        Ok(())
    })
    .await
}

/// A rollout webhook whose receiver accepts the connection and never answers, with `timeout: 2s`: each tick
/// gives up on it at the timeout and counts a failed check, so the run rolls back at the threshold instead of
/// hanging. A second canary of the same controller meanwhile completes its own run: the hanging hook blocks
/// no one else's tick.
#[tokio::test]
async fn chaos_webhook_that_never_answers_is_cut_at_its_timeout() -> e2e::Result<()> {
    skip_unless_e2e!();
    let _cluster = CLUSTER.lock().await;
    with_namespace("chaos-hook", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let catcher = HookCatcher::start().await?;
        let stuck = Subject { name: "stuck", catcher: &catcher };
        let healthy = Subject { name: "healthy", catcher: &catcher };
        let controller = start_controller(&ns.name, &[])?;
        let hold = json!([{"name": "silent", "type": "rollout", "url": catcher.at("/hold/silent"), "timeout": "2s"}]);
        let stuck_run = stuck
            .start_run(&ns, &controller, stuck.canary(3, hold), || {})
            .await?;
        let healthy_run = healthy
            .start_run(&ns, &controller, healthy.canary(6, json!([])), || {})
            .await?;
        let api = canaries(&ns);
        let (failed, promoted) = tokio::join!(
            wait_phase(&api, stuck.name, "Failed", RUN, &controller),
            wait_phase(&api, healthy.name, "Succeeded", RUN, &controller),
        );
        let failed = failed?;
        promoted?;
        stuck.ensure_one_outcome(&ns, &stuck_run, "Failed").await?;
        healthy
            .ensure_one_outcome(&ns, &healthy_run, "Succeeded")
            .await?;
        let held = catcher.count("/hold/silent");
        ensure!(held >= 2, "the silent hook was called {held} times, want one per failed tick");
        let message = ctl::condition(&failed, "Promoted").map(|c| c.2).unwrap_or_default();
        let events = events_for(&ns, "Canary", stuck.name).await?;
        eprintln!("silent hook called {held} times; Promoted condition: {message:?}");
        ensure!(
            events.iter().any(|(_, _, m, _)| m.contains("silent")),
            "no event names the silent hook: {events:#?}"
        );
        Ok(())
    })
    .await
}

/// The controller reaches the API server through a proxy that, on demand, ends every watch with a 410 Gone
/// `ERROR` event (too old resource version) and answers every new watch the same way, letting only lists
/// through. While it does, the target's image changes: the controller can only learn of it by relisting. It
/// starts the run, and once the watches work again the run is promoted once.
#[tokio::test]
async fn chaos_watch_gone_410_relists_and_loses_no_event() -> e2e::Result<()> {
    skip_unless_e2e!();
    let _cluster = CLUSTER.lock().await;
    with_namespace("chaos-gone", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let catcher = HookCatcher::start().await?;
        let breaker = WatchBreaker::start(&ns.name).await?;
        let subject = Subject::new("podinfo", &catcher);
        let kubeconfig = format!("-kubeconfig={}", breaker.kubeconfig().display());
        let controller = start_controller(&ns.name, &[&kubeconfig])?;
        let run = subject
            .start_run(&ns, &controller, subject.canary(3, json!([])), || {
                breaker.expire()
            })
            .await?;
        let api = canaries(&ns);
        wait_phase(&api, subject.name, "Progressing", RUN, &controller).await?;
        let gone = breaker.gone_sent();
        breaker.heal();
        ensure!(gone >= 1, "no watch was broken with 410 Gone");
        wait_phase(&api, subject.name, "Succeeded", RUN, &controller).await?;
        subject.ensure_one_outcome(&ns, &run, "Succeeded").await?;
        eprintln!(
            "{gone} watches ended with 410 Gone before the run started; proxy {}",
            breaker.url
        );
        Ok(())
    })
    .await
}
