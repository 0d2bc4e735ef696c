//! `AlertProvider.spec.messageTemplate`: Go text/template over the alert.
//!
//! Rendering never costs the alert: any failure gives back the standard text together with a
//! warning the controller turns into a Warning event.

use std::collections::HashMap;

use flagger_api::gotemplate;
use gtmpl::{Context, Value};

use super::alert::{Alert, CheckLine};

/// What gtmpl prints for a missing map key; the documented behaviour is empty text.
const NO_VALUE: &str = "<no value>";

/// The text to post, and why the template was not used when it was not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub message: String,
    /// True when the template's output replaced the standard message (fields are then omitted).
    pub templated: bool,
    pub warning: Option<String>,
}

/// Renders `template` for `alert`, or falls back to `alert.message` with a warning.
pub fn render(template: &str, alert: &Alert) -> Rendered {
    match try_render(template, alert) {
        Ok(text) if !text.trim().is_empty() => Rendered {
            message: text.trim().to_owned(),
            templated: true,
            warning: None,
        },
        Ok(_) => fallback(alert, "messageTemplate rendered empty text".into()),
        Err(e) => fallback(alert, e),
    }
}

fn fallback(alert: &Alert, why: String) -> Rendered {
    Rendered {
        message: alert.message.clone(),
        templated: false,
        warning: Some(format!("{why}; the standard message was sent instead")),
    }
}

/// Renders strictly: any parse or execution error is returned.
pub fn try_render(template: &str, alert: &Alert) -> Result<String, String> {
    let t = gotemplate::parse(template, &[]).map_err(|e| format!("messageTemplate: {e}"))?;
    gotemplate::render(&t, &Context::from(context(alert)))
        .map(|text| text.replace(NO_VALUE, ""))
        .map_err(|e| format!("messageTemplate failed: {e}"))
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn object(entries: Vec<(&str, Value)>) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// The documented data model. Top-level names are an `Object` (a misspelt field is an error, as
/// for a Go struct); `.Metadata` and `.Reason` are maps (a missing key is empty text).
fn context(alert: &Alert) -> Value {
    let fields = alert
        .fields
        .iter()
        .map(|f| object(vec![("Name", s(&f.name)), ("Value", s(&f.value))]))
        .collect();
    let metadata: HashMap<String, Value> = alert
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), s(v)))
        .collect();
    let reason: HashMap<String, Value> = alert
        .reason
        .as_ref()
        .map(|r| {
            r.template_data()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v)))
                .collect()
        })
        .unwrap_or_default();
    let iterations = alert.checks.iter().map(check).collect();
    object(vec![
        ("Name", s(&alert.name)),
        ("Namespace", s(&alert.namespace)),
        ("Phase", s(alert.phase.as_str())),
        ("Status", s(&alert.phase.as_str().to_lowercase())),
        ("Severity", s(alert.severity.as_str())),
        ("Message", s(&alert.message)),
        ("Target", s(&alert.target)),
        ("Fields", Value::Array(fields)),
        ("CanaryWeight", Value::from(alert.canary_weight)),
        ("FailedChecks", Value::from(alert.failed_checks)),
        ("Iterations", Value::from(alert.iterations)),
        ("Metadata", Value::Map(metadata)),
        (
            "CanaryAnalysis",
            object(vec![("Iterations", Value::Array(iterations))]),
        ),
        ("Reason", Value::Map(reason)),
    ])
}

