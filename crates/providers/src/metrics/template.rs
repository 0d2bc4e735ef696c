//! Query templating: Go `text/template` with Flagger's zero-argument functions.
//!
//! gtmpl functions are plain `fn` pointers and cannot capture the canary they describe, so the
//! model of the query being rendered sits in a thread-local for the duration of one synchronous
//! `render` call. Execution never yields, so no other render can observe it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use flagger_api::Canary;
use flagger_api::gotemplate;
use gtmpl::error::ExecError;
use gtmpl::{Context, Func, FuncError, Value};
use thiserror::Error;

/// The window when a metric sets none: Flagger's `1m`, but for every kind (an empty window can only fail).
pub const DEFAULT_INTERVAL: &str = "1m";

/// What the query functions return for one metric of one canary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryModel {
    pub name: String,
    pub namespace: String,
    pub target: String,
    pub service: String,
    pub ingress: String,
    pub route: String,
    pub interval: String,
    pub variables: BTreeMap<String, String>,
}

impl QueryModel {
    /// The model Flagger builds for a canary's metric. `interval` is the metric's own
    /// (`None` → `1m`); `variables` its `templateVariables`. For Knative targets the controller
    /// overrides `route` with the latest created revision, which only the cluster knows.
    pub fn for_canary(
        canary: &Canary,
        interval: Option<&str>,
        variables: Option<&BTreeMap<String, String>>,
    ) -> Self {
        let spec = &canary.spec;
        let target = spec.target_ref.name.clone();
        let or_target = |name: Option<&String>| name.cloned().unwrap_or_else(|| target.clone());
        QueryModel {
            name: canary.metadata.name.clone().unwrap_or_default(),
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            service: spec.apex_name().to_string(),
            ingress: or_target(spec.ingress_ref.as_ref().map(|r| &r.name)),
            route: or_target(spec.route_ref.as_ref().map(|r| &r.name)),
            interval: interval
                .filter(|i| !i.is_empty())
                .unwrap_or(DEFAULT_INTERVAL)
                .to_string(),
            variables: variables.cloned().unwrap_or_default(),
            target,
        }
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RenderError {
    /// `{{ variables.<key> }}` (or `index variables "<key>"`) with a key `templateVariables`
    /// does not define.
    #[error("template variable {key:?} is not defined in templateVariables (defined: {defined})")]
    UnknownVariable { key: String, defined: String },
    /// Syntax errors, unknown functions and anything the parser refuses.
    #[error("template parsing failed: {0}")]
    Parse(String),
    #[error("template execution failed: {0}")]
    Exec(String),
}

impl RenderError {
    fn unknown_variable(key: &str, variables: &BTreeMap<String, String>) -> Self {
        let defined = if variables.is_empty() {
            "none".to_string()
        } else {
            variables.keys().cloned().collect::<Vec<_>>().join(", ")
        };
        RenderError::UnknownVariable {
            key: key.to_string(),
            defined,
        }
    }
}

thread_local! {
    static MODEL: RefCell<Option<QueryModel>> = const { RefCell::new(None) };
}

/// Clears the thread-local even when rendering unwinds.
struct ModelGuard;

impl ModelGuard {
    fn install(model: &QueryModel) -> Self {
        MODEL.with(|m| *m.borrow_mut() = Some(model.clone()));
        ModelGuard
    }
}

impl Drop for ModelGuard {
    fn drop(&mut self) {
        MODEL.with(|m| *m.borrow_mut() = None);
    }
}

fn field(name: &str, args: &[Value], get: fn(&QueryModel) -> Value) -> Result<Value, FuncError> {
    if !args.is_empty() {
        return Err(FuncError::Generic(format!(
            "wrong number of args for {name}: want 0 got {}",
            args.len()
        )));
    }
    MODEL.with(|m| {
        m.borrow()
            .as_ref()
            .map(get)
            .ok_or_else(|| FuncError::Generic(format!("{name} called outside a query render")))
    })
}

fn f_name(a: &[Value]) -> Result<Value, FuncError> {
    field("name", a, |m| m.name.clone().into())
}
fn f_namespace(a: &[Value]) -> Result<Value, FuncError> {
    field("namespace", a, |m| m.namespace.clone().into())
}
fn f_target(a: &[Value]) -> Result<Value, FuncError> {
    field("target", a, |m| m.target.clone().into())
}
fn f_service(a: &[Value]) -> Result<Value, FuncError> {
    field("service", a, |m| m.service.clone().into())
}
fn f_ingress(a: &[Value]) -> Result<Value, FuncError> {
    field("ingress", a, |m| m.ingress.clone().into())
}
fn f_route(a: &[Value]) -> Result<Value, FuncError> {
    field("route", a, |m| m.route.clone().into())
}
fn f_interval(a: &[Value]) -> Result<Value, FuncError> {
    field("interval", a, |m| m.interval.clone().into())
}

/// An `Object`, not a `Map`: gtmpl answers a missing field of a `Map` with `<no value>` but fails
/// on a missing field of an `Object`, which is Go's `missingkey=error`.
fn f_variables(a: &[Value]) -> Result<Value, FuncError> {
    field("variables", a, |m| {
        let entries: HashMap<String, Value> = m
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        Value::Object(entries)
    })
}

/// Go's `index`, except that a missing key of `variables` is an error naming the key instead of
/// gtmpl's message that prints the whole map.
fn f_index(args: &[Value]) -> Result<Value, FuncError> {
    let Some((first, keys)) = args.split_first() else {
        return Err(FuncError::AtLeastXArgs("index".into(), 2));
    };
    if keys.is_empty() {
        return Err(FuncError::AtLeastXArgs("index".into(), 2));
    }
    let mut current = first.clone();
    for key in keys {
        current = match (&current, key) {
            (Value::Object(o) | Value::Map(o), Value::String(k)) => match o.get(k) {
                Some(v) => v.clone(),
                None if matches!(current, Value::Object(_)) => {
                    return Err(FuncError::Generic(format!("{MISSING_KEY_MARK}{k}")));
                }
                None => Value::NoValue,
            },
            (Value::Array(items), Value::Number(n)) => n
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| items.get(i).cloned())
                .ok_or_else(|| FuncError::Generic(format!("index out of range: {n}")))?,
            _ => {
                return Err(FuncError::Generic(format!(
                    "cannot index {current} with {key}"
                )));
            }
        };
    }
    Ok(current)
}

/// Prefix that marks `f_index`'s missing-key errors so `render` can name the key.
const MISSING_KEY_MARK: &str = "\u{0}missing-key:";

const FUNCTIONS: &[(&str, Func)] = &[
    ("name", f_name),
    ("namespace", f_namespace),
    ("target", f_target),
    ("service", f_service),
    ("ingress", f_ingress),
    ("route", f_route),
    ("interval", f_interval),
    ("variables", f_variables),
    ("index", f_index),
];

/// Renders a query template with "missing key = error" semantics.
pub fn render(text: &str, model: &QueryModel) -> Result<String, RenderError> {
    let tmpl =
        gotemplate::parse(text, FUNCTIONS).map_err(|e| RenderError::Parse(e.into_message()))?;

    let _guard = ModelGuard::install(model);
    gotemplate::render(&tmpl, &Context::empty()).map_err(|e| exec_error(*e, &model.variables))
}

fn exec_error(e: ExecError, variables: &BTreeMap<String, String>) -> RenderError {
    match e {
        ExecError::NoFiledFor(key, _) => RenderError::unknown_variable(&key, variables),
        ExecError::FuncError(FuncError::Generic(msg)) => match msg.strip_prefix(MISSING_KEY_MARK) {
            Some(key) => RenderError::unknown_variable(key, variables),
            None => RenderError::Exec(msg),
        },
        e => RenderError::Exec(e.to_string()),
    }
}

/// Collapses every whitespace run to one space and trims the ends, as Flagger does before
/// sending a PromQL query.
pub fn collapse_whitespace(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> QueryModel {
        QueryModel {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo-svc".into(),
            ingress: "podinfo-ing".into(),
            route: "podinfo-route".into(),
            interval: "1m".into(),
            variables: BTreeMap::from([
                ("ingress".to_string(), "public".to_string()),
                ("quantile".to_string(), "0.95".to_string()),
            ]),
        }
    }

    #[test]
    fn every_function_renders() {
        let out = render(
            "{{ name }} {{ namespace }} {{ target }} {{ service }} {{ ingress }} {{ route }} {{ interval }} {{ variables.ingress }}",
            &model(),
        )
        .unwrap();
        assert_eq!(
            out,
            "podinfo test podinfo podinfo-svc podinfo-ing podinfo-route 1m public"
        );
    }

    #[test]
    fn promql_braces_stay_plain_text() {
        let q = r#"histogram_quantile({{ variables.quantile }}, sum(rate(x_bucket{le="+Inf",ns="{{ namespace }}"}[{{ interval }}])) by (le))"#;
        assert_eq!(
            render(q, &model()).unwrap(),
            r#"histogram_quantile(0.95, sum(rate(x_bucket{le="+Inf",ns="test"}[1m])) by (le))"#
        );
    }

    #[test]
    fn unknown_variable_is_an_error_naming_it() {
        let err = render("rate(x{{ variables.missing }})", &model()).unwrap_err();
        assert!(
            matches!(&err, RenderError::UnknownVariable { key, .. } if key == "missing"),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("\"missing\""), "{text}");
        assert!(text.contains("ingress, quantile"), "{text}");
        assert!(!text.contains("no value"), "{text}");
    }

    #[test]
    fn unknown_variable_through_index_and_declared_variable() {
        for q in [
            r#"{{ index variables "nope" }}"#,
            "{{ $v := variables }}{{ $v.nope }}",
            "{{ with variables }}{{ .nope }}{{ end }}",
        ] {
            let err = render(q, &model()).unwrap_err();
            assert!(
                matches!(&err, RenderError::UnknownVariable { key, .. } if key == "nope"),
                "{q}: {err:?}"
            );
        }
        let no_vars = QueryModel {
            variables: BTreeMap::new(),
            ..model()
        };
        let err = render("{{ variables.x }}", &no_vars).unwrap_err();
        assert!(err.to_string().contains("(defined: none)"), "{err}");
    }

    #[test]
    fn unknown_function_is_a_parse_error() {
        let err = render("{{ nosuchfunc }}", &model()).unwrap_err();
        assert!(matches!(err, RenderError::Parse(_)), "{err:?}");
        assert!(err.to_string().contains("nosuchfunc"), "{err}");
    }

    #[test]
    fn functions_take_no_arguments() {
        let err = render(r#"{{ name "x" }}"#, &model()).unwrap_err();
        assert!(err.to_string().contains("wrong number of args"), "{err}");
    }

    #[test]
    fn go_template_features() {
        let m = model();
        let cases = [
            (
                r#"{{- $r := printf "%s_%s" namespace service }} r={{ $r }}"#,
                " r=test_podinfo-svc",
            ),
            (
                r#"{{ if eq namespace "test" }}yes{{ else }}no{{ end }}"#,
                "yes",
            ),
            (r#"{{ if ne (len variables) 2 }}x{{ end }}ok"#, "ok"),
            (r#"{{ index variables "ingress" }}"#, "public"),
            (r#"{{ with variables }}{{ .quantile }}{{ end }}"#, "0.95"),
            (r#"{{ if and (gt 2 1) (not false) }}t{{ end }}"#, "t"),
            ("a  {{- name -}}  b", "apodinfob"),
            (r#"{{ range $k, $v := variables }}{{ end }}done"#, "done"),
        ];
        for (q, want) in cases {
            assert_eq!(render(q, &m).unwrap(), want, "{q}");
        }
    }

    #[test]
    fn broken_templates_are_errors_not_panics() {
        for q in [
            "{{ name",
            "{{ if 1 }}",
            "{{ aé }}",
            &"{{ (".repeat(200),
            &"{{ if true }}".repeat(100),
            &"x".repeat(70_000),
        ] {
            assert!(render(q, &model()).is_err(), "{q}");
        }
    }

    #[test]
    fn model_from_canary_defaults() {
        let canary: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo-dep"},
                "service": {"port": 9898},
                "analysis": {}
            }
        }))
        .unwrap();
        let m = QueryModel::for_canary(&canary, None, None);
        assert_eq!(m.name, "podinfo");
        assert_eq!(m.namespace, "test");
        assert_eq!(m.target, "podinfo-dep");
        assert_eq!(m.service, "podinfo-dep");
        assert_eq!(m.ingress, "podinfo-dep");
        assert_eq!(m.route, "podinfo-dep");
        assert_eq!(m.interval, "1m");
        let m = QueryModel::for_canary(&canary, Some("30s"), None);
        assert_eq!(m.interval, "30s");
    }

    #[test]
    fn whitespace_collapses() {
        assert_eq!(
            collapse_whitespace("\n\tsum(\n\t\trate(x)  )\n"),
            "sum( rate(x) )"
        );
    }
}
