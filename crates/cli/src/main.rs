//! `flagger-rs`: the one binary users run. Run as `flagger` or with Flagger's flags and no
//! subcommand it is the controller; run as `loadtester` it is the loadtester (see `invocation`).

mod cluster;
mod command;
mod completions;
mod control;
mod controller;
mod crds;
mod duration;
mod events;
mod goflags;
mod invocation;
mod loadtester;
mod logging;
mod output;
#[cfg(test)]
mod output_snapshots;
mod plan;
mod replay;
mod status;
mod validate;
mod validate_cluster;
mod why;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flagger-rs",
    version,
    propagate_version = true,
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
    #[command(display_name = "flagger-rs")]
    Loadtester(loadtester::Args),
    /// Run the operator (accepts Flagger's flags, also Go-style: -mesh-provider=kubernetes).
    #[command(display_name = "flagger-rs")]
    Controller(Box<flagger_controller::flags::Flags>),
    /// Where each canary's run is: phase, weights, step, checks, what it waits on, ETA.
    Status(status::Args),
    /// The events of a canary, oldest first.
    Events(events::Args),
    /// The last decision about a canary, explained: which check, its value and threshold, what next.
    Why(why::Args),
    /// Print a shell completion script (bash, zsh, fish, …).
    Completions(completions::Args),
    #[command(flatten)]
    Control(control::Command),
}

/// The whole command line as the binary reads it: the implied subcommand, Go-style flags, clap.
fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let mut command = Cli::command();
    let args = goflags::normalize(invocation::resolve(args), &mut command);
    let mut matches = command.try_get_matches_from(args)?;
    Cli::from_arg_matches_mut(&mut matches)
}

