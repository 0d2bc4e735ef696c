//! The metric providers that read the Kubernetes API, against the local cluster's real kube-apiserver:
//!
//! * `keptn`: KeptnMetric and Analysis objects of Keptn's `metrics.keptn.sh/v1beta1` schema
//!   (hack/cluster/crds-reconstructed: Keptn's Go modules are not served here). No Keptn runs here: the test plays
//!   Keptn's metrics operator, writing the KeptnMetric's `status.value` and completing every Analysis the
//!   controller creates through the status subresource, as the operator would.
//! * `externalmetrics`: an `external.metrics.k8s.io` APIService served by a test server over TLS, registered
//!   through the API server's aggregation layer; the controller queries its own API server, which proxies.
//!
//! Each runs a blue/green canary (kubernetes provider, 3 iterations of 1 s) whose only checks use the template:
//! a passing value promotes, a failing one rolls back after the threshold, with the value in the Warning event.
//!
//! Run: `hack/e2e cluster_metrics_` (needs `cargo build -p flagger-rs`).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{
    Proc, blue_green_canary, canaries, create_canary, events_for, install_crds, phase, set_image,
    start_controller, wait_canary, wait_phase,
};
use e2e::external_metrics::{ExternalMetrics, ensure_queried};
use e2e::objects::App;
use e2e::{Result, TestNamespace, apply, skip_unless_e2e, with_namespace};
use futures::TryStreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};

const APP: &str = "podinfo";
const INIT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(90);

fn keptn(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.keptn.sh", "v1beta1", kind),
        plural,
    )
}

fn metric_template_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("flagger.app", "v1beta1", "MetricTemplate"),
        "metrictemplates",
    )
}

async fn metric_template(
    ns: &TestNamespace,
    name: &str,
    provider: Value,
    query: &str,
) -> Result<()> {
    let template = json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": name},
        "spec": {"provider": provider, "query": query},
    });
    e2e::gateway::apply_resource(ns, &metric_template_resource(), template).await?;
    Ok(())
}

/// The blue/green canary with `metrics` as its only checks.
fn canary(metrics: Value) -> Value {
    let mut canary = blue_green_canary(APP, "1s", 3, json!([]));
    canary["spec"]["analysis"]["metrics"] = metrics;
    canary
}

/// podinfo 6.0.0, the controller, the Canary (Initialized).
async fn setup(ns: &TestNamespace, canary: Value) -> Result<Proc> {
    let deployments: Api<Deployment> = ns.api();
    apply(&deployments, &App::new(APP, "6.0.0", 1).deployment()?).await?;
    let controller = start_controller(&ns.name, &[])?;
    create_canary(ns, canary).await?;
    wait_phase(&canaries(ns), APP, "Initialized", INIT, &controller).await?;
    Ok(controller)
}

/// Rolls out `version` and waits for `want` (Succeeded or Failed); returns the Warning events that mention `metric`.
async fn roll_out(
    ns: &TestNamespace,
    controller: &Proc,
    version: &str,
    want: &str,
    metric: &str,
) -> Result<Vec<String>> {
    set_image(&ns.api::<Deployment>(), APP, version).await?;
    // The previous run's end phase stays until the controller picks the new revision up.
    wait_canary(&canaries(ns), APP, "Progressing", RUN, controller, |o| {
        phase(o) == "Progressing"
    })
    .await?;
    wait_phase(&canaries(ns), APP, want, RUN, controller).await?;
    let events = events_for(ns, "Canary", APP).await?;
    Ok(events
        .into_iter()
        .filter(|(type_, _, message, _)| type_ == "Warning" && message.contains(metric))
        .map(|(_, _, message, _)| message)
        .collect())
}

// --- keptn ---------------------------------------------------------------------------------------------------------

