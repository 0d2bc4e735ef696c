//! Flagger's own end-to-end scenarios that no other file of ours covered, written from what Flagger's scripts set
//! up and assert (docs/flagger-scenarios.md lists them all). Each test runs its own controller against its own
//! namespace; run with `hack/e2e` (skipped, passing, when FLAGGER_E2E is unset).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{
    Recorder, blue_green_canary, canaries, count_events, create_canary, deploy,
    ensure_primary_promoted_once, events_for, install_crds, primary_generation, set_image,
    start_controller, wait_canary, wait_phase, wait_replicas,
};
use e2e::messages::ensure_plain_messages;
use e2e::objects::{
    App, autoscaler_ref, deployment_available, hpa, service, traefik_resource,
    weighted_traefik_service,
};
use e2e::{TestNamespace, apply, skip_unless_e2e, wait_for, with_namespace};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt as _};
use serde_json::{Value, json};

const INIT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(90);
const APP: &str = "podinfo";
/// The Canary's `service.name`: the generated Services are named after it, not after the target.
const SVC: &str = "podinfo-svc";

/// The target's own metadata as Flagger's test workload has it: two labels under the prefix the controller is
/// started with (`-include-label-prefix=app.kubernetes.io`), one outside it, and an annotation.
fn target_labels() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("app.kubernetes.io/name", APP),
        ("app.kubernetes.io/managed-by", "test-label-prefix"),
        ("team", "not-under-the-prefix"),
    ])
}

const TARGET_ANNOTATION: (&str, &str) = ("app.kubernetes.io/instance", "test-annotation-prefix");

/// The primary carries the target's labels under the prefix and its annotation, and not the label outside it.
async fn ensure_primary_metadata(deployments: &Api<Deployment>, when: &str) -> e2e::Result<()> {
    let primary = deployments.get(&format!("{APP}-primary")).await?;
    let labels = primary.metadata.labels.clone().unwrap_or_default();
    let annotations = primary.metadata.annotations.clone().unwrap_or_default();
    for (k, v) in target_labels() {
        let copied = labels.get(k).map(String::as_str);
        if k.starts_with("app.kubernetes.io/") {
            ensure!(
                copied == Some(v),
                "{when}: primary label {k} = {copied:?}, want {v:?}: {labels:?}"
            );
        } else {
            ensure!(
                copied.is_none(),
                "{when}: primary has label {k} outside the prefix: {labels:?}"
            );
        }
    }
    let (k, v) = TARGET_ANNOTATION;
    ensure!(
        annotations.get(k).map(String::as_str) == Some(v),
        "{when}: primary annotation {k} = {:?}, want {v:?}: {annotations:?}",
        annotations.get(k)
    );
    Ok(())
}

/// `name` selects `app=<selects>` and serves port 80 → 9898 plus the container's other ports, found by discovery.
async fn ensure_service(services: &Api<Service>, name: &str, selects: &str) -> e2e::Result<()> {
    let svc = services
        .get(name)
        .await
        .with_context(|| format!("Service {name}"))?;
    let spec = svc.spec.unwrap_or_default();
    let selector = spec.selector.unwrap_or_default();
    ensure!(
        selector.get("app").map(String::as_str) == Some(selects),
        "Service {name} selector {selector:?}, want app={selects}"
    );
    let ports = spec.ports.unwrap_or_default();
    let by_port: BTreeMap<i32, String> = ports
        .iter()
        .map(|p| {
            let target = p.target_port.as_ref().map(|t| match t {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
            });
            (p.port, target.unwrap_or_default())
        })
        .collect();
    ensure!(
        by_port.get(&80).map(String::as_str) == Some("9898"),
        "Service {name}: port 80 does not go to 9898: {by_port:?}"
    );
    for discovered in [9797, 9999] {
        ensure!(
            by_port.contains_key(&discovered),
            "Service {name}: discovered container port {discovered} missing: {by_port:?}"
        );
    }
    ensure!(
        !by_port.contains_key(&9898),
        "Service {name}: the container's 9898 is already served by port 80, yet listed again: {by_port:?}"
    );
    Ok(())
}

