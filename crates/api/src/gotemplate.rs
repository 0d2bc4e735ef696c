//! The one safe way into `gtmpl`, Go's text/template parser ported to Rust, for every template a
//! user writes (MetricTemplate queries, AlertProvider `messageTemplate`).
//!
//! Nothing here relies on catching a panic (a stack overflow aborts whatever the profile, and a
//! panic would end the tick that rendered the template): the port is only ever handed text it is
//! known to handle. Its parser recurses per nesting level (a stack
//! overflow aborts), its lexer backs up one byte after a multi-byte character inside an action
//! (a panic on the lexer's thread) and loops forever when the text ends inside an action, and
//! its executor recurses without end when a template calls itself by name. [`check_safe`], a
//! scanner of our own that cannot panic, refuses all of that before gtmpl sees the text;
//! [`render`] bounds what an accepted template may write. The fuzzer (`crates/fuzz`) runs both
//! in the shipped profile with a panic hook that ends its run on any panic.

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use gtmpl::error::ExecError;
use gtmpl::{Context, Func, Template};

/// Far above any real query or message; keeps parse time and memory trivial.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Parentheses within one action, and open blocks over the whole text.
pub const MAX_NESTING: usize = 64;
/// What one rendering may write: far above any query or message, far below what would hurt.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
const PARSE_DEADLINE: Duration = Duration::from_secs(2);

/// Why [`parse`] gave no template; the texts are those `flagger-rs validate` reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// [`check_safe`] refused the text; gtmpl never saw it.
    #[error("{0}")]
    Refused(String),
    /// gtmpl's own syntax error.
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