/// Plays Keptn's metrics operator for Analyses: every Analysis created in the namespace gets `state: Completed`
/// and the verdict currently set (`pass` left out when false, as Keptn writes it). Records what it completed.
struct KeptnOperator {
    pass: Arc<Mutex<bool>>,
    completed: Arc<Mutex<Vec<DynamicObject>>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl KeptnOperator {
    fn start(ns: &TestNamespace) -> KeptnOperator {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ns.client.clone(), &ns.name, &keptn("Analysis", "analyses"));
        let pass = Arc::new(Mutex::new(true));
        let completed = Arc::new(Mutex::new(Vec::new()));
        let (verdict, seen) = (pass.clone(), completed.clone());
        let task = tokio::spawn(async move {
            let stream = watcher(api.clone(), watcher::Config::default()).applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(analysis) = stream.try_next().await? {
                if !analysis.data["status"]["state"].is_null() {
                    continue;
                }
                let name = analysis.metadata.name.clone().unwrap_or_default();
                let status = if *verdict.lock().unwrap() {
                    json!({"state": "Completed", "pass": true, "raw": "{}"})
                } else {
                    json!({"state": "Completed", "raw": "{}"})
                };
                let patch = json!({"status": status});
                // The controller may delete it first if it gave up; that is not the operator's failure.
                if api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    seen.lock().unwrap().push(analysis);
                }
            }
            Ok(())
        });
        KeptnOperator {
            pass,
            completed,
            task,
        }
    }

    fn set_pass(&self, pass: bool) {
        *self.pass.lock().unwrap() = pass;
    }

    fn completed(&self) -> Vec<DynamicObject> {
        self.completed.lock().unwrap().clone()
    }
}

impl Drop for KeptnOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A KeptnMetric with the value Keptn's operator would have stored.
async fn keptn_metric(ns: &TestNamespace, name: &str, value: &str) -> Result<()> {
    let ar = keptn("KeptnMetric", "keptnmetrics");
    e2e::gateway::apply_resource(
        ns,
        &ar,
        json!({
            "apiVersion": "metrics.keptn.sh/v1beta1", "kind": "KeptnMetric",
            "metadata": {"name": name},
            "spec": {"provider": {"name": "prometheus"}, "query": "sum(rate(http_requests_total[1m]))",
                "fetchIntervalSeconds": 10},
        }),
    )
    .await?;
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &ar);
    let patch = json!({"status": {"value": value, "lastUpdated": "2026-12-05T00:00:00Z"}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("writing the KeptnMetric status")?;
    Ok(())
}

/// A KeptnMetric (max 10) and a Keptn Analysis (min 1, i.e. it must pass): values 3 and pass promote 6.0.1; the
/// Analysis failing rolls 6.0.2 back; every Analysis the controller created carried the rendered definition,
/// timeframe and arguments, and none is left behind.
#[tokio::test]
async fn cluster_metrics_keptn_metric_and_analysis_promote_and_roll_back() -> Result<()> {
    skip_unless_e2e!();
    with_namespace("metrics-keptn", |ns| async move {
        install_crds(&ns.client).await?;
        let keptn_provider = json!({"type": "keptn"});
        metric_template(&ns, "keptn-metric", keptn_provider.clone(), "keptnmetric/{{ namespace }}/queue-length").await?;
        metric_template(
            &ns,
            "keptn-analysis",
            keptn_provider,
            "analysis/{{ namespace }}/podinfo-slo/5m/app={{ target }};env=e2e",
        )
        .await?;
        keptn_metric(&ns, "queue-length", "3").await?;
        let operator = KeptnOperator::start(&ns);
        let controller = setup(
            &ns,
            canary(json!([
                {"name": "queue", "templateRef": {"name": "keptn-metric"}, "thresholdRange": {"max": 10}},
                {"name": "slo", "templateRef": {"name": "keptn-analysis"}, "thresholdRange": {"min": 1}},
            ])),
        )
        .await?;

        roll_out(&ns, &controller, "6.0.1", "Succeeded", "slo").await?;
        let completed = operator.completed();
        ensure!(!completed.is_empty(), "the controller created no Analysis");
        for analysis in &completed {
            ensure!(
                analysis.data["spec"]
                    == json!({"analysisDefinition": {"name": "podinfo-slo"}, "timeframe": {"recent": "5m"},
                        "args": {"app": APP, "env": "e2e"}}),
                "Analysis spec: {:#}",
                analysis.data["spec"]
            );
        }

        operator.set_pass(false);
        let warnings = roll_out(&ns, &controller, "6.0.2", "Failed", "slo").await?;
        ensure!(
            warnings.iter().any(|m| m.contains("slo 0.00 < 1")),
            "no Warning with the failed Analysis' value: {warnings:?}"
        );

        // Every Analysis is deleted once read, passed or failed.
        let analyses: Api<DynamicObject> =
            Api::namespaced_with(ns.client.clone(), &ns.name, &keptn("Analysis", "analyses"));
        let left = analyses.list(&Default::default()).await?;
        ensure!(
            left.items.is_empty(),
            "Analyses left behind: {:?}",
            left.items.iter().map(|a| a.metadata.name.clone()).collect::<Vec<_>>()
        );
        eprintln!("Analyses completed by the test's operator: {}", operator.completed().len());

        // A KeptnMetric value out of range fails on its own.
        operator.set_pass(true);
        keptn_metric(&ns, "queue-length", "42").await?;
        let warnings = roll_out(&ns, &controller, "6.0.3", "Failed", "queue").await?;
        ensure!(
            warnings.iter().any(|m| m.contains("queue 42.00 > 10")),
            "no Warning with the KeptnMetric value: {warnings:?}"
        );
        drop(controller);
        Ok(())
    })
    .await
}

// --- externalmetrics -----------------------------------------------------------------------------------------------

/// An address of the netns' pod range (local to the netns, as every pod IP here) that no kwok pod gets.
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 250, 10);

