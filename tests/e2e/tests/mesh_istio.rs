//! The `istio` router on the real API server, with Istio's own CRDs (from the `istio.io/api` Go module,
//! installed by hack/cluster/up): a `flagger-rs controller` child runs whole canaries while a watch records
//! every routing shape the VirtualService goes through. There is no Istio data plane in the harness, so these
//! runs prove the objects: accepted by the API server under Istio's schema, read back equal to what the router
//! renders, stepped, split for A/B, mirrored, promoted, rolled back, and a user's VirtualService given back on
//! deletion (`revertOnDeletion`). No metrics: the checks that move the runs are the tests' own hooks.
//!
//! Run: `hack/e2e mesh_istio`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use e2e::controller::{
    Proc, canaries, create_canary, deploy, image_of, set_image, start_controller, status,
    wait_phase,
};
use e2e::hooks::HookCatcher;
use e2e::objects::{App, hpa};
use e2e::{TestNamespace, apply, skip_unless_e2e, with_namespace};
use flagger_api::Canary;
use flagger_core::Routes;
use flagger_providers::router::istio::{self, Adoption, ORIGINAL_CONFIGURATION};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use serde_json::{Value, json};

const APP: &str = "podinfo";
/// Initialisation: primary rollout (kwok pods are Ready at once) plus one tick.
const INIT: Duration = Duration::from_secs(60);
/// A whole run at a 1 s interval.
const RUN: Duration = Duration::from_secs(120);

fn istio_api(ns: &TestNamespace, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1beta1", kind),
        plural,
    );
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

fn virtual_services(ns: &TestNamespace) -> Api<DynamicObject> {
    istio_api(ns, "VirtualService", "virtualservices")
}

fn destination_rules(ns: &TestNamespace) -> Api<DynamicObject> {
    istio_api(ns, "DestinationRule", "destinationrules")
}

/// The routing shape of VirtualService `apex`: `p/c` of the weighted HTTP route (the first holding the canary
/// that matches no session cookie), prefixed `ab ` when a catch-all route to the primary follows, with
/// ` mirror <percent>` while it mirrors, then ` | pin <regex> p/c` for each route pinning a session cookie's
/// holders (` | expire …` when it hands out the cookie's expiry).
fn shape(apex: &str, vs: &Value) -> Option<String> {
    let (primary, canary) = (format!("{apex}-primary"), format!("{apex}-canary"));
    let http = vs["spec"]["http"].as_array()?;
    let holds_canary = |r: &Value| {
        r["route"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["destination"]["host"] == canary.as_str())
        })
    };
    let cookie_regex = |r: &Value| {
        r["match"][0]["headers"]["Cookie"]["regex"]
            .as_str()
            .map(str::to_string)
    };
    let weights = |r: &Value| {
        let weight = |host: &str| {
            r["route"]
                .as_array()?
                .iter()
                .find(|d| d["destination"]["host"] == host)?["weight"]
                .as_u64()
        };
        Some(format!("{}/{}", weight(&primary)?, weight(&canary)?))
    };
    let route = http
        .iter()
        .find(|r| holds_canary(r) && cookie_regex(r).is_none())?;
    let mut s = weights(route)?;
    if http.last().is_some_and(|r| !holds_canary(r)) {
        s = format!("ab {s}");
    }
    if route["mirror"]["host"] == canary.as_str() {
        let pct = route["mirrorPercentage"]["value"].as_f64().unwrap_or(100.0);
        s.push_str(&format!(" mirror {pct}"));
    }
    for r in http {
        let Some(regex) = cookie_regex(r) else {
            continue;
        };
        let expires = r["headers"]["response"]["add"]["Set-Cookie"]
            .as_str()
            .is_some_and(|c| c.contains("Max-Age=-1"));
        let kind = if expires { "expire" } else { "pin" };
        s.push_str(&format!(" | {kind} {regex} {}", weights(r)?));
    }
    Some(s)
}

