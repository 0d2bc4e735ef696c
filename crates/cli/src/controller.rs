//! `flagger-rs controller` (or `flagger`): the operator.

use std::process::ExitCode;

use flagger_controller::flags::Flags;

use crate::logging;

pub fn run(flags: Flags) -> ExitCode {
    if let Err(e) = logging::init(
        &flags.log_level,
        &flags.zap_encoding,
        &["flagger_controller", "flagger_providers"],
    ) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    logging::warn_not_acted_on(&flags.not_acted_on());
    // kube and reqwest share rustls; exactly one process-wide crypto provider must be chosen.
    flagger_providers::metrics::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(flagger_controller::run::run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
