//! The cluster commands fail in one line the user can act on, with a non-zero exit code, when
//! there is no cluster to talk to.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flagger-rs"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0]
}

#[test]
fn a_missing_kubeconfig_is_named() {
    for command in [
        &["status"][..],
        &["status", "podinfo", "--watch"],
        &["events", "podinfo"],
        &["why", "podinfo"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--kubeconfig", "/nonexistent/kubeconfig"]);
        let (ok, stderr) = run(&args);
        assert!(!ok, "{args:?}");
        let line = one_line(&stderr);
        assert!(
            line.starts_with("error: cannot read kubeconfig /nonexistent/kubeconfig"),
            "{line}"
        );
    }
}

#[test]
fn a_cluster_that_does_not_answer_is_said_so() {
    let dir = std::env::temp_dir().join(format!("flagger-rs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
         clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n\
         contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n",
    )
    .unwrap();
    let path = kubeconfig.to_str().unwrap();
    for command in [&["status"][..], &["events", "podinfo"], &["why", "podinfo"]] {
        let mut args = command.to_vec();
        args.extend(["--kubeconfig", path, "-n", "test"]);
        let (ok, stderr) = run(&args);
        assert!(!ok, "{args:?}");
        let line = one_line(&stderr);
        assert!(
            line.starts_with("error: cannot reach the cluster"),
            "{line}"
        );
    }
    let (ok, stderr) = run(&["status", "--kubeconfig", path, "--context", "nope"]);
    assert!(!ok);
    assert!(one_line(&stderr).contains("nope"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_flagger-rs"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for subcommand in ["status", "events", "why", "plan"] {
            assert!(script.contains(subcommand), "{shell} lacks {subcommand}");
        }
    }
}

/// `kubectl flagger status` runs the binary as `kubectl-flagger`: the CLI, even with flags first.
#[test]
fn the_binary_as_kubectl_flagger_is_the_cli() {
    let dir = std::env::temp_dir().join(format!("flagger-rs-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("kubectl-flagger");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_flagger-rs"), &plugin).unwrap();
    let out = Command::new(&plugin)
        .args(["status", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        one_line(&stderr).starts_with("error: cannot read kubeconfig"),
        "{stderr}"
    );
    // Flags before any subcommand are a usage error here, never the controller starting.
    let out = Command::new(&plugin)
        .args(["-log-level=info"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !String::from_utf8(out.stderr)
            .unwrap()
            .contains("controller")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
