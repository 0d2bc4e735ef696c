//! The ingress routers (contour; gloo and apisix when built) on the real API server with the vendors' CRDs
//! installed by hack/cluster/up: a `flagger-rs controller` child runs whole canaries while a watch records every
//! routing shape the router's object goes through. No Contour/Envoy data plane runs in the harness, so these runs
//! prove the objects: accepted under the vendor's schema, read back equal to what the router renders at each
//! step, split for A/B, promoted, rolled back, and gone with the Canary. The checks that move these runs are the
//! tests' own hooks; `mesh_analysis` judges a contour run by its builtin metrics.
//!
//! Run: `hack/e2e ingress_`.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{
    Proc, canaries, create_canary, deploy, image_of, set_image, start_controller, wait_phase,
};
use e2e::hooks::HookCatcher;
use e2e::objects::{APP_PORT, App};
use e2e::shapes::{ShapeOf, Shapes, ensure_same};
use e2e::{TestNamespace, skip_unless_e2e, with_namespace};
use flagger_api::Canary;
use flagger_core::Routes;
use flagger_providers::router::contour;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt as _};
use serde_json::{Value, json};

const APP: &str = "podinfo";
/// Initialisation: primary rollout (kwok pods are Ready at once) plus one tick.
const INIT: Duration = Duration::from_secs(60);
/// A whole run at a 1 s interval.
const RUN: Duration = Duration::from_secs(120);
const INGRESS_CLASS: &str = "contour-internal";

fn dynamic(ns: &TestNamespace, gvk: (&str, &str, &str), plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2), plural);
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

fn http_proxies(ns: &TestNamespace) -> Api<DynamicObject> {
    dynamic(ns, ("projectcontour.io", "v1", "HTTPProxy"), "httpproxies")
}

/// `p/c` of the HTTPProxy's first route (by service name), prefixed `ab ` when more routes follow it.
fn contour_shape(apex: &str) -> ShapeOf {
    let (primary, canary) = (format!("{apex}-primary"), format!("{apex}-canary"));
    Box::new(move |v: &Value| {
        let routes = v["spec"]["routes"].as_array()?;
        let services = routes.first()?["services"].as_array()?;
        let weight = |name: &str| {
            services
                .iter()
                .find(|s| s["name"] == name)?
                .get("weight")?
                .as_u64()
        };
        let s = format!("{}/{}", weight(&primary)?, weight(&canary)?);
        Some(if routes.len() > 1 {
            format!("ab {s}")
        } else {
            s
        })
    })
}

async fn live_canary(ns: &TestNamespace, name: &str) -> e2e::Result<Canary> {
    let api: Api<Canary> = ns.api();
    api.get(name).await.context("reading the Canary")
}

/// The HTTPProxy as the API server holds it equals what the contour router renders for `routes`.
async fn ensure_contour_rendered(
    ns: &TestNamespace,
    name: &str,
    routes: Routes,
) -> e2e::Result<Value> {
    let canary = live_canary(ns, name).await?;
    let apex = canary.spec.apex_name().to_string();
    let live = serde_json::to_value(http_proxies(ns).get(&apex).await?)?;
    let want = contour::render(&canary, routes, INGRESS_CLASS)?;
    ensure_same("HTTPProxy", &live, &want)?;
    Ok(live)
}

fn canary_of(name: &str, provider: &str, service: Value, analysis: Value) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 60,
            "service": service,
            "analysis": analysis,
        },
    })
}

async fn wait_deleted(api: &Api<DynamicObject>, name: &str, uid: &str) -> e2e::Result<()> {
    tokio::time::timeout(
        INIT,
        await_condition(api.clone(), name, conditions::is_deleted(uid)),
    )
    .await
    .with_context(|| format!("{name} not deleted after {INIT:?}"))??;
    Ok(())
}

/// Deleting the Canary takes the routing object with it (owner reference, the garbage collector).
async fn ensure_goes_with_the_canary(
    ns: &TestNamespace,
    routing: &Api<DynamicObject>,
    name: &str,
    controller: &Proc,
) -> e2e::Result<()> {
    let uid = routing.get(name).await?.uid().unwrap_or_default();
    canaries(ns).delete(APP, &DeleteParams::default()).await?;
    wait_deleted(routing, name, &uid)
        .await
        .with_context(|| format!("controller log tail:\n{}", controller.log_tail()))
}

