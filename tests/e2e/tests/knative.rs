//! A Knative Service target with the `knative` router, on the real API server with the Knative Serving CRDs of
//! `knative.dev/serving`. No Knative controller runs here: [`FakeServing`] plays its part (new Ready Revisions
//! for new templates, `status.latestCreatedRevisionName`, `status.traffic` from `spec.traffic`), and the traffic
//! split is checked on the Knative Service, not measured.
//!
//! Canary (stepWeight 20, maxWeight 60, interval 2s, threshold 2, a `rollout` webhook served by the test):
//! * initialisation records revision 00001 as primary with 100 % of the traffic;
//! * template 6.0.1 → revision 00002 gets 20, 40, 60 % while 00001 keeps the rest; promotion moves
//!   `flagger.app/primary-revision` to 00002, which then gets 100 %;
//! * template 6.0.2 → revision 00003, the webhook fails `threshold` times: rolled back, 100 % to the primary
//!   00002, 0 % to the latest, the annotation never left 00002.
//!
//! Blue/green (iterations 3, a `confirm-promotion` gate held by the test): template 6.0.1 → revision 00002; held at
//! the gate after the iterations, 00001 still serves everything; once the gate opens 00002 takes 100 % while
//! 00001 stays the primary with 0 % (one switch), then promotion moves the annotation to 00002 with 100 %.
//!
//! Run: `hack/e2e knative`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::ensure;
use e2e::controller::{
    Recorder, canaries, install_crds, start_controller_named, step, wait_canary, wait_phase,
};
use e2e::gateway::apply_value;
use e2e::hooks::HookCatcher;
use e2e::knative::{FakeServing, resource};
use e2e::{Result, TestNamespace, skip_unless_e2e};
use futures::StreamExt as _;
use kube::Api;
use kube::api::DynamicObject;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};

const APP: &str = "podinfo";
const ANNOTATION: &str = "flagger.app/primary-revision";
const RUN: Duration = Duration::from_secs(120);

/// `(primary-revision annotation, latest revision %, named revision, its %)` of the Service's spec.
type Split = (String, i64, String, i64);

fn split(svc: &Value) -> Option<Split> {
    let annotation = svc["metadata"]["annotations"][ANNOTATION]
        .as_str()?
        .to_string();
    let traffic = svc["spec"]["traffic"].as_array()?;
    let latest = traffic.iter().find(|e| e["latestRevision"] == true)?;
    let named = traffic.iter().find(|e| e["revisionName"].is_string())?;
    Some((
        annotation,
        latest["percent"].as_i64()?,
        named["revisionName"].as_str()?.to_string(),
        named["percent"].as_i64()?,
    ))
}

fn service(image_tag: &str) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": APP},
        "spec": {"template": {"spec": {"containers": [{
            "image": format!("ghcr.io/stefanprodan/podinfo:{image_tag}"),
            "ports": [{"containerPort": 9898}],
        }]}}},
    })
}

fn rev(n: u32) -> String {
    format!("{APP}-{n:05}")
}

/// Every distinct split the Knative Service's spec goes through, from a watch.
fn record_splits(ns: &TestNamespace) -> (Arc<Mutex<Vec<Split>>>, tokio::task::JoinHandle<()>) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &resource("Service", "services"),
    );
    let seen = Arc::new(Mutex::new(Vec::<Split>::new()));
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(obj)) = stream.next().await {
            let Some(s) = serde_json::to_value(&obj).ok().as_ref().and_then(split) else {
                continue;
            };
            let mut seen = sink.lock().unwrap_or_else(|p| p.into_inner());
            if seen.last() != Some(&s) {
                eprintln!(
                    "Knative Service: primary {} | latest {}% | {} {}%",
                    s.0, s.1, s.2, s.3
                );
                seen.push(s);
            }
        }
    });
    (seen, task)
}

async fn live_split(ns: &TestNamespace) -> Result<Option<Split>> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &resource("Service", "services"),
    );
    Ok(split(&serde_json::to_value(api.get(APP).await?)?))
}

