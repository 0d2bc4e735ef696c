//! `flagger-rs loadtester` (or `loadtester`): Flagger's companion service that runs load tests,
//! commands and manual gates for Canary webhooks. Flags as Flagger's loadtester (`-port=8080`,
//! `-timeout=1h`, ...).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub flags: flagger_loadtester::Flags,
}

pub fn run(args: &Args) -> ExitCode {
    let flags = &args.flags;
    if let Err(e) = crate::logging::init(
        &flags.log_level,
        &flags.zap_encoding,
        &["flagger_loadtester"],
    ) {
        eprintln!("flagger-rs loadtester: {e}");
        return ExitCode::FAILURE;
    }
    crate::logging::warn_not_acted_on(&flags.not_acted_on());
    match flagger_loadtester::run_blocking(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flagger-rs loadtester: {e}");
            ExitCode::FAILURE
        }
    }
}
