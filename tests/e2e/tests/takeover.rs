//! Behaving as Flagger where users' setups rely on it: a user's own Service taken over whatever its
//! ports, and canaries Flagger left taken over without a rollout. Each test runs its own
//! `flagger-rs controller -namespace=<its namespace>`; every Warning event and condition message the
//! tests produce is checked for debug text.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{
    self as ctl, canaries, count_events, deploy, events_for, image_of, set_image, start_controller,
    wait_canary, wait_phase,
};
use e2e::messages::ensure_plain_messages;
use e2e::objects::{App, deployment_available};
use e2e::{TestNamespace, skip_unless_e2e, wait_for, with_namespace};
use futures::TryStreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use serde_json::{Value, json};

const INIT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(90);
const APP: &str = "podinfo";
const USER_SERVICE: &str = "podinfo-svc";

/// One shape of a user's Service and of the Canary's `service`, with the ports the taken-over
/// Service must end with, as `(name, port, targetPort)` in order.
struct Shape {
    prefix: &'static str,
    user_ports: Value,
    canary_service: Value,
    /// Extra container ports of the target, beyond `http` 9898.
    container_ports: Value,
    want: &'static [(&'static str, i32, &'static str)],
}

/// A Service created the way `kubectl create` does (an Update, not an apply), with metadata of the
/// user's that must survive the takeover.
async fn create_users_service(ns: &TestNamespace, ports: &Value) -> e2e::Result<()> {
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": USER_SERVICE, "labels": {"team": "web"}, "annotations": {"owner": "web-team"}},
        "spec": {"type": "ClusterIP", "selector": {"app": APP, "tier": "web"}, "ports": ports}
    }))?;
    ns.api::<Service>()
        .create(&PostParams::default(), &svc)
        .await
        .context("creating the user's Service")?;
    Ok(())
}

fn ports_of(svc: &Service) -> Vec<(String, i32, String)> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let target = match p.target_port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                    n.to_string()
                }
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => s,
                None => String::new(),
            };
            (p.name.unwrap_or_default(), p.port, target)
        })
        .collect()
}

/// The user's Service and a Canary naming it; the Canary initialises with the Service's ports,
/// selector replaced and its metadata kept, then promotes a new version.
async fn take_over_users_service(shape: Shape) -> e2e::Result<()> {
    with_namespace(shape.prefix, |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let extra = shape.container_ports.clone();
        deploy(&ns, &App::new(APP, "6.0.0", 1), move |d| {
            let ports = d["spec"]["template"]["spec"]["containers"][0]["ports"]
                .as_array_mut()
                .expect("the App has container ports");
            ports.extend(extra.as_array().cloned().unwrap_or_default());
        })
        .await?;
        create_users_service(&ns, &shape.user_ports).await?;
        let controller = start_controller(&ns.name, &[])?;
        let mut service = json!({"name": USER_SERVICE});
        merge_into(&mut service, &shape.canary_service);
        let canary = json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": APP},
            "spec": {
                "provider": "kubernetes",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                "progressDeadlineSeconds": 60,
                "service": service,
                "analysis": {"interval": "1s", "threshold": 2, "iterations": 2},
            },
        });
        ctl::create_canary(&ns, canary).await?;
        wait_phase(&canaries(&ns), APP, "Initialized", INIT, &controller).await?;

        let svc = ns.api::<Service>().get(USER_SERVICE).await?;
        let want: Vec<(String, i32, String)> = shape
            .want
            .iter()
            .map(|(n, p, t)| (n.to_string(), *p, t.to_string()))
            .collect();
        ensure!(
            ports_of(&svc) == want,
            "ports {:?}, want {want:?}",
            ports_of(&svc)
        );
        let selector = svc.spec.as_ref().and_then(|s| s.selector.clone());
        ensure!(
            selector == Some([("app".to_string(), format!("{APP}-primary"))].into()),
            "selector {selector:?}"
        );
        ensure!(
            svc.labels().get("team").map(String::as_str) == Some("web")
                && svc.annotations().get("owner").map(String::as_str) == Some("web-team")
                && svc.owner_references().is_empty(),
            "the user's metadata changed: {:?}",
            svc.metadata
        );

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        wait_canary(&canaries(&ns), APP, "promoted", RUN, &controller, |o| {
            ctl::phase(o) == "Succeeded"
        })
        .await?;
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.1"),
            "primary image {}",
            image_of(&primary)
        );
        let svc = ns.api::<Service>().get(USER_SERVICE).await?;
        ensure!(
            ports_of(&svc) == want,
            "ports after promotion {:?}",
            ports_of(&svc)
        );
        ensure_plain_messages(&ns, APP).await
    })
    .await
}