async fn deploy_target(ns: &TestNamespace) -> e2e::Result<()> {
    deploy(ns, &App::new(APP, "6.0.0", 1), |d| {
        for (k, v) in target_labels() {
            d["metadata"]["labels"][k] = json!(v);
        }
        let (k, v) = TARGET_ANNOTATION;
        d["metadata"]["annotations"] = json!({ k: v });
        let container = &mut d["spec"]["template"]["spec"]["containers"][0];
        container["ports"] = json!([
            {"name": "http", "containerPort": 9898, "protocol": "TCP"},
            {"name": "http-metrics", "containerPort": 9797, "protocol": "TCP"},
            {"name": "grpc", "containerPort": 9999, "protocol": "TCP"},
        ]);
    })
    .await
}

/// Flagger's kubernetes deployment scenario: a blue/green Canary whose Services are named `podinfo-svc` (port 80
/// to the container's 9898, port discovery on). Initialisation writes the three `podinfo-svc` Services with the
/// discovered ports and no Service named after the target, parks the target at 0, and gives the primary the
/// target's labels under the included prefix and its annotations; a new image is then promoted once, and the
/// primary still carries that metadata.
#[tokio::test]
async fn kubernetes_deployment_scenario_propagates_metadata_and_promotes() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("fs-k8s", |ns| async move {
        install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        deploy_target(&ns).await?;
        let mut canary = blue_green_canary(APP, "2s", 2, json!([]));
        canary["spec"]["service"] =
            json!({"name": SVC, "port": 80, "targetPort": 9898, "portDiscovery": true});
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;

        let deployments: Api<Deployment> = ns.api();
        let services: Api<Service> = ns.api();
        ensure_primary_metadata(&deployments, "after initialisation").await?;
        ensure_service(&services, SVC, &format!("{APP}-primary")).await?;
        ensure_service(
            &services,
            &format!("{SVC}-primary"),
            &format!("{APP}-primary"),
        )
        .await?;
        ensure_service(&services, &format!("{SVC}-canary"), APP).await?;
        ensure!(
            services.get_opt(APP).await?.is_none(),
            "a Service named after the target was created although service.name is {SVC}"
        );
        wait_replicas(&deployments, APP, 0, &controller).await?;

        let generation = primary_generation(&deployments, APP).await?;
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Progressing", INIT, &controller).await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        ensure_primary_metadata(&deployments, "after promotion").await?;
        wait_replicas(&deployments, APP, 0, &controller).await?;
        ensure_plain_messages(&ns, APP).await?;
        Ok(())
    })
    .await
}

/// `(primary, canary)` weights of the TraefikService; a backend the router leaves out (it omits a canary at 0)
/// counts as 0.
fn traefik_weights(ts: &DynamicObject) -> (i64, i64) {
    let by_name: BTreeMap<&str, i64> = ts.data["spec"]["weighted"]["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["name"].as_str()?, s["weight"].as_i64()?)))
        .collect();
    let weight = |name: String| by_name.get(name.as_str()).copied().unwrap_or(0);
    (
        weight(format!("{APP}-primary")),
        weight(format!("{APP}-canary")),
    )
}

/// `metadata.<field>.test` of an object's JSON form.
fn test_key<'a>(meta: &'a Value, field: &str) -> Option<&'a str> {
    meta[field]["test"].as_str()
}

