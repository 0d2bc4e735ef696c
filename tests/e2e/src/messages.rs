//! What people read must be plain language: events and Canary condition messages are checked for
//! Rust debug text (a `kube::Error` printed with `{:?}`, or kube's own `Display` of an API error,
//! which embeds `Status { … metadata: Some(ListMeta { … }) }`).
//!
//! [`MessageAudit`] does this for every test of the tier: `with_namespace` starts one for the test's
//! namespace and fails the test, naming the text, if any event or condition message in it (at any
//! moment of the test, not only at its end) reads like a debug dump.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use anyhow::ensure;
use futures::TryStreamExt as _;
use k8s_openapi::api::core::v1::Event;
use kube::api::{DynamicObject, ListParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use serde_json::Value;

use crate::TestNamespace;
use crate::controller::{canaries, canary_resource, events_for, status};

/// Fragments that only Rust's `Debug` output produces in our messages.
pub const DEBUG_TEXT: [&str; 6] = [
    "Status {",
    "Some(",
    "None,",
    "ListMeta",
    "Box(",
    "{ status:",
];

/// The first debug fragment `text` holds, if any.
pub fn debug_fragment(text: &str) -> Option<&'static str> {
    DEBUG_TEXT.into_iter().find(|f| text.contains(f))
}

/// Fails naming the text and the fragment when `text` reads like a debug dump.
pub fn ensure_plain(what: &str, text: &str) -> crate::Result<()> {
    match debug_fragment(text) {
        Some(fragment) => anyhow::bail!("{what} holds debug text {fragment:?}: {text}"),
        None => Ok(()),
    }
}

/// The condition messages of a Canary, as `(type, message)`.
pub fn condition_messages(canary: &DynamicObject) -> Vec<(String, String)> {
    let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    status(canary)
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| (text(c, "type"), text(c, "message")))
        .collect()
}

/// Every Warning event about Canary `name` and every condition message of it is plain language.
/// Call at the end of a test, once the controller has done what the test exercised.
pub async fn ensure_plain_messages(ns: &TestNamespace, name: &str) -> crate::Result<()> {
    for (type_, reason, message, _) in events_for(ns, "Canary", name).await? {
        if type_ == "Warning" {
            ensure_plain(
                &format!("Warning event {reason} of Canary {name}"),
                &message,
            )?;
        }
    }
    if let Some(canary) = canaries(ns).get_opt(name).await? {
        for (type_, message) in condition_messages(&canary) {
            ensure_plain(&format!("condition {type_} of Canary {name}"), &message)?;
        }
    }
    Ok(())
}

/// `what: text` when `text` holds debug text.
fn finding(what: String, text: &str) -> Option<String> {
    debug_fragment(text).map(|f| format!("{what} holds debug text {f:?}: {text}"))
}

/// The condition messages of a Canary that read like debug dumps.
fn canary_findings(canary: &DynamicObject) -> Vec<String> {
    let name = canary.name_any();
    condition_messages(canary)
        .into_iter()
        .filter_map(|(type_, message)| {
            finding(format!("condition {type_} of Canary {name}"), &message)
        })
        .collect()
}

fn event_finding(e: &Event) -> Option<String> {
    let what = format!(
        "{} event {} of {} {}",
        e.type_.as_deref().unwrap_or("untyped"),
        e.reason.as_deref().unwrap_or(""),
        e.involved_object.kind.as_deref().unwrap_or(""),
        e.involved_object.name.as_deref().unwrap_or("")
    );
    finding(what, e.message.as_deref().unwrap_or(""))
}

/// Every event and Canary condition message of one namespace, checked for debug text: the Canaries
/// through a watch for the whole test (conditions are overwritten as a run goes on, and a test may
/// delete its Canary), the events by a list at the end (they outlive the test).
pub struct MessageAudit {
    client: Client,
    namespace: String,
    found: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MessageAudit {
    pub fn start(client: &Client, namespace: &str) -> MessageAudit {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &canary_resource());
        let found = Arc::new(Mutex::new(BTreeSet::new()));
        let sink = found.clone();
        // Backoff instead of ending: the Canary CRD may only be installed by the test itself.
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                match stream.try_next().await {
                    Ok(Some(canary)) => {
                        if let Ok(mut seen) = sink.lock() {
                            seen.extend(canary_findings(&canary));
                        }
                    }
                    Ok(None) => break,
                    Err(_) => continue,
                }
            }
        });
        MessageAudit {
            client: client.clone(),
            namespace: namespace.to_string(),
            found,
            task,
        }
    }

    /// Stops the watch and fails listing every debug text seen, adding what the namespace holds now.
    pub async fn finish(self) -> crate::Result<()> {
        self.task.abort();
        let mut found = self.found.lock().map(|s| s.clone()).unwrap_or_default();
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = events.list(&ListParams::default()).await?;
        found.extend(list.items.iter().filter_map(event_finding));
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &canary_resource());
        match api.list(&ListParams::default()).await {
            Ok(list) => found.extend(list.items.iter().flat_map(canary_findings)),
            // No Canary CRD in the cluster: this test made no Canary.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        ensure!(
            found.is_empty(),
            "messages in namespace {} are not plain language:\n{}",
            self.namespace,
            found.into_iter().collect::<Vec<_>>().join("\n")
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kube_debug_dump_is_caught_and_plain_text_passes() {
        let dump = r#"Invalid (Status { status: Some(Failure), code: 422, message: "x", metadata: Some(ListMeta { continue_: None }) })"#;
        assert!(ensure_plain("event", dump).is_err());
        assert!(
            ensure_plain(
                "event",
                r#"Service "podinfo" is invalid: spec.ports[1].name: Duplicate value: "http" (Invalid)"#
            )
            .is_ok()
        );
    }
}
