//! Service-mesh routers at the API level: linkerd, `smi:v1alpha3:istio`, osm (SMI TrafficSplit, the vendor's CRD
//! from smi-sdk-go), kuma (TrafficRoute) and `appmesh:v1beta2` (VirtualNode/VirtualRouter/VirtualService, canary
//! and A/B), the last two against the schemas of hack/cluster/crds-reconstructed. No mesh data plane runs here, so
//! no traffic is measured: what is proven is that the real API server accepts every object the router writes and
//! keeps it as written, and that the weights move as the rollout says.
//!
//! One run per router: the provider comes from `-mesh-provider` (the flag forms, suffixes included), podinfo
//! 6.0.0 → Canary (interval 1s, one `rollout` webhook served by the test) → Initialized: every routing object is
//! read back and compared with what the router renders for 100/0 → image 6.0.1: the weights are recorded by a
//! watch on the weighted object through promotion → the webhook starts failing, image 6.0.2: rollback to 100/0,
//! the primary keeps 6.0.1.
//!
//! Run: `hack/e2e mesh_` (needs `cargo build -p flagger-rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use e2e::controller::{
    Proc, canaries, create_canary, install_crds, set_image, start_controller, wait_phase,
};
use e2e::hooks::HookCatcher;
use e2e::objects::{App, deployment_available, hpa};
use e2e::{Result, TestNamespace, apply, skip_unless_e2e, wait_for};
use flagger_core::Routes;
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use kube::runtime::wait::conditions;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};

const OLD: &str = "6.0.0";
const NEW: &str = "6.0.1";
const BAD: &str = "6.0.2";
const PHASE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug)]
enum Router {
    /// `examples/canary-step-weights.yaml`, run as written except what needs the real mesh.
    LinkerdExample,
    SmiIstio,
    Osm,
    Kuma,
    AppMesh,
    AppMeshAb,
}