/// Flagger's traefik scenario, at the API level: `service.apex` labels and annotations end up on the
/// TraefikService the router writes and on the apex Service, which selects the primary; a new image is
/// then promoted and the TraefikService sends everything to the primary again, its metadata intact. (The
/// weights as Traefik serves them are measured in `routers.rs`.)
#[tokio::test]
async fn traefik_scenario_puts_apex_metadata_on_the_traefikservice() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("fs-traefik", |ns| async move {
        install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let canary = json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": APP},
            "spec": {
                "provider": "traefik",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                "progressDeadlineSeconds": 60,
                "service": {
                    "port": 80, "targetPort": 9898,
                    "apex": {"labels": {"test": "test-label"}, "annotations": {"test": "test-annotation"}},
                },
                "analysis": {"interval": "1s", "threshold": 2, "stepWeight": 20, "maxWeight": 60},
            },
        });
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;

        let traefik_services: Api<DynamicObject> = Api::namespaced_with(
            ns.client.clone(),
            &ns.name,
            &traefik_resource("TraefikService", "traefikservices"),
        );
        let services: Api<Service> = ns.api();
        let ensure_metadata = |ts: &DynamicObject, apex: &Service, when: &str| -> e2e::Result<()> {
            let ts_meta = serde_json::to_value(&ts.metadata)?;
            let svc_meta = serde_json::to_value(&apex.metadata)?;
            for (what, meta) in [("TraefikService", &ts_meta), ("apex Service", &svc_meta)] {
                ensure!(
                    test_key(meta, "labels") == Some("test-label")
                        && test_key(meta, "annotations") == Some("test-annotation"),
                    "{when}: the {what} lacks the apex metadata: {meta}"
                );
            }
            Ok(())
        };
        let ts = traefik_services.get(APP).await.context("TraefikService")?;
        let apex = services.get(APP).await.context("apex Service")?;
        ensure_metadata(&ts, &apex, "after initialisation")?;
        let selector = apex.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
        ensure!(
            selector.get("app").map(String::as_str) == Some("podinfo-primary"),
            "apex Service selector {selector:?}, want app=podinfo-primary"
        );
        let all_primary = (100, 0);
        ensure!(
            traefik_weights(&ts) == all_primary,
            "initial weights {:?}",
            traefik_weights(&ts)
        );

        let deployments: Api<Deployment> = ns.api();
        let generation = primary_generation(&deployments, APP).await?;
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        let ts = traefik_services.get(APP).await?;
        ensure_metadata(&ts, &services.get(APP).await?, "after promotion")?;
        ensure!(
            traefik_weights(&ts) == all_primary,
            "weights after promotion {:?}",
            traefik_weights(&ts)
        );
        ensure_plain_messages(&ns, APP).await?;
        Ok(())
    })
    .await
}

/// The CPU target of an HPA's first metric.
fn cpu_target(h: &HorizontalPodAutoscaler) -> Option<i32> {
    h.spec
        .as_ref()?
        .metrics
        .as_ref()?
        .first()?
        .resource
        .as_ref()?
        .target
        .average_utilization
}

/// Flagger's kubernetes HPA scenario: the user's own Service `podinfo-svc` (port 9898 named `http`) and an HPA
/// for the target, then a Canary wanting port 80 to 9898 under that Service's name, with the HPA as its
/// `autoscalerRef`. It initialises with `<hpa>-primary` scaling the primary and the user's Service re-pointed
/// at the primary on port 80; the user then lowers the target HPA's CPU target and ships a new image: the run
/// is promoted once and the edit is still there afterwards.
#[tokio::test]
async fn kubernetes_hpa_scenario_keeps_the_users_hpa_edit_through_a_promotion() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("fs-hpa", |ns| async move {
        install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let hpas: Api<HorizontalPodAutoscaler> = ns.api();
        hpas.create(&PostParams::default(), &hpa(APP, 2, 4)?).await?;
        let services: Api<Service> = ns.api();
        services.create(&PostParams::default(), &service(SVC, APP)?).await?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let mut canary = blue_green_canary(APP, "2s", 2, json!([]));
        canary["spec"]["service"] =
            json!({"name": SVC, "port": 80, "targetPort": 9898, "portDiscovery": true});
        canary["spec"]["autoscalerRef"] = autoscaler_ref(APP);
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;

        let primary_hpa = hpas.get(&format!("{APP}-primary")).await.context("primary HPA")?;
        let scales = primary_hpa.spec.as_ref().map(|s| s.scale_target_ref.name.clone());
        ensure!(
            scales.as_deref() == Some("podinfo-primary"),
            "primary HPA scales {scales:?}"
        );
        let users = services.get(SVC).await?.spec.unwrap_or_default();
        let selector = users.selector.unwrap_or_default();
        let ports: Vec<i32> = users.ports.unwrap_or_default().iter().map(|p| p.port).collect();
        ensure!(
            selector.get("app").map(String::as_str) == Some("podinfo-primary") && ports == [80],
            "the user's Service selects {selector:?} on ports {ports:?}, want app=podinfo-primary on [80]"
        );

        hpas.patch(
            APP,
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(json!([{
                "op": "replace",
                "path": "/spec/metrics/0/resource/target/averageUtilization",
                "value": 50,
            }]))?),
        )
        .await?;
        let deployments: Api<Deployment> = ns.api();
        let generation = primary_generation(&deployments, APP).await?;
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Progressing", INIT, &controller).await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        let target = hpas.get(APP).await?;
        ensure!(
            cpu_target(&target) == Some(50),
            "the target HPA's CPU target is {:?} after promotion, want the user's 50",
            cpu_target(&target)
        );
        ensure_plain_messages(&ns, APP).await?;
        Ok(())
    })
    .await
}

