//! Log set-up from Flagger's `-log-level` and `-zap-encoding`, shared by the long-running
//! subcommands (controller, loadtester); the libraries they run never install a subscriber.

use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid -log-level {0:?}: expected debug, info, warning or error")]
    Level(String),
    #[error("invalid -zap-encoding {0:?}: expected json or console")]
    Encoding(String),
}

/// Installs the global subscriber for the crates in `targets` at `level`; everything else (hyper,
/// reqwest, kube's internals) stays at warn, where it is useful rather than chatty.
pub fn init(level: &str, encoding: &str, targets: &[&str]) -> Result<(), LoggingError> {
    let directive = match level {
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        // zap's levels above error all log at least errors.
        "error" | "dpanic" | "panic" | "fatal" => "error",
        other => return Err(LoggingError::Level(other.to_owned())),
    };
    let mut filter = String::from("warn");
    for target in targets {
        filter.push_str(&format!(",{target}={directive}"));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(EnvFilter::new(filter));
    let result = match encoding {
        "json" => builder.json().try_init(),
        "console" => builder.try_init(),
        other => return Err(LoggingError::Encoding(other.to_owned())),
    };
    // A subscriber already installed (tests) wins; logging is process-wide.
    drop(result);
    Ok(())
}

/// Logs each warning about a flag that was given and is not acted on, once, at start-up.
pub fn warn_not_acted_on(warnings: &[String]) {
    for warning in warnings {
        tracing::warn!("{warning}");
    }
}
