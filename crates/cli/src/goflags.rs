//! Go-style flags (`-mesh-provider=istio`, `-timeout 30s`, `-enable-leader-election`) as Flagger's
//! Helm charts and manifests pass them, rewritten to clap's `--long` form before parsing. This is
//! the one place Go-style flags are read, for every subcommand.
//!
//! Go's `flag` package takes the next argument as the value of a flag that needs one, even when it
//! starts with `-` (`-bearer-token -secret`). Which flags need one is read from the clap command
//! itself, so the rewrite and the parser never disagree: such a flag and its value are joined as
//! `--name=value`. Boolean flags never take the next argument (Go: `-flag=false`), and clap is told
//! so with `require_equals`.

use std::ffi::OsString;

use clap::Command;

/// Rewrites `args` (program name, then a subcommand of `command` or none) for clap.
pub fn normalize(args: Vec<OsString>, command: &mut Command) -> Vec<OsString> {
    command.build();
    let subcommand = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|name| command.find_subcommand(name));
    let flags = subcommand.unwrap_or(command);
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    out.extend(args.next());
    if subcommand.is_some() {
        out.extend(args.next());
    }
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        }
        let Some(flag) = long_flag(text) else {
            out.push(arg);
            continue;
        };
        let mut rewritten = OsString::from(format!("--{flag}"));
        if !flag.contains('=')
            && takes_separate_value(flags, flag)
            && let Some(value) = args.next()
        {
            rewritten.push("=");
            rewritten.push(value);
        }
        out.push(rewritten);
    }
    out
}

/// The flag of `-name[=value]` or `--name[=value]` for a multi-letter name. Single letters stay
/// short flags (`-h`, `-V`) and negative numbers stay values; an unknown multi-letter flag is then
/// refused by clap named whole (`--bogus`), not by its first letter.
fn long_flag(text: &str) -> Option<&str> {
    if let Some(flag) = text.strip_prefix("--") {
        return (!flag.is_empty()).then_some(flag);
    }
    let flag = text.strip_prefix('-')?;
    let name = flag.split_once('=').map_or(flag, |(name, _)| name);
    (name.chars().count() >= 2 && name.starts_with(|c: char| c.is_ascii_alphabetic()))
        .then_some(flag)
}

fn takes_separate_value(command: &Command, name: &str) -> bool {
    command
        .get_arguments()
        .find(|arg| {
            arg.get_long() == Some(name)
                || arg
                    .get_all_aliases()
                    .is_some_and(|aliases| aliases.contains(&name))
        })
        .is_some_and(|arg| {
            arg.get_action().takes_values()
                && !arg.is_require_equals_set()
                && arg.get_num_args().is_some_and(|n| n.min_values() >= 1)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        Command::new("flagger-rs").subcommand(
            Command::new("controller")
                .arg(Arg::new("mesh-provider").long("mesh-provider"))
                .arg(Arg::new("token").long("bearer-token").alias("token"))
                .arg(
                    Arg::new("enable-leader-election")
                        .long("enable-leader-election")
                        .num_args(0..=1)
                        .require_equals(true)
                        .default_missing_value("true"),
                )
                .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue)),
        )
    }

    fn run(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from).collect(), &mut command())
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
    }

    #[test]
    fn a_separate_value_is_joined_even_when_it_looks_like_a_flag() {
        assert_eq!(
            run(&[
                "flagger-rs",
                "controller",
                "-mesh-provider",
                "linkerd",
                "--bearer-token",
                "-s3cret"
            ]),
            [
                "flagger-rs",
                "controller",
                "--mesh-provider=linkerd",
                "--bearer-token=-s3cret"
            ]
        );
        assert_eq!(
            run(&["flagger-rs", "controller", "-token", "-x"]),
            ["flagger-rs", "controller", "--token=-x"],
            "aliases too"
        );
    }

    #[test]
    fn booleans_never_take_the_next_argument() {
        assert_eq!(
            run(&[
                "flagger-rs",
                "controller",
                "-enable-leader-election",
                "-quiet",
                "-mesh-provider=x"
            ]),
            [
                "flagger-rs",
                "controller",
                "--enable-leader-election",
                "--quiet",
                "--mesh-provider=x"
            ]
        );
    }

    #[test]
    fn short_flags_numbers_and_arguments_after_the_separator_stay() {
        assert_eq!(
            run(&[
                "flagger-rs",
                "controller",
                "-h",
                "-5",
                "--",
                "-mesh-provider",
                "x"
            ]),
            [
                "flagger-rs",
                "controller",
                "-h",
                "-5",
                "--",
                "-mesh-provider",
                "x"
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