fn merge_into(target: &mut Value, patch: &Value) {
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            t.insert(k.clone(), v.clone());
        }
    }
}

/// Flagger's kubernetes scenario: the user's `podinfo-svc` serves 9898 as `http`; the Canary wants
/// port 80 (also `http`) to 9898 with port discovery.
#[tokio::test]
async fn takeover_users_service_with_a_different_port_of_the_same_name() -> e2e::Result<()> {
    skip_unless_e2e!();
    take_over_users_service(Shape {
        prefix: "takeover-port",
        user_ports: json!([{"name": "http", "port": 9898, "targetPort": "http", "protocol": "TCP"}]),
        canary_service: json!({"port": 80, "targetPort": 9898, "portDiscovery": true}),
        container_ports: json!([]),
        want: &[("http", 80, "9898")],
    })
    .await
}

#[tokio::test]
async fn takeover_users_service_with_a_numbered_target_port_for_a_named_one() -> e2e::Result<()> {
    skip_unless_e2e!();
    take_over_users_service(Shape {
        prefix: "takeover-named",
        user_ports: json!([{"name": "http", "port": 80, "targetPort": 9898, "protocol": "TCP"}]),
        canary_service: json!({"port": 80, "targetPort": "http", "portDiscovery": false}),
        container_ports: json!([]),
        want: &[("http", 80, "http")],
    })
    .await
}

#[tokio::test]
async fn takeover_users_service_with_a_named_target_port_for_a_numbered_one() -> e2e::Result<()> {
    skip_unless_e2e!();
    take_over_users_service(Shape {
        prefix: "takeover-numbered",
        user_ports: json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]),
        canary_service: json!({"port": 80, "targetPort": 9898}),
        container_ports: json!([]),
        want: &[("http", 80, "9898")],
    })
    .await
}

#[tokio::test]
async fn takeover_users_service_adds_the_discovered_container_ports() -> e2e::Result<()> {
    skip_unless_e2e!();
    take_over_users_service(Shape {
        prefix: "takeover-discovery",
        user_ports: json!([{"name": "http", "port": 9898, "targetPort": 9898, "protocol": "TCP"}]),
        canary_service: json!({"port": 80, "targetPort": 9898, "portDiscovery": true}),
        container_ports: json!([
            {"name": "http-metrics", "containerPort": 9797, "protocol": "TCP"},
            {"name": "grpc", "containerPort": 9999, "protocol": "TCP"}
        ]),
        want: &[
            ("http", 80, "9898"),
            ("grpc", 9999, "9999"),
            ("http-metrics", 9797, "9797"),
        ],
    })
    .await
}

