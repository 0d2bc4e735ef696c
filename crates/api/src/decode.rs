//! From bytes to typed objects, reporting every problem on the way with its field path.
//!
//! [`parse_documents`] turns a file (multi-document YAML, or JSON) into JSON values under fixed
//! limits, so hostile input (alias bombs, deep nesting, huge files, non-UTF-8) ends in an error
//! rather than a hang or a crash. [`decode`] turns one value into a Canary, MetricTemplate or
//! AlertProvider and reports:
//!
//! * every unknown field, by path. The seed extras (crds.md **E** fields such as
//!   `spec.analysis.canaryAnalysis` or AlertProvider `spec.messageTemplate`) are known fields
//!   here; Flagger's own CRD would prune them.
//! * every value of the wrong type, by path. Decoding does not stop at the first one: the
//!   offending value is removed (an absent required field is given an empty placeholder) and
//!   decoding is retried, so the validator still sees the rest of the object.
//! * a wrong `apiVersion` or `kind`.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::validate::{Problem, Severity, reason};
use crate::{AlertProvider, Canary, GROUP, MetricTemplate};

/// Larger files are refused before parsing; real manifests are a few KiB.
pub const MAX_INPUT_BYTES: usize = 8 * 1024 * 1024;
/// Nesting deeper than this is refused by the parser (a pod template is about 15 deep).
pub const MAX_DEPTH: usize = 64;

pub const KINDS: &[&str] = &["Canary", "MetricTemplate", "AlertProvider"];

/// Decoding gives up after this many type errors in one document.
const MAX_TYPE_ERRORS: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("input is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("input is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("invalid YAML: {0}")]
    Yaml(String),
}

/// The documents of a file, in order. Empty documents (`---` alone, a trailing separator) are
/// skipped, so document numbers count the non-empty ones.
pub fn parse_documents(bytes: &[u8]) -> Result<Vec<Value>, ReadError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ReadError::TooLarge {
            size: bytes.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.trim_start().chars().next();
    if matches!(first, Some('{' | '[')) {
        // A JSON stream; YAML flow style also starts this way, hence the fallback.
        let docs: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
            .into_iter()
            .collect();
        if let Ok(docs) = docs {
            return Ok(docs);
        }
    }
    serde_saphyr::from_multiple_with_options::<Value>(text, yaml_options()).map_err(|e| {
        let msg = e.to_string();
        let first_line = msg
            .lines()
            .next()
            .unwrap_or("parse error")
            .trim()
            .to_string();
        ReadError::Yaml(first_line)
    })
}

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_documents = 10_000;
    budget.max_nodes = 1_000_000;
    budget.max_total_scalar_bytes = MAX_INPUT_BYTES;
    budget.max_recorded_anchor_events = 200_000;
    budget.max_recorded_anchor_bytes = MAX_INPUT_BYTES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 200_000;
    options.with_snippet = false;
    options
}

/// A decoded flagger.app object.
#[derive(Clone, Debug)]
pub enum Object {
    Canary(Box<Canary>),
    MetricTemplate(Box<MetricTemplate>),
    AlertProvider(Box<AlertProvider>),
}

/// One document's decoding: what it claims to be and what went wrong.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub kind: String,
    pub name: Option<String>,
    /// `None` when the kind is unknown; otherwise the object with bad values removed.
    pub object: Option<Object>,
    pub problems: Vec<Problem>,
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A document `flagger-rs validate` checks: group `flagger.app`, or one of its kinds with no
/// usable apiVersion. Everything else (Deployments, Services, Flux objects) is skipped.
pub fn is_flagger_document(v: &Value) -> bool {
    if !v.is_object() {
        return false;
    }
    match v.get("apiVersion") {
        Some(Value::String(av)) => av.split('/').next() == Some(GROUP) || av == GROUP,
        _ => str_field(v, "kind").is_some_and(|k| KINDS.contains(&k)),
    }
}

