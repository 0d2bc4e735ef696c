//! flagger-rs loadtester: Flagger's companion HTTP service. It runs load tests (a built-in
//! `hey`-compatible generator), commands and manual gates for Canary webhooks, with Flagger's
//! API and status codes.

mod auth;
pub mod config;
mod exec;
pub mod flags;
mod gate_api;
pub mod gates;
pub mod hey;
pub mod load;
mod metrics;
pub mod payload;
pub mod server;
mod task_api;
pub mod tasks;
mod words;

use std::net::{Ipv4Addr, SocketAddr};

pub use config::Config;
pub use flags::Flags;
pub use server::{AppState, router, serve};

/// Flagger's loadtester version this one answers as.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// reqwest is built without a TLS crypto provider of its own (the workspace picks ring once);
/// it must be installed before any client is built. Later calls are no-ops.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Flags(#[from] flags::FlagsError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// [`run`] on a runtime of its own, for a synchronous `main`.
pub fn run_blocking(flags: &Flags) -> Result<(), RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?
        .block_on(run(flags))
}

/// Runs the loadtester until SIGINT or SIGTERM. Logging is the caller's to set up (the
/// `flagger-rs loadtester` subcommand does it from `-log-level` and `-zap-encoding`).
pub async fn run(flags: &Flags) -> Result<(), RunError> {
    install_crypto_provider();
    let config = flags.config()?;
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, flags.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })?;
    tracing::info!(
        "Starting load tester v{VERSION} API on port {}, task timeout {}",
        flags.port,
        flagger_api::duration::format(config.task_timeout)
    );
    serve(listener, AppState::new(config), shutdown_signal())
        .await
        .map_err(RunError::Serve)?;
    tracing::info!("HTTP server stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