/// Whether the controller has parked a DaemonSet (its pods kept off every node by the scale-to-zero selector).
fn parked(d: Option<&DaemonSet>) -> bool {
    d.and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_selector.as_ref())
        .is_some_and(|n| n.contains_key("flagger.app/scale-to-zero"))
}

/// Flagger's kubernetes DaemonSet scenario: a DaemonSet canary is initialised and a new image promoted; the
/// Canary is then re-applied with `revertOnDeletion`, gets the finalizer, and deleting it hands the DaemonSet
/// back to the user: un-parked, running its own (latest) image, with ready pods; then the Canary is gone.
/// (Flagger's script deletes a Canary of another name at that step, so it only shows the DaemonSet ending up
/// ready; this test deletes the DaemonSet's own Canary.)
#[tokio::test]
async fn kubernetes_daemonset_scenario_promotes_then_reverts_on_deletion() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("fs-ds", |ns| async move {
        install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let name = "podinfo-ds";
        let mut value = serde_json::to_value(App::new(name, "6.0.0", 1).deployment()?)?;
        value["kind"] = json!("DaemonSet");
        if let Some(spec) = value["spec"].as_object_mut() {
            spec.remove("replicas");
        }
        let daemonsets: Api<DaemonSet> = ns.api();
        apply(&daemonsets, &serde_json::from_value(value)?).await?;
        let mut canary = blue_green_canary(name, "1s", 2, json!([]));
        canary["spec"]["targetRef"]["kind"] = json!("DaemonSet");
        canary["spec"]["service"] = json!({"port": 80, "targetPort": 9898, "portDiscovery": true});
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, name, "Initialized", INIT, &controller).await?;
        wait_for(&daemonsets, name, "parked", INIT, parked).await?;

        set_image(&daemonsets, name, "6.0.1").await?;
        wait_phase(&api, name, "Progressing", INIT, &controller).await?;
        wait_phase(&api, name, "Succeeded", RUN, &controller).await?;
        let primary = daemonsets.get(&format!("{name}-primary")).await?;
        let image = e2e::controller::template_image(primary.spec.as_ref().map(|s| &s.template));
        ensure!(image.ends_with(":6.0.1"), "primary DaemonSet runs {image}");

        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"revertOnDeletion": true}})),
        )
        .await?;
        let obj = wait_canary(
            &api,
            name,
            "holding the finalizer",
            INIT,
            &controller,
            |o| o.finalizers().iter().any(|f| f == "finalizer.flagger.app"),
        )
        .await?;
        api.delete(name, &DeleteParams::default()).await?;
        let uid = obj.uid().unwrap_or_default();
        tokio::time::timeout(
            INIT,
            await_condition(api.clone(), name, conditions::is_deleted(&uid)),
        )
        .await
        .with_context(|| {
            format!(
                "Canary not gone; controller log tail:\n{}",
                controller.log_tail()
            )
        })??;
        let target = wait_for(
            &daemonsets,
            name,
            "un-parked",
            INIT,
            |d: Option<&DaemonSet>| d.is_some() && !parked(d),
        )
        .await?;
        let image = e2e::controller::template_image(target.spec.as_ref().map(|s| &s.template));
        ensure!(
            image.ends_with(":6.0.1"),
            "the reverted DaemonSet runs {image}"
        );
        wait_for(
            &daemonsets,
            name,
            "a ready pod",
            INIT,
            |d: Option<&DaemonSet>| {
                d.and_then(|d| d.status.as_ref())
                    .is_some_and(|s| s.number_ready >= 1)
            },
        )
        .await?;
        Ok(())
    })
    .await
}

