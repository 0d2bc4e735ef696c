//! The one safe way into `gtmpl`, Go's text/template parser ported to Rust, for every template a
//! user writes (MetricTemplate queries, AlertProvider `messageTemplate`).
//!
//! The port cannot be handed arbitrary text: its parser recurses per nesting level (a stack
//! overflow aborts the process, it does not unwind), its lexer backs up one byte after a
//! multi-byte character inside an action and panics on its own thread, and it can loop forever
//! when the text ends inside an action. [`check_safe`] refuses all of that before gtmpl sees the
//! text; [`parse`] adds a deadline and `catch_unwind` for whatever the pre-scan did not foresee.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::Duration;

use gtmpl::{Func, Template};

/// Far above any real query or message; keeps parse time and memory trivial.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Parentheses within one action, and open blocks over the whole text.
pub const MAX_NESTING: usize = 64;
const PARSE_DEADLINE: Duration = Duration::from_secs(2);

/// Why [`parse`] gave no template; the texts are those `flagger-rs validate` reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// [`check_safe`] refused the text; gtmpl never saw it.
    #[error("{0}")]
    Refused(String),
    /// gtmpl's own syntax error, or `parser failure` when it panicked.
    #[error("template does not parse: {0}")]
    Syntax(String),
    /// The parser could not be run to its end (no thread, or past the deadline).
    #[error("template could not be checked: {0}")]
    Unfinished(String),
}

impl ParseError {
    /// The bare reason, for callers that report every kind alike.
    pub fn into_message(self) -> String {
        match self {
            ParseError::Refused(m) | ParseError::Syntax(m) | ParseError::Unfinished(m) => m,
        }
    }
}

/// [`check_safe`], then gtmpl's parser on a worker thread with a deadline, so that neither a
/// panic nor a parser loop reaches the caller. `funcs` are the functions the text may call
/// besides the builtins; an unknown one is a syntax error, as in Go.
pub fn parse(text: &str, funcs: &[(&str, Func)]) -> Result<Template, ParseError> {
    check_safe(text).map_err(ParseError::Refused)?;
    let mut tmpl = Template::default();
    tmpl.add_funcs(funcs);
    let text = text.to_string();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("template-parse".into())
        .spawn(move || {
            // gtmpl's error types are large; only their text crosses the channel.
            let parsed = catch_unwind(AssertUnwindSafe(move || {
                tmpl.parse(text).map(|()| tmpl).map_err(|e| e.to_string())
            }));
            let _ = tx.send(parsed.unwrap_or_else(|_| Err("parser failure".into())));
        });
    if spawned.is_err() {
        return Err(ParseError::Unfinished("no thread available".into()));
    }
    match rx.recv_timeout(PARSE_DEADLINE) {
        Ok(Ok(tmpl)) => Ok(tmpl),
        Ok(Err(e)) => Err(ParseError::Syntax(e)),
        Err(_) => Err(ParseError::Unfinished("the parser did not finish".into())),
    }
}

/// Refuses what the parser cannot be trusted with; anything it lets through may go to gtmpl.
///
/// Every action must be closed: an unclosed action is reported here (Go reports it too) and
/// never parsed, since that is where the port's lexer can loop forever.
pub fn check_safe(text: &str) -> Result<(), String> {
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
    match keyword(&body[..end]) {
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

/// The identifier an action starts with. Go's lexer ends it at the first character that cannot
/// continue an identifier, so `{{if"x"}}` opens a block just as `{{ if "x" }}` does.
fn keyword(action: &str) -> &str {
    let body = action.trim_start_matches('-').trim_start();
    let len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    &body[..len]
}

#[cfg(test)]
mod tests {
    use gtmpl::Context;

    use super::*;

    #[test]
    fn well_formed_templates_pass() {
        for t in [
            r#"sum(rate(x{ns="{{ namespace }}"}[{{ interval }}]))"#,
            r#"{{/* a comment */}}{{ printf "}}" }}"#,
            r#"{{- /* trimmed */ -}}{{ "é inside a string" }}"#,
            "{{ if 1 }}{{ if 2 }}{{ end }}{{ end }}",
            "no actions at all: }} {",
        ] {
            assert_eq!(check_safe(t), Ok(()), "{t}");
        }
    }

    #[test]
    fn dangerous_templates_are_refused() {
        for t in [
            "{{ namespace",
            "{{ .Name }} {{ $x",
            r#"{{ "}}" "#,
            "{{/* open",
            "{{/* closed */ .Name }}",
            "{{ aé }}",
            &"{{ (".repeat(100),
            &format!("{{{{ {}1{} }}}}", "(".repeat(65), ")".repeat(65)),
            &"{{ if 1 }}".repeat(65),
            &r#"{{if"x"}}"#.repeat(65),
            &"x".repeat(MAX_TEMPLATE_BYTES + 1),
        ] {
            assert!(check_safe(t).is_err(), "{t}");
        }
    }

    #[test]
    fn blocks_that_end_do_not_add_up() {
        let t = "{{ if 1 }}{{ end }}".repeat(1000);
        assert_eq!(check_safe(&t), Ok(()));
    }

    #[test]
    fn parse_reports_each_kind() {
        assert!(matches!(
            parse("{{ aé }}", &[]),
            Err(ParseError::Refused(_))
        ));
        let err = parse("{{ nosuchfunc }}", &[]).err();
        assert!(
            matches!(&err, Some(ParseError::Syntax(m)) if m.contains("nosuchfunc")),
            "{err:?}"
        );
    }

    #[test]
    fn parsed_template_renders_with_its_functions() {
        fn answer(_: &[gtmpl::Value]) -> Result<gtmpl::Value, gtmpl::FuncError> {
            Ok(42.into())
        }
        let t = parse("{{ answer }}!", &[("answer", answer as Func)]).unwrap();
        assert_eq!(t.render(&Context::empty()).unwrap(), "42!");
    }
}
