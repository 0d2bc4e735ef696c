//! Flagger's own end-to-end scenarios that no other file of ours covered, written from what Flagger's scripts set
//! up and assert (docs/flagger-scenarios.md lists them all). Each test runs its own controller against its own
//! namespace; run with `hack/e2e` (skipped, passing, when FLAGGER_E2E is unset).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{
    blue_green_canary, canaries, create_canary, deploy, ensure_primary_promoted_once, install_crds,
    set_image, start_controller, wait_canary, wait_phase, wait_replicas,
};
use e2e::messages::ensure_plain_messages;
use e2e::objects::{App, autoscaler_ref, hpa, service, traefik_resource};
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

        let generation = deployments
            .get(&format!("{APP}-primary"))
            .await?
            .metadata
            .generation;
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
        let generation = deployments
            .get(&format!("{APP}-primary"))
            .await?
            .metadata
            .generation;
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
        let generation = deployments
            .get(&format!("{APP}-primary"))
            .await?
            .metadata
            .generation;
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
