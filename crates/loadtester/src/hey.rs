//! The `hey` command line (https://github.com/rakyll/hey), parsed into a [`LoadSpec`] so that the
//! load runs in-process instead of depending on a `hey` binary being installed.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::words::{self, Split};
use flagger_api::duration;

/// More workers than this is a typo or an attack, not a load test from one pod.
pub const MAX_CONCURRENCY: usize = 1000;

const DEFAULT_REQUESTS: u64 = 200;
const DEFAULT_CONCURRENCY: usize = 50;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_CONTENT_TYPE: &str = "text/html";
const DEFAULT_USER_AGENT: &str = "hey/0.0.1";

#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    pub url: Url,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Body>,
    pub basic_auth: Option<(String, String)>,
    pub proxy: Option<String>,
    pub stop: Stop,
    pub concurrency: usize,
    /// Requests per second for each worker, as hey's `-q`.
    pub rate_per_worker: Option<f64>,
    /// `None` is hey's `-t 0`: no per-request timeout (the task timeout still applies).
    pub request_timeout: Option<Duration>,
    pub http2: bool,
    pub disable_keepalive: bool,
    pub disable_redirects: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Inline(String),
    File(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `-n`: exactly this many requests in total.
    Count(u64),
    /// `-z`: as many requests as fit in this time.
    After(Duration),
}

/// What a `cmd` task string asks for.
#[derive(Debug, PartialEq)]
pub enum Plan {
    BuiltIn(Box<LoadSpec>),
    Shell,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeyError {
    #[error("hey: flag provided but not defined: -{0}")]
    UnknownFlag(String),
    #[error("hey: flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("hey: invalid value {value:?} for flag -{flag}: {reason}")]
    InvalidValue {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("hey: missing URL")]
    MissingUrl,
    #[error("hey: unexpected argument {0:?} after the URL (flags go before the URL)")]
    ExtraArgument(String),
    #[error("hey: invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("hey: -n cannot be lower than -c")]
    CountBelowConcurrency,
}

/// Decides whether a `cmd` task runs in-process (a plain `hey …` line) or through `sh -c`.
pub fn plan(cmd: &str) -> Result<Plan, HeyError> {
    let words = match words::split(cmd) {
        Ok(Split::Words(words)) => words,
        // `sh` reports broken quoting better than we would, and may have a real `hey` for pipelines.
        Ok(Split::NeedsShell) | Err(_) => return Ok(Plan::Shell),
    };
    match words.split_first() {
        Some((program, args)) if program == "hey" || program.ends_with("/hey") => {
            parse_args(args).map(|spec| Plan::BuiltIn(Box::new(spec)))
        }
        _ => Ok(Plan::Shell),
    }
}

/// Parses hey's arguments (everything after `hey`), with Go's `flag` package rules:
/// `-f v`, `-f=v`, `--f v`, booleans as `-f` or `-f=true`.
pub fn parse_args(args: &[String]) -> Result<LoadSpec, HeyError> {
    let mut raw = RawFlags::default();
    let mut positional = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if !positional.is_empty() {
            return Err(HeyError::ExtraArgument(arg.clone()));
        }
        if arg == "--" {
            positional.extend(iter.by_ref().cloned());
            break;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            positional.push(arg.clone());
            continue;
        };
        if flag.is_empty() {
            positional.push(arg.clone());
            continue;
        }
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        if BOOL_FLAGS.contains(&name) {
            let on = match inline.as_deref() {
                None => true,
                Some(v) => flagger_api::goflag::bool(v)
                    .map_err(|_| invalid(name, v, "expected a boolean"))?,
            };
            raw.set_bool(name, on);
            continue;
        }
        if !VALUE_FLAGS.contains(&name) {
            return Err(HeyError::UnknownFlag(name.to_owned()));
        }
        let value = match inline {
            Some(v) => v,
            None => iter
                .next()
                .cloned()
                .ok_or_else(|| HeyError::MissingValue(name.to_owned()))?,
        };
        raw.set_value(name, value);
    }
    let mut positional = positional.into_iter();
    let url = positional.next().ok_or(HeyError::MissingUrl)?;
    if let Some(extra) = positional.next() {
        return Err(HeyError::ExtraArgument(extra));
    }
    raw.into_spec(&url)
}

const BOOL_FLAGS: &[&str] = &[
    "h2",
    "disable-compression",
    "disable-keepalive",
    "disable-redirects",
];
const VALUE_FLAGS: &[&str] = &[
    "n", "c", "q", "z", "o", "m", "H", "t", "A", "d", "D", "T", "U", "a", "x", "host", "cpus",
];

#[derive(Default)]
struct RawFlags {
    values: Vec<(String, String)>,
    headers: Vec<String>,
    http2: bool,
    disable_keepalive: bool,
    disable_redirects: bool,
}

impl RawFlags {
    fn set_bool(&mut self, name: &str, on: bool) {
        match name {
            "h2" => self.http2 = on,
            "disable-keepalive" => self.disable_keepalive = on,
            "disable-redirects" => self.disable_redirects = on,
            // reqwest is built without decompression, so there is nothing to disable.
            _ => {}
        }
    }

