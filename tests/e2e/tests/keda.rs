//! A KEDA `ScaledObject` as the canary's `autoscalerRef`, on the real API server with KEDA's ScaledObject CRD
//! (from KEDA's Go module, see hack/cluster/vendor-crds.list). No KEDA operator runs here: these tests check the
//! objects KEDA would act on — `<so>-primary` scaling the primary with its queries rewritten, and the
//! `autoscaling.keda.sh/paused-replicas: "0"` annotation that holds the canary at zero — at every step of a run.
//!
//! Run: `hack/e2e keda`.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{
    Loadtester, blue_green_canary, canaries, create_canary, deploy, ensure_primary_promoted_once,
    image_of, install_crds, primary_generation, set_image, start_controller, step, wait_canary,
    wait_phase, wait_replicas,
};
use e2e::objects::{App, service};
use e2e::{TestNamespace, skip_unless_e2e, wait_for, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt as _};
use serde_json::{Value, json};

const INIT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(90);
const APP: &str = "podinfo";
const SO: &str = "podinfo-so";
const PAUSED: &str = "autoscaling.keda.sh/paused-replicas";
const QUERY: &str = r#"sum(rate(http_requests_total{ app="podinfo" }[30s]))"#;
const PRIMARY_QUERY: &str = r#"sum(rate(http_requests_total{ app="podinfo-primary" }[30s]))"#;

fn scaled_objects(ns: &TestNamespace) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "scaledobjects");
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

/// Flagger's scenario ScaledObject: the target between 1 and 3 replicas on a Prometheus request rate.
fn scaled_object(triggers: Value) -> Value {
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": SO},
        "spec": {
            "scaleTargetRef": {"name": APP},
            "pollingInterval": 10,
            "cooldownPeriod": 20,
            "minReplicaCount": 1,
            "maxReplicaCount": 3,
            "triggers": triggers,
        },
    })
}

fn prometheus_trigger(name: Option<&str>, query: &str, threshold: &str) -> Value {
    let mut trigger = json!({
        "type": "prometheus",
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": "http://flagger-prometheus.flagger-system:9090",
            "metricName": "http_requests_total",
            "query": query,
            "threshold": threshold,
        },
    });
    if let Some(name) = name {
        trigger["name"] = json!(name);
    }
    trigger
}

async fn create_scaled_object(ns: &TestNamespace, so: Value) -> e2e::Result<()> {
    let obj: DynamicObject = serde_json::from_value(so)?;
    scaled_objects(ns)
        .create(&PostParams::default(), &obj)
        .await
        .context("creating the ScaledObject (is KEDA's CRD from hack/cluster/vendor-crds.list installed?)")?;
    Ok(())
}

fn keda_ref() -> Value {
    json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": SO})
}

fn paused_value(so: &DynamicObject) -> Option<String> {
    so.annotations().get(PAUSED).cloned()
}

/// The target's ScaledObject is paused at zero (`true`) or handed back to KEDA, as the step `when` wants.
async fn ensure_paused(ns: &TestNamespace, paused: bool, when: &str) -> e2e::Result<()> {
    let so = scaled_objects(ns).get(SO).await?;
    let got = paused_value(&so);
    let want = paused.then(|| "0".to_string());
    ensure!(
        got == want,
        "{when}: {SO} annotation {PAUSED} = {got:?}, want {want:?}"
    );
    Ok(())
}

fn field<'a>(so: &'a DynamicObject, pointer: &str) -> &'a Value {
    so.data.pointer(pointer).unwrap_or(&Value::Null)
}

/// `<so>-primary` scales the primary Deployment, is owned by the Canary and is never paused.
async fn primary_scaled_object(ns: &TestNamespace) -> e2e::Result<DynamicObject> {
    let primary = scaled_objects(ns)
        .get(&format!("{SO}-primary"))
        .await
        .context("the primary ScaledObject")?;
    let target = field(&primary, "/spec/scaleTargetRef/name");
    ensure!(
        target == "podinfo-primary",
        "{SO}-primary scales {target}, want podinfo-primary"
    );
    let owners: Vec<_> = primary
        .owner_references()
        .iter()
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect();
    ensure!(
        owners == ["Canary/podinfo"],
        "{SO}-primary owners {owners:?}"
    );
    ensure!(
        paused_value(&primary).is_none(),
        "{SO}-primary carries {PAUSED}"
    );
    Ok(primary)
}

