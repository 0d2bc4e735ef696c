//! Knative Serving's part in a Knative Service canary, played by the test: the Knative Serving CRDs
//! (from `knative.dev/serving`) are installed in the cluster, but no Knative controller runs here.
//! [`FakeServing`] does the minimum a Knative controller does for what flagger-rs reads: a new
//! Revision `<service>-0000N` (Ready) for each new `spec.template`, the Service's
//! `status.latestCreatedRevisionName`/`latestReadyRevisionName`, and `status.traffic` resolved from
//! `spec.traffic` (latest-revision entries get the revision's name), as Knative reports what it
//! routes. It serves no requests: the traffic split is checked on the objects, not measured.

use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::Result;

pub fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.knative.dev", "v1", kind),
        plural,
    )
}

/// The Knative controller's stand-in for one namespace; stops when dropped.
pub struct FakeServing {
    task: tokio::task::JoinHandle<()>,
}

/// `status.traffic` for `spec.traffic`, with latest-revision entries resolved to `latest`.
fn served_traffic(spec_traffic: &Value, latest: &str) -> Value {
    let Some(entries) = spec_traffic.as_array().filter(|e| !e.is_empty()) else {
        return json!([{"latestRevision": true, "revisionName": latest, "percent": 100}]);
    };
    Value::Array(
        entries
            .iter()
            .map(|e| {
                let is_latest = e["latestRevision"].as_bool() == Some(true);
                let name = if is_latest {
                    json!(latest)
                } else {
                    e["revisionName"].clone()
                };
                json!({"latestRevision": is_latest, "revisionName": name, "percent": e["percent"]})
            })
            .collect(),
    )
}

async fn create_ready_revision(
    revisions: &Api<DynamicObject>,
    name: &str,
    service: &str,
    template: &Value,
) -> Result<()> {
    let rev: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
        "metadata": {"name": name, "labels": {"serving.knative.dev/service": service}},
        "spec": template["spec"],
    }))?;
    revisions
        .create(&PostParams::default(), &rev)
        .await
        .with_context(|| format!("creating Revision {name}"))?;
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    revisions
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("marking Revision {name} Ready"))?;
    Ok(())
}

/// One reconcile of the Service: a new Revision when the template is new, then the status.
async fn sync(
    services: &Api<DynamicObject>,
    revisions: &Api<DynamicObject>,
    templates: &mut Vec<Value>,
    svc: &DynamicObject,
) -> Result<()> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let template = &svc.data["spec"]["template"];
    if templates.last() != Some(template) {
        templates.push(template.clone());
        let rev = format!("{name}-{:05}", templates.len());
        create_ready_revision(revisions, &rev, &name, template).await?;
        eprintln!("fake Knative: created Revision {rev}");
    }
    let latest = format!("{name}-{:05}", templates.len());
    let status = json!({
        "observedGeneration": svc.metadata.generation,
        "latestCreatedRevisionName": latest,
        "latestReadyRevisionName": latest,
        "traffic": served_traffic(&svc.data["spec"]["traffic"], &latest),
        "conditions": [{"type": "Ready", "status": "True"}],
    });
    let mut current = svc.data["status"].clone();
    if let Some(c) = current.as_object_mut() {
        c.remove("conditions");
    }
    let mut wanted = status.clone();
    if let Some(w) = wanted.as_object_mut() {
        w.remove("conditions");
    }
    if current != wanted {
        services
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
            .with_context(|| format!("writing Knative Service {name} status"))?;
    }
    Ok(())
}

impl FakeServing {
    pub fn start(client: &Client, namespace: &str) -> FakeServing {
        let services: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &resource("Service", "services"));
        let revisions: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &resource("Revision", "revisions"),
        );
        let task = tokio::spawn(async move {
            let mut templates = Vec::new();
            let mut stream = watcher(services.clone(), watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(ev) = stream.next().await {
                let Ok(svc) = ev else { continue };
                // A conflicting write (the controller patching at the same time) is retried on the
                // next event of this watch, as a controller would.
                if let Err(e) = tokio::time::timeout(
                    Duration::from_secs(10),
                    sync(&services, &revisions, &mut templates, &svc),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("sync over 10s")))
                {
                    eprintln!("fake Knative: {e:#}");
                }
            }
        });
        FakeServing { task }
    }
}

impl Drop for FakeServing {
    fn drop(&mut self) {
        self.task.abort();
    }
}