fn main() -> ExitCode {
    flagger_controller::allocator::cap_arenas();
    let cli = parse(std::env::args_os().collect()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Crds(args) => crds::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Loadtester(args) => loadtester::run(&args),
        Command::Controller(flags) => controller::run(*flags),
        Command::Status(args) => status::run(&args),
        Command::Events(args) => events::run(&args),
        Command::Why(args) => why::run(&args),
        Command::Completions(args) => completions::run(&args, Cli::command()),
        Command::Control(command) => control::run(&command),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        super::parse(args.iter().map(OsString::from).collect())
    }

    fn controller(args: &[&str]) -> flagger_controller::flags::Flags {
        match parse(args).unwrap().command {
            Command::Controller(flags) => *flags,
            _ => panic!("{args:?} is not the controller"),
        }
    }

    fn loadtester(args: &[&str]) -> flagger_loadtester::Flags {
        match parse(args).unwrap().command {
            Command::Loadtester(args) => args.flags,
            _ => panic!("{args:?} is not the loadtester"),
        }
    }

    /// What Flagger's chart runs: `./flagger` and Go-style flags.
    #[test]
    fn flaggers_chart_command_runs_the_controller() {
        for program in ["./flagger", "/bin/flagger", "flagger-rs"] {
            let flags = controller(&[
                program,
                "-log-level=info",
                "-mesh-provider=kubernetes",
                "-metrics-server=http://prometheus.monitoring:9090",
                "-enable-config-tracking=false",
                "-kubeconfig-qps=20",
                "-kubeconfig-burst",
                "40",
                "-control-loop-interval=30s",
                "-enable-leader-election=true",
            ]);
            assert_eq!(flags.log_level, "info", "{program}");
            assert_eq!(flags.mesh_provider, "kubernetes");
            assert_eq!(flags.metrics_server, "http://prometheus.monitoring:9090");
            assert!(!flags.enable_config_tracking);
            assert_eq!((flags.kubeconfig_qps, flags.kubeconfig_burst), (20, 40));
            assert_eq!(flags.control_loop_interval, Duration::from_secs(30));
            assert!(flags.enable_leader_election);
        }
        assert_eq!(
            controller(&["flagger"]).mesh_provider,
            "istio",
            "Flagger's defaults"
        );
    }

    #[test]
    fn the_subcommands_still_work() {
        assert_eq!(
            controller(&["flagger-rs", "controller", "--mesh-provider", "linkerd"]).mesh_provider,
            "linkerd"
        );
        assert_eq!(
            loadtester(&["flagger-rs", "loadtester", "-port=1234"]).port,
            1234
        );
        assert!(matches!(
            parse(&["flagger-rs", "crds"]).unwrap().command,
            Command::Crds(_)
        ));
        assert!(matches!(
            parse(&["flagger-rs", "validate", "-"]).unwrap().command,
            Command::Validate(_)
        ));
    }

    #[test]
    fn go_bools_take_every_go_form() {
        let flags = controller(&["flagger", "-dry-run=True", "-enable-config-tracking=0"]);
        assert!(flags.dry_run);
        assert!(!flags.enable_config_tracking);
        assert!(parse(&["flagger", "-dry-run=yes"]).is_err());
    }

    #[test]
    fn the_program_name_loadtester_runs_the_loadtester_with_go_or_gnu_flags() {
        let go = loadtester(&[
            "./loadtester",
            "-port=8080",
            "-timeout=30m",
            "-log-level=info",
            "-zap-encoding=console",
            "-zap-replace-globals",
            "-namespace-regexp",
            "^test$",
        ]);
        let gnu = loadtester(&[
            "flagger-rs",
            "loadtester",
            "--port",
            "8080",
            "--timeout",
            "30m",
            "--log-level",
            "info",
            "--zap-encoder=console",
            "--zap-replace-globals=true",
            "--namespace-regexp=^test$",
        ]);
        for flags in [go, gnu] {
            assert_eq!(flags.port, 8080);
            assert_eq!(flags.timeout, Duration::from_secs(1800));
            assert_eq!(flags.log_level, "info");
            assert_eq!(flags.zap_encoding, "console");
            assert!(flags.zap_replace_globals);
            assert_eq!(flags.namespace_regexp.as_deref(), Some("^test$"));
        }
    }

    #[test]
    fn a_bad_namespace_regexp_is_refused_and_a_good_one_is_compiled() {
        let bad = loadtester(&["loadtester", "-namespace-regexp=("]);
        assert!(bad.config().is_err());
        let config = loadtester(&["loadtester", "-namespace-regexp", "^test$"])
            .config()
            .unwrap();
        let re = config.namespace_regexp.unwrap();
        assert!(re.is_match("test") && !re.is_match("prod"));
        assert!(
            loadtester(&["loadtester"])
                .config()
                .unwrap()
                .namespace_regexp
                .is_none()
        );
    }

    #[test]
    fn loadtester_zap_replace_globals_is_named_in_a_warning() {
        assert!(loadtester(&["loadtester"]).not_acted_on().is_empty());
        let warnings = loadtester(&["loadtester", "-zap-replace-globals"]).not_acted_on();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("-zap-replace-globals has no effect"));
    }

    #[test]
    fn loadtester_defaults_are_flaggers() {
        let flags = loadtester(&["loadtester"]);
        assert_eq!(flags.port, 9090);
        assert_eq!(flags.timeout, Duration::from_secs(3600));
        assert_eq!(flags.log_level, "debug");
        assert_eq!(flags.zap_encoding, "json");
    }

    #[test]
    fn a_value_that_looks_like_a_flag_stays_a_value() {
        let flags = loadtester(&["loadtester", "-bearer-token", "-secret", "-max-tasks=3"]);
        assert_eq!(flags.bearer_token.as_deref(), Some("-secret"));
        assert_eq!(flags.max_tasks, 3);
    }

    #[test]
    fn bad_and_unknown_flags_are_refused_by_name() {
        for (args, named) in [
            (
                &["loadtester", "-mesh-provider=istio"][..],
                "--mesh-provider",
            ),
            (&["loadtester", "-timeout=soon"], "soon"),
            (&["loadtester", "-port=http"], "http"),
            (&["loadtester", "-max-tasks=0"], "max-tasks"),
            (&["flagger", "-mesh-provder=istio"], "--mesh-provder"),
            (&["flagger-rs", "-bogus"], "--bogus"),
        ] {
            let error = parse(args).err().unwrap();
            assert!(error.to_string().contains(named), "{args:?}: {error}");
        }
    }

    #[test]
    fn version_everywhere() {
        for args in [
            &["flagger", "-version"][..],
            &["loadtester", "-version"],
            &["flagger-rs", "-version"],
            &["flagger-rs", "--version"],
            &["flagger-rs", "controller", "-version"],
            &["flagger-rs", "loadtester", "--version"],
            &["flagger-rs", "-log-level=info", "-version"],
        ] {
            let error = parse(args).err().unwrap();
            assert_eq!(error.kind(), ErrorKind::DisplayVersion, "{args:?}");
            assert_eq!(
                error.to_string(),
                format!("flagger-rs {}\n", env!("CARGO_PKG_VERSION")),
                "{args:?}"
            );
        }
    }
}