impl Router {
    fn flag(self) -> &'static str {
        match self {
            Router::LinkerdExample => "linkerd",
            Router::SmiIstio => "smi:v1alpha3:istio",
            Router::Osm => "osm",
            Router::Kuma => "kuma",
            Router::AppMesh | Router::AppMeshAb => "appmesh:v1beta2",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Router::LinkerdExample => "mesh-linkerd",
            Router::SmiIstio => "mesh-smi",
            Router::Osm => "mesh-osm",
            Router::Kuma => "mesh-kuma",
            Router::AppMesh => "mesh-appmesh",
            Router::AppMeshAb => "mesh-appmesh-ab",
        }
    }

    /// The object holding the weights and whether it is namespaced.
    fn weighted(self) -> (&'static str, &'static str, bool) {
        match self {
            Router::LinkerdExample => ("split.smi-spec.io/v1alpha1", "TrafficSplit", true),
            Router::SmiIstio => ("split.smi-spec.io/v1alpha3", "TrafficSplit", true),
            Router::Osm => ("split.smi-spec.io/v1alpha2", "TrafficSplit", true),
            Router::Kuma => ("kuma.io/v1alpha1", "TrafficRoute", false),
            Router::AppMesh | Router::AppMeshAb => {
                ("appmesh.k8s.aws/v1beta2", "VirtualRouter", true)
            }
        }
    }

    /// `(primary, canary)` as the weighted object stores them, read independently of the router's parser.
    fn weights(self, obj: &Value) -> Option<(u32, u32)> {
        let num = |v: &Value| v.as_u64().and_then(|w| u32::try_from(w).ok());
        let pick = |entries: &Value, name_of: &dyn Fn(&Value) -> Option<String>| {
            let mut p = None;
            let mut c = None;
            for e in entries.as_array()? {
                let name = name_of(e)?;
                if name.starts_with("podinfo-primary") {
                    p = num(&e["weight"]);
                } else if name.starts_with("podinfo-canary") {
                    c = num(&e["weight"]);
                }
            }
            Some((p?, c.unwrap_or(0)))
        };
        match self {
            Router::LinkerdExample | Router::SmiIstio | Router::Osm => {
                pick(&obj["spec"]["backends"], &|e| {
                    e["service"].as_str().map(String::from)
                })
            }
            Router::Kuma => pick(&obj["spec"]["conf"]["split"], &|e| {
                e["destination"]["kuma.io/service"]
                    .as_str()
                    .map(String::from)
            }),
            Router::AppMesh | Router::AppMeshAb => pick(
                &obj["spec"]["routes"][0]["httpRoute"]["action"]["weightedTargets"],
                &|e| e["virtualNodeRef"]["name"].as_str().map(String::from),
            ),
        }
    }

    fn canary(self, hooks: &HookCatcher) -> Result<Value> {
        let rollout = json!([{"name": "check", "type": "rollout", "url": hooks.at("/check")}]);
        if let Router::LinkerdExample = self {
            return linkerd_example(hooks);
        }
        let mut service = json!({"port": e2e::objects::APP_PORT, "targetPort": "http"});
        let mut annotations = json!({});
        let mut analysis = json!({
            "interval": "1s", "threshold": 1, "stepWeight": 20, "maxWeight": 40, "webhooks": rollout,
        });
        match self {
            Router::SmiIstio => {
                service["hosts"] = json!(["podinfo.example.com"]);
                service["gateways"] = json!(["public-gateway.istio-system.svc.cluster.local"]);
            }
            Router::Kuma => annotations = json!({"kuma.io/mesh": "e2e"}),
            Router::AppMesh | Router::AppMeshAb => {
                annotations = json!({"appmesh.flagger.app/accesslog": "enabled"});
                service["hosts"] = json!(["podinfo.example.com"]);
                service["timeout"] = json!("15s");
                service["retries"] =
                    json!({"attempts": 3, "perTryTimeout": "5s", "retryOn": "gateway-error"});
                service["backends"] = json!(["backend1"]);
                service["match"] = json!([{"uri": {"prefix": "/api"}}]);
            }
            _ => {}
        }
        if let Router::AppMeshAb = self {
            analysis = json!({
                "interval": "1s", "threshold": 1, "iterations": 2, "webhooks": rollout,
                "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
            });
        }
        Ok(json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "annotations": annotations},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "progressDeadlineSeconds": 60,
                "service": service,
                "analysis": analysis,
            },
        }))
    }

    /// What the router writes for `routes`, from the Canary as the API server returns it.
    fn rendered(self, canary: &flagger_api::Canary, routes: Routes) -> Result<Vec<Value>> {
        use flagger_providers::router as r;
        Ok(match self {
            Router::LinkerdExample => vec![r::render_traffic_split(
                canary,
                r::SmiVersion::V1alpha1,
                None,
                routes,
            )?],
            Router::SmiIstio => {
                vec![r::render_traffic_split(
                    canary,
                    r::SmiVersion::V1alpha3,
                    Some("istio"),
                    routes,
                )?]
            }
            Router::Osm => vec![r::render_traffic_split(
                canary,
                r::SmiVersion::V1alpha2,
                None,
                routes,
            )?],
            Router::Kuma => vec![r::render_traffic_route(canary, routes)?],
            Router::AppMesh | Router::AppMeshAb => {
                let label = r::PodLabel {
                    key: "app".into(),
                    value: "podinfo".into(),
                };
                r::v1beta2_objects(canary, &label, routes)?
            }
        })
    }
}

/// `examples/canary-step-weights.yaml` in the test namespace: its weight ladder, gradual promotion, threshold and
/// autoscaler as written; the interval shortened to 1s, the webhooks pointed at the test's receiver (its
/// confirm-promotion gate open), and the builtin Linkerd metrics left out (no Linkerd proxy exports them here).
fn linkerd_example(hooks: &HookCatcher) -> Result<Value> {
    let path = e2e::repo_path("examples/canary-step-weights.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut c: Value = serde_saphyr::from_str(&text)?;
    ensure!(
        c["spec"]["provider"] == "linkerd",
        "the example is a linkerd canary"
    );
    if let Some(m) = c["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    let analysis = &mut c["spec"]["analysis"];
    analysis["interval"] = json!("1s");
    analysis.as_object_mut().map(|a| a.remove("metrics"));
    analysis["webhooks"] = json!([
        {"name": "check", "type": "rollout", "url": hooks.at("/check")},
        {"name": "confirm-promotion", "type": "confirm-promotion", "url": hooks.at("/gate/promotion")},
    ]);
    c["spec"]["progressDeadlineSeconds"] = json!(60);
    Ok(c)
}

fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        &format!("{}s", kind.to_ascii_lowercase()),
    )
}

