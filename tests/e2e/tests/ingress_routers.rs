//! The ingress routers (contour, gloo, apisix) on the real API server with the vendors' CRDs
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
    Proc, canaries, create_canary, deploy, image_of, set_image, start_controller, step,
    wait_canary, wait_phase,
};
use e2e::hooks::HookCatcher;
use e2e::objects::{APP_PORT, App};
use e2e::shapes::{ShapeOf, Shapes, ensure_same};
use e2e::{TestNamespace, skip_unless_e2e, with_namespace};
use flagger_api::Canary;
use flagger_core::Routes;
use flagger_providers::router::{apisix, contour, gloo};
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

fn route_tables(ns: &TestNamespace) -> Api<DynamicObject> {
    dynamic(ns, ("gateway.solo.io", "v1", "RouteTable"), "routetables")
}

fn upstreams(ns: &TestNamespace) -> Api<DynamicObject> {
    dynamic(ns, ("gloo.solo.io", "v1", "Upstream"), "upstreams")
}

/// `p/c` of the RouteTable's first route (by upstream name), prefixed `ab ` when more routes follow it.
fn gloo_shape(ns: &str, apex: &str) -> ShapeOf {
    let upstream = |side: &str| format!("{ns}-{apex}-{side}upstream-{APP_PORT}");
    let (primary, canary) = (upstream("primary"), upstream("canary"));
    Box::new(move |v: &Value| {
        let routes = v["spec"]["routes"].as_array()?;
        let destinations = routes.first()?["routeAction"]["multi"]["destinations"].as_array()?;
        let weight = |name: &str| {
            destinations
                .iter()
                .find(|d| d["destination"]["upstream"]["name"] == name)?
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

/// The RouteTable and both Upstreams as the API server holds them equal what the gloo router renders.
async fn ensure_gloo_rendered(
    ns: &TestNamespace,
    name: &str,
    routes: Routes,
    template: &Value,
) -> e2e::Result<()> {
    let canary = live_canary(ns, name).await?;
    let live = serde_json::to_value(route_tables(ns).get(canary.spec.apex_name()).await?)?;
    ensure_same("RouteTable", &live, &gloo::route_table(&canary, routes)?)?;
    for side in [gloo::Side::Primary, gloo::Side::Canary] {
        let want = gloo::upstream(&canary, side, Some(template))?;
        let live = serde_json::to_value(
            upstreams(ns)
                .get(&gloo::upstream_name(&canary, side)?)
                .await?,
        )?;
        ensure_same("Upstream", &live, &want)?;
    }
    Ok(())
}

/// The gloo router: Upstreams for primary and canary made from the `upstreamRef` template (its connection
/// settings and labels), weights step 20 % to 60 %, held at the promotion gate, promoted; the next version held
/// at 60 % and rolled back by a rollback hook; deleting the Canary deletes the RouteTable and the Upstreams.
#[tokio::test]
async fn ingress_gloo_upstreams_from_the_template_steps_promotes_and_rolls_back() -> e2e::Result<()>
{
    skip_unless_e2e!();
    with_namespace("gloo-canary", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &["-mesh-provider=gloo"])?;
        let shapes = Shapes::start(route_tables(&ns), "RouteTable", APP, gloo_shape(&ns.name, APP));
        let template: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gloo.solo.io/v1", "kind": "Upstream",
            "metadata": {"name": "template", "namespace": ns.name, "labels": {"tier": "backend"}},
            "spec": {
                "kube": {"serviceName": "unused", "serviceNamespace": ns.name, "servicePort": 80},
                "connectionConfig": {"maxRequestsPerConnection": 100, "connectTimeout": "2s"},
                "circuitBreakers": {"maxConnections": 10, "maxRetries": 3},
                "useHttp2": true,
            },
        }))?;
        let template = serde_json::to_value(e2e::apply(&upstreams(&ns), &template).await?)?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let mut canary = canary_of(
            APP,
            "gloo",
            json!({"port": APP_PORT, "targetPort": APP_PORT, "apex": {"labels": {"team": "payments"}}}),
            json!({
                "interval": "1s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
                "webhooks": [
                    {"name": "promotion", "type": "confirm-promotion", "url": hooks.at("/gate/promote")},
                    {"name": "rollback", "type": "rollback", "url": hooks.at("/gate/rollback")},
                ],
            }),
        );
        canary["spec"]["upstreamRef"] = json!({"apiVersion": "gloo.solo.io/v1", "kind": "Upstream", "name": "template"});
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        ensure_gloo_rendered(&ns, APP, Routes::PRIMARY, &template).await?;
        let primary_upstream = upstreams(&ns).get(&format!("{}-{APP}-primaryupstream-{APP_PORT}", ns.name)).await?;
        let primary_upstream = serde_json::to_value(primary_upstream)?;
        ensure!(
            primary_upstream["spec"]["circuitBreakers"] == json!({"maxConnections": 10, "maxRetries": 3})
                && primary_upstream["spec"]["kube"]["serviceName"] == format!("{APP}-primary").as_str()
                && primary_upstream["metadata"]["labels"]["tier"] == "backend",
            "primary Upstream {primary_upstream:#}"
        );

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        shapes.wait_for("40/60", RUN, &controller).await?;
        ensure_gloo_rendered(&ns, APP, Routes::split(60), &template).await?;
        hooks.open_gate("/gate/promote");
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("100/0", RUN, &controller).await?;
        ensure_gloo_rendered(&ns, APP, Routes::PRIMARY, &template).await?;
        let steps = ["100/0", "80/20", "60/40", "40/60", "100/0"];
        ensure!(shapes.seen() == steps, "RouteTable shapes {:?}, want {steps:?}", shapes.seen());

        hooks.close_gate("/gate/promote");
        shapes.reset();
        set_image(&deployments, APP, "6.0.2").await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        shapes.wait_for("40/60", RUN, &controller).await?;
        hooks.open_gate("/gate/rollback");
        wait_phase(&api, APP, "Failed", RUN, &controller).await?;
        shapes.wait_for("100/0", RUN, &controller).await?;
        ensure_gloo_rendered(&ns, APP, Routes::PRIMARY, &template).await?;
        ensure!(shapes.seen() == steps, "RouteTable shapes {:?}, want {steps:?}", shapes.seen());
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(image_of(&primary).ends_with(":6.0.1"), "primary image after rollback {}", image_of(&primary));

        let canary_upstream = format!("{}-{APP}-canaryupstream-{APP_PORT}", ns.name);
        let upstream_uid = upstreams(&ns).get(&canary_upstream).await?.uid().unwrap_or_default();
        ensure_goes_with_the_canary(&ns, &route_tables(&ns), APP, &controller).await?;
        wait_deleted(&upstreams(&ns), &canary_upstream, &upstream_uid).await
    })
    .await
}

