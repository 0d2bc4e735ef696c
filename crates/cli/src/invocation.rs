//! Which command a command line means before any flag is parsed. Flagger ships two binaries,
//! `flagger` and `loadtester`, whose command lines carry no subcommand: Flagger's Helm chart runs
//! `./flagger -log-level=info -mesh-provider=…`. So the binary is the controller when it runs under
//! the name `flagger` (argv[0], e.g. a symlink in an image) or when its first argument is a flag
//! other than help or version, and the loadtester when it runs under the name `loadtester`.
//! Under the name `kubectl-flagger` (a kubectl plugin: `kubectl flagger status`) it is the CLI
//! itself, whose users never mean the controller.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The subcommand a program name stands for.
fn subcommand_of_program(program: &OsStr) -> Option<&'static str> {
    let name = Path::new(program).file_name()?.to_str()?;
    match name {
        "flagger" => Some("controller"),
        "loadtester" => Some("loadtester"),
        _ => None,
    }
}

/// kubectl runs a plugin `kubectl-NAME` found on the PATH for `kubectl NAME …`.
fn is_kubectl_plugin(program: &OsStr) -> bool {
    Path::new(program).file_name().and_then(|n| n.to_str()) == Some("kubectl-flagger")
}

/// Flags that mean the binary itself, not the controller, when they come first.
fn is_help_or_version(arg: &str) -> bool {
    matches!(
        arg,
        "-h" | "-help" | "--help" | "-V" | "-version" | "--version"
    )
}

/// `args` (program name first) with the subcommand they imply inserted after the program name.
pub fn resolve(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(program) = args.first() else {
        return args;
    };
    if is_kubectl_plugin(program) {
        return args;
    }
    let implied = subcommand_of_program(program).or_else(|| {
        let first = args.get(1)?.to_str()?;
        (first.starts_with('-') && first != "--" && !is_help_or_version(first))
            .then_some("controller")
    });
    if let Some(subcommand) = implied {
        args.insert(1, OsString::from(subcommand));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Vec<String> {
        resolve(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_program_name_flagger_is_the_controller() {
        assert_eq!(
            run(&["./flagger", "-log-level=info"]),
            ["./flagger", "controller", "-log-level=info"]
        );
        assert_eq!(
            run(&["/usr/local/bin/flagger"]),
            ["/usr/local/bin/flagger", "controller"]
        );
        assert_eq!(
            run(&["flagger", "-version"]),
            ["flagger", "controller", "-version"]
        );
    }

    #[test]
    fn the_program_name_loadtester_is_the_loadtester() {
        assert_eq!(
            run(&["./loadtester", "-port=8080"]),
            ["./loadtester", "loadtester", "-port=8080"]
        );
    }

    #[test]
    fn flags_without_a_subcommand_are_the_controllers() {
        assert_eq!(
            run(&["flagger-rs", "-log-level=info", "-mesh-provider=kubernetes"]),
            [
                "flagger-rs",
                "controller",
                "-log-level=info",
                "-mesh-provider=kubernetes"
            ]
        );
        assert_eq!(
            run(&["flagger-rs", "--mesh-provider", "istio"]),
            ["flagger-rs", "controller", "--mesh-provider", "istio"]
        );
    }

    #[test]
    fn the_kubectl_plugin_name_is_the_cli_and_never_the_controller() {
        for args in [
            &["kubectl-flagger", "status", "-n", "test"][..],
            &["/usr/local/bin/kubectl-flagger", "why", "podinfo"],
            &["kubectl-flagger", "--context", "prod", "status"],
            &["kubectl-flagger"],
        ] {
            assert_eq!(run(args), args, "{args:?}");
        }
    }

    #[test]
    fn subcommands_help_and_version_stay_the_binarys() {
        for args in [
            &["flagger-rs", "controller", "-log-level=info"][..],
            &["flagger-rs", "validate", "canary.yaml"],
            &["flagger-rs", "loadtester", "-port=1"],
            &["flagger-rs"],
            &["flagger-rs", "-version"],
            &["flagger-rs", "--help"],
            &["flagger-rs", "-h"],
        ] {
            assert_eq!(run(args), args, "{args:?}");
        }
    }
}