/// `queue_length` served by the aggregated API: 3500m (max 10) promotes 6.0.1, 25 rolls 6.0.2 back. The
/// controller's requests reach the server through the API server, as the `flagger-rs` user, with the rendered
/// namespace and label selector.
#[tokio::test]
async fn cluster_metrics_external_through_the_aggregation_layer_promote_and_roll_back() -> Result<()>
{
    skip_unless_e2e!();
    with_namespace("metrics-external", |ns| async move {
        install_crds(&ns.client).await?;
        let server = ExternalMetrics::start(&ns, SERVER_IP).await?;
        let result = async {
            server.set("queue_length", &["3500m"]);
            metric_template(
                &ns,
                "queue",
                json!({"type": "externalmetrics"}),
                "{{ namespace }}/queue_length?labelSelector=app%3D{{ target }}",
            )
            .await?;
            let controller = setup(
                &ns,
                canary(json!([
                    {"name": "queue", "templateRef": {"name": "queue"}, "thresholdRange": {"max": 10}},
                ])),
            )
            .await?;
            roll_out(&ns, &controller, "6.0.1", "Succeeded", "queue").await?;
            let requests = server.requests();
            ensure_queried(&requests, "queue_length", "app=podinfo", "flagger-rs")?;
            // The provider's online check, asked while the canary initialises, lists a metric
            // nobody serves (Flagger's probe); every query of the checks is the canary's.
            let (probes, queries): (Vec<_>, Vec<_>) = requests
                .iter()
                .partition(|r| r.namespace == "kube-system" && r.metric == "dummy-metric");
            ensure!(
                !probes.is_empty(),
                "no online check reached the external metrics server: {requests:#?}"
            );
            ensure!(
                queries.iter().all(|r| r.namespace == ns.name),
                "queries for another namespace: {queries:#?}"
            );

            server.set("queue_length", &["25", "1"]);
            let warnings = roll_out(&ns, &controller, "6.0.2", "Failed", "queue").await?;
            ensure!(
                warnings.iter().any(|m| m.contains("queue 25.00 > 10")),
                "no Warning with the external metric's value: {warnings:?}"
            );
            eprintln!("external metrics requests served: {}", server.requests().len());
            drop(controller);
            Ok(())
        }
        .await;
        let unregistered = server.unregister().await;
        result.and(unregistered)
    })
    .await
}