/// A/B on gloo: one matcher per match entry on the weighted route, a catch-all route to the primary after it.
#[tokio::test]
async fn ingress_gloo_ab_testing_routes_matches_to_the_canary() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("gloo-ab", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &[])?;
        let shapes = Shapes::start(route_tables(&ns), "RouteTable", APP, gloo_shape(&ns.name, APP));
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let analysis = json!({
            "interval": "1s", "threshold": 2, "iterations": 3,
            "match": [
                {"headers": {"x-canary": {"exact": "insider"}}},
                {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
            ],
            "webhooks": [{"name": "promotion", "type": "confirm-promotion", "url": hooks.at("/gate")}],
        });
        create_canary(&ns, canary_of(APP, "gloo", json!({"port": APP_PORT, "targetPort": APP_PORT}), analysis)).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        shapes.wait_for("ab 0/100", RUN, &controller).await?;
        let canary = live_canary(&ns, APP).await?;
        let live = serde_json::to_value(route_tables(&ns).get(APP).await?)?;
        ensure_same("RouteTable", &live, &gloo::route_table(&canary, Routes::CANARY)?)?;
        ensure!(
            live["spec"]["routes"][0]["matchers"].as_array().map(Vec::len) == Some(2)
                && live["spec"]["routes"][0]["matchers"][1]["headers"][0]["regex"] == true
                && live["spec"]["routes"][1].get("matchers").is_none(),
            "A/B routes {:#}",
            live["spec"]["routes"]
        );
        hooks.open_gate("/gate");
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("ab 100/0", RUN, &controller).await?;
        let want = ["ab 100/0", "ab 0/100", "ab 100/0"];
        ensure!(shapes.seen() == want, "RouteTable shapes {:?}, want {want:?}", shapes.seen());
        Ok(())
    })
    .await
}