fn dynamic(
    client: &Client,
    ns: &str,
    api_version: &str,
    kind: &str,
    namespaced: bool,
) -> Api<DynamicObject> {
    let ar = resource(api_version, kind);
    if namespaced {
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

/// Every distinct consecutive `(primary, canary)` of the weighted object, from a watch.
struct Weights {
    seen: Arc<Mutex<Vec<(u32, u32)>>>,
    latest: tokio::sync::watch::Receiver<Option<(u32, u32)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Weights {
    fn watch(ns: &TestNamespace, mesh: Router) -> Weights {
        let (api_version, kind, namespaced) = mesh.weighted();
        let api = dynamic(&ns.client, &ns.name, api_version, kind, namespaced);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, latest) = tokio::sync::watch::channel(None);
        let log = seen.clone();
        let cfg = watcher::Config::default().fields("metadata.name=podinfo");
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, cfg).applied_objects().boxed();
            while let Some(ev) = stream.next().await {
                let Ok(obj) = ev else { continue };
                let Some(w) = serde_json::to_value(&obj)
                    .ok()
                    .and_then(|v| mesh.weights(&v))
                else {
                    continue;
                };
                let mut seen = log.lock().unwrap_or_else(|p| p.into_inner());
                if seen.last() != Some(&w) {
                    eprintln!("{} weights: primary {} canary {}", mesh.flag(), w.0, w.1);
                    seen.push(w);
                }
                drop(seen);
                let _ = tx.send(Some(w));
            }
        });
        Weights { seen, latest, task }
    }

    async fn wait_for(
        &self,
        what: &str,
        ctrl: &Proc,
        f: impl Fn((u32, u32)) -> bool,
    ) -> Result<()> {
        let mut latest = self.latest.clone();
        match tokio::time::timeout(PHASE_TIMEOUT, latest.wait_for(|w| w.is_some_and(&f))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("weights watch ended while waiting for {what}"),
            Err(_) => bail!(
                "{what} not seen after {PHASE_TIMEOUT:?}; weights so far {:?}\ncontroller log tail:\n{}",
                self.seen(),
                ctrl.log_tail()
            ),
        }
    }

    fn seen(&self) -> Vec<(u32, u32)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Weights {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every routing object is in the cluster as the router rendered it: same spec (nothing pruned, defaulted or
/// rejected by the schema), the router's annotations and the owner reference to the Canary.
async fn check_read_back(ns: &TestNamespace, mesh: Router, routes: Routes) -> Result<usize> {
    let live_canary = canaries(ns).get("podinfo").await?;
    let canary: flagger_api::Canary = serde_json::from_value(serde_json::to_value(&live_canary)?)?;
    let expected = mesh.rendered(&canary, routes)?;
    for want in &expected {
        let api_version = want["apiVersion"].as_str().context("apiVersion")?;
        let kind = want["kind"].as_str().context("kind")?;
        let name = want["metadata"]["name"].as_str().context("name")?;
        let namespaced = want["metadata"].get("namespace").is_some();
        let api = dynamic(&ns.client, &ns.name, api_version, kind, namespaced);
        let live = serde_json::to_value(
            api.get(name)
                .await
                .with_context(|| format!("{kind} {name}"))?,
        )?;
        ensure!(
            live["spec"] == want["spec"],
            "{kind} {name} spec differs:\nlive {:#}\nwant {:#}",
            live["spec"],
            want["spec"]
        );
        if let Some(mesh_name) = want.get("mesh") {
            ensure!(
                &live["mesh"] == mesh_name,
                "{kind} {name} mesh {} want {mesh_name}",
                live["mesh"]
            );
        }
        for (k, v) in want["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
        {
            ensure!(
                &live["metadata"]["annotations"][k] == v,
                "{kind} {name} annotation {k}: {}",
                live["metadata"]["annotations"][k]
            );
        }
        ensure!(
            live["metadata"]["ownerReferences"][0]["uid"]
                == want["metadata"]["ownerReferences"][0]["uid"],
            "{kind} {name} owner {}",
            live["metadata"]["ownerReferences"]
        );
    }
    Ok(expected.len())
}

/// The weights from initialisation through promotion, deduplicated: what the strategy and the router make.
fn promotion_weights(mesh: Router) -> Vec<(u32, u32)> {
    match mesh {
        Router::LinkerdExample => vec![
            (100, 0),
            (99, 1),
            (95, 5),
            (90, 10),
            (75, 25),
            (50, 50),
            (20, 80),
            (40, 60),
            (60, 40),
            (80, 20),
            (100, 0),
        ],
        Router::AppMeshAb => vec![(100, 0), (0, 100), (100, 0)],
        _ => vec![(100, 0), (80, 20), (60, 40), (100, 0)],
    }
}

async fn delete_traffic_route(client: &Client) -> Result<()> {
    let api = dynamic(client, "", "kuma.io/v1alpha1", "TrafficRoute", false);
    if api.get_opt("podinfo").await?.is_some() {
        api.delete("podinfo", &DeleteParams::default()).await?;
    }
    Ok(())
}

/// A TrafficRoute has no namespace: a canary with the same apex name in a second namespace is refused with a
/// Warning naming the first one, and the first canary's TrafficRoute keeps routing its own namespace.
async fn second_kuma_canary_is_refused(first: &TestNamespace, hooks: &HookCatcher) -> Result<()> {
    let first_ns = first.name.clone();
    let canary = Router::Kuma.canary(hooks)?;
    e2e::with_namespace("mesh-kuma-second", |ns| async move {
        let deployments: Api<Deployment> = ns.api();
        apply(&deployments, &App::new("podinfo", OLD, 1).deployment()?).await?;
        let ctrl = start_controller(&ns.name, &["-mesh-provider=kuma"])?;
        create_canary(&ns, canary).await?;
        let want = format!("already belongs to canary podinfo in namespace {first_ns}");
        let ev = e2e::controller::wait_event(
            &ns,
            "podinfo",
            "refusing the TrafficRoute",
            PHASE_TIMEOUT,
            &ctrl,
            |e| e.message.as_deref().is_some_and(|m| m.contains(&want)),
        )
        .await?;
        eprintln!(
            "kuma: second canary refused: {}",
            ev.message.unwrap_or_default()
        );
        let route = dynamic(&ns.client, "", "kuma.io/v1alpha1", "TrafficRoute", false)
            .get("podinfo")
            .await?;
        let destination = &route.data["spec"]["destinations"][0]["match"]["kuma.io/service"];
        ensure!(
            destination == &json!(format!("podinfo_{first_ns}_svc_{}", e2e::objects::APP_PORT)),
            "the TrafficRoute was taken over: destination {destination}"
        );
        Ok(())
    })
    .await
}

async fn mesh_run(mesh: Router) -> Result<()> {
    let client = e2e::client().await?;
    install_crds(&client).await?;
    if let Router::Kuma = mesh {
        // Cluster-scoped and owned by a namespaced Canary, so the garbage collector never removes it: a run that
        // died must not leave one that makes this canary's name collide.
        delete_traffic_route(&client).await?;
    }
    let result = e2e::with_namespace(mesh.prefix(), |ns| async move {
        let deployments: Api<Deployment> = ns.api();
        apply(&deployments, &App::new("podinfo", OLD, 1).deployment()?).await?;
        if let Router::LinkerdExample = mesh {
            apply(&ns.api::<HorizontalPodAutoscaler>(), &hpa("podinfo", 1, 2)?).await?;
        }
        wait_for(&deployments, "podinfo", "available", Duration::from_secs(60), deployment_available()).await?;

        let hooks = HookCatcher::start().await?;
        hooks.open_gate("/gate/promotion");
        let flag = format!("-mesh-provider={}", mesh.flag());
        let ctrl = start_controller(&ns.name, &[flag.as_str()])?;
        let weights = Weights::watch(&ns, mesh);
        create_canary(&ns, mesh.canary(&hooks)?).await?;
        let api = canaries(&ns);
        wait_phase(&api, "podinfo", "Initialized", PHASE_TIMEOUT, &ctrl).await?;
        weights.wait_for("initial routes 100/0", &ctrl, |w| w == (100, 0)).await?;
        let objects = check_read_back(&ns, mesh, Routes::PRIMARY).await?;
        eprintln!("{}: {objects} routing object(s) read back as written", mesh.flag());
        if let Router::Kuma = mesh {
            second_kuma_canary_is_refused(&ns, &hooks).await?;
        }

        // Promotion.
        set_image(&deployments, "podinfo", NEW).await?;
        wait_phase(&api, "podinfo", "Succeeded", PHASE_TIMEOUT, &ctrl).await?;
        weights.wait_for("routes 100/0 after promotion", &ctrl, |w| w == (100, 0)).await?;
        let want = promotion_weights(mesh);
        let seen = weights.seen();
        ensure!(seen == want, "{}: weights {seen:?}, want {want:?}", mesh.flag());
        check_read_back(&ns, mesh, Routes::PRIMARY).await?;
        let primary = deployments.get("podinfo-primary").await?;
        ensure!(
            e2e::controller::image_of(&primary).ends_with(NEW),
            "primary runs {}",
            e2e::controller::image_of(&primary)
        );

        // Rollback: the rollout webhook fails from now on.
        hooks.answer("/check", 500);
        set_image(&deployments, "podinfo", BAD).await?;
        wait_phase(&api, "podinfo", "Failed", PHASE_TIMEOUT, &ctrl).await?;
        weights.wait_for("routes 100/0 after rollback", &ctrl, |w| w == (100, 0)).await?;
        let seen = weights.seen();
        let rollback = &seen[want.len()..];
        ensure!(
            rollback.len() >= 2 && rollback.last() == Some(&(100, 0)) && rollback.iter().any(|w| w.1 > 0),
            "{}: weights after promotion {rollback:?}: the canary never got traffic or did not end at 100/0",
            mesh.flag()
        );
        check_read_back(&ns, mesh, Routes::PRIMARY).await?;
        let primary = deployments.get("podinfo-primary").await?;
        ensure!(e2e::controller::image_of(&primary).ends_with(NEW), "primary left {NEW}");
        ensure!(hooks.count("/check") > 0, "the rollout webhook was never called");
        eprintln!("{}: weights {seen:?}", mesh.flag());

        // Deleted while the controller runs: the linkerd example's revertOnDeletion finalizer is handled (routing
        // reverted) and the Canary goes.
        let uid = api.get("podinfo").await?.metadata.uid.unwrap_or_default();
        api.delete("podinfo", &DeleteParams::default()).await?;
        let gone = kube::runtime::wait::await_condition(api.clone(), "podinfo", conditions::is_deleted(&uid));
        tokio::time::timeout(PHASE_TIMEOUT, gone)
            .await
            .with_context(|| format!("Canary not deleted; controller log tail:\n{}", ctrl.log_tail()))?
            .context("watching the Canary's deletion")?;
        Ok(())
    })
    .await;
    if let Router::Kuma = mesh {
        delete_traffic_route(&client).await?;
    }
    result
}

#[tokio::test]
async fn mesh_linkerd_example_step_weights() -> Result<()> {
    skip_unless_e2e!();
    mesh_run(Router::LinkerdExample).await
}

#[tokio::test]
async fn mesh_smi_v1alpha3_istio_suffix() -> Result<()> {
    skip_unless_e2e!();
    mesh_run(Router::SmiIstio).await
}

#[tokio::test]
async fn mesh_osm() -> Result<()> {
    skip_unless_e2e!();
    mesh_run(Router::Osm).await
}

#[tokio::test]
async fn mesh_kuma() -> Result<()> {
    skip_unless_e2e!();
    mesh_run(Router::Kuma).await
}

#[tokio::test]
async fn mesh_appmesh_v1beta2_canary() -> Result<()> {
    skip_unless_e2e!();
    mesh_run(Router::AppMesh).await
}

#[tokio::test]
async fn mesh_appmesh_v1beta2_ab() -> Result<()> {
    skip_unless_e2e!();
    mesh_run(Router::AppMeshAb).await
}