    fn set_value(&mut self, name: &str, value: String) {
        if name == "H" {
            self.headers.push(value);
        } else {
            // Go keeps the last occurrence of a repeated flag.
            self.values.retain(|(n, _)| n != name);
            self.values.push((name.to_owned(), value));
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn into_spec(self, url: &str) -> Result<LoadSpec, HeyError> {
        let url = parse_url(url)?;
        let concurrency = match self.get("c") {
            Some(v) => parse_num::<usize>("c", v)?,
            None => DEFAULT_CONCURRENCY,
        };
        if concurrency == 0 || concurrency > MAX_CONCURRENCY {
            return Err(invalid(
                "c",
                &concurrency.to_string(),
                &format!("must be between 1 and {MAX_CONCURRENCY}"),
            ));
        }
        let stop = match self.get("z") {
            Some(v) => {
                let d = duration::parse(v).map_err(|e| invalid("z", v, &e.to_string()))?;
                if d.is_zero() {
                    return Err(invalid("z", v, "must be positive"));
                }
                Stop::After(d)
            }
            None => {
                let n = match self.get("n") {
                    Some(v) => parse_num::<u64>("n", v)?,
                    None => DEFAULT_REQUESTS,
                };
                if n == 0 {
                    return Err(invalid("n", "0", "must be at least 1"));
                }
                if n < concurrency as u64 {
                    return Err(HeyError::CountBelowConcurrency);
                }
                Stop::Count(n)
            }
        };
        let rate_per_worker = match self.get("q") {
            Some(v) => {
                let q = parse_num::<f64>("q", v)?;
                if !q.is_finite() || q < 0.0 {
                    return Err(invalid("q", v, "must be a non-negative number"));
                }
                // hey treats 0 as "no limit".
                (q > 0.0).then_some(q)
            }
            None => None,
        };
        let request_timeout = match self.get("t") {
            Some(v) => {
                let secs = parse_num::<u64>("t", v)?;
                (secs > 0).then(|| Duration::from_secs(secs))
            }
            None => Some(DEFAULT_TIMEOUT),
        };
        let method = match self.get("m") {
            Some(v) => Method::from_bytes(v.to_ascii_uppercase().as_bytes())
                .map_err(|_| invalid("m", v, "not an HTTP method"))?,
            None => Method::GET,
        };
        if let Some(v) = self.get("o")
            && v != "csv"
        {
            return Err(invalid("o", v, "the only supported output is csv"));
        }
        if let Some(v) = self.get("cpus") {
            parse_num::<u32>("cpus", v)?;
        }

        let mut headers = Vec::new();
        let content_type = self.get("T").unwrap_or(DEFAULT_CONTENT_TYPE);
        headers.push(header("T", "content-type", content_type)?);
        headers.push(header(
            "U",
            "user-agent",
            self.get("U").unwrap_or(DEFAULT_USER_AGENT),
        )?);
        if let Some(v) = self.get("A") {
            headers.push(header("A", "accept", v)?);
        }
        for h in &self.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| invalid("H", h, "expected \"Name: value\""))?;
            let name = name.trim();
            // A later -H replaces a default (hey lets -H override Content-Type and User-Agent).
            let parsed = header("H", name, value.trim())?;
            headers.retain(|(n, _)| *n != parsed.0);
            headers.push(parsed);
        }
        if let Some(v) = self.get("host") {
            headers.retain(|(n, _)| *n != reqwest::header::HOST);
            headers.push(header("host", "host", v)?);
        }
        let basic_auth = match self.get("a") {
            Some(v) => {
                let (user, pass) = v
                    .split_once(':')
                    .ok_or_else(|| invalid("a", v, "expected username:password"))?;
                Some((user.to_owned(), pass.to_owned()))
            }
            None => None,
        };
        let body = match (self.get("d"), self.get("D")) {
            (Some(d), _) => Some(Body::Inline(d.to_owned())),
            (None, Some(path)) => Some(Body::File(path.to_owned())),
            (None, None) => None,
        };
        let proxy = match self.get("x") {
            Some(v) => {
                let proxy = if v.contains("://") {
                    v.to_owned()
                } else {
                    format!("http://{v}")
                };
                Url::parse(&proxy).map_err(|e| invalid("x", v, &e.to_string()))?;
                Some(proxy)
            }
            None => None,
        };
        Ok(LoadSpec {
            url,
            method,
            headers,
            body,
            basic_auth,
            proxy,
            stop,
            concurrency,
            rate_per_worker,
            request_timeout,
            http2: self.http2,
            disable_keepalive: self.disable_keepalive,
            disable_redirects: self.disable_redirects,
        })
    }
}

fn parse_url(url: &str) -> Result<Url, HeyError> {
    let bad = |reason: &str| HeyError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http and https are supported"));
    }
    Ok(parsed)
}

fn header(flag: &str, name: &str, value: &str) -> Result<(HeaderName, HeaderValue), HeyError> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(flag, name, "not a valid header name"))?;
    let v = HeaderValue::from_str(value)
        .map_err(|_| invalid(flag, value, "not a valid header value"))?;
    Ok((n, v))
}

fn parse_num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, HeyError> {
    value
        .parse()
        .map_err(|_| invalid(flag, value, "expected a number"))
}

fn invalid(flag: &str, value: &str, reason: &str) -> HeyError {
    HeyError::InvalidValue {
        flag: flag.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
#[path = "hey_tests.rs"]
mod tests;