fn apisix_routes(ns: &TestNamespace) -> Api<DynamicObject> {
    dynamic(
        ns,
        ("apisix.apache.org", "v2", "ApisixRoute"),
        "apisixroutes",
    )
}

/// `p/c` of the generated ApisixRoute's backends (by service name).
fn apisix_shape(apex: &str) -> ShapeOf {
    let (primary, canary) = (format!("{apex}-primary"), format!("{apex}-canary"));
    Box::new(move |v: &Value| {
        let backends = v["spec"]["http"].as_array()?.first()?["backends"].as_array()?;
        let weight = |name: &str| {
            backends
                .iter()
                .find(|b| b["serviceName"] == name)?
                .get("weight")?
                .as_u64()
        };
        Some(format!("{}/{}", weight(&primary)?, weight(&canary)?))
    })
}

/// The user's ApisixRoute the Canary's `routeRef` names: a static route the canary leaves alone, and the route to
/// the app with a match, a plugin and the backend settings the canary's backend copies.
fn apisix_user_route(ns: &str) -> e2e::Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
        "metadata": {"name": "web", "namespace": ns, "labels": {"team": "payments"}},
        "spec": {
            "ingressClassName": "apisix",
            "http": [
                {"name": "static", "match": {"paths": ["/static/*"]},
                 "backends": [{"serviceName": "static", "servicePort": 80}]},
                {"name": "app", "priority": 1,
                 "match": {"hosts": ["app.example.com"], "methods": ["GET", "POST"], "paths": ["/*"]},
                 "plugins": [{"name": "prometheus", "enable": true, "config": {"prefer_name": true}}],
                 "backends": [{"serviceName": APP, "servicePort": APP_PORT, "resolveGranularity": "service"}]},
            ],
        },
    }))?)
}

/// The generated ApisixRoute as the API server holds it equals what the apisix router renders from the user's
/// route for `routes`, and the user's route is as they wrote it.
async fn ensure_apisix_rendered(
    ns: &TestNamespace,
    name: &str,
    routes: Routes,
    user: &DynamicObject,
) -> e2e::Result<()> {
    let canary = live_canary(ns, name).await?;
    let user_live = apisix_routes(ns).get(&user.name_any()).await?;
    ensure!(
        user_live.metadata.resource_version == user.metadata.resource_version,
        "the user's ApisixRoute was written: {:#}",
        serde_json::to_value(&user_live)?
    );
    let user_live = serde_json::to_value(user_live)?;
    let generated = apisix::canary_route_name(&canary)?;
    let live = serde_json::to_value(apisix_routes(ns).get(&generated).await?)?;
    ensure_same(
        "ApisixRoute",
        &live,
        &apisix::render(&canary, &user_live, routes)?,
    )
}

