//! Command-line flags, named as Flagger's loadtester names them. They are parsed by the
//! `flagger-rs` binary (`flagger-rs loadtester …`, or run as `loadtester`), which also accepts
//! them Go-style (`-port=8080`); its tests cover both styles and what [`Flags::config`] and
//! [`Flags::not_acted_on`] make of them, through the parser the binary runs.

use std::time::Duration;

use clap::Args;
use flagger_api::goflag;
use regex::Regex;

use crate::config::{Config, DEFAULT_MAX_TASKS};

#[derive(Debug, Clone, Args)]
pub struct Flags {
    /// Port to listen on.
    #[arg(long, default_value_t = 9090)]
    pub port: u16,

    /// Task timeout (Go duration); a task still running then is killed.
    #[arg(long, default_value = "1h", value_parser = goflag::duration)]
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

    /// Accepted, not acted on: the loadtester has one process-wide logger (`-log-level`,
    /// `-zap-encoding`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = goflag::bool)]
    pub zap_replace_globals: bool,

    /// Require `Authorization: Bearer <token>` on every endpoint except /healthz and /metrics.
    #[arg(long, env = "LOADTESTER_BEARER_TOKEN", hide_env_values = true)]
    pub bearer_token: Option<String>,

    /// Tasks (load tests and commands) that may run at once; more are answered with 503.
    #[arg(long, default_value_t = DEFAULT_MAX_TASKS, value_parser = parse_max_tasks)]
    pub max_tasks: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum FlagsError {
    #[error("invalid -namespace-regexp: {0}")]
    NamespaceRegexp(#[from] regex::Error),
}

impl Flags {
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

    /// One start-up warning per flag that was given but is not acted on, each naming the flag.
    pub fn not_acted_on(&self) -> Vec<String> {
        if self.zap_replace_globals {
            vec![
                "-zap-replace-globals has no effect: the loadtester always logs through one \
                 process-wide logger set by -log-level and -zap-encoding"
                    .to_string(),
            ]
        } else {
            Vec::new()
        }
    }
}

fn parse_max_tasks(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number of at least 1, got {s:?}")),
    }
}
