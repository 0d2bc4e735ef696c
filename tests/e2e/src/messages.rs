//! What people read must be plain language: every Warning event about a Canary and every condition
//! message of it is checked for Rust debug text (a `kube::Error` printed with `{:?}`, or kube's own
//! `Display` of an API error, which embeds `Status { … metadata: Some(ListMeta { … }) }`).

use anyhow::ensure;
use kube::api::DynamicObject;
use serde_json::Value;

use crate::TestNamespace;
use crate::controller::{canaries, events_for, status};

/// Fragments that only Rust's `Debug` output produces in our messages.
pub const DEBUG_TEXT: [&str; 6] = [
    "Status {",
    "Some(",
    "None,",
    "ListMeta",
    "Box(",
    "{ status:",
];

/// Fails naming the text and the fragment when `text` reads like a debug dump.
pub fn ensure_plain(what: &str, text: &str) -> crate::Result<()> {
    for fragment in DEBUG_TEXT {
        ensure!(
            !text.contains(fragment),
            "{what} holds debug text {fragment:?}: {text}"
        );
    }
    Ok(())
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
