//! The binary started the way Flagger is started (issue 14): Flagger's chart runs `./flagger` with
//! Go-style flags and no subcommand, so the binary is run through a symlink named `flagger`; and the
//! `-control-loop-interval` resync, which must reconcile idle canaries from the caches, asking the
//! API server nothing. Run with `hack/e2e invocation` (skipped, passing, when FLAGGER_E2E is unset).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{
    self as ctl, Proc, blue_green_canary, canaries, create_canary, deploy, start_controller,
    wait_phase, wait_replicas,
};
use e2e::objects::App;
use e2e::{TestNamespace, poll_until, skip_unless_e2e, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

const INIT: Duration = Duration::from_secs(60);
const APP: &str = "podinfo";

fn flagger_symlink() -> e2e::Result<PathBuf> {
    ctl::program_symlink("flagger")
}

async fn initialised(ns: &TestNamespace, controller: &Proc) -> e2e::Result<()> {
    deploy(ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
    create_canary(ns, blue_green_canary(APP, "2s", 2, json!([]))).await?;
    wait_phase(&canaries(ns), APP, "Initialized", INIT, controller).await?;
    Ok(())
}

/// `./flagger -log-level=info -mesh-provider=kubernetes -metrics-server=… -enable-config-tracking=true
/// -kubeconfig-qps=… -kubeconfig-burst=…` as Flagger's chart renders it (plus the namespace and the
/// kubeconfig a pod would have, a free port, and `-ingress-class`, which the chart passes when set
/// and which has no effect here): the controller runs, initialises a canary, and names the flag it
/// does not act on in a warning.
#[tokio::test]
async fn invocation_as_flagger_with_the_charts_flags_runs_the_controller() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("invocation", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let flagger = flagger_symlink()?;
        let kubeconfig = ctl::controller_kubeconfig()?;
        let args: Vec<String> = vec![
            "-log-level=info".into(),
            "-mesh-provider=kubernetes".into(),
            "-metrics-server=http://127.0.0.1:1".into(),
            "-enable-config-tracking=true".into(),
            "-kubeconfig-qps=20".into(),
            "-kubeconfig-burst=40".into(),
            "-ingress-class=contour".into(),
            format!("-namespace={}", ns.name),
            format!("-kubeconfig={}", kubeconfig.display()),
            "-port=0".into(),
        ];
        let controller = Proc::spawn_program(
            &format!("flagger ({})", ns.name),
            &format!("{}-flagger", ns.name),
            &flagger,
            &args,
            &[],
        )?;
        initialised(&ns, &controller).await?;
        wait_replicas(&ns.api::<Deployment>(), APP, 0, &controller).await?;
        let log = controller.log();
        ensure!(
            log.contains("-ingress-class=contour has no effect with mesh provider kubernetes"),
            "no start-up warning naming -ingress-class; log tail:\n{}",
            controller.log_tail()
        );
        ensure!(
            !log.contains("\"level\":\"DEBUG\""),
            "-log-level=info still logs at debug; log tail:\n{}",
            controller.log_tail()
        );
        Ok(())
    })
    .await
}

const RESYNC: &str = "resync: reconciling every canary";

fn resyncs(log: &str) -> usize {
    log.matches(RESYNC).count()
}

/// Waits until the controller has logged `count` resyncs in all (the log is a file: no watch).
async fn wait_resyncs(controller: &Proc, count: usize) -> e2e::Result<String> {
    poll_until(
        &format!("{count} resyncs"),
        Duration::from_secs(30),
        || async {
            let log = controller.log();
            Ok((resyncs(&log) >= count).then_some(log))
        },
    )
    .await
    .with_context(|| format!("log tail:\n{}", controller.log_tail()))
}

/// With `-control-loop-interval=1s` an idle canary is reconciled every second, and those
/// reconciles read the watch caches: between three resyncs the controller sends the API server no
/// request but its long-running watches.
#[tokio::test]
async fn invocation_resyncs_of_an_idle_canary_send_no_api_request() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("resync", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let controller = start_controller(&ns.name, &["-control-loop-interval=1s"])?;
        initialised(&ns, &controller).await?;
        wait_replicas(&ns.api::<Deployment>(), APP, 0, &controller).await?;
        // Two resyncs to let the initialisation's last writes and their watch events settle.
        let settled = resyncs(&wait_resyncs(&controller, resyncs(&controller.log()) + 2).await?);
        let before = controller.log();
        let window_start = before.rfind(RESYNC).context("no resync line in the log")?;
        let after = wait_resyncs(&controller, settled + 3).await?;
        let window = &after[window_start..after.rfind(RESYNC).unwrap_or(after.len())];
        let requests: Vec<&str> = window
            .lines()
            .filter(|l| l.contains("API request") && !l.contains("watch=true"))
            .collect();
        ensure!(
            requests.is_empty(),
            "{} API requests during 3 resyncs of an idle canary:\n{}",
            requests.len(),
            requests.join("\n")
        );
        Ok(())
    })
    .await
}
