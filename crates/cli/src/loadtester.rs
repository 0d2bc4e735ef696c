//! `flagger-rs loadtester`: Flagger's companion service that runs load tests, commands and manual
//! gates for Canary webhooks. Flags as Flagger's loadtester (`-port=8080`, `-timeout=1h`, ...).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    flags: flagger_loadtester::Flags,
}

pub fn run(args: &Args) -> ExitCode {
    match flagger_loadtester::run_blocking(&args.flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flagger-rs loadtester: {e}");
            ExitCode::FAILURE
        }
    }
}
