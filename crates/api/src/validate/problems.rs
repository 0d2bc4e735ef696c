//! The problem record and the collector the checks write into.

use std::fmt;

use serde::Serialize;

use super::reason;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Something worth knowing about a setting that is fine as it is (often a default): printed by
    /// `flagger-rs validate`, never an event or part of the controller's `Valid` condition.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "note",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// JSON-path-like location: `spec.analysis.metrics[1].thresholdRange`; map keys that are not
    /// plain words are quoted: `metadata.labels["app.kubernetes.io/name"]`.
    pub path: String,
    pub message: String,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "{}: {}", self.path, self.message),
            Severity::Warning => write!(f, "{}: warning: {}", self.path, self.message),
            Severity::Info => write!(f, "{}: note: {}", self.path, self.message),
        }
    }
}

/// `parent.key`, or `parent["key"]` when the key would make the path ambiguous.
pub fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

#[derive(Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(
        &mut self,
        severity: Severity,
        reason: Option<&'static str>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
            severity,
            reason,
        });
    }

    /// Rejected by Flagger's CRD schema.
    pub fn schema(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, Some(reason::SCHEMA), path, message);
    }

    /// Admitted by the schema; the controller refuses to run it (`Valid=False`).
    pub fn error(
        &mut self,
        reason: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Error, Some(reason), path, message);
    }

    pub fn invalid(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.error(reason::INVALID_SPEC, path, message);
    }

    pub fn warn(
        &mut self,
        reason: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Warning, Some(reason), path, message);
    }

    pub fn note(
        &mut self,
        reason: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Info, Some(reason), path, message);
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}