// --- switching from Flagger mid-analysis ---------------------------------------------------------------------

/// An owner reference to `canary`, as Flagger sets on every object it creates for it.
fn owned_by(canary: &DynamicObject) -> Value {
    json!([{"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": canary.name_any(),
            "uid": canary.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true}])
}

/// What Flagger 1.44 leaves of a blue/green run stopped after iteration 2 of 6 (the shape of the statuses it
/// recorded in tests/fixtures/flagger-1.44-status-vectors.json): the target scaled up with the new version, the
/// primary on the promoted one (selector `app=<name>-primary`, Flagger's `flagger-id` annotation), the three
/// Services, and a `Progressing` status holding Flagger's hashes of both revisions.
async fn as_flagger_left_it_mid_analysis(ns: &TestNamespace) -> e2e::Result<DynamicObject> {
    let progress = json!({"canaryWeight": 0, "iterations": 2});
    as_flagger_left_it(ns, blue_green_canary(APP, "2s", 6, json!([])), progress).await
}

/// The objects of [`as_flagger_left_it_mid_analysis`] for `canary`, its `Progressing` status at `progress`
/// (`canaryWeight`, `iterations`).
async fn as_flagger_left_it(
    ns: &TestNamespace,
    canary: Value,
    progress: Value,
) -> e2e::Result<DynamicObject> {
    let canary: DynamicObject = serde_json::from_value(canary)?;
    let canary = canaries(ns).create(&PostParams::default(), &canary).await?;
    let deployments: Api<Deployment> = ns.api();
    deployments
        .create(
            &PostParams::default(),
            &App::new(APP, "6.0.1", 1).deployment()?,
        )
        .await?;
    let primary_name = format!("{APP}-primary");
    let mut primary = serde_json::to_value(App::new(&primary_name, "6.0.0", 1).deployment()?)?;
    primary["metadata"]["ownerReferences"] = owned_by(&canary);
    let template = &mut primary["spec"]["template"]["metadata"];
    template["annotations"] = json!({"flagger-id": "9b2e4c1a-7d3f-4e6b-8a5c-1f0e9d8c7b6a"});
    deployments
        .create(&PostParams::default(), &serde_json::from_value(primary)?)
        .await?;
    for (name, selects) in [
        (APP.to_string(), primary_name.clone()),
        (primary_name.clone(), primary_name.clone()),
        (format!("{APP}-canary"), APP.to_string()),
    ] {
        let mut svc = serde_json::to_value(service(&name, &selects)?)?;
        svc["metadata"]["ownerReferences"] = owned_by(&canary);
        ns.api::<Service>()
            .create(&PostParams::default(), &serde_json::from_value(svc)?)
            .await?;
    }
    let mut status = json!({"status": {
        "phase": "Progressing", "failedChecks": 0,
        "lastAppliedSpec": "6d4f8b7c9", "lastPromotedSpec": "5974fdb97c",
        "trackedConfigs": {},
        "lastTransitionTime": "2026-12-04T20:00:00Z",
        "conditions": [{"type": "Promoted", "status": "Unknown", "reason": "Progressing",
            "message": "New revision detected, progressing canary analysis.",
            "lastUpdateTime": "2026-12-04T20:00:00Z", "lastTransitionTime": "2026-12-04T20:00:00Z"}]
    }});
    if let (Some(status), Some(progress)) = (status["status"].as_object_mut(), progress.as_object())
    {
        status.extend(progress.clone());
    }
    let canary = canaries(ns)
        .patch_status(APP, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context("writing Flagger's status")?;
    for name in [APP, primary_name.as_str()] {
        wait_for(
            &deployments,
            name,
            "available",
            INIT,
            deployment_available(),
        )
        .await?;
    }
    Ok(canary)
}

/// A run taken over from Flagger is the run Flagger started: no "New revision detected" of its own.
async fn ensure_no_new_revision_announced(ns: &TestNamespace) -> e2e::Result<()> {
    ensure!(
        count_events(ns, APP, "New revision detected").await? == 0,
        "a resumed run announced a new revision: {:#?}",
        events_for(ns, "Canary", APP).await?
    );
    Ok(())
}

/// Flagger was stopped while a blue/green run was at iteration 2 of 6: flagger-rs takes the status in (its own
/// revision format replaces Flagger's hash), carries on with iterations 3 to 6 without restarting from 0 or
/// announcing a new revision, and promotes the new version exactly once.
#[tokio::test]
async fn flagger_mid_analysis_scenario_resumes_at_its_iteration() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("fs-midrun", |ns| async move {
        install_crds(&ns.client).await?;
        as_flagger_left_it_mid_analysis(&ns).await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();
        let generation = primary_generation(&deployments, APP).await?;
        let controller = start_controller(&ns.name, &[])?;
        let done = wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        eprintln!("observed: {}", recorder.render());

        let steps = recorder.steps();
        let analysed: Vec<i64> = steps
            .iter()
            .filter(|s| s.phase == "Progressing")
            .map(|s| s.iterations)
            .collect();
        ensure!(
            analysed.first() == Some(&2) && analysed.windows(2).all(|w| w[0] <= w[1]),
            "the run did not resume at iteration 2: {}",
            recorder.render()
        );
        for i in 3..=6 {
            ensure!(
                analysed.contains(&i),
                "iteration {i} never analysed: {}",
                recorder.render()
            );
        }
        recorder.ensure_promoted_once()?;
        ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        let applied = e2e::controller::status(&done)["lastAppliedSpec"].clone();
        ensure!(
            applied.as_str().is_some_and(|h| h.starts_with("r1.")),
            "Flagger's hash not replaced: lastAppliedSpec {applied}"
        );
        ensure_no_new_revision_announced(&ns).await?;
        Ok(())
    })
    .await
}

