//! The on-call CLI against a real canary (issue 19): `flagger-rs status`, `events` and `why` in
//! text and JSON at the phases Initialized, Progressing, Succeeded and Failed, and `status --watch`
//! in a real terminal (tmux) redrawing as the run steps to promotion. The istio router writes its
//! VirtualService under Istio's CRDs (no data plane needed); a confirm-traffic-increase gate the
//! test opens one step at a time holds the run at each weight long enough to look at it.
//!
//! Run: `hack/e2e cli_status`. The terminal frames are written to
//! `target/cli-status-frames.txt` (docs/cli.md shows a recorded run).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use e2e::controller::{
    Proc, binary, canaries, create_canary, deploy, set_image, start_controller, status,
    wait_canary, wait_phase,
};
use e2e::hooks::HookCatcher;
use e2e::objects::App;
use e2e::{TestNamespace, poll_until, skip_unless_e2e, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};

const APP: &str = "podinfo";
const INIT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(120);
/// How long a frame may take to reach the pane after the status changed.
const REDRAW: Duration = Duration::from_secs(20);

fn kubeconfig() -> e2e::Result<String> {
    std::env::var("KUBECONFIG").context("KUBECONFIG is unset (run inside `hack/cluster/exec`)")
}

/// `flagger-rs <args> -n <ns> --kubeconfig <admin>`: (exit ok, stdout, stderr).
fn cli(ns: &str, args: &[&str]) -> e2e::Result<(bool, String, String)> {
    let out = Command::new(binary()?)
        .args(args)
        .args(["-n", ns, "--kubeconfig", &kubeconfig()?])
        .output()
        .context("running flagger-rs")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn cli_ok(ns: &str, args: &[&str]) -> e2e::Result<String> {
    let (ok, stdout, stderr) = cli(ns, args)?;
    ensure!(ok, "flagger-rs {args:?} failed: {stderr}");
    Ok(stdout)
}

fn cli_json(ns: &str, args: &[&str]) -> e2e::Result<Value> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let text = cli_ok(ns, &args)?;
    serde_json::from_str(&text).with_context(|| format!("{args:?} printed {text}"))
}

/// The three subcommands at one phase: text and JSON agree with the canary's status.
fn check_subcommands(ns: &str, phase: &str, canary: &kube::api::DynamicObject) -> e2e::Result<()> {
    let status_text = cli_ok(ns, &["status", APP])?;
    ensure!(
        status_text.starts_with(&format!("{APP}.{ns}  {phase}")),
        "status at {phase}:\n{status_text}"
    );
    let view = cli_json(ns, &["status", APP])?;
    ensure!(view["phase"] == phase, "status JSON at {phase}: {view:#}");
    let weight = status(canary)["canaryWeight"].as_u64().unwrap_or(0);
    ensure!(
        view["canaryWeight"].as_u64() == Some(weight),
        "status JSON weight {} vs the Canary's {weight}",
        view["canaryWeight"]
    );
    let table = cli_ok(ns, &["status"])?;
    ensure!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("{APP}.{ns}")) && l.contains(phase)),
        "status table at {phase}:\n{table}"
    );
    let events = cli_ok(ns, &["events", APP])?;
    ensure!(
        events.contains("Synced") && events.lines().count() >= 2,
        "events at {phase}:\n{events}"
    );
    let events_json = cli_json(ns, &["events", APP])?;
    ensure!(
        events_json.as_array().is_some_and(|a| !a.is_empty()),
        "events JSON at {phase}: {events_json:#}"
    );
    let why = cli_ok(ns, &["why", APP])?;
    ensure!(
        why.starts_with(&format!("{APP}.{ns} is {phase}.")) && why.contains("Next:"),
        "why at {phase}:\n{why}"
    );
    let why_json = cli_json(ns, &["why", APP])?;
    ensure!(
        why_json["phase"] == phase,
        "why JSON at {phase}: {why_json:#}"
    );
    eprintln!("--- at {phase}:\n{status_text}\n{events}\n{why}");
    Ok(())
}

/// A tmux server of the test's own (its own socket), running `status --watch` in a pane.
struct Terminal {
    socket: String,
}

