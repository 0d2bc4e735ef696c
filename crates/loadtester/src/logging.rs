//! Log set-up from Flagger's `-log-level` and `-zap-encoding`.

use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid -log-level {0:?}: expected debug, info, warning or error")]
    Level(String),
    #[error("invalid -zap-encoding {0:?}: expected json or console")]
    Encoding(String),
}

/// Installs the global subscriber; a second call (tests) keeps the first one.
pub fn init(level: &str, encoding: &str) -> Result<(), LoggingError> {
    let directive = match level {
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        // zap's levels above error all log at least errors.
        "error" | "dpanic" | "panic" | "fatal" => "error",
        other => return Err(LoggingError::Level(other.to_owned())),
    };
    // Dependencies (hyper, reqwest) are chatty at debug; keep them at warn.
    let filter = EnvFilter::new(format!("warn,flagger_loadtester={directive}"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match encoding {
        "json" => builder.json().try_init(),
        "console" => builder.try_init(),
        other => return Err(LoggingError::Encoding(other.to_owned())),
    };
    // Already initialised is fine: logging is process-wide and the first set-up wins.
    drop(result);
    Ok(())
}