/// Flagger was stopped while a Traefik canary run (stepWeight 10, maxWeight 50) had sent 20 % to the canary:
/// its TraefikService as Flagger wrote it (80/20) and a `Progressing` status at `canaryWeight` 20 with Flagger's
/// hashes. flagger-rs takes the run over at weight 20 — never back to 10 or 0 — advances 30, 40, 50, and promotes
/// once without announcing a new revision. The weights are checked on the TraefikService, as the router reads them.
#[tokio::test]
async fn flagger_weighted_mid_analysis_scenario_resumes_at_its_weight() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("fs-midweight", |ns| async move {
        install_crds(&ns.client).await?;
        let mut canary = blue_green_canary(APP, "2s", 0, json!([]));
        canary["spec"]["provider"] = json!("traefik");
        canary["spec"]["analysis"] =
            json!({"interval": "2s", "threshold": 2, "stepWeight": 10, "maxWeight": 50});
        let progress = json!({"canaryWeight": 20, "iterations": 0});
        let canary = as_flagger_left_it(&ns, canary, progress).await?;
        let mut split = serde_json::to_value(weighted_traefik_service(
            APP,
            &[("podinfo-primary", 80), ("podinfo-canary", 20)],
        )?)?;
        split["metadata"]["ownerReferences"] = owned_by(&canary);
        let traefik: Api<DynamicObject> = Api::namespaced_with(
            ns.client.clone(),
            &ns.name,
            &traefik_resource("TraefikService", "traefikservices"),
        );
        traefik
            .create(&PostParams::default(), &serde_json::from_value(split)?)
            .await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();
        let generation = primary_generation(&deployments, APP).await?;
        let controller = start_controller(&ns.name, &[])?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        eprintln!("observed: {}", recorder.render());

        let weights: Vec<i64> = recorder
            .steps()
            .iter()
            .filter(|s| s.phase == "Progressing")
            .map(|s| s.weight)
            .collect();
        ensure!(
            weights.first() == Some(&20)
                && weights.windows(2).all(|w| w[0] <= w[1])
                && [30, 40, 50].iter().all(|w| weights.contains(w)),
            "the run did not resume at weight 20 and advance to 50: {}",
            recorder.render()
        );
        recorder.ensure_promoted_once()?;
        ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        let routed = traefik.get(APP).await?;
        let services = &routed.data["spec"]["weighted"]["services"];
        let weights: Vec<(&str, i64)> = services
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let name = s["name"].as_str().unwrap_or_default();
                (name, s["weight"].as_i64().unwrap_or(0))
            })
            .filter(|(_, w)| *w > 0)
            .collect();
        ensure!(
            weights == [("podinfo-primary", 100)],
            "TraefikService after promotion: {services}"
        );
        ensure_no_new_revision_announced(&ns).await?;
        Ok(())
    })
    .await
}

