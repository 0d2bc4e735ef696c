//! Every routing shape one object goes through, from a watch: a router test names the shapes a run must
//! produce (`100/0`, `80/20`, …) and compares the whole sequence, so a skipped or repeated step shows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt as _;
use kube::Api;
use kube::api::DynamicObject;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::Value;

use crate::Result;
use crate::controller::Proc;

/// How a test reads an object's routing: `None` while the object has no shape it recognises.
pub type ShapeOf = Box<dyn Fn(&Value) -> Option<String> + Send + Sync>;

/// Distinct consecutive shapes of object `name`, and the latest one.
pub struct Shapes {
    kind: String,
    seen: Arc<Mutex<Vec<String>>>,
    latest: tokio::sync::watch::Receiver<Option<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Shapes {
    pub fn start(api: Api<DynamicObject>, kind: &str, name: &str, shape: ShapeOf) -> Shapes {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, latest) = tokio::sync::watch::channel(None);
        let log = seen.clone();
        let label = format!("{kind} {name}");
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, cfg).applied_objects().boxed();
            while let Some(ev) = stream.next().await {
                let Some(s) = ev
                    .ok()
                    .and_then(|o| serde_json::to_value(o).ok())
                    .and_then(|v| shape(&v))
                else {
                    continue;
                };
                let mut seen = log.lock().unwrap_or_else(|p| p.into_inner());
                if seen.last() != Some(&s) {
                    eprintln!("{label}: {s}");
                    seen.push(s.clone());
                }
                drop(seen);
                let _ = tx.send(Some(s));
            }
        });
        Shapes {
            kind: kind.to_string(),
            seen,
            latest,
            task,
        }
    }

    /// Awaits the shape `want` on the watch; fails with the shapes so far and the controller's log tail.
    pub async fn wait_for(&self, want: &str, timeout: Duration, controller: &Proc) -> Result<()> {
        let mut latest = self.latest.clone();
        let wait = latest.wait_for(|s| s.as_deref() == Some(want));
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("{} watch ended while waiting for {want}", self.kind),
            Err(_) => bail!(
                "{} shape {want} not seen after {timeout:?}; shapes so far {:?}\ncontroller log tail:\n{}",
                self.kind,
                self.seen(),
                controller.log_tail()
            ),
        }
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets the shapes seen so far (the next run's sequence starts from the current shape).
    pub fn reset(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let last = seen.pop();
        seen.clear();
        seen.extend(last);
    }
}

impl Drop for Shapes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The object as the API server holds it equals `want` (what the router renders): spec, the router's labels and
/// annotations (others' keys may be added), and the owner references.
pub fn ensure_same(kind: &str, live: &Value, want: &Value) -> Result<()> {
    let name = live["metadata"]["name"].as_str().unwrap_or_default();
    anyhow::ensure!(
        live["spec"] == want["spec"],
        "{kind} {name} read back\n{:#}\ndiffers from the rendered\n{:#}",
        live["spec"],
        want["spec"]
    );
    for field in ["labels", "annotations"] {
        for (k, v) in want["metadata"][field].as_object().into_iter().flatten() {
            anyhow::ensure!(
                &live["metadata"][field][k] == v,
                "{kind} {name} {field}.{k}: {} (want {v})",
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
    anyhow::ensure!(
        owners(live) == owners(want),
        "{kind} {name} owners {:?}, want {:?}",
        owners(live),
        owners(want)
    );
    Ok(())
}
