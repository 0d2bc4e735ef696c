//! Service-only canaries (`targetRef.kind: Service`) on the real API server: no workload, the target Service is
//! copied to `<target>-primary` (once, then at each promotion) and `<target>-canary` (following the target), and
//! a new revision is a change of the target's spec. With `gatewayapi:v1beta1` the HTTPRoute steps its weights
//! between the two copies; with `kubernetes` the run is blue/green. A changed selector stands for a new version
//! served elsewhere (the multi-cluster use of Service targets).
//!
//! Run: `hack/e2e service_target`.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{Proc, canaries, create_canary, start_controller, wait_phase};
use e2e::hooks::HookCatcher;
use e2e::objects::{APP_PORT, service};
use e2e::shapes::{ShapeOf, Shapes};
use e2e::{TestNamespace, apply, skip_unless_e2e, with_namespace};
use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt as _};
use serde_json::{Value, json};

const APP: &str = "podinfo";
const INIT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(120);

fn http_routes(ns: &TestNamespace) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1beta1", "HTTPRoute"),
        "httproutes",
    );
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

/// `p/c` of the HTTPRoute rule holding the canary copy.
fn route_shape() -> ShapeOf {
    Box::new(|v: &Value| {
        let rules = v["spec"]["rules"].as_array()?;
        let weight = |refs: &Vec<Value>, name: &str| {
            refs.iter().find(|b| b["name"] == name)?["weight"].as_u64()
        };
        rules.iter().find_map(|r| {
            let refs = r["backendRefs"].as_array()?;
            let c = weight(refs, &format!("{APP}-canary"))?;
            let p = weight(refs, &format!("{APP}-primary"))?;
            Some(format!("{p}/{c}"))
        })
    })
}

fn service_target_canary(provider: &str, service: Value, analysis: Value) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": APP},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "v1", "kind": "Service", "name": APP},
            "progressDeadlineSeconds": 60,
            "service": service,
            "analysis": analysis,
        },
    })
}

/// The `app` selector of Service `name`, and whether the Canary owns it.
async fn selector_of(ns: &TestNamespace, name: &str) -> e2e::Result<(String, bool)> {
    let svc = ns.api::<Service>().get(name).await?;
    let app = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.get("app").cloned())
        .with_context(|| format!("Service {name} has no app selector"))?;
    let owned = svc
        .owner_references()
        .iter()
        .any(|o| o.kind == "Canary" && o.name == APP && o.controller == Some(true));
    Ok((app, owned))
}

/// The copies select what `primary` and `canary` name, both owned by the Canary.
async fn ensure_copies(
    ns: &TestNamespace,
    primary: &str,
    canary: &str,
    controller: &Proc,
) -> e2e::Result<()> {
    let p = selector_of(ns, &format!("{APP}-primary")).await?;
    let c = selector_of(ns, &format!("{APP}-canary")).await?;
    ensure!(
        p == (primary.to_string(), true) && c == (canary.to_string(), true),
        "copies: primary {p:?}, canary {c:?}; want {primary}/{canary} owned\ncontroller log tail:\n{}",
        controller.log_tail()
    );
    Ok(())
}

/// What a user does to release a new version behind a Service target: points it elsewhere.
async fn point_target_at(ns: &TestNamespace, app: &str) -> e2e::Result<()> {
    let patch = json!({"spec": {"selector": {"app": app}}});
    ns.api::<Service>()
        .patch(APP, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// gatewayapi:v1beta1: the HTTPRoute splits 50/50 between the copies while the canary copy selects the new
/// version and the primary the old; promotion gives the primary copy the target's spec; a second version is
/// rolled back and the primary copy keeps the promoted one; deleting the Canary deletes the copies.
#[tokio::test]
async fn service_target_gatewayapi_steps_promotes_and_rolls_back() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("svc-target-gw", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &[])?;
        let shapes = Shapes::start(http_routes(&ns), "HTTPRoute", APP, route_shape());
        apply(&ns.api::<Service>(), &service(APP, "blue")?).await?;
        let canary = service_target_canary(
            "gatewayapi:v1beta1",
            json!({"port": APP_PORT, "gatewayRefs": [{"name": "public", "namespace": ns.name}]}),
            json!({
                "interval": "1s", "threshold": 2, "stepWeight": 25, "maxWeight": 50,
                "webhooks": [
                    {"name": "promotion", "type": "confirm-promotion", "url": hooks.at("/gate/promote")},
                    {"name": "rollback", "type": "rollback", "url": hooks.at("/gate/rollback")},
                ],
            }),
        );
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        ensure_copies(&ns, "blue", "blue", &controller).await?;
        shapes.wait_for("100/0", RUN, &controller).await?;

        point_target_at(&ns, "green").await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        shapes.wait_for("50/50", RUN, &controller).await?;
        ensure_copies(&ns, "blue", "green", &controller).await?;
        hooks.open_gate("/gate/promote");
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("100/0", RUN, &controller).await?;
        ensure_copies(&ns, "green", "green", &controller).await?;
        let want = ["100/0", "75/25", "50/50", "100/0"];
        ensure!(shapes.seen() == want, "HTTPRoute shapes {:?}, want {want:?}", shapes.seen());

        hooks.close_gate("/gate/promote");
        shapes.reset();
        point_target_at(&ns, "red").await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        shapes.wait_for("50/50", RUN, &controller).await?;
        hooks.open_gate("/gate/rollback");
        wait_phase(&api, APP, "Failed", RUN, &controller).await?;
        shapes.wait_for("100/0", RUN, &controller).await?;
        ensure_copies(&ns, "green", "red", &controller).await?;
        ensure!(shapes.seen() == want, "HTTPRoute shapes {:?}, want {want:?}", shapes.seen());
        let target = selector_of(&ns, APP).await?;
        ensure!(target == ("red".to_string(), false), "the target Service itself was changed: {target:?}");

        let services = ns.api::<Service>();
        let primary = services.get(&format!("{APP}-primary")).await?;
        api.delete(APP, &DeleteParams::default()).await?;
        tokio::time::timeout(
            INIT,
            await_condition(services.clone(), &primary.name_any(), conditions::is_deleted(&primary.uid().unwrap_or_default())),
        )
        .await
        .context("the primary copy outlived the Canary")??;
        ensure!(services.get_opt(APP).await?.is_some(), "the target Service went with the Canary");
        Ok(())
    })
    .await
}

/// kubernetes: blue/green on a Service target, no routing object; the promotion gives the primary copy the
/// target's spec.
#[tokio::test]
async fn service_target_kubernetes_blue_green_promotes_the_spec() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("svc-target-k8s", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        apply(&ns.api::<Service>(), &service(APP, "blue")?).await?;
        let canary = service_target_canary(
            "kubernetes",
            json!({"port": APP_PORT}),
            json!({"interval": "1s", "threshold": 2, "iterations": 2}),
        );
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        ensure_copies(&ns, "blue", "blue", &controller).await?;
        point_target_at(&ns, "green").await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        ensure_copies(&ns, "green", "green", &controller).await?;
        Ok(())
    })
    .await
}