pub fn decode(v: &Value) -> Decoded {
    let mut problems = Vec::new();
    let kind = str_field(v, "kind").unwrap_or_default().to_string();
    let name = v
        .get("metadata")
        .and_then(|m| str_field(m, "name"))
        .map(str::to_string);
    match v.get("apiVersion") {
        None => problems.push(schema("apiVersion", "required (flagger.app/v1beta1)")),
        Some(Value::String(av)) if av == crate::API_VERSION => {}
        Some(Value::String(av)) => problems.push(schema(
            "apiVersion",
            format!(
                "unsupported apiVersion {av:?}: flagger.app/v1beta1 is the only served version"
            ),
        )),
        Some(other) => problems.push(schema(
            "apiVersion",
            format!("must be a string, got {}", type_name(other)),
        )),
    }
    let object = match kind.as_str() {
        "Canary" => Some(Object::Canary(Box::new(typed(v, &mut problems)))),
        "MetricTemplate" => Some(Object::MetricTemplate(Box::new(typed(v, &mut problems)))),
        "AlertProvider" => Some(Object::AlertProvider(Box::new(typed(v, &mut problems)))),
        "" => {
            problems.push(schema(
                "kind",
                "required (Canary, MetricTemplate or AlertProvider)",
            ));
            None
        }
        other => {
            problems.push(schema(
                "kind",
                format!("unknown kind {other:?} in flagger.app (Canary, MetricTemplate or AlertProvider)"),
            ));
            None
        }
    };
    Decoded {
        kind,
        name,
        object,
        problems,
    }
}

fn schema(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_string(),
        message: message.into(),
        severity: Severity::Error,
        reason: Some(reason::SCHEMA),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Decodes `T`, repairing the value after each type error so that every error is found.
fn typed<T: DeserializeOwned + Default>(original: &Value, problems: &mut Vec<Problem>) -> T {
    let mut value = original.clone();
    // Repairs can fail again at or around the same place (a list given for an object fails item
    // by item); one report per place is enough.
    let mut reported: Vec<String> = Vec::new();
    let mut attempts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut report = |problems: &mut Vec<Problem>, path: String, message: String| {
        let related = |r: &String| path.starts_with(r.as_str()) || r.starts_with(path.as_str());
        if !reported.iter().any(related) {
            problems.push(schema(&path, message));
            reported.push(path);
        }
    };
    for _ in 0..MAX_TYPE_ERRORS {
        let mut unknown = Vec::new();
        let mut on_ignored = |path: serde_ignored::Path| unknown.push(ignored_path(&path));
        let result: Result<T, _> = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(&value, &mut on_ignored),
        );
        match result {
            Ok(object) => {
                for path in unknown {
                    if path == "apiVersion" || path == "kind" {
                        continue;
                    }
                    problems.push(Problem {
                        path,
                        message: "unknown field".into(),
                        severity: Severity::Error,
                        reason: Some(reason::UNKNOWN_FIELD),
                    });
                }
                return object;
            }
            Err(e) => {
                let segments: Vec<Segment> = e.path().iter().map(Segment::from).collect();
                let inner = e.into_inner().to_string();
                if let Some(field) = missing_field(&inner) {
                    // Required strings are reported by the validator (it sees them empty); an
                    // absent object or number is reported here, as nothing else can see it.
                    let placeholder = placeholder_for(field);
                    let mut path = segments.clone();
                    path.push(Segment::Key(field.to_string()));
                    let path = render(&path);
                    if !placeholder.is_string() {
                        report(problems, path, "required".into());
                    }
                    if !insert(&mut value, &segments, field, placeholder) {
                        break;
                    }
                } else {
                    let path = render(&segments);
                    let tries = attempts.entry(path.clone()).or_insert(0usize);
                    *tries += 1;
                    let tries = *tries;
                    report(problems, path, type_message(&inner));
                    if !repair(&mut value, &segments, tries) {
                        break;
                    }
                }
            }
        }
    }
    problems.push(schema(
        "",
        "too many type errors; giving up on this document",
    ));
    T::default()
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// What stands in for an absent required field so decoding can go on: objects for the
/// structured fields, 0 for `service.port`, "" for the rest (names, kinds, URLs).
fn placeholder_for(field: &str) -> Value {
    match field {
        "spec" | "targetRef" | "analysis" | "provider" | "providerRef" | "backendRef"
        | "templateRef" | "secretRef" => Value::Object(Map::new()),
        "port" => Value::from(0),
        _ => Value::String(String::new()),
    }
}

/// serde's messages name Rust types; say what the manifest should contain instead.
fn type_message(inner: &str) -> String {
    let msg = inner.split(" at line ").next().unwrap_or(inner);
    if let Some(rest) = msg.strip_prefix("invalid type: ")
        && let Some((got, expected)) = rest.split_once(", expected ")
    {
        let expected = match expected {
            e if e.contains("i32") || e.contains("i64") || e.contains("u32") => "an integer",
            e if e.contains("Number") || e.contains("number") => "a number",
            e if e.contains("a string") => "a string",
            e if e.contains("a boolean") => "a boolean",
            e if e.contains("sequence") => "a list",
            e if e.contains("map") || e.contains("struct") => "an object",
            e => e,
        };
        return format!("invalid type: expected {expected}, got {got}");
    }
    msg.to_string()
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
    Other,
}

impl From<&serde_path_to_error::Segment> for Segment {
    fn from(s: &serde_path_to_error::Segment) -> Self {
        match s {
            serde_path_to_error::Segment::Seq { index } => Segment::Index(*index),
            serde_path_to_error::Segment::Map { key } => Segment::Key(key.clone()),
            _ => Segment::Other,
        }
    }
}

fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) => out = crate::validate::child_path(&out, k),
            Segment::Index(i) => out = format!("{out}[{i}]"),
            Segment::Other => {}
        }
    }
    out
}

