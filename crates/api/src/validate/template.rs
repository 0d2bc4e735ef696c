//! Go text/template syntax checks for metric queries and alert message templates.
//!
//! The parsing and its guards against user text that would crash gtmpl live in
//! [`crate::gotemplate`]; this module only words the outcome for `validate`.

use gtmpl::{Func, FuncError, Value};

/// The functions Flagger defines for metric queries.
const QUERY_FUNCTIONS: &[&str] = &[
    "name",
    "namespace",
    "target",
    "service",
    "ingress",
    "route",
    "interval",
    "variables",
];

fn placeholder(_: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Nil)
}

/// Checks a metric query; an unknown function is an error, as it is for Flagger's parser.
pub fn check_query_template(text: &str) -> Result<(), String> {
    let funcs: Vec<(&str, Func)> = QUERY_FUNCTIONS
        .iter()
        .map(|n| (*n, placeholder as Func))
        .collect();
    check(text, &funcs)
}

/// Checks an AlertProvider `messageTemplate`, which uses only dot fields and the builtins.
pub fn check_message_template(text: &str) -> Result<(), String> {
    check(text, &[])
}

fn check(text: &str, funcs: &[(&str, Func)]) -> Result<(), String> {
    crate::gotemplate::parse(text, funcs)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flagger_queries_parse() {
        let q = r#"histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{namespace="{{ namespace }}", pod=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[{{ interval }}])) by (le))"#;
        assert_eq!(check_query_template(q), Ok(()));
        assert_eq!(
            check_query_template("{{ variables.key }} {{ name }}"),
            Ok(())
        );
        assert_eq!(
            check_query_template(r#"{{- $x := printf "%s" name }}{{ $x }}"#),
            Ok(())
        );
    }

    #[test]
    fn broken_queries_are_reported() {
        assert!(check_query_template("{{ namespace").is_err());
        assert!(check_query_template("{{ nosuchfunc }}").is_err());
        assert!(check_query_template("{{ if 1 }}").is_err());
        assert!(check_query_template(&"{{ (".repeat(100)).is_err());
        assert!(check_query_template(&"{{ if 1 }}".repeat(1000)).is_err());
        assert!(check_query_template("{{ aé }}").is_err());
    }

    #[test]
    fn message_templates() {
        let t = r#"{{ if eq .Status "succeeded" }}ok {{ .Name }}{{ else }}{{ range .CanaryAnalysis.Iterations }}{{ if .Failed }}- {{ .Metric }}{{ end }}{{ end }}{{ end }}"#;
        assert_eq!(check_message_template(t), Ok(()));
        assert!(check_message_template("{{ .Name ").is_err());
        assert!(check_message_template("{{ .Name }} {{ $x").is_err());
        assert!(check_message_template(r#"{{ "}}" "#).is_err());
        assert_eq!(
            check_message_template(r#"{{/* a comment */}}{{ printf "}}" }}"#),
            Ok(())
        );
        assert!(check_message_template("{{/* open").is_err());
        assert_eq!(
            check_message_template(r#"{{ printf "é %s" .Name }}"#),
            Ok(())
        );
    }
}
