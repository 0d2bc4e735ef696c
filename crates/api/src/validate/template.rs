//! Go text/template syntax checks for metric queries and alert message templates.
//!
//! Parsing uses `gtmpl`, Go's parser ported to Rust. Two guards run first, because the text comes
//! from users: a size and nesting limit (the parser recurses per nesting level, and a stack
//! overflow would abort the process), and a refusal of non-ASCII characters inside actions (the
//! port's lexer backs up one byte after a multi-byte character and panics on its own thread).

use gtmpl::{Func, FuncError, Value};

/// Far above any real query; keeps parse time and memory trivial.
const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
const MAX_NESTING: usize = 64;
const PARSE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// The functions Flagger defines for metric queries (metrics.md §2).
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
    prescan(text)?;
    let mut tmpl = gtmpl::Template::default();
    tmpl.add_funcs(funcs);
    let text = text.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    // A deadline as the last line of defence against a parser loop the prescan did not foresee.
    let spawned = std::thread::Builder::new()
        .name("template-check".into())
        .spawn(move || {
            let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tmpl.parse(text).map_err(|e| e.to_string())
            }));
            let _ = tx.send(parsed.unwrap_or_else(|_| Err("parser failure".into())));
        });
    if spawned.is_err() {
        return Err("template could not be checked: no thread available".into());
    }
    match rx.recv_timeout(PARSE_DEADLINE) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("template does not parse: {e}")),
        Err(_) => Err("template could not be checked: the parser did not finish".into()),
    }
}

/// Rejects what the parser cannot be trusted with; anything it lets through is handed to gtmpl.
///
/// Every action must be closed: the port's lexer can loop forever when the text ends inside an
/// action, so an unclosed action is reported here (Go reports it too) and never parsed.
fn prescan(text: &str) -> Result<(), String> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "template is {} bytes, more than the {MAX_TEMPLATE_BYTES} this tool checks",
            text.len()
        ));
    }
    let mut rest = text;
    let mut blocks = 0usize;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let body_start = after.strip_prefix('-').unwrap_or(after).trim_start();
        let end = if let Some(comment) = body_start.strip_prefix("/*") {
            let close = comment
                .find("*/")
                .ok_or_else(|| "unclosed comment".to_string())?;
            let tail = &comment[close + 2..];
            let consumed = after.len() - tail.len();
            let closing = tail.trim_start().trim_start_matches('-').trim_start();
            if !closing.starts_with("}}") {
                return Err("comment ends before the closing delimiter".into());
            }
            consumed + (tail.len() - closing.len())
        } else {
            scan_action(after, &mut blocks)?
        };
        rest = after.get(end + 2..).unwrap_or("");
    }
    Ok(())
}

/// Scans one action up to its closing `}}` (outside string literals); returns the offset of the
/// `}}` in `body`.
fn scan_action(body: &str, blocks: &mut usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in body.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '`' | '\'' => quote = Some(c),
            '}' if body[i..].starts_with("}}") => {
                end = Some(i);
                break;
            }
            '(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!(
                        "template nests parentheses deeper than {MAX_NESTING}"
                    ));
                }
            }
            ')' => depth = depth.saturating_sub(1),
            c if !c.is_ascii() => {
                return Err(format!(
                    "non-ASCII character {c:?} inside {{{{ }}}} outside a string literal"
                ));
            }
            _ => {}
        }
    }
    let Some(end) = end else {
        return Err("unclosed action: a {{ has no matching }}".into());
    };
    let keyword = body[..end]
        .trim_start_matches('-')
        .split_whitespace()
        .next()
        .unwrap_or_default();
    match keyword {
        "if" | "range" | "with" | "define" | "block" => {
            *blocks += 1;
            if *blocks > MAX_NESTING {
                return Err(format!("template nests blocks deeper than {MAX_NESTING}"));
            }
        }
        "end" => *blocks = blocks.saturating_sub(1),
        _ => {}
    }
    Ok(end)
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