fn ignored_path(path: &serde_ignored::Path) -> String {
    fn walk(path: &serde_ignored::Path, out: &mut Vec<Segment>) {
        match path {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                walk(parent, out);
                out.push(Segment::Index(*index));
            }
            serde_ignored::Path::Map { parent, key } => {
                walk(parent, out);
                out.push(Segment::Key(key.clone()));
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut segments = Vec::new();
    walk(path, &mut segments);
    render(&segments)
}

fn navigate<'a>(value: &'a mut Value, segments: &[Segment]) -> Option<&'a mut Value> {
    let mut cur = value;
    for s in segments {
        cur = match s {
            Segment::Key(k) => cur.as_object_mut()?.get_mut(k)?,
            Segment::Index(i) => cur.as_array_mut()?.get_mut(*i)?,
            Segment::Other => return None,
        };
    }
    Some(cur)
}

/// Makes the value at `segments` decodable; false when nothing more can be tried.
///
/// A map entry is removed (an absent required field then gets a placeholder). A list item is
/// replaced instead, so the indexes in later reports stay those of the manifest: first by an
/// empty object (most lists hold objects), then by an empty string, then by 0; after that the
/// whole list is dropped.
fn repair(value: &mut Value, segments: &[Segment], tries: usize) -> bool {
    let Some((last, parent_path)) = segments.split_last() else {
        return false;
    };
    let Some(parent) = navigate(value, parent_path) else {
        return false;
    };
    match (last, parent) {
        (Segment::Key(k), Value::Object(map)) => map.remove(k).is_some(),
        (Segment::Index(i), Value::Array(items)) => {
            let replacement = match tries {
                1 => Value::Object(Map::new()),
                2 => Value::String(String::new()),
                3 => Value::from(0),
                _ => return repair(value, parent_path, usize::MAX),
            };
            match items.get_mut(*i) {
                Some(item) => {
                    *item = replacement;
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}

fn insert(value: &mut Value, segments: &[Segment], field: &str, placeholder: Value) -> bool {
    match navigate(value, segments).and_then(Value::as_object_mut) {
        Some(map) if !map.contains_key(field) => {
            map.insert(field.to_string(), placeholder);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced() {
        assert!(matches!(
            parse_documents(&vec![b' '; MAX_INPUT_BYTES + 1]),
            Err(ReadError::TooLarge { .. })
        ));
        assert_eq!(
            parse_documents(b"a: \xff\xfe"),
            Err(ReadError::NotUtf8 { offset: 3 })
        );
        let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        assert!(parse_documents(deep.as_bytes()).is_err());
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
        assert!(matches!(
            parse_documents(bomb.as_bytes()),
            Err(ReadError::Yaml(_))
        ));
    }

    #[test]
    fn documents_and_json() {
        let docs = parse_documents(b"a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
        let docs = parse_documents(br#"{"a": 1} {"b": 2}"#).unwrap();
        assert_eq!(docs.len(), 2);
        let docs = parse_documents(b"{a: 1}").unwrap();
        assert_eq!(docs[0]["a"], 1);
    }

    #[test]
    fn every_type_error_and_unknown_field_is_reported() {
        let doc: Value = serde_json::json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "x"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "service": {"port": "http", "bogus": 1},
                "analysis": {"interval": "1m", "threshold": 5, "stepWeight": 10, "mirror": "yes",
                             "webhooks": [{"name": "a", "url": "http://x/", "metadata": {"k": 1}}]},
            }
        });
        let d = decode(&doc);
        let paths: Vec<&str> = d.problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"spec.service.port"), "{paths:?}");
        assert!(paths.contains(&"spec.analysis.mirror"), "{paths:?}");
        assert!(
            paths.contains(&"spec.analysis.webhooks[0].metadata.k"),
            "{paths:?}"
        );
        assert!(paths.contains(&"spec.service.bogus"), "{paths:?}");
        assert!(d.object.is_some());
    }
}