/// Every distinct consecutive shape of the VirtualService, from a watch, and the latest one.
struct Shapes {
    seen: Arc<Mutex<Vec<String>>>,
    latest: tokio::sync::watch::Receiver<Option<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Shapes {
    fn start(ns: &TestNamespace, apex: &str) -> Shapes {
        let api = virtual_services(ns);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, latest) = tokio::sync::watch::channel(None);
        let log = seen.clone();
        let apex = apex.to_string();
        let cfg = watcher::Config::default().fields(&format!("metadata.name={apex}"));
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, cfg).applied_objects().boxed();
            while let Some(ev) = stream.next().await {
                let Some(s) = ev
                    .ok()
                    .and_then(|o| serde_json::to_value(o).ok())
                    .and_then(|v| shape(&apex, &v))
                else {
                    continue;
                };
                let mut seen = log.lock().unwrap_or_else(|p| p.into_inner());
                if seen.last() != Some(&s) {
                    eprintln!("VirtualService {apex}: {s}");
                    seen.push(s.clone());
                }
                drop(seen);
                let _ = tx.send(Some(s));
            }
        });
        Shapes { seen, latest, task }
    }

    /// Awaits the shape `want` on the watch; fails with the shapes so far and the controller's log tail.
    async fn wait_for(&self, want: &str, controller: &Proc) -> Result<(), anyhow::Error> {
        let mut latest = self.latest.clone();
        let wait = latest.wait_for(|s| s.as_deref() == Some(want));
        match tokio::time::timeout(RUN, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("VirtualService watch ended while waiting for {want}"),
            Err(_) => bail!(
                "VirtualService shape {want} not seen after {RUN:?}; shapes so far {:?}\ncontroller log tail:\n{}",
                self.seen(),
                controller.log_tail()
            ),
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Shapes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn live_canary(ns: &TestNamespace, name: &str) -> e2e::Result<Canary> {
    let api: Api<Canary> = ns.api();
    api.get(name).await.context("reading the Canary")
}

/// The VirtualService as the API server holds it equals what the router renders for `routes`: spec, the
/// router's labels and annotations, and the owner reference (none on a user's object that was taken over).
async fn ensure_rendered(ns: &TestNamespace, name: &str, routes: Routes) -> e2e::Result<Value> {
    let canary = live_canary(ns, name).await?;
    let apex = canary.spec.apex_name().to_string();
    let live = serde_json::to_value(virtual_services(ns).get(&apex).await?)?;
    let want = istio::render(&canary, routes, &Adoption::of(&canary, Some(&live))?)?;
    ensure!(
        live["spec"] == want["spec"],
        "VirtualService {apex} read back\n{:#}\ndiffers from the rendered\n{:#}",
        live["spec"],
        want["spec"]
    );
    for field in ["labels", "annotations"] {
        for (k, v) in want["metadata"][field].as_object().into_iter().flatten() {
            ensure!(
                &live["metadata"][field][k] == v,
                "VirtualService {apex} {field}.{k}: {} (want {v})",
                live["metadata"][field][k]
            );
        }
    }
    let owners = |v: &Value| -> Vec<String> {
        v["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| format!("{}/{}/{}", o["kind"], o["name"], o["uid"]))
            .collect()
    };
    ensure!(
        owners(&live) == owners(&want),
        "VirtualService {apex} owners {:?}, want {:?}",
        owners(&live),
        owners(&want)
    );
    Ok(live)
}

/// Both DestinationRules exist as rendered (host, traffic policy) and are owned by the Canary.
async fn ensure_destination_rules(ns: &TestNamespace, name: &str) -> e2e::Result<Vec<Value>> {
    let canary = live_canary(ns, name).await?;
    let mut out = Vec::new();
    for host in [
        canary.spec.primary_service_name(),
        canary.spec.canary_service_name(),
    ] {
        let live = serde_json::to_value(destination_rules(ns).get(&host).await?)?;
        let want = istio::destination_rule(&canary, &host)?;
        ensure!(
            live["spec"] == want["spec"],
            "DestinationRule {host} read back {} differs from the rendered {}",
            live["spec"],
            want["spec"]
        );
        ensure!(
            live["metadata"]["ownerReferences"][0]["uid"].as_str() == canary.uid().as_deref(),
            "DestinationRule {host} not owned by the Canary: {}",
            live["metadata"]["ownerReferences"]
        );
        out.push(live);
    }
    Ok(out)
}

/// The first document of an example file, as JSON.
fn example(file: &str) -> e2e::Result<Value> {
    let path = e2e::repo_path(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .with_context(|| format!("parsing {}", path.display()))?;
    docs.into_iter()
        .find(|d| d["kind"] == "Canary")
        .with_context(|| format!("no Canary in {file}"))
}

/// An example's Canary in the test namespace with a 1 s interval, its metrics and alerts dropped (no mesh
/// exports them here) and `webhooks` in their place.
fn example_canary(file: &str, ns: &TestNamespace, webhooks: Value) -> e2e::Result<Value> {
    let mut canary = example(file)?;
    canary["metadata"]["namespace"] = json!(ns.name);
    let analysis = canary["spec"]["analysis"]
        .as_object_mut()
        .context("example without analysis")?;
    analysis.insert("interval".into(), json!("1s"));
    analysis.remove("metrics");
    analysis.remove("alerts");
    analysis.insert("webhooks".into(), webhooks);
    Ok(canary)
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

/// `examples/canary.yaml` with the provider from `-mesh-provider=istio`: the user's VirtualService is taken over
/// (its spec kept in `original-configuration`), weights step 10 % up to 50 %, the run promotes, and deleting the
/// Canary gives the user's VirtualService back exactly.
#[tokio::test]
async fn istio_example_canary_steps_promotes_and_gives_back_the_users_virtual_service()
-> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("istio-canary", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let vs_api = virtual_services(&ns);
        let user_spec = json!({
            "hosts": ["podinfo"],
            "http": [{"route": [{"destination": {"host": "podinfo"}}], "timeout": "10s"}],
        });
        let user: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": APP, "namespace": ns.name},
            "spec": user_spec,
        }))?;
        apply(&vs_api, &user).await?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        apply(&ns.api::<HorizontalPodAutoscaler>(), &hpa(APP, 1, 2)?).await?;

        let mut canary = example_canary("examples/canary.yaml", &ns, json!([]))?;
        // The provider comes from the controller flag, Flagger's `-mesh-provider=istio`.
        canary["spec"]
            .as_object_mut()
            .context("spec")?
            .remove("provider");
        let controller = start_controller(&ns.name, &["-mesh-provider=istio"])?;
        let shapes = Shapes::start(&ns, APP);
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;

        let live = ensure_rendered(&ns, APP, Routes::PRIMARY).await?;
        let kept: Value = serde_json::from_str(
            live["metadata"]["annotations"][ORIGINAL_CONFIGURATION]
                .as_str()
                .context("no original-configuration annotation on the taken-over VirtualService")?,
        )?;
        ensure!(
            kept == user_spec,
            "kept spec {kept} is not the user's {user_spec}"
        );
        ensure!(
            live["spec"]["gateways"] == json!(["public-gateway.istio-system.svc.cluster.local"])
                && live["spec"]["hosts"] == json!(["app.example.com", "podinfo"]),
            "gateways/hosts: {}",
            live["spec"]
        );
        let rules = ensure_destination_rules(&ns, APP).await?;
        ensure!(
            rules[0]["spec"]["trafficPolicy"] == json!({"tls": {"mode": "DISABLE"}}),
            "DestinationRule traffic policy {}",
            rules[0]["spec"]
        );

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("100/0", &controller).await?;
        let want = [
            "100/0", "90/10", "80/20", "70/30", "60/40", "50/50", "100/0",
        ];
        ensure!(
            shapes.seen() == want,
            "VirtualService shapes {:?}, want {want:?}",
            shapes.seen()
        );
        ensure_rendered(&ns, APP, Routes::PRIMARY).await?;
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.1"),
            "primary image {}",
            image_of(&primary)
        );

        // revertOnDeletion: the finalizer gives the user's VirtualService back; the DestinationRules go with
        // the Canary (owner references).
        let uid = api.get(APP).await?.uid().unwrap_or_default();
        let rule_uids: Vec<(String, String)> = rules
            .iter()
            .map(|r| {
                (
                    r["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    r["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        api.delete(APP, &DeleteParams::default()).await?;
        wait_deleted(&api, APP, &uid)
            .await
            .with_context(|| format!("controller log tail:\n{}", controller.log_tail()))?;
        let restored = serde_json::to_value(vs_api.get(APP).await?)?;
        ensure!(
            restored["spec"] == user_spec,
            "VirtualService after deletion {} is not the user's {user_spec}",
            restored["spec"]
        );
        ensure!(
            restored["metadata"]["annotations"]
                .get(ORIGINAL_CONFIGURATION)
                .is_none(),
            "original-configuration left on the restored VirtualService"
        );
        let rules_api = destination_rules(&ns);
        for (name, uid) in rule_uids {
            wait_deleted(&rules_api, &name, &uid).await?;
        }
        Ok(())
    })
    .await
}

/// A/B on `spec.provider: istio`: the header and cookie matches go to the canary while everything else stays on
/// the primary; a rollback hook fails the run and the VirtualService returns to the primary.
#[tokio::test]
async fn istio_ab_testing_then_rollback() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("istio-ab", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &[])?;
        let shapes = Shapes::start(&ns, APP);
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": APP},
            "spec": {
                "provider": "istio",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                "progressDeadlineSeconds": 60,
                "service": {"port": 9898, "targetPort": 9898, "match": [{"uri": {"prefix": "/"}}], "timeout": "5s"},
                "analysis": {
                    "interval": "1s", "threshold": 2, "iterations": 600,
                    "match": [
                        {"headers": {"x-canary": {"exact": "insider"}}},
                        {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
                    ],
                    // Answers 200, which rolls the run back, once the test opens it.
                    "webhooks": [{"name": "rollback", "type": "rollback", "url": hooks.at("/gate")}],
                },
            },
        }))
        .await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        ensure_rendered(&ns, APP, Routes::PRIMARY).await?;
        ensure_destination_rules(&ns, APP).await?;

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        shapes.wait_for("ab 0/100", &controller).await?;
        let live = ensure_rendered(&ns, APP, Routes::CANARY).await?;
        let http = &live["spec"]["http"];
        ensure!(
            http[0]["match"].as_array().map(Vec::len) == Some(2)
                && http[1]["route"] == json!([{"destination": {"host": "podinfo-primary"}, "weight": 100}]),
            "A/B routes {http:#}"
        );

        hooks.open_gate("/gate");
        wait_phase(&api, APP, "Failed", RUN, &controller).await?;
        shapes.wait_for("ab 100/0", &controller).await?;
        ensure_rendered(&ns, APP, Routes::PRIMARY).await?;
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.0"),
            "primary image {} after the rollback",
            image_of(&primary)
        );
        let want = ["ab 100/0", "ab 0/100", "ab 100/0"];
        ensure!(shapes.seen() == want, "VirtualService shapes {:?}, want {want:?}", shapes.seen());
        Ok(())
    })
    .await
}