// --- skipAnalysis with an image that never runs ---------------------------------------------------------------

/// Flagger's skip-analysis script (its Istio routing aside): with `skipAnalysis`, a new image is promoted at once;
/// then an image that does not exist (the cluster's pods for tag `broken` never become ready) is never promoted:
/// the canary stays not ready until its progress deadline, the run fails, and the primary keeps running the
/// previous version with its replica.
#[tokio::test]
async fn skip_analysis_scenario_fails_an_image_that_never_becomes_ready() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("fs-skip", |ns| async move {
        install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let mut canary = blue_green_canary(APP, "2s", 3, json!([]));
        canary["spec"]["skipAnalysis"] = json!(true);
        canary["spec"]["progressDeadlineSeconds"] = json!(15);
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        let deployments: Api<Deployment> = ns.api();

        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        let generation = primary_generation(&deployments, APP).await?;

        let recorder = Recorder::start(&api, APP);
        set_image(&deployments, APP, "broken").await?;
        let failed = wait_phase(&api, APP, "Failed", RUN, &controller).await?;
        eprintln!("observed: {}", recorder.render());
        ensure!(
            !recorder.steps().iter().any(|s| s.phase == "Promoting"),
            "a version that never became ready was promoted: {}",
            recorder.render()
        );
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            e2e::controller::image_of(&primary).ends_with(":6.0.1")
                && primary.metadata.generation == generation,
            "the primary was changed: {} (generation {generation:?} -> {:?})",
            e2e::controller::image_of(&primary),
            primary.metadata.generation
        );
        let (replicas, ready) = primary
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .zip(primary.status.as_ref().and_then(|s| s.ready_replicas))
            .unwrap_or_default();
        ensure!(
            replicas == 1 && ready == 1,
            "primary replicas {replicas}, ready {ready}"
        );
        ensure!(
            e2e::controller::phase(&failed) == "Failed",
            "phase {}",
            e2e::controller::phase(&failed)
        );
        let events = events_for(&ns, "Canary", APP).await?;
        ensure!(
            events
                .iter()
                .any(|(t, _, m, _)| t == "Warning" && m.contains("progress deadline")),
            "no Warning names the progress deadline: {events:#?}"
        );
        Ok(())
    })
    .await
}

// --- Linkerd: a second Canary with its own Service port ---------------------------------------------------------

fn traffic_splits(ns: &TestNamespace) -> Api<DynamicObject> {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("split.smi-spec.io", "v1alpha1", "TrafficSplit"),
        "trafficsplits",
    );
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

/// `(service, [(backend, weight)])` of the TrafficSplit `name`, backends by name.
async fn split_of(ns: &TestNamespace, name: &str) -> e2e::Result<(String, Vec<(String, i64)>)> {
    let split = traffic_splits(ns)
        .get(name)
        .await
        .with_context(|| format!("TrafficSplit {name}"))?;
    let spec = &split.data["spec"];
    let mut backends = spec["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let weight = b["weight"]
                .as_i64()
                .or_else(|| b["weight"].as_str().and_then(|w| w.parse().ok()));
            (
                b["service"].as_str().unwrap_or_default().to_string(),
                weight.unwrap_or(-1),
            )
        })
        .collect::<Vec<_>>();
    backends.sort();
    Ok((
        spec["service"].as_str().unwrap_or_default().to_string(),
        backends,
    ))
}