impl Terminal {
    fn start(ns: &str) -> e2e::Result<Terminal> {
        let terminal = Terminal {
            socket: format!("flagger-cli-{ns}"),
        };
        let command = format!(
            "{} status {APP} --watch -n {ns} --kubeconfig {}",
            binary()?.display(),
            kubeconfig()?
        );
        terminal.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "cli",
            "-x",
            "100",
            "-y",
            "24",
            &command,
        ])?;
        // The pane stays after the command exits, so a failure to start is read in the capture.
        terminal.tmux(&["set-option", "-t", "cli", "remain-on-exit", "on"])?;
        Ok(terminal)
    }

    fn tmux(&self, args: &[&str]) -> e2e::Result<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .context("running tmux (Debian's package; hack/cluster/up installs it)")?;
        ensure!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn capture(&self) -> e2e::Result<String> {
        self.tmux(&["capture-pane", "-p", "-t", "cli"])
    }

    /// The pane once every one of `want` is on it (a pane has no watch: a bounded poll).
    async fn frame_with(&self, want: &[&str]) -> e2e::Result<String> {
        let result = poll_until(&format!("a frame with {want:?}"), REDRAW, || async {
            let frame = self.capture()?;
            Ok(want.iter().all(|w| frame.contains(w)).then_some(frame))
        })
        .await;
        match result {
            Ok(frame) => Ok(frame),
            Err(e) => bail!("{e:#}\nlast frame:\n{}", self.capture().unwrap_or_default()),
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn canary(hooks: &HookCatcher) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": APP},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898, "targetPort": 9898},
            "analysis": {
                "interval": "1s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
                "webhooks": [
                    {"name": "step", "type": "confirm-traffic-increase", "url": hooks.at("/gate/step")},
                    {"name": "load-test", "url": hooks.at("/load")},
                ],
            },
        },
    })
}

/// Opens the step gate until the canary weight reaches `weight`, then closes it again.
async fn step_to(
    api: &Api<kube::api::DynamicObject>,
    hooks: &HookCatcher,
    weight: u64,
    controller: &Proc,
) -> e2e::Result<kube::api::DynamicObject> {
    hooks.open_gate("/gate/step");
    let reached = wait_canary(
        api,
        APP,
        &format!("weight {weight}"),
        RUN,
        controller,
        |o| status(o)["canaryWeight"].as_u64() == Some(weight),
    )
    .await;
    hooks.close_gate("/gate/step");
    reached
}

fn frames_file() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| e2e::repo_path("target"));
    target.join("cli-status-frames.txt")
}

#[tokio::test]
async fn cli_status_events_why_at_each_phase_and_watch_in_a_terminal() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("cli-status", |ns: TestNamespace| async move {
        e2e::controller::install_crds(&ns.client).await?;
        let hooks = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &[])?;
        let api = canaries(&ns);

        // Errors in the user's terms, before the canary exists.
        let (ok, _, stderr) = cli(&ns.name, &["status", APP])?;
        ensure!(
            !ok && stderr.trim()
                == format!(
                    "error: canaries.flagger.app \"{APP}\" not found in namespace {}",
                    ns.name
                ),
            "status of a missing canary: {stderr}"
        );
        let (ok, _, stderr) = cli(&ns.name, &["why", APP])?;
        ensure!(
            !ok && stderr.lines().count() == 1,
            "why of a missing canary: {stderr}"
        );

        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, canary(&hooks)).await?;
        let initialized = wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        check_subcommands(&ns.name, "Initialized", &initialized)?;

        let terminal = Terminal::start(&ns.name)?;
        let mut frames = vec![terminal.frame_with(&["Initialized"]).await?];

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, APP, "6.0.1").await?;
        let at_20 = step_to(&api, &hooks, 20, &controller).await?;
        check_subcommands(&ns.name, "Progressing", &at_20)?;
        frames.push(
            terminal
                .frame_with(&["Progressing", "step 1 of 3", " 20%"])
                .await?,
        );
        step_to(&api, &hooks, 40, &controller).await?;
        frames.push(
            terminal
                .frame_with(&["Progressing", "step 2 of 3", " 40%"])
                .await?,
        );

        hooks.open_gate("/gate/step");
        let succeeded = wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        frames.push(terminal.frame_with(&["Succeeded"]).await?);
        check_subcommands(&ns.name, "Succeeded", &succeeded)?;
        drop(terminal);

        // A revision whose load test fails: rolled back after two failed checks.
        hooks.answer("/load", 500);
        set_image(&deployments, APP, "6.0.2").await?;
        let failed = wait_phase(&api, APP, "Failed", RUN, &controller).await?;
        check_subcommands(&ns.name, "Failed", &failed)?;
        let why = cli_ok(&ns.name, &["why", APP])?;
        ensure!(
            why.contains("load-test"),
            "why names the failed webhook:\n{why}"
        );

        let recorded = frames.join("\n----- next frame -----\n");
        std::fs::write(frames_file(), &recorded)?;
        eprintln!("terminal frames:\n{recorded}");
        Ok(())
    })
    .await
}