/// Blue/Green with mirroring (`mirrorWeight: 50`): the iterations mirror half the requests to the canary
/// (`mirror` + `mirrorPercentage`), the last analysed tick sends everything to the canary, and promotion returns
/// to the primary.
#[tokio::test]
async fn istio_blue_green_mirroring_promotes() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("istio-mirror", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &["-mesh-provider=istio"])?;
        let shapes = Shapes::start(&ns, APP);
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": APP},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                "progressDeadlineSeconds": 60,
                "service": {"port": 9898, "targetPort": 9898},
                "analysis": {
                    "interval": "1s", "threshold": 2, "iterations": 3,
                    "mirror": true, "mirrorWeight": 50,
                    "webhooks": [{"name": "promotion", "type": "confirm-promotion", "url": hooks.at("/gate")}],
                },
            },
        }))
        .await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        let mirrored = Routes { primary: 100, canary: 0, mirror: 50 };
        shapes.wait_for("100/0 mirror 50", &controller).await?;
        ensure_rendered(&ns, APP, mirrored).await?;

        hooks.open_gate("/gate");
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("100/0", &controller).await?;
        ensure_rendered(&ns, APP, Routes::PRIMARY).await?;
        let want = ["100/0", "100/0 mirror 50", "0/100", "100/0"];
        ensure!(shapes.seen() == want, "VirtualService shapes {:?}, want {want:?}", shapes.seen());
        Ok(())
    })
    .await
}

