//! `flagger-rs`: the one binary users run.

mod controller;
mod crds;
mod goflags;
mod loadtester;
mod logging;
mod plan;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flagger-rs",
    version,
    about = "Flagger-compatible progressive delivery for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check Canary, MetricTemplate and AlertProvider manifests; exit 1 on any problem.
    Validate(validate::Args),
    /// Print the CustomResourceDefinitions as YAML.
    Crds(crds::Args),
    /// Show what a Canary will do: its schedule, time to promote and time to roll back.
    Plan(plan::Args),
    /// Run the webhook loadtester: load tests, commands, gates (accepts Flagger's loadtester flags).
    Loadtester(loadtester::Args),
    /// Run the operator (accepts Flagger's flags, also Go-style: -mesh-provider=kubernetes).
    Controller(Box<flagger_controller::flags::Flags>),
}

fn main() -> ExitCode {
    let args = goflags::normalize(std::env::args_os().collect());
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Crds(args) => crds::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Loadtester(args) => loadtester::run(&args),
        Command::Controller(flags) => controller::run(*flags),
    }
}
