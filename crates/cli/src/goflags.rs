//! Go-style flags (`-mesh-provider=istio`, `-enable-leader-election`) as Flagger's Helm chart and
//! manifests pass them: rewritten to clap's `--long` form before parsing.

use std::ffi::OsString;

use clap::Command;

/// Rewrites `-name[=value]` to `--name[=value]` when `name` is a long flag of the subcommand being
/// invoked. Anything else is left for clap, so an unknown flag still fails with clap's message.
pub fn normalize(command: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut current = command;
    let mut out = Vec::with_capacity(args.len());
    let mut past_separator = false;
    for (index, arg) in args.into_iter().enumerate() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if index > 0 && !past_separator {
            if text == "--" {
                past_separator = true;
            } else if let Some(sub) = current.find_subcommand(text) {
                current = sub;
            } else if let Some(rewritten) = rewrite(current, text) {
                out.push(rewritten.into());
                continue;
            }
        }
        out.push(arg);
    }
    out
}

fn rewrite(command: &Command, text: &str) -> Option<String> {
    let flag = text.strip_prefix('-')?;
    if flag.starts_with('-') {
        return None;
    }
    let name = flag.split_once('=').map_or(flag, |(name, _)| name);
    // Single letters stay short flags (`-h`, `-V`).
    if name.chars().count() < 2 {
        return None;
    }
    let known = command
        .get_arguments()
        .any(|arg| arg.get_long() == Some(name));
    known.then(|| format!("-{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        Command::new("flagger-rs").subcommand(
            Command::new("controller")
                .arg(Arg::new("mesh-provider").long("mesh-provider"))
                .arg(Arg::new("enable-leader-election").long("enable-leader-election").action(ArgAction::SetTrue)),
        )
    }

    fn run(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        normalize(&command(), args)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn go_style_flags_become_long_flags() {
        assert_eq!(
            run(&["flagger-rs", "controller", "-mesh-provider=istio", "-enable-leader-election"]),
            ["flagger-rs", "controller", "--mesh-provider=istio", "--enable-leader-election"]
        );
        assert_eq!(
            run(&["flagger-rs", "controller", "-mesh-provider", "linkerd"]),
            ["flagger-rs", "controller", "--mesh-provider", "linkerd"]
        );
    }

    #[test]
    fn other_arguments_are_left_for_clap() {
        assert_eq!(
            run(&["flagger-rs", "controller", "-h", "-unknown=1", "--mesh-provider=x", "--", "-mesh-provider"]),
            ["flagger-rs", "controller", "-h", "-unknown=1", "--mesh-provider=x", "--", "-mesh-provider"]
        );
    }

    #[test]
    fn flags_of_another_subcommand_are_not_rewritten() {
        assert_eq!(run(&["flagger-rs", "-mesh-provider=x"]), ["flagger-rs", "-mesh-provider=x"]);
    }
}