#[tokio::test]
async fn knative_service_rolled_forward_and_back_by_traffic_percentages() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("knative", |ns| async move {
        install_crds(&ns.client).await?;
        let _serving = FakeServing::start(&ns.client, &ns.name);
        let (seen, recorder) = record_splits(&ns);
        struct Abort(tokio::task::JoinHandle<()>);
        impl Drop for Abort {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _recorder = Abort(recorder);
        apply_value(&ns.client, Some(&ns.name), service("6.0.0")).await?;

        let hooks = HookCatcher::start().await?;
        let ctrl = start_controller_named(&ns.name, "controller", &["-mesh-provider=knative"])?;
        apply_value(
            &ns.client,
            Some(&ns.name),
            json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                "metadata": {"name": APP},
                "spec": {
                    "provider": "knative",
                    "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": APP},
                    "progressDeadlineSeconds": 60,
                    "analysis": {
                        "interval": "2s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
                        "webhooks": [{"name": "check", "type": "rollout", "url": hooks.at("/check")}],
                    },
                },
            }),
        )
        .await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", RUN, &ctrl).await?;
        let init = live_split(&ns).await?;
        ensure!(init == Some((rev(1), 0, rev(1), 100)), "after initialisation: {init:?}");

        // Forward: 6.0.1 becomes revision 00002 and is promoted.
        let rec = Recorder::start(&api, APP);
        apply_value(&ns.client, Some(&ns.name), service("6.0.1")).await?;
        wait_phase(&api, APP, "Succeeded", RUN, &ctrl).await?;
        eprintln!("forward run: {}", rec.render());
        let promoted = live_split(&ns).await?;
        ensure!(promoted == Some((rev(2), 0, rev(2), 100)), "after promotion: {promoted:?}");
        let forward: Vec<Split> = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let steps: Vec<(i64, i64)> = forward
            .iter()
            .filter(|s| s.0 == rev(1) && s.2 == rev(1))
            .map(|s| (s.1, s.3))
            .collect();
        ensure!(
            steps == [(0, 100), (20, 80), (40, 60), (60, 40)],
            "splits while 00001 was primary: {steps:?} (all: {forward:?})"
        );

        // Back: 6.0.2 becomes revision 00003; the webhook fails, the run rolls back to 00002.
        hooks.answer("/check", 500);
        let rec = Recorder::start(&api, APP);
        let from = seen.lock().unwrap_or_else(|p| p.into_inner()).len();
        apply_value(&ns.client, Some(&ns.name), service("6.0.2")).await?;
        wait_canary(&api, APP, "progressing with revision 00003", RUN, &ctrl, |o| {
            step(o).phase == "Progressing" || step(o).phase == "Failed"
        })
        .await?;
        let done = wait_phase(&api, APP, "Failed", RUN, &ctrl).await?;
        eprintln!("failed run: {}", rec.render());
        ensure!(step(&done).weight == 0, "weight after rollback: {}", rec.render());
        let rolled_back = live_split(&ns).await?;
        ensure!(rolled_back == Some((rev(2), 0, rev(2), 100)), "after rollback: {rolled_back:?}");
        let back: Vec<Split> = seen.lock().unwrap_or_else(|p| p.into_inner())[from..].to_vec();
        ensure!(
            back.iter().all(|s| s.0 == rev(2)) && back.last() == Some(&(rev(2), 0, rev(2), 100)),
            "the primary revision moved or traffic did not return to it: {back:?}"
        );
        drop(ctrl);
        Ok(())
    })
    .await
}

/// Blue/green on a Knative Service: after the iterations and the promotion gate the latest revision takes all
/// the traffic in one switch (the primary revision keeps its annotation and 0 %), then it is promoted.
#[tokio::test]
async fn knative_service_blue_green_switches_all_traffic_to_the_latest_revision() -> Result<()> {
    skip_unless_e2e!();
    e2e::with_namespace("knative-bg", |ns| async move {
        install_crds(&ns.client).await?;
        let _serving = FakeServing::start(&ns.client, &ns.name);
        let (seen, recorder) = record_splits(&ns);
        struct Abort(tokio::task::JoinHandle<()>);
        impl Drop for Abort {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _recorder = Abort(recorder);
        apply_value(&ns.client, Some(&ns.name), service("6.0.0")).await?;

        let hooks = HookCatcher::start().await?;
        let ctrl = start_controller_named(&ns.name, "controller", &["-mesh-provider=knative"])?;
        apply_value(
            &ns.client,
            Some(&ns.name),
            json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                "metadata": {"name": APP},
                "spec": {
                    "provider": "knative",
                    "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": APP},
                    "progressDeadlineSeconds": 60,
                    "analysis": {
                        "interval": "2s", "threshold": 2, "iterations": 3,
                        "webhooks": [{"name": "promotion", "type": "confirm-promotion", "url": hooks.at("/gate")}],
                    },
                },
            }),
        )
        .await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", RUN, &ctrl).await?;
        let init = live_split(&ns).await?;
        ensure!(init == Some((rev(1), 0, rev(1), 100)), "after initialisation: {init:?}");

        let rec = Recorder::start(&api, APP);
        apply_value(&ns.client, Some(&ns.name), service("6.0.1")).await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &ctrl).await?;
        // As in Flagger, the switch comes after the promotion gate opens: held there, the primary still serves.
        let held = live_split(&ns).await?;
        ensure!(
            held == Some((rev(1), 0, rev(1), 100)),
            "while held at the gate: {held:?} ({})",
            rec.render()
        );
        hooks.open_gate("/gate");
        wait_phase(&api, APP, "Succeeded", RUN, &ctrl).await?;
        eprintln!("blue/green run: {}", rec.render());
        let promoted = live_split(&ns).await?;
        ensure!(promoted == Some((rev(2), 0, rev(2), 100)), "after promotion: {promoted:?}");
        let all: Vec<Split> = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let while_primary: Vec<(i64, i64)> = all
            .iter()
            .filter(|s| s.0 == rev(1) && s.2 == rev(1))
            .map(|s| (s.1, s.3))
            .collect();
        ensure!(
            while_primary == [(0, 100), (100, 0)] && all.last() == Some(&(rev(2), 0, rev(2), 100)),
            "splits while 00001 was primary: {while_primary:?}, want one switch (all: {all:?})"
        );
        drop(ctrl);
        Ok(())
    })
    .await
}
