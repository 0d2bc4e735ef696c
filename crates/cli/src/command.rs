//! How the cluster commands end: their async body run to completion, a failure printed as the
//! one line `CliError` says and a non-zero exit code.

use std::future::Future;
use std::process::ExitCode;

use crate::cluster::CliError;

pub fn run_async(body: impl Future<Output = Result<(), CliError>>) -> ExitCode {
    match block_on(body).and_then(|done| done) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `body` run to completion on a runtime of the calling thread: a command talks to one cluster at
/// a time and needs no worker threads.
pub fn block_on<T>(body: impl Future<Output = T>) -> Result<T, CliError> {
    // kube and reqwest share rustls; exactly one process-wide crypto provider must be chosen.
    flagger_providers::metrics::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|runtime| runtime.block_on(body))
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))
}