/// [`check_safe`], then gtmpl's parser on a worker thread with a deadline, so that a parser
/// loop nobody foresaw costs a thread, not the caller. `funcs` are the functions the text may
/// call besides the builtins; an unknown one is a syntax error, as in Go.
pub fn parse(text: &str, funcs: &[(&str, Func)]) -> Result<Template, ParseError> {
    let actions = actions(text).map_err(ParseError::Refused)?;
    let text = without_unsafe_trims(text, &actions);
    let mut tmpl = Template::default();
    tmpl.add_funcs(funcs);
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("template-parse".into())
        .spawn(move || {
            // gtmpl's error types are large; only their text crosses the channel.
            let parsed = tmpl.parse(text).map(|()| tmpl).map_err(|e| e.to_string());
            let _ = tx.send(parsed);
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

/// Renders a template [`parse`] gave, refusing to write more than [`MAX_OUTPUT_BYTES`].
pub fn render(tmpl: &Template, data: &Context) -> Result<String, Box<ExecError>> {
    let mut out = BoundedWriter(Vec::new());
    tmpl.execute(&mut out, data)?;
    String::from_utf8(out.0).map_err(|e| Box::new(ExecError::Utf8ConversionFailed(e)))
}

/// A buffer that fails the write that would take it past [`MAX_OUTPUT_BYTES`]; gtmpl stops
/// executing at the first failed write.
struct BoundedWriter(Vec<u8>);

impl Write for BoundedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len().saturating_add(buf.len()) > MAX_OUTPUT_BYTES {
            return Err(std::io::Error::other(format!(
                "the output would exceed {MAX_OUTPUT_BYTES} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Refuses what the parser cannot be trusted with; anything it lets through may go to gtmpl.
///
/// Every action must be closed: an unclosed action is reported here (Go reports it too) and
/// never parsed, since that is where the port's lexer can loop forever.
pub fn check_safe(text: &str) -> Result<(), String> {
    actions(text).map(drop)
}

/// The byte offset of every action's `{{` in `text`, once [`check_safe`]'s rules hold.
fn actions(text: &str) -> Result<Vec<usize>, String> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "template is {} bytes, more than the {MAX_TEMPLATE_BYTES} this tool checks",
            text.len()
        ));
    }
    let mut starts = Vec::new();
    let mut rest = text;
    let mut blocks = Vec::new();
    while let Some(start) = rest.find("{{") {
        starts.push(text.len() - rest.len() + start);
        let after = rest.get(start + 2..).unwrap_or_default();
        let body_start = after.strip_prefix('-').unwrap_or(after).trim_start();
        let end = match body_start.strip_prefix("/*") {
            Some(comment) => comment_end(after, comment)?,
            None => scan_action(after, &mut blocks)?,
        };
        rest = after.get(end + 2..).unwrap_or_default();
    }
    Ok(starts)
}

/// The text gtmpl is given: `text` with the left trim markers (`{{- `) that follow a non-ASCII
/// character applied here. The port computes that trim in bytes as if the character were one
/// byte long and panics slicing inside it; every other marker is left to gtmpl, so its error
/// positions keep matching the user's lines.
fn without_unsafe_trims(text: &str, actions: &[usize]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for &at in actions {
        let marker = text.get(at + 2..at + 4).unwrap_or_default();
        let is_left_trim = marker
            .strip_prefix('-')
            .is_some_and(|after| after.starts_with([' ', '\t', '\r', '\n']));
        let before = text.get(copied..at).unwrap_or_default();
        let kept = before.trim_end_matches(char::is_whitespace);
        if is_left_trim && kept.chars().next_back().is_some_and(|c| !c.is_ascii()) {
            out.push_str(kept);
            out.push_str("{{");
            copied = at + 3;
        }
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// The offset in `after` (the text behind `{{`) of the `}}` closing a comment whose text starts
/// at `comment`.
fn comment_end(after: &str, comment: &str) -> Result<usize, String> {
    let (_, tail) = comment
        .split_once("*/")
        .ok_or_else(|| "unclosed comment".to_string())?;
    let consumed = after.len().saturating_sub(tail.len());
    let closing = tail.trim_start().trim_start_matches('-').trim_start();
    if !closing.starts_with("}}") {
        return Err("comment ends before the closing delimiter".into());
    }
    Ok(consumed + tail.len().saturating_sub(closing.len()))
}

/// The blocks open around an action; a `range` inside a `range` is refused, since nested loops
/// over the data could run for as long as the product of their lengths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Range,
    Other,
}

/// Where a string or character literal is in a backslash escape. Go refuses an escape it does
/// not know; the port loops forever on one (`"\x"`), so only Go's escapes get through.
#[derive(Clone, Copy)]
enum Escape {
    None,
    Started,
    Digits { radix: u32, left: u8 },
}

fn escape_start(c: char) -> Result<Escape, String> {
    match c {
        'a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\' | '\'' | '"' => Ok(Escape::None),
        'x' => Ok(Escape::Digits { radix: 16, left: 2 }),
        'u' => Ok(Escape::Digits { radix: 16, left: 4 }),
        'U' => Ok(Escape::Digits { radix: 16, left: 8 }),
        '0'..='7' => Ok(Escape::Digits { radix: 8, left: 2 }),
        other => Err(format!("invalid escape \\{other} in a string literal")),
    }
}

/// Scans one action up to its closing `}}` (outside string literals); returns the offset of the
/// `}}` in `body`.
fn scan_action(body: &str, blocks: &mut Vec<Block>) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escape = Escape::None;
    let mut end = None;
    for (i, c) in body.char_indices() {
        if let Some(q) = quote {
            escape = match escape {
                Escape::None if c == '\\' && q != '`' => Escape::Started,
                Escape::None => {
                    if c == q {
                        quote = None;
                    }
                    Escape::None
                }
                Escape::Started => escape_start(c)?,
                Escape::Digits { radix, left } => {
                    if !c.is_digit(radix) {
                        return Err(format!(
                            "invalid escape: {c:?} is not a digit in base {radix}"
                        ));
                    }
                    match left {
                        1 => Escape::None,
                        n => Escape::Digits { radix, left: n - 1 },
                    }
                }
            };
            continue;
        }
        match c {
            '"' | '`' | '\'' => quote = Some(c),
            '}' if body.get(i..).is_some_and(|r| r.starts_with("}}")) => {
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
    match keyword(body.get(..end).unwrap_or_default()) {
        "if" | "with" => blocks.push(Block::Other),
        "range" if blocks.contains(&Block::Range) => {
            return Err("{{ range }} inside {{ range }} is not supported".into());
        }
        "range" => blocks.push(Block::Range),
        // Named templates are the one way a template can call itself (the main one is named
        // too), and gtmpl's call depth is far beyond what the stack holds; no query or message
        // needs them.
        kw @ ("define" | "block" | "template") => {
            return Err(format!(
                "{{{{ {kw} }}}} is not supported: named templates could call themselves without end"
            ));
        }
        "end" => {
            blocks.pop();
        }
        _ => {}
    }
    if blocks.len() > MAX_NESTING {
        return Err(format!("template nests blocks deeper than {MAX_NESTING}"));
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
    body.get(..len).unwrap_or_default()
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
            r#"{{ "\x" }}"#,
            r#"{{ "\x4" }}"#,
            r#"{{ '\q' }}"#,
            r#"{{ "\8" }}"#,
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
    fn templates_that_could_call_themselves_are_refused() {
        for t in [
            // The main template is named "" and could call itself without any define.
            r#"x{{ template "" . }}"#,
            r#"{{ define "a" }}{{ template "a" . }}{{ end }}{{ template "a" . }}"#,
            r#"{{- define "a" -}}x{{ end }}"#,
            r#"{{block "a" .}}{{template "a" .}}{{end}}"#,
            r#"{{define"a"}}x{{end}}"#,
        ] {
            assert!(
                matches!(parse(t, &[]), Err(ParseError::Refused(m)) if m.contains("not supported")),
                "{t}"
            );
        }
        // Words inside strings and fields are not keywords.
        assert_eq!(check_safe(r#"{{ "define" }}{{ .template }}"#), Ok(()));
    }

    #[test]
    fn nested_loops_are_refused_and_sequential_ones_pass() {
        assert!(
            check_safe("{{ range . }}{{ if . }}{{ range . }}{{ end }}{{ end }}{{ end }}").is_err()
        );
        assert_eq!(
            check_safe(
                "{{ range . }}{{ end }}{{ range . }}{{ else }}{{ end }}{{ if 1 }}{{ range . }}{{ end }}{{ end }}"
            ),
            Ok(())
        );
    }

    #[test]
    fn output_is_bounded() {
        let data = Context::from(vec!["x".repeat(MAX_OUTPUT_BYTES / 4); 8]);
        let t = parse("{{ range . }}{{ . }}{{ end }}", &[]).unwrap();
        let err = render(&t, &data).unwrap_err();
        assert!(err.to_string().contains("exceed"), "{err}");
        let small = Context::from(vec!["x"; 3]);
        assert_eq!(render(&t, &small).unwrap(), "xxx");
    }

    #[test]
    fn trim_markers_after_non_ascii_text_trim_as_in_go() {
        // The port's own trimming would slice inside the `é` and panic.
        let t = parse("é \n\t{{- 1 }} à{{- 2 -}} ü {{-3}}", &[]).unwrap();
        assert_eq!(render(&t, &Context::empty()).unwrap(), "é1 à2ü -3");
        let t = parse("x {{- 1 }}", &[]).unwrap();
        assert_eq!(render(&t, &Context::empty()).unwrap(), "x1");
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
        assert_eq!(render(&t, &Context::empty()).unwrap(), "42!");
    }
}