/// `examples/istio-seed.yaml` (the guide's `payment-api` on `public-gateway.istio-system` with an `ISTIO_MUTUAL`
/// DestinationRule) start to finish: routing exactly as written, its webhooks pointed at the test's receiver,
/// 5 % steps to 50 %, held at the promotion gate, then promoted.
#[tokio::test]
async fn istio_seed_example_runs_start_to_finish() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("istio-seed", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let name = "payment-api";
        let canary = example_canary(
            "examples/istio-seed.yaml",
            &ns,
            json!([
                {"name": "acceptance-test", "type": "pre-rollout", "url": hooks.at("/acceptance")},
                {"name": "load-test", "type": "rollout", "url": hooks.at("/load")},
                {"name": "confirm-promotion", "type": "confirm-promotion", "url": hooks.at("/gate")},
            ]),
        )?;
        let controller = start_controller(&ns.name, &[])?;
        let shapes = Shapes::start(&ns, name);
        deploy(&ns, &App::new(name, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, name, "Initialized", INIT, &controller).await?;
        let live = ensure_rendered(&ns, name, Routes::PRIMARY).await?;
        ensure!(
            live["spec"]["gateways"] == json!(["public-gateway.istio-system.svc.cluster.local"])
                && live["spec"]["hosts"] == json!(["api.example.com", name]),
            "gateways/hosts: {}",
            live["spec"]
        );
        let rules = ensure_destination_rules(&ns, name).await?;
        for rule in &rules {
            ensure!(
                rule["spec"]["trafficPolicy"] == json!({"tls": {"mode": "ISTIO_MUTUAL"}}),
                "DestinationRule {}",
                rule["spec"]
            );
        }

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, name, "6.0.1").await?;
        wait_phase(&api, name, "WaitingPromotion", RUN, &controller).await?;
        ensure_rendered(&ns, name, Routes::split(50)).await?;
        ensure!(
            hooks.count("/acceptance") >= 1 && hooks.count("/load") >= 1,
            "webhooks called: {:?}",
            hooks.calls().iter().map(|c| c.path.clone()).collect::<Vec<_>>()
        );
        hooks.open_gate("/gate");
        wait_phase(&api, name, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("100/0", &controller).await?;
        ensure_rendered(&ns, name, Routes::PRIMARY).await?;
        let mut want = vec!["100/0".to_string()];
        want.extend((1..=10).map(|i| format!("{}/{}", 100 - 5 * i, 5 * i)));
        want.push("100/0".to_string());
        ensure!(shapes.seen() == want, "VirtualService shapes {:?}, want {want:?}", shapes.seen());
        let primary = deployments.get(&format!("{name}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.1"),
            "primary image {}",
            image_of(&primary)
        );
        Ok(())
    })
    .await
}