/// Several ports whose names and numbers overlap ours (`http` by name, `metrics` 9797 by number
/// with the discovered `http-metrics`), and one of another protocol.
#[tokio::test]
async fn takeover_users_service_with_several_ports() -> e2e::Result<()> {
    skip_unless_e2e!();
    take_over_users_service(Shape {
        prefix: "takeover-several",
        user_ports: json!([
            {"name": "http", "port": 9898, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9797, "targetPort": 9797, "protocol": "TCP"},
            {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"}
        ]),
        canary_service: json!({"port": 80, "targetPort": 9898, "portDiscovery": true}),
        container_ports: json!([{"name": "http-metrics", "containerPort": 9797, "protocol": "TCP"}]),
        want: &[("http", 80, "9898"), ("http-metrics", 9797, "9797")],
    })
    .await
}

// --- switching from Flagger --------------------------------------------------------------------

const VECTORS: &str = include_str!("../../fixtures/flagger-1.44-status-vectors.json");

/// The primary pod template as Flagger leaves it: the selector label names the primary, a
/// `flagger-id` annotation is added, and tracked configs are referenced by their `-primary` copies.
fn flaggers_primary_template(name: &str, target: &Value, tracked: &[&str]) -> Value {
    let mut t = target.clone();
    t["metadata"]["labels"]["app"] = json!(format!("{name}-primary"));
    t["metadata"]["annotations"]["flagger-id"] = json!("3f0c2d1e-5a4b-4c3d-9e8f-7a6b5c4d3e2f");
    let rename = |holder: &mut Value, field: &str, kind: &str| {
        let Some(name) = holder.get_mut(field).and_then(|r| r.get_mut("name")) else {
            return;
        };
        if let Some(n) = name.as_str().map(str::to_string)
            && tracked.contains(&format!("{kind}/{n}").as_str())
        {
            *name = json!(format!("{n}-primary"));
        }
    };
    if let Some(containers) = t["spec"]
        .get_mut("containers")
        .and_then(Value::as_array_mut)
    {
        for c in containers {
            if let Some(from) = c.get_mut("envFrom").and_then(Value::as_array_mut) {
                for f in from {
                    rename(f, "configMapRef", "configmap");
                    rename(f, "secretRef", "secret");
                }
            }
        }
    }
    if let Some(volumes) = t["spec"].get_mut("volumes").and_then(Value::as_array_mut) {
        for v in volumes {
            rename(v, "configMap", "configmap");
        }
    }
    t
}

fn owner(canary: &DynamicObject) -> Value {
    json!([{"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": canary.name_any(),
            "uid": canary.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true}])
}

/// Everything Flagger 1.44 leaves for one initialised canary: the Canary with its status, the
/// target scaled to zero, the primary, the three Services and the `-primary` config copies.
async fn as_flagger_left_it(ns: &TestNamespace, v: &Value, configs: &Value) -> e2e::Result<()> {
    let name = v["canary"].as_str().context("canary name")?;
    let deployments: Api<Deployment> = ns.api();
    let target: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": v["targetPodTemplate"]}
    }))?;
    deployments.create(&PostParams::default(), &target).await?;

    let canary: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {"interval": "1s", "threshold": 2, "iterations": 2},
        },
    }))?;
    let canary = canaries(ns).create(&PostParams::default(), &canary).await?;
    let status = json!({"status": {
        "phase": v["phase"], "canaryWeight": 0, "failedChecks": 0, "iterations": 0,
        "lastAppliedSpec": v["lastAppliedSpec"], "lastPromotedSpec": v["lastPromotedSpec"],
        "trackedConfigs": v["trackedConfigs"],
        "lastTransitionTime": "2026-12-04T12:00:00Z",
        "conditions": [{"type": "Promoted", "status": "True", "reason": "Initialized",
            "message": "Deployment initialization completed.",
            "lastUpdateTime": "2026-12-04T12:00:00Z", "lastTransitionTime": "2026-12-04T12:00:00Z"}]
    }});
    canaries(ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context("writing Flagger's status")?;

    let tracked: Vec<&str> = v["trackedConfigs"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for key in &tracked {
        let (kind, config) = key.split_once('/').context("config key")?;
        let copy = format!("{config}-primary");
        let data = &configs[*key];
        match kind {
            "configmap" => {
                let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": copy,
                    "ownerReferences": owner(&canary)}, "data": data}))?;
                ns.api::<ConfigMap>()
                    .create(&PostParams::default(), &cm)
                    .await?;
            }
            _ => {
                let s: Secret = serde_json::from_value(json!({"metadata": {"name": copy,
                    "ownerReferences": owner(&canary)}, "stringData": data, "type": "Opaque"}))?;
                ns.api::<Secret>()
                    .create(&PostParams::default(), &s)
                    .await?;
            }
        }
    }
    let primary_name = format!("{name}-primary");
    let primary: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": primary_name, "labels": {"app": primary_name}, "ownerReferences": owner(&canary)},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": primary_name}},
                 "template": flaggers_primary_template(name, &v["targetPodTemplate"], &tracked)}
    }))?;
    deployments.create(&PostParams::default(), &primary).await?;
    for (svc, selects) in [
        (name.to_string(), primary_name.clone()),
        (primary_name.clone(), primary_name.clone()),
        (format!("{name}-canary"), name.to_string()),
    ] {
        let s: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": svc, "labels": {"app": svc}, "ownerReferences": owner(&canary)},
            "spec": {"type": "ClusterIP", "selector": {"app": selects},
                     "ports": [{"name": "http", "port": 9898, "targetPort": 9898, "protocol": "TCP"}]}
        }))?;
        ns.api::<Service>()
            .create(&PostParams::default(), &s)
            .await?;
    }
    wait_for(
        &deployments,
        &primary_name,
        "available",
        INIT,
        deployment_available(),
    )
    .await?;
    Ok(())
}

