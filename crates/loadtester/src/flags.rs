//! Command-line flags, named as Flagger's loadtester names them, in Go style (`-port=8080`) or
//! GNU style (`--port 8080`).

use std::ffi::OsString;
use std::time::Duration;

use clap::Parser;
use regex::Regex;

use crate::config::{Config, DEFAULT_MAX_TASKS};
use crate::duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "flagger-rs loadtester",
    about = "Flagger-compatible loadtester: runs load tests and commands for webhooks, serves manual gates"
)]
pub struct Flags {
    /// Port to listen on.
    #[arg(long, default_value_t = 9090)]
    pub port: u16,

    /// Task timeout (Go duration); a task still running then is killed.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Serve only payloads whose namespace matches this regular expression; others get 403.
    #[arg(long)]
    pub namespace_regexp: Option<String>,

    /// Log level: debug, info, warning or error.
    #[arg(long, default_value = "debug")]
    pub log_level: String,

    /// Log encoding: json or console.
    #[arg(long, alias = "zap-encoder", default_value = "json")]
    pub zap_encoding: String,

    /// Accepted for compatibility with Flagger's loadtester; has no effect.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_go_bool)]
    pub zap_replace_globals: bool,

    /// Require `Authorization: Bearer <token>` on every endpoint except /healthz and /metrics.
    #[arg(long, env = "LOADTESTER_BEARER_TOKEN", hide_env_values = true)]
    pub bearer_token: Option<String>,

    /// Tasks (load tests and commands) that may run at once; more are answered with 503.
    #[arg(long, default_value_t = DEFAULT_MAX_TASKS, value_parser = parse_max_tasks)]
    pub max_tasks: usize,
}

/// Flags that take a separate value, so that value is never mistaken for a flag when rewriting.
const VALUE_FLAGS: &[&str] = &[
    "port",
    "timeout",
    "namespace-regexp",
    "log-level",
    "zap-encoding",
    "zap-encoder",
    "bearer-token",
    "max-tasks",
];

#[derive(Debug, thiserror::Error)]
pub enum FlagsError {
    #[error("invalid -namespace-regexp: {0}")]
    NamespaceRegexp(#[from] regex::Error),
}

impl Flags {
    /// Parses argv (program name first) after rewriting Go-style flags.
    pub fn try_parse_go<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        Self::try_parse_from(normalize(args.into_iter().map(Into::into).collect()))
    }

    pub fn config(&self) -> Result<Config, FlagsError> {
        let namespace_regexp = match self.namespace_regexp.as_deref() {
            None | Some("") => None,
            Some(re) => Some(Regex::new(re)?),
        };
        Ok(Config {
            task_timeout: self.timeout,
            max_tasks: self.max_tasks,
            namespace_regexp,
            bearer_token: self.bearer_token.clone().filter(|t| !t.is_empty()),
        })
    }
}

/// Rewrites `-name[=v]` to `--name[=v]` for multi-letter names; clap would read them as short
/// flags. A separate value is joined as `--name=value`, so a value starting with `-` stays a
/// value, as in Go. Everything after `--` is left alone.
pub fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    out.extend(args.next());
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        }
        let long = text.strip_prefix("--").or_else(|| {
            text.strip_prefix('-')
                .filter(|t| t.len() > 1 && t.starts_with(|c: char| c.is_ascii_alphabetic()))
        });
        let Some(flag) = long else {
            out.push(arg);
            continue;
        };
        let mut rewritten = OsString::from(format!("--{flag}"));
        if !flag.contains('=')
            && VALUE_FLAGS.contains(&flag)
            && let Some(value) = args.next()
        {
            rewritten.push("=");
            rewritten.push(value);
        }
        out.push(rewritten);
    }
    out
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

fn parse_max_tasks(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number of at least 1, got {s:?}")),
    }
}

fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        Flags::try_parse_go(std::iter::once("loadtester").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_flagger() -> Result<(), clap::Error> {
        let f = parse(&[])?;
        assert_eq!(f.port, 9090);
        assert_eq!(f.timeout, Duration::from_secs(3600));
        assert_eq!(f.log_level, "debug");
        assert_eq!(f.zap_encoding, "json");
        assert!(f.bearer_token.is_none() || std::env::var_os("LOADTESTER_BEARER_TOKEN").is_some());
        Ok(())
    }

    #[test]
    fn accepts_go_and_gnu_styles() -> Result<(), clap::Error> {
        let go = parse(&[
            "-port=8080",
            "-timeout=30m",
            "-log-level=info",
            "-zap-encoding=console",
            "-zap-replace-globals",
            "-namespace-regexp",
            "^test$",
        ])?;
        let gnu = parse(&[
            "--port",
            "8080",
            "--timeout",
            "30m",
            "--log-level",
            "info",
            "--zap-encoder=console",
            "--zap-replace-globals=true",
            "--namespace-regexp=^test$",
        ])?;
        for f in [go, gnu] {
            assert_eq!(f.port, 8080);
            assert_eq!(f.timeout, Duration::from_secs(1800));
            assert_eq!(f.log_level, "info");
            assert_eq!(f.zap_encoding, "console");
            assert!(f.zap_replace_globals);
            assert_eq!(f.namespace_regexp.as_deref(), Some("^test$"));
        }
        Ok(())
    }

    #[test]
    fn leaves_values_that_look_like_flags() -> Result<(), clap::Error> {
        let f = parse(&["-bearer-token", "-secret", "-max-tasks=3"])?;
        assert_eq!(f.bearer_token.as_deref(), Some("-secret"));
        assert_eq!(f.max_tasks, 3);
        Ok(())
    }

    #[test]
    fn refuses_unknown_and_bad_flags() {
        assert!(parse(&["-mesh-provider=istio"]).is_err());
        assert!(parse(&["-timeout=soon"]).is_err());
        assert!(parse(&["-port=http"]).is_err());
        assert!(parse(&["-max-tasks=0"]).is_err());
    }

    #[test]
    fn bad_namespace_regexp_is_an_error() -> Result<(), clap::Error> {
        assert!(parse(&["-namespace-regexp=("])?.config().is_err());
        Ok(())
    }
}
