//! Checks of single values that recur across the kinds: integers kept as `Number`, duration
//! strings, URLs, string matches, regexes.

use super::problems::Problems;
use super::reason;
use crate::duration;
use crate::number::Number;

/// The integer value of a field that is an integer in Flagger's Go types; a fractional value is
/// admitted by the schema (`type: number`) and reported as an invalid spec.
pub fn integer(p: &mut Problems, path: &str, n: &Number) -> Option<i64> {
    match n.integer() {
        Some(i) => Some(i),
        None => {
            p.invalid(path, format!("must be an integer, got {n}"));
            None
        }
    }
}

/// An optional integer field within `min..=max`.
pub fn int_range(
    p: &mut Problems,
    path: &str,
    n: Option<&Number>,
    min: i64,
    max: i64,
) -> Option<i64> {
    let i = integer(p, path, n?)?;
    if i < min || i > max {
        p.invalid(path, format!("must be between {min} and {max}, got {i}"));
        return None;
    }
    Some(i)
}

/// A schema duration field (`^[0-9]+(m|s)`) that the controller then parses as a Go duration.
pub fn schema_duration(
    p: &mut Problems,
    path: &str,
    value: Option<&str>,
) -> Option<std::time::Duration> {
    let value = value?;
    if !duration::matches_schema_pattern(value) {
        p.schema(
            path,
            format!("{value:?} does not match the pattern ^[0-9]+(m|s) (e.g. 30s, 1m, 1m30s)"),
        );
        return None;
    }
    go_duration(p, path, Some(value))
}

/// A free-form Go duration (no schema pattern).
pub fn go_duration(
    p: &mut Problems,
    path: &str,
    value: Option<&str>,
) -> Option<std::time::Duration> {
    match duration::parse(value?) {
        Ok(d) => Some(d),
        Err(e) => {
            p.invalid(path, format!("does not parse as a duration: {e}"));
            None
        }
    }
}

/// An absolute `http`/`https` URL with a host, as the HTTP clients need.
pub fn http_url(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("required: an absolute http(s) URL".into());
    }
    match url::Url::parse(value) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        Ok(u) => Err(format!(
            "{value:?} is not an absolute http(s) URL (scheme {:?})",
            u.scheme()
        )),
        Err(e) => Err(format!("{value:?} is not an absolute http(s) URL: {e}")),
    }
}

/// A regex of a route match; Rust's `regex` shares RE2's syntax (no look-around, no backrefs).
pub fn regex(p: &mut Problems, path: &str, value: &str) {
    let built = regex::RegexBuilder::new(value).size_limit(1 << 20).build();
    if let Err(e) = built {
        let first_line = e.to_string();
        let msg = first_line
            .lines()
            .last()
            .unwrap_or("invalid regex")
            .trim()
            .to_string();
        p.invalid(path, format!("{value:?} is not a valid RE2 regex: {msg}"));
    }
}

/// How many of a oneOf's alternatives are set, by name.
pub fn set_names<'a>(alternatives: &[(&'a str, bool)]) -> Vec<&'a str> {
    alternatives
        .iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| *n)
        .collect()
}

/// Reports `namespace` naming another namespace when cross-namespace references are off.
pub fn namespace_ref(
    p: &mut Problems,
    path: &str,
    ns: Option<&str>,
    own_ns: Option<&str>,
    forbid_cross: bool,
) {
    let Some(ns) = ns else { return };
    if let Err(e) = super::names::dns1123_label(ns) {
        p.schema(path, e);
        return;
    }
    if forbid_cross && own_ns.is_some_and(|own| own != ns) {
        p.error(
            reason::CROSS_NAMESPACE_REF,
            path,
            format!("references namespace {ns:?}; cross-namespace references are disabled (-no-cross-namespace-refs)"),
        );
    }
}