/// Flagger's `test/keda/test-scaledobject.sh`: its ScaledObject, the user's Service `podinfo-svc` (9898, `http`)
/// and a Canary on port 80 → 9898 under that Service's name with the ScaledObject as `autoscalerRef`.
/// Initialised: `podinfo-so-primary` exists with the query rewritten to `app="podinfo-primary"` and the target's
/// ScaledObject is paused at 0. A new image unpauses it and scales the canary up from zero (KEDA would then take
/// it to 3 under the script's load; no KEDA runs here), the new image is promoted, and after `Succeeded` the
/// target's ScaledObject is paused again. The script's request-success-rate and request-duration checks and its
/// load test feed Prometheus from the real podinfo; here the run has no metric checks, since what the scenario
/// proves is the ScaledObject handling (builtin metrics are proven in tests/e2e/tests/analysis.rs).
#[tokio::test]
async fn keda_scenario_copies_pauses_and_resumes_the_scaled_object() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("keda-fs", |ns| async move {
        install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        create_scaled_object(
            &ns,
            scaled_object(json!([prometheus_trigger(None, QUERY, "5")])),
        )
        .await?;
        let services: Api<Service> = ns.api();
        services
            .create(&PostParams::default(), &service("podinfo-svc", APP)?)
            .await?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let mut canary = blue_green_canary(APP, "1s", 8, json!([]));
        canary["spec"]["analysis"]["threshold"] = json!(10);
        canary["spec"]["service"] =
            json!({"name": "podinfo-svc", "port": 80, "targetPort": 9898, "portDiscovery": true});
        canary["spec"]["autoscalerRef"] = keda_ref();
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;

        let primary = primary_scaled_object(&ns).await?;
        let query = field(&primary, "/spec/triggers/0/metadata/query");
        ensure!(query == PRIMARY_QUERY, "primary query {query}");
        ensure_paused(&ns, true, "Initialized").await?;

        let deployments: Api<Deployment> = ns.api();
        let generation = primary_generation(&deployments, APP).await?;
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Progressing", INIT, &controller).await?;
        ensure_paused(&ns, false, "Progressing").await?;
        wait_replicas(&deployments, APP, 1, &controller).await?;

        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        ensure_paused(&ns, true, "Succeeded").await?;
        Ok(())
    })
    .await
}