/// The apisix router from the user's `routeRef` route (API level against our reconstruction of the ApisixRoute
/// schema): the generated `<route>-<apex>-canary` route holds the app's http entry at the top priority, its weights
/// step 20 % to 60 %, held at the promotion gate, promoted; the next version rolled back by a rollback hook; a
/// blue/green run (iterations) switches to 0/100 once its gate opens and back to 100/0 at promotion; the user's route is never written; deleting
/// the Canary deletes the generated route.
#[tokio::test]
async fn ingress_apisix_from_the_route_ref_steps_promotes_rolls_back_and_goes_with_the_canary()
-> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("apisix-canary", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &["-mesh-provider=apisix"])?;
        let generated = format!("web-{APP}-canary");
        let shapes = Shapes::start(apisix_routes(&ns), "ApisixRoute", &generated, apisix_shape(APP));
        let user = e2e::apply(&apisix_routes(&ns), &apisix_user_route(&ns.name)?).await?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let mut canary = canary_of(
            APP,
            "apisix",
            json!({"port": APP_PORT, "targetPort": APP_PORT}),
            json!({
                "interval": "1s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
                "webhooks": [
                    {"name": "promotion", "type": "confirm-promotion", "url": hooks.at("/gate/promote")},
                    {"name": "rollback", "type": "rollback", "url": hooks.at("/gate/rollback")},
                ],
            }),
        );
        canary["spec"]["routeRef"] = json!({"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "web"});
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        ensure_apisix_rendered(&ns, APP, Routes::PRIMARY, &user).await?;
        let live = serde_json::to_value(apisix_routes(&ns).get(&generated).await?)?;
        ensure!(
            live["spec"]["http"].as_array().map(Vec::len) == Some(1)
                && live["spec"]["http"][0]["name"] == "app"
                && live["spec"]["http"][0]["priority"] == 10000
                && live["spec"]["http"][0]["backends"][1]["resolveGranularity"] == "service"
                && live["metadata"]["labels"]["team"] == "payments",
            "generated ApisixRoute {live:#}"
        );

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        shapes.wait_for("40/60", RUN, &controller).await?;
        ensure_apisix_rendered(&ns, APP, Routes::split(60), &user).await?;
        hooks.open_gate("/gate/promote");
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("100/0", RUN, &controller).await?;
        ensure_apisix_rendered(&ns, APP, Routes::PRIMARY, &user).await?;
        let steps = ["100/0", "80/20", "60/40", "40/60", "100/0"];
        ensure!(shapes.seen() == steps, "ApisixRoute shapes {:?}, want {steps:?}", shapes.seen());
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
        ensure_apisix_rendered(&ns, APP, Routes::PRIMARY, &user).await?;
        ensure!(shapes.seen() == steps, "ApisixRoute shapes {:?}, want {steps:?}", shapes.seen());
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(image_of(&primary).ends_with(":6.0.1"), "primary image after rollback {}", image_of(&primary));

        // Blue/green: the same Canary with iterations instead of steps.
        hooks.close_gate("/gate/rollback");
        hooks.close_gate("/gate/promote");
        let mut live = serde_json::to_value(api.get(APP).await?)?;
        live["spec"]["analysis"] = json!({
            "interval": "1s", "threshold": 2, "iterations": 3,
            "webhooks": [{"name": "promotion", "type": "confirm-promotion", "url": hooks.at("/gate/promote")}],
        });
        api.replace(APP, &Default::default(), &serde_json::from_value(live)?).await?;
        shapes.reset();
        set_image(&deployments, APP, "6.0.3").await?;
        wait_canary(&api, APP, "the blue/green run started", RUN, &controller, |o| {
            step(o).phase == "Progressing"
        })
        .await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        // As in Flagger, the switch to the canary comes after the promotion gate opens.
        ensure_apisix_rendered(&ns, APP, Routes::PRIMARY, &user).await?;
        hooks.open_gate("/gate/promote");
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("100/0", RUN, &controller).await?;
        ensure_apisix_rendered(&ns, APP, Routes::PRIMARY, &user).await?;
        let bg = ["100/0", "0/100", "100/0"];
        ensure!(shapes.seen() == bg, "blue/green ApisixRoute shapes {:?}, want {bg:?}", shapes.seen());
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(image_of(&primary).ends_with(":6.0.3"), "primary image after blue/green {}", image_of(&primary));

        ensure_goes_with_the_canary(&ns, &apisix_routes(&ns), &generated, &controller).await?;
        ensure!(
            apisix_routes(&ns).get(&user.name_any()).await?.metadata.resource_version == user.metadata.resource_version,
            "the user's ApisixRoute changed when the Canary went"
        );
        Ok(())
    })
    .await
}