fn check(c: &CheckLine) -> Value {
    object(vec![
        ("Iteration", Value::from(i64::from(c.iteration))),
        ("Metric", s(&c.metric)),
        ("Value", c.value.map(Value::from).unwrap_or(Value::NoValue)),
        ("Threshold", s(c.threshold.as_deref().unwrap_or_default())),
        ("Failed", Value::Bool(c.failed)),
        ("Message", s(c.message.as_deref().unwrap_or_default())),
    ])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flagger_api::status::CanaryPhase;

    use super::*;
    use crate::notify::alert::{Field, Severity};

    /// The seed-000 example template ("Alert Content").
    const SEED_TEMPLATE: &str = r#"{{ if eq .Status "succeeded" }}✅ Deployment succeeded{{ else }}❌ Deployment {{ .Status }}{{ end }}
Environment: {{ .Metadata.environment }}
Service: {{ .Name }}.{{ .Namespace }}
Version: {{ .Metadata.version }}
{{ range .CanaryAnalysis.Iterations }}{{ if .Failed }}- {{ .Metric }}: {{ .Value }} (threshold: {{ .Threshold }})
{{ end }}{{ end }}"#;

    fn rollback() -> Alert {
        let mut a = Alert::example_rollback();
        a.target = "Deployment/podinfo.test".into();
        a.metadata = BTreeMap::from([
            ("environment".to_owned(), "production".to_owned()),
            ("version".to_owned(), "6.1.0".to_owned()),
        ]);
        a.checks = vec![
            CheckLine {
                iteration: 1,
                metric: "request-success-rate".into(),
                value: Some(97.5),
                threshold: Some("min 99".into()),
                failed: true,
                message: None,
            },
            CheckLine {
                iteration: 1,
                metric: "latency".into(),
                value: Some(0.2),
                failed: false,
                ..Default::default()
            },
            CheckLine {
                iteration: 2,
                metric: "request-success-rate".into(),
                value: Some(98.0),
                threshold: Some("min 99".into()),
                failed: true,
                message: None,
            },
        ];
        a.fields = vec![Field::new("Target", "Deployment/podinfo.test")];
        a
    }

    #[test]
    fn seed_example_renders_status_labels_and_failed_checks() {
        let r = render(SEED_TEMPLATE, &rollback());
        assert_eq!(r.warning, None);
        assert!(r.templated);
        assert_eq!(
            r.message,
            "❌ Deployment failed\nEnvironment: production\nService: podinfo.test\nVersion: 6.1.0\n\
             - request-success-rate: 97.5 (threshold: min 99)\n\
             - request-success-rate: 98 (threshold: min 99)"
        );
    }

    #[test]
    fn succeeded_branch() {
        let a = Alert::new(
            "podinfo",
            "test",
            CanaryPhase::Succeeded,
            Severity::Info,
            "done",
        );
        let r = render(SEED_TEMPLATE, &a);
        assert!(
            r.message
                .starts_with("✅ Deployment succeeded\nEnvironment: \nService: podinfo.test"),
            "{}",
            r.message
        );
    }

    #[test]
    fn every_documented_variable_is_available() {
        let mut a = rollback();
        a.canary_weight = 30;
        a.failed_checks = 2;
        a.iterations = 4;
        let t = "{{.Name}}|{{.Namespace}}|{{.Phase}}|{{.Status}}|{{.Severity}}|{{.Target}}|{{.CanaryWeight}}|\
                 {{.FailedChecks}}|{{.Iterations}}|{{range .Fields}}{{.Name}}={{.Value}}{{end}}|\
                 {{len .CanaryAnalysis.Iterations}}|{{.Reason.Metric}} {{.Reason.Value}} {{.Reason.Min}} {{.Reason.Query}}|{{.Message}}";
        assert_eq!(
            try_render(t, &a).unwrap(),
            "podinfo|test|Failed|failed|error|Deployment/podinfo.test|30|2|4|Target=Deployment/podinfo.test|3|\
             request-success-rate 97.5 99 sum(rate(x[1m]))|\
             Failed checks threshold reached 2: request-success-rate is 97.5, below the minimum 99"
        );
    }

    #[test]
    fn missing_map_keys_render_empty() {
        let a = rollback();
        assert_eq!(
            try_render("[{{ .Metadata.nosuchlabel }}][{{ .Reason.Webhook }}]", &a).unwrap(),
            "[][]"
        );
        let plain = Alert::new("a", "b", CanaryPhase::Progressing, Severity::Info, "m");
        assert_eq!(try_render("[{{ .Reason.Kind }}]", &plain).unwrap(), "[]");
    }

    #[test]
    fn broken_templates_fall_back_with_a_warning() {
        let a = rollback();
        for broken in [
            "{{ .Name ",               // does not parse
            "{{ if .Name }}no end",    // unclosed block
            "{{ .NoSuchField }}",      // unknown top-level field fails at render time
            "{{ template \"nope\" }}", // undefined template
            "{{ index .Fields 99 }}",  // out of range
            "{{ .Name.Deeper }}",      // field of a string
            "{{ printf }}",            // wrong arity
            "{{ }}",                   // empty action
            "   ",                     // renders nothing
        ] {
            let r = render(broken, &a);
            assert_eq!(r.message, a.message, "template {broken:?}");
            assert!(!r.templated);
            let w = r.warning.unwrap_or_default();
            assert!(
                w.contains("standard message was sent instead"),
                "template {broken:?}: {w}"
            );
        }
    }

    #[test]
    fn recursive_templates_are_refused_before_rendering() {
        for t in [
            r#"{{ define "a" }}x{{ template "a" . }}{{ end }}{{ template "a" . }}"#,
            r#"{{- define "a" -}}x{{ template "a" . }}{{ end }}{{ template "a" . }}"#,
            r#"{{block "a" .}}{{template "a" .}}{{end}}"#,
            r#"{{define"a"}}{{template "a" .}}{{end}}{{template "a" .}}"#,
        ] {
            let r = render(t, &rollback());
            // gtmpl refuses `{{define"a"}}` itself; either way the template is not used.
            assert!(r.warning.is_some(), "{t}: {r:?}");
            assert!(!r.templated);
        }
        // A string that merely contains the word is fine.
        assert_eq!(
            try_render(r#"{{ "define" }} {{ .Name }}"#, &rollback()).unwrap(),
            "define podinfo"
        );
    }
}