/// The highest `spec.replicas` each Deployment had while watched.
fn watch_replicas(
    api: &Api<Deployment>,
) -> (
    Arc<Mutex<BTreeMap<String, i32>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = Arc::new(Mutex::new(BTreeMap::<String, i32>::new()));
    let sink = seen.clone();
    let stream = watcher(api.clone(), watcher::Config::default()).applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(d)) = stream.try_next().await {
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            if let Ok(mut m) = sink.lock() {
                let e = m.entry(d.name_any()).or_insert(replicas);
                *e = (*e).max(replicas);
            }
        }
    });
    (seen, task)
}

/// Five canaries as Flagger 1.44 left them: flagger-rs adopts their statuses without a new
/// revision, a scale-up or any event but informational ones; then a new image on one of them starts
/// exactly one analysis, which promotes.
#[tokio::test]
async fn takeover_from_flagger_starts_no_rollout() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("takeover-flagger", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let vectors: Value = serde_json::from_str(VECTORS)?;
        let cfg = &vectors["configs"];
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "app-config"}, "data": cfg["configmap/app-config"]}))?;
        ns.api::<ConfigMap>().create(&PostParams::default(), &cm).await?;
        let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "app-secret"}, "stringData": cfg["secret/app-secret"], "type": "Opaque"}))?;
        ns.api::<Secret>().create(&PostParams::default(), &secret).await?;
        let list = vectors["canaries"].as_array().context("canaries")?.clone();
        for v in &list {
            as_flagger_left_it(&ns, v, cfg).await?;
        }
        let deployments: Api<Deployment> = ns.api();
        let (replicas, watch) = watch_replicas(&deployments);

        let controller = start_controller(&ns.name, &[])?;
        for v in &list {
            let name = v["canary"].as_str().context("name")?;
            let adopted = wait_canary(&canaries(&ns), name, "adopted", INIT, &controller, |o| {
                ctl::status(o)["lastAppliedSpec"].as_str().is_some_and(|h| h.starts_with("r1."))
            })
            .await?;
            let s = ctl::status(&adopted);
            ensure!(
                s["lastAppliedSpec"] == s["lastPromotedSpec"] && ctl::phase(&adopted) == "Initialized",
                "{name}: not adopted as up to date: {s}"
            );
        }

        // One real change: exactly one analysis, on that canary only.
        let changed = "plain";
        let generation = deployments.get(&format!("{changed}-primary")).await?.metadata.generation;
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.0.1"}]}}}});
        deployments
            .patch(changed, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        wait_phase(&canaries(&ns), changed, "Succeeded", RUN, &controller).await?;
        let primary = deployments.get(&format!("{changed}-primary")).await?;
        ensure!(image_of(&primary).ends_with(":6.0.1"), "primary image {}", image_of(&primary));
        ensure!(
            primary.metadata.generation == generation.map(|g| g + 1),
            "primary of {changed} written {:?} → {:?}, want one promotion",
            generation,
            primary.metadata.generation
        );
        ensure!(
            count_events(&ns, changed, "New revision detected").await? == 1,
            "{changed}: {:#?}",
            events_for(&ns, "Canary", changed).await?
        );

        let seen = replicas.lock().map(|m| m.clone()).unwrap_or_default();
        watch.abort();
        for v in &list {
            let name = v["canary"].as_str().context("name")?;
            ensure_plain_messages(&ns, name).await?;
            if name == changed {
                continue;
            }
            let events = events_for(&ns, "Canary", name).await?;
            ensure!(
                events.iter().all(|(t, _, m, _)| t == "Normal" && !m.starts_with("New revision")),
                "{name}: events {events:#?}"
            );
            ensure!(seen.get(name) == Some(&0), "{name}: target scaled to {:?}", seen.get(name));
            let canary = canaries(&ns).get(name).await?;
            ensure!(ctl::phase(&canary) == "Initialized", "{name}: phase {}", ctl::phase(&canary));
        }
        Ok(())
    })
    .await
}
