//! `flagger-rs crds`: the CustomResourceDefinitions, generated from the API types.

use std::io::Write;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_: &Args) -> ExitCode {
    match flagger_api::crd::to_yaml() {
        Ok(yaml) => match std::io::stdout().write_all(yaml.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: writing the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: rendering the CRDs: {e}");
            ExitCode::FAILURE
        }
    }
}