/// The contour router with every structural field it writes (prefix, timeout, retries, request/response header
/// policies, `-ingress-class`): weights step 20 % to 60 %, held at the promotion gate, promoted; the next version
/// held at 60 % again and rolled back by a rollback hook; deleting the Canary deletes the HTTPProxy.
#[tokio::test]
async fn ingress_contour_steps_promotes_rolls_back_and_goes_with_the_canary() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("contour-canary", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(
            &ns.name,
            &[&format!("-ingress-class={INGRESS_CLASS}")],
        )?;
        let shapes = Shapes::start(http_proxies(&ns), "HTTPProxy", APP, contour_shape(APP));
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let service = json!({
            "port": APP_PORT, "targetPort": APP_PORT,
            "match": [{"uri": {"prefix": "/api"}}],
            "timeout": "15s",
            "retries": {"attempts": 3, "perTryTimeout": "5s", "retryOn": "5xx,gateway-error"},
            "headers": {
                "request": {"set": {"x-served-by": "flagger"}, "remove": ["x-debug"]},
                "response": {"add": {"x-canary": "maybe"}},
            },
            "apex": {"labels": {"team": "payments"}, "annotations": {"owner": "team-payments"}},
        });
        let analysis = json!({
            "interval": "1s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
            "webhooks": [
                {"name": "promotion", "type": "confirm-promotion", "url": hooks.at("/gate/promote")},
                // Answers 200, which rolls the run back, once the test opens it.
                {"name": "rollback", "type": "rollback", "url": hooks.at("/gate/rollback")},
            ],
        });
        create_canary(&ns, canary_of(APP, "contour", service, analysis)).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        let live = ensure_contour_rendered(&ns, APP, Routes::PRIMARY).await?;
        ensure!(
            live["metadata"]["annotations"][contour::INGRESS_CLASS_ANNOTATION] == INGRESS_CLASS
                && live["spec"]["ingressClassName"] == INGRESS_CLASS,
            "ingress class not written: {:#}",
            live["metadata"]
        );

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        shapes.wait_for("40/60", RUN, &controller).await?;
        ensure_contour_rendered(&ns, APP, Routes::split(60)).await?;
        hooks.open_gate("/gate/promote");
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("100/0", RUN, &controller).await?;
        ensure_contour_rendered(&ns, APP, Routes::PRIMARY).await?;
        let steps = ["100/0", "80/20", "60/40", "40/60", "100/0"];
        ensure!(shapes.seen() == steps, "HTTPProxy shapes {:?}, want {steps:?}", shapes.seen());
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(image_of(&primary).ends_with(":6.0.1"), "primary image {}", image_of(&primary));

        hooks.close_gate("/gate/promote");
        shapes.reset();
        set_image(&deployments, APP, "6.0.2").await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        shapes.wait_for("40/60", RUN, &controller).await?;
        hooks.open_gate("/gate/rollback");
        wait_phase(&api, APP, "Failed", RUN, &controller).await?;
        shapes.wait_for("100/0", RUN, &controller).await?;
        ensure_contour_rendered(&ns, APP, Routes::PRIMARY).await?;
        ensure!(shapes.seen() == steps, "HTTPProxy shapes {:?}, want {steps:?}", shapes.seen());
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(image_of(&primary).ends_with(":6.0.1"), "primary image after rollback {}", image_of(&primary));

        ensure_goes_with_the_canary(&ns, &http_proxies(&ns), APP, &controller).await
    })
    .await
}

/// A/B on contour: the header and cookie matches route to the canary (one route each) while a last route keeps
/// everything else on the primary, then promotion.
#[tokio::test]
async fn ingress_contour_ab_testing_routes_matches_to_the_canary() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("contour-ab", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(
            &ns.name,
            &[&format!("-ingress-class={INGRESS_CLASS}")],
        )?;
        let shapes = Shapes::start(http_proxies(&ns), "HTTPProxy", APP, contour_shape(APP));
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let analysis = json!({
            "interval": "1s", "threshold": 2, "iterations": 3,
            "match": [
                {"headers": {"x-canary": {"exact": "insider"}, "user-agent": {"suffix": "Firefox"}}},
                {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
            ],
            "webhooks": [{"name": "promotion", "type": "confirm-promotion", "url": hooks.at("/gate")}],
        });
        let service = json!({"port": APP_PORT, "targetPort": APP_PORT});
        create_canary(&ns, canary_of(APP, "contour", service, analysis)).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        ensure_contour_rendered(&ns, APP, Routes::PRIMARY).await?;

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        shapes.wait_for("ab 0/100", RUN, &controller).await?;
        let live = ensure_contour_rendered(&ns, APP, Routes::CANARY).await?;
        let routes = &live["spec"]["routes"];
        ensure!(
            routes.as_array().map(Vec::len) == Some(3)
                && routes[0]["conditions"].as_array().map(Vec::len) == Some(3)
                && routes[1]["conditions"][1]["header"]["regex"].is_string()
                && routes[2]["conditions"] == json!([{"prefix": "/"}])
                && routes[2]["services"][0]["weight"] == 100,
            "A/B routes {routes:#}"
        );
        hooks.open_gate("/gate");
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("ab 100/0", RUN, &controller).await?;
        ensure_contour_rendered(&ns, APP, Routes::PRIMARY).await?;
        let want = ["ab 100/0", "ab 0/100", "ab 100/0"];
        ensure!(shapes.seen() == want, "HTTPProxy shapes {:?}, want {want:?}", shapes.seen());
        Ok(())
    })
    .await
}