/// Every structural field the router writes is accepted under Istio's schema and reads back as rendered: an HTTP
/// canary behind a gateway with match, rewrite, timeout, retries, headers, CORS and a traffic policy, a TCP canary
/// and a delegate VirtualService. The HTTP canary then runs the seed's progressive mirroring: 10 → 40 → 70 → 100 %
/// of the requests mirrored, then the first real step and promotion.
#[tokio::test]
async fn istio_structural_fields_tcp_delegation_and_progressive_mirroring() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("istio-fields", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &["-mesh-provider=istio"])?;
        let shapes = Shapes::start(&ns, APP);
        let canary = |name: &str, service: Value, analysis: Value| {
            let mut a = json!({"interval": "1s", "threshold": 2, "stepWeight": 50, "maxWeight": 50});
            if let (Some(a), Some(extra)) = (a.as_object_mut(), analysis.as_object()) {
                a.extend(extra.clone());
            }
            json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                "metadata": {"name": name},
                "spec": {
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "progressDeadlineSeconds": 60,
                    "service": service,
                    "analysis": a,
                },
            })
        };
        let canaries_under_test = [
            canary(
                APP,
                json!({
                    "port": 9898, "targetPort": 9898, "portDiscovery": true,
                    "gateways": ["public-gateway.istio-system.svc.cluster.local", "mesh"],
                    "hosts": ["app.example.com"],
                    "match": [{"uri": {"prefix": "/api"}, "ignoreUriCase": true}],
                    "rewrite": {"uri": "/", "authority": "podinfo.internal"},
                    "timeout": "30s",
                    "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "gateway-error,connect-failure"},
                    "headers": {
                        "request": {"set": {"x-served-by": "flagger"}},
                        "response": {"add": {"x-canary": "maybe"}, "remove": ["x-envoy-upstream-service-time"]},
                    },
                    "corsPolicy": {
                        "allowOrigins": [{"exact": "https://example.com"}, {"regex": ".*\\.example\\.org"}],
                        "allowMethods": ["GET", "POST"], "allowHeaders": ["x-token"],
                        "exposeHeaders": ["x-version"], "maxAge": "24h", "allowCredentials": true,
                    },
                    "trafficPolicy": {
                        "connectionPool": {"http": {"http1MaxPendingRequests": 100, "maxRetries": 3}},
                        "loadBalancer": {"simple": "LEAST_REQUEST"},
                        "outlierDetection": {"consecutive5xxErrors": 5, "interval": "30s", "baseEjectionTime": "30s"},
                        "tls": {"mode": "ISTIO_MUTUAL"},
                    },
                    "apex": {"labels": {"team": "payments"}, "annotations": {"owner": "team-payments"}},
                }),
                json!({"mirror": true, "mirrorWeight": 10,
                       "canaryAnalysis": {"stepWeightPromotion": 30, "maxMirrorWeight": 100, "iterations": 4}}),
            ),
            canary(
                "tcpapp",
                json!({"port": 9898, "targetPort": 9898, "appProtocol": "tcp", "match": [{"port": 9898}]}),
                json!({}),
            ),
            canary(
                "delegated",
                json!({"port": 9898, "targetPort": 9898, "portDiscovery": true, "delegation": true}),
                json!({}),
            ),
        ];
        let api = canaries(&ns);
        for c in canaries_under_test {
            let name = c["metadata"]["name"].as_str().context("name")?.to_string();
            deploy(&ns, &App::new(&name, "6.0.0", 1), |_| {}).await?;
            create_canary(&ns, c).await?;
            wait_phase(&api, &name, "Initialized", INIT, &controller).await?;
            let live = ensure_rendered(&ns, &name, Routes::PRIMARY).await?;
            eprintln!("VirtualService {name} as read back: {}", live["spec"]);
            ensure_destination_rules(&ns, &name).await?;
        }
        let tcp = serde_json::to_value(virtual_services(&ns).get("tcpapp").await?)?;
        ensure!(tcp["spec"].get("http").is_none() && tcp["spec"]["tcp"][0]["match"] == json!([{"port": 9898}]), "TCP VirtualService {}", tcp["spec"]);
        let delegated = serde_json::to_value(virtual_services(&ns).get("delegated").await?)?;
        ensure!(
            delegated["spec"]["hosts"] == json!([]) && delegated["spec"]["gateways"] == json!([])
                && delegated["spec"]["http"][0]["route"][0]["destination"]["port"] == json!({"number": 9898}),
            "delegate VirtualService {}",
            delegated["spec"]
        );

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        shapes.wait_for("100/0", &controller).await?;
        ensure_rendered(&ns, APP, Routes::PRIMARY).await?;
        let want = [
            "100/0", "100/0 mirror 10", "100/0 mirror 40", "100/0 mirror 70", "100/0 mirror 100", "50/50", "100/0",
        ];
        ensure!(shapes.seen() == want, "VirtualService shapes {:?}, want {want:?}", shapes.seen());
        Ok(())
    })
    .await
}

