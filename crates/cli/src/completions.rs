//! `flagger-rs completions SHELL`: a completion script for the shell, generated from the command
//! line definition so it never drifts from the flags.

use std::process::ExitCode;

use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub shell: Shell,
}

pub fn run(args: &Args, mut command: clap::Command) -> ExitCode {
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    ExitCode::SUCCESS
}
