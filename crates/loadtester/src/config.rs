//! Runtime settings of the loadtester, independent of how they were given (flags or tests).

use std::time::Duration;

use regex::Regex;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_MAX_TASKS: usize = 100;

#[derive(Debug, Clone)]
pub struct Config {
    /// Flagger's `-timeout`: bounds every task, background or blocking.
    pub task_timeout: Duration,
    pub max_tasks: usize,
    /// Flagger's `-namespace-regexp`: payloads from other namespaces get 403.
    pub namespace_regexp: Option<Regex>,
    /// When set, every endpoint but `/healthz` and `/metrics` needs `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            task_timeout: DEFAULT_TIMEOUT,
            max_tasks: DEFAULT_MAX_TASKS,
            namespace_regexp: None,
            bearer_token: None,
        }
    }
}