/// Session affinity on `spec.provider: istio`: while the weights step 10 → 30 the VirtualService pins the holders
/// of the run's cookie (the value the Canary status records, the same at every step) to the canary and those of
/// the primary cookie to the primary, and its weighted route hands both out; after promotion a route answers the
/// old cookie's holders with its expiry (`Max-Age=-1`). Objects only: no data plane serves these routes here.
#[tokio::test]
async fn istio_session_affinity_pins_the_runs_cookie_and_expires_it_after_promotion()
-> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("istio-sa", |ns| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &[])?;
        let shapes = Shapes::start(&ns, APP);
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": APP},
            "spec": {
                "provider": "istio",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                "progressDeadlineSeconds": 60,
                "service": {"port": 9898, "targetPort": 9898, "match": [{"uri": {"prefix": "/"}}]},
                "analysis": {
                    "interval": "1s", "threshold": 2, "stepWeight": 10, "maxWeight": 30,
                    "sessionAffinity": {
                        "cookieName": "canary-flagger-cookie", "primaryCookieName": "primary-flagger-cookie",
                        "maxAge": 21600, "path": "/",
                    },
                    "webhooks": [{"name": "promotion", "type": "confirm-promotion", "url": hooks.at("/gate")}],
                },
            },
        }))
        .await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        ensure_rendered(&ns, APP, Routes::PRIMARY).await?;

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        let held = wait_phase(&api, APP, "WaitingPromotion", RUN, &controller).await?;
        let cookie_of = |field: &str| {
            status(&held)[field]
                .as_str()
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .with_context(|| format!("no {field} in the status {}", status(&held)))
        };
        let cookie = cookie_of("sessionAffinityCookie")?;
        let primary_cookie = cookie_of("primarySessionAffinityCookie")?;
        // The whole VirtualService, Set-Cookie headers included, is what the router renders for these cookies.
        let live = ensure_rendered(&ns, APP, Routes::split(30)).await?;
        let weighted = &live["spec"]["http"][2]["route"];
        ensure!(
            weighted[1]["headers"]["response"]["add"]["Set-Cookie"] == format!("{cookie}; Max-Age=21600; Path=/").as_str()
                && weighted[0]["headers"]["response"]["add"]["Set-Cookie"] == format!("{primary_cookie}; Max-Age=1; Path=/").as_str(),
            "weighted route {weighted:#}"
        );

        hooks.open_gate("/gate");
        let done = wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        ensure!(
            status(&done)["previousSessionAffinityCookie"] == cookie.as_str(),
            "status after promotion {}",
            status(&done)
        );
        let regex = |c: &str| {
            let (name, value) = c.split_once('=').unwrap_or((c, ""));
            format!(".*{name}.*{value}.*")
        };
        let expiry = format!("100/0 | expire {} 100/0", regex(&cookie));
        shapes.wait_for(&expiry, &controller).await?;
        let live = ensure_rendered(&ns, APP, Routes::PRIMARY).await?;
        let expire_route = &live["spec"]["http"][0];
        ensure!(
            expire_route["headers"]["response"]["add"]["Set-Cookie"] == format!("{cookie}; Max-Age=-1; Path=/").as_str()
                && expire_route["match"] == json!([{"uri": {"prefix": "/"}, "headers": {"Cookie": {"regex": regex(&cookie)}}}]),
            "expiry route {expire_route:#}"
        );

        // One cookie for the whole run: every step pins the same value the status recorded.
        let pins = format!(" | pin {} 0/100 | pin {} 100/0", regex(&cookie), regex(&primary_cookie));
        let want: Vec<String> = ["100/0".to_string()]
            .into_iter()
            .chain([10, 20, 30].map(|c| format!("{}/{c}{pins}", 100 - c)))
            .chain([expiry])
            .collect();
        ensure!(shapes.seen() == want, "VirtualService shapes {:?}, want {want:?}", shapes.seen());
        Ok(())
    })
    .await
}