/// Every step of a promotion and of a rollback with a ScaledObject `autoscalerRef` (minReplicaCount 2, a named
/// trigger given its own primary query by `primaryScalerQueries`, an unnamed one rewritten, the primary's
/// bounds set by `primaryScalerReplicas`):
/// * initialised: `<so>-primary` as described, the target's ScaledObject paused, the canary at 0;
/// * the user edits the target ScaledObject's threshold, then ships 6.0.1: unpaused at the first `Progressing`
///   step and at each iteration, the canary scaled to the ScaledObject's minimum (2), `<so>-primary` unchanged
///   until promotion; `Succeeded`: paused, canary at 0, `<so>-primary` carrying the edited threshold;
/// * 6.0.2 with a pre-rollout hook that fails: unpaused while `Progressing`, `Failed`: paused, canary at 0;
/// * with `revertOnDeletion`, deleting the Canary hands the ScaledObject back to KEDA (unpaused).
#[tokio::test]
async fn keda_scaled_object_through_promotion_rollback_and_deletion() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("keda", |ns| async move {
        install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &[])?;
        let lt = Loadtester::start(&ns.name).await?;
        let mut so = scaled_object(json!([
            prometheus_trigger(Some("requests"), QUERY, "5"),
            prometheus_trigger(None, r#"max(up{pod=~"podinfo-canary-.*"})"#, "1"),
        ]));
        so["spec"]["minReplicaCount"] = json!(2);
        create_scaled_object(&ns, so).await?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        let mut canary = blue_green_canary(APP, "1s", 2, json!([]));
        let mut reference = keda_ref();
        reference["primaryScalerQueries"] = json!({"requests": "vector(1)"});
        reference["primaryScalerReplicas"] = json!({"minReplicas": 3, "maxReplicas": 6});
        canary["spec"]["autoscalerRef"] = reference;
        create_canary(&ns, canary).await?;
        let api = canaries(&ns);
        let deployments: Api<Deployment> = ns.api();
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;

        let primary = primary_scaled_object(&ns).await?;
        let spec = &primary.data["spec"];
        ensure!(
            spec["triggers"][0]["metadata"]["query"] == "vector(1)"
                && spec["triggers"][1]["metadata"]["query"] == r#"max(up{pod=~"podinfo-primary-.*"})"#
                && (&spec["minReplicaCount"], &spec["maxReplicaCount"]) == (&json!(3), &json!(6))
                && spec["pollingInterval"] == 10
                && spec["cooldownPeriod"] == 20,
            "primary ScaledObject spec {spec:#}"
        );
        ensure_paused(&ns, true, "Initialized").await?;
        wait_replicas(&deployments, APP, 0, &controller).await?;

        scaled_objects(&ns)
            .patch(
                SO,
                &PatchParams::default(),
                &Patch::Json::<()>(serde_json::from_value(json!([{
                    "op": "replace", "path": "/spec/triggers/0/metadata/threshold", "value": "50",
                }]))?),
            )
            .await?;
        let generation = primary_generation(&deployments, APP).await?;
        set_image(&deployments, APP, "6.0.1").await?;
        wait_phase(&api, APP, "Progressing", INIT, &controller).await?;
        ensure_paused(&ns, false, "Progressing").await?;
        wait_replicas(&deployments, APP, 2, &controller).await?;
        for iteration in 1..=2 {
            let obj = wait_canary(
                &api,
                APP,
                &format!("at iteration {iteration}"),
                RUN,
                &controller,
                |o| step(o).iterations >= iteration || step(o).phase != "Progressing",
            )
            .await?;
            let at = step(&obj);
            if at.phase != "Progressing" {
                break;
            }
            ensure_paused(&ns, false, &at.to_string()).await?;
            let threshold = field(
                &primary_scaled_object(&ns).await?,
                "/spec/triggers/0/metadata/threshold",
            )
            .clone();
            ensure!(threshold == "5", "{at}: {SO}-primary threshold {threshold} before promotion");
        }
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        ensure_paused(&ns, true, "Succeeded").await?;
        wait_replicas(&deployments, APP, 0, &controller).await?;
        let threshold = field(
            &primary_scaled_object(&ns).await?,
            "/spec/triggers/0/metadata/threshold",
        )
        .clone();
        ensure!(threshold == "50", "{SO}-primary threshold {threshold} after promotion, want 50");

        let hooks = json!([{"name": "acceptance-test", "type": "pre-rollout", "url": lt.at("/"),
            "timeout": "5s", "metadata": {"type": "bash", "cmd": "echo failing on purpose; exit 1"}}]);
        api.patch(
            APP,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"analysis": {"webhooks": hooks}}})),
        )
        .await?;
        set_image(&deployments, APP, "6.0.2").await?;
        wait_phase(&api, APP, "Progressing", INIT, &controller).await?;
        ensure_paused(&ns, false, "Progressing towards a rollback").await?;
        wait_phase(&api, APP, "Failed", RUN, &controller).await?;
        ensure_paused(&ns, true, "Failed").await?;
        wait_replicas(&deployments, APP, 0, &controller).await?;
        let primary = deployments.get(&format!("{APP}-primary")).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.1"),
            "primary runs {} after the rollback",
            image_of(&primary)
        );

        api.patch(
            APP,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"revertOnDeletion": true}})),
        )
        .await?;
        let obj = wait_canary(&api, APP, "holding the finalizer", INIT, &controller, |o| {
            o.finalizers().iter().any(|f| f == "finalizer.flagger.app")
        })
        .await?;
        api.delete(APP, &DeleteParams::default()).await?;
        let uid = obj.uid().unwrap_or_default();
        tokio::time::timeout(INIT, await_condition(api.clone(), APP, conditions::is_deleted(&uid)))
            .await
            .with_context(|| format!("Canary not gone; controller log tail:\n{}", controller.log_tail()))??;
        wait_for(
            &scaled_objects(&ns),
            SO,
            "handed back to KEDA",
            INIT,
            |o: Option<&DynamicObject>| o.is_some_and(|o| paused_value(o).is_none()),
        )
        .await?;
        Ok(())
    })
    .await
}