/// The ports Service `name` serves.
async fn ports_of(services: &Api<Service>, name: &str) -> e2e::Result<Vec<i32>> {
    let svc = services
        .get(name)
        .await
        .with_context(|| format!("Service {name}"))?;
    Ok(svc
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .iter()
        .map(|p| p.port)
        .collect())
}

/// The `app` label Service `name` selects.
async fn selects(services: &Api<Service>, name: &str) -> e2e::Result<String> {
    let svc = services
        .get(name)
        .await
        .with_context(|| format!("Service {name}"))?;
    Ok(svc
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("app").cloned())
        .unwrap_or_default())
}

/// Flagger's Linkerd scenario's two Canaries, at the API level (no Linkerd proxy runs here): `podinfo` on port 80
/// and `podinfo-service` on its own port 9898, side by side in one namespace. Both initialise with Services of
/// their own ports (the apex `podinfo` selecting its primary, `podinfo-service-canary` selecting its target) and a
/// TrafficSplit each over their own backends; a new version of `podinfo` is promoted while `podinfo-service`,
/// its TrafficSplit and its primary stay as they were.
#[tokio::test]
async fn linkerd_scenario_second_canary_with_its_own_service_port() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("fs-linkerd", |ns| async move {
        install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &["-mesh-provider=linkerd"])?;
        let second = "podinfo-service";
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        deploy(&ns, &App::new(second, "6.0.0", 1), |_| {}).await?;
        let progressive = |name: &str, service: Value, max: u32| {
            json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                "metadata": {"name": name},
                "spec": {
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "progressDeadlineSeconds": 60,
                    "service": service,
                    "analysis": {"interval": "1s", "threshold": 2, "stepWeight": 10, "maxWeight": max},
                },
            })
        };
        create_canary(
            &ns,
            progressive(APP, json!({"port": 80, "targetPort": "http", "portDiscovery": true}), 50),
        )
        .await?;
        create_canary(
            &ns,
            progressive(second, json!({"port": 9898, "portDiscovery": true}), 30),
        )
        .await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        wait_phase(&api, second, "Initialized", INIT, &controller).await?;

        let services: Api<Service> = ns.api();
        ensure!(
            selects(&services, APP).await? == format!("{APP}-primary"),
            "Service {APP} does not select the primary"
        );
        ensure!(
            selects(&services, &format!("{second}-canary")).await? == second,
            "Service {second}-canary does not select {second}"
        );
        for (name, port) in [
            (APP.to_string(), 80),
            (format!("{APP}-canary"), 80),
            (second.to_string(), 9898),
            (format!("{second}-primary"), 9898),
            (format!("{second}-canary"), 9898),
        ] {
            let ports = ports_of(&services, &name).await?;
            ensure!(
                ports.first() == Some(&port),
                "Service {name} serves {ports:?}, want {port} first"
            );
        }
        let idle = |name: &str| {
            (
                name.to_string(),
                vec![
                    (format!("{name}-canary"), 0),
                    (format!("{name}-primary"), 100),
                ],
            )
        };
        for name in [APP, second] {
            let split = split_of(&ns, name).await?;
            ensure!(split == idle(name), "TrafficSplit {name}: {split:?}");
        }

        let deployments: Api<Deployment> = ns.api();
        let second_generation = primary_generation(&deployments, second).await?;
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            e2e::controller::image_of(&primary).ends_with(":6.0.1"),
            "primary of {APP} runs {}",
            e2e::controller::image_of(&primary)
        );
        ensure!(
            split_of(&ns, APP).await? == idle(APP),
            "TrafficSplit {APP} after promotion"
        );
        let other = api.get(second).await?;
        ensure!(
            e2e::controller::phase(&other) == "Initialized",
            "{second} is {}",
            e2e::controller::phase(&other)
        );
        ensure!(
            split_of(&ns, second).await? == idle(second),
            "TrafficSplit {second} moved"
        );
        let second_primary = deployments.get(&format!("{second}-primary")).await?;
        ensure!(
            second_primary.metadata.generation == second_generation,
            "the primary of {second} was rewritten"
        );
        Ok(())
    })
    .await
}
