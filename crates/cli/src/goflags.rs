//! Go-style flags (`-mesh-provider=istio`, `-enable-leader-election`) as Flagger's Helm chart and
//! manifests pass them: rewritten to clap's `--long` form before parsing.

use std::ffi::OsString;

/// Rewrites `-name[=value]` to `--name[=value]` for every multi-letter name: Go flags are never
/// clusters of short flags, and an unknown one then fails with clap's message naming it whole
/// (`--bogus`) instead of its first letter.
pub fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let mut past_separator = false;
    args.into_iter()
        .enumerate()
        .map(|(index, arg)| {
            let Some(text) = arg.to_str() else {
                return arg;
            };
            if index == 0 || past_separator {
                return arg;
            }
            if text == "--" {
                past_separator = true;
                return arg;
            }
            rewrite(text).map_or(arg, OsString::from)
        })
        .collect()
}

fn rewrite(text: &str) -> Option<String> {
    let flag = text.strip_prefix('-')?;
    if flag.starts_with('-') {
        return None;
    }
    let name = flag.split_once('=').map_or(flag, |(name, _)| name);
    // Single letters stay short flags (`-h`, `-V`); negative numbers stay values.
    if name.chars().count() < 2 || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(format!("-{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn command() -> Command {
        Command::new("flagger-rs").subcommand(
            Command::new("controller")
                .arg(Arg::new("mesh-provider").long("mesh-provider"))
                .arg(
                    Arg::new("enable-leader-election")
                        .long("enable-leader-election")
                        .action(ArgAction::SetTrue),
                ),
        )
    }

    fn run(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn go_style_flags_become_long_flags() {
        assert_eq!(
            run(&[
                "flagger-rs",
                "controller",
                "-mesh-provider=istio",
                "-enable-leader-election"
            ]),
            [
                "flagger-rs",
                "controller",
                "--mesh-provider=istio",
                "--enable-leader-election"
            ]
        );
        assert_eq!(
            run(&["flagger-rs", "controller", "-mesh-provider", "linkerd"]),
            ["flagger-rs", "controller", "--mesh-provider", "linkerd"]
        );
        let matches = command()
            .try_get_matches_from(run(&[
                "flagger-rs",
                "controller",
                "-mesh-provider=kubernetes",
            ]))
            .unwrap();
        let sub = matches.subcommand_matches("controller").unwrap();
        assert_eq!(
            sub.get_one::<String>("mesh-provider").unwrap(),
            "kubernetes"
        );
    }

    #[test]
    fn short_flags_values_and_arguments_after_the_separator_stay() {
        assert_eq!(
            run(&[
                "flagger-rs",
                "controller",
                "-h",
                "-5",
                "--mesh-provider=x",
                "--",
                "-mesh-provider"
            ]),
            [
                "flagger-rs",
                "controller",
                "-h",
                "-5",
                "--mesh-provider=x",
                "--",
                "-mesh-provider"
            ]
        );
    }

    #[test]
    fn unknown_flags_are_named_whole() {
        let args = run(&["flagger-rs", "controller", "-bogus=1"]);
        assert_eq!(args, ["flagger-rs", "controller", "--bogus=1"]);
        let error = command().try_get_matches_from(args).unwrap_err();
        assert!(error.to_string().contains("--bogus"), "{error}");
    }
}
