//! How an error from the Kubernetes API reads where a person sees it: Warning events, condition
//! messages and log lines. kube's own `Display` of an API error appends a Rust debug dump of the
//! whole `Status` (`Status { status: Some(Failure), … metadata: Some(ListMeta { … }) }`), which
//! makes `kubectl describe canary` unreadable; this says what the API server said, and why, on
//! one line.

use std::error::Error as _;
use std::fmt;

use kube::core::Status;

/// An API error worded for people: the API server's message and its reason.
pub fn kube_error(e: &kube::Error) -> String {
    let text = match e {
        kube::Error::Api(status) => api_status(status),
        other => with_causes(other),
    };
    one_line(&text)
}

/// `kube_error` as a `Display`, for `format!`, `tracing` fields and `thiserror` messages.
pub struct Plain<'a>(pub &'a kube::Error);

impl fmt::Display for Plain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&kube_error(self.0))
    }
}

/// `Service "podinfo" is invalid: spec.ports[1].name: Duplicate value: "http" (Invalid)`: the
/// message already names the object and the fields; the reason is the API's one-word verdict.
fn api_status(status: &Status) -> String {
    let message = status.message.trim();
    let reason = status.reason.trim();
    match (message.is_empty(), reason.is_empty()) {
        (false, false) => format!("{message} ({reason})"),
        (false, true) => message.to_string(),
        (true, false) => format!("{reason} (HTTP {})", status.code),
        (true, true) => format!("the API server answered HTTP {}", status.code),
    }
}

/// Transport errors say little on their own ("client error (Connect)"): their causes ("connection
/// refused") are what a person can act on.
fn with_causes(e: &kube::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(message: &str, reason: &str, code: u16) -> kube::Error {
        let mut status = Status::failure(message, reason).with_code(code);
        status.metadata = Some(Default::default());
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn an_api_error_reads_as_its_message_and_reason() {
        let e = api(
            r#"Service "podinfo" is invalid: spec.ports[1].name: Duplicate value: "http""#,
            "Invalid",
            422,
        );
        // What kube itself prints, and what this module exists to avoid.
        assert!(e.to_string().contains("Status {"), "{e}");
        assert_eq!(
            kube_error(&e),
            r#"Service "podinfo" is invalid: spec.ports[1].name: Duplicate value: "http" (Invalid)"#
        );
        assert_eq!(Plain(&e).to_string(), kube_error(&e));
    }

    #[test]
    fn an_api_error_without_message_or_reason_still_says_something() {
        assert_eq!(kube_error(&api("", "NotFound", 404)), "NotFound (HTTP 404)");
        assert_eq!(
            kube_error(&api(" ", "", 500)),
            "the API server answered HTTP 500"
        );
        assert_eq!(kube_error(&api("gone", "", 410)), "gone");
    }

    #[test]
    fn every_wording_is_one_line_without_debug_text() {
        let e = api("line one\nline two", "Conflict", 409);
        assert_eq!(kube_error(&e), "line one line two (Conflict)");
        let serde = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let worded = kube_error(&kube::Error::SerdeError(serde));
        assert!(
            worded.starts_with("Error deserializing response: EOF"),
            "{worded}"
        );
        for text in [kube_error(&e), worded] {
            for debug in ["Status {", "Some(", "ListMeta", "\n"] {
                assert!(!text.contains(debug), "{text}");
            }
        }
    }
}
