//! The controller's caches on the local cluster: a ConfigMap or Secret no canary references
//! reconciles no canary, and a referenced one still starts a run at once. Observed through the
//! controller's `flagger_watch_triggers_total{kind}` counter, not through timing. Run with
//! `hack/e2e caches` (skipped, passing, when FLAGGER_E2E is unset).

use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::bench::free_port;
use e2e::controller::{
    self as ctl, blue_green_canary, canaries, create_canary, deploy, start_controller, wait_phase,
};
use e2e::objects::App;
use e2e::{apply, poll_until, skip_unless_e2e, with_namespace};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use serde_json::json;

const APP: &str = "podinfo";
const INIT: Duration = Duration::from_secs(60);
/// Unrelated objects of each kind created while the canary is idle.
const UNRELATED: usize = 150;

/// `flagger_watch_triggers_total{kind="<kind>"}`, 0 before the first trigger.
async fn triggers(port: u16, kind: &str) -> e2e::Result<u64> {
    let (status, body) =
        e2e::traffic::get(&format!("http://127.0.0.1:{port}/metrics"), None).await?;
    ensure!(status == 200, "GET /metrics: HTTP {status}");
    let series = format!("flagger_watch_triggers_total{{kind=\"{kind}\"}} ");
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

fn config_map(name: &str, value: &str) -> e2e::Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"color": value},
    }))?)
}

fn secret(name: &str, value: &str) -> e2e::Result<Secret> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name}, "stringData": {"token": value},
    }))?)
}

/// Many unrelated ConfigMaps and Secrets are created, then the referenced ones edited: each kind's
/// watch delivers its events in order, so once the referenced edit has been counted every unrelated
/// one has been mapped too, and they must have asked for no reconcile. The edit still starts a run.
#[tokio::test]
async fn caches_unrelated_configs_reconcile_no_canary() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("caches-unrelated", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let port = free_port()?;
        let controller = start_controller(&ns.name, &[&format!("-port={port}")])?;
        let configmaps: Api<ConfigMap> = ns.api();
        let secrets: Api<Secret> = ns.api();
        apply(&configmaps, &config_map("podinfo-config", "blue")?).await?;
        apply(&secrets, &secret("podinfo-token", "one")?).await?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |d| {
            d["spec"]["template"]["spec"]["containers"][0]["envFrom"] = json!([
                {"configMapRef": {"name": "podinfo-config"}},
                {"secretRef": {"name": "podinfo-token"}},
            ]);
        })
        .await?;
        // Ticks 10 s apart: the run the ConfigMap edit starts is still Progressing when looked at.
        create_canary(&ns, blue_green_canary(APP, "10s", 3, json!([]))).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;

        for (kind, edit) in [("ConfigMap", 0), ("Secret", 1)] {
            let before = triggers(port, kind).await?;
            for i in 0..UNRELATED {
                let name = format!("unrelated-{i}");
                match edit {
                    0 => drop(apply(&configmaps, &config_map(&name, "x")?).await?),
                    _ => drop(apply(&secrets, &secret(&name, "x")?).await?),
                }
            }
            match edit {
                0 => drop(apply(&configmaps, &config_map("podinfo-config", "green")?).await?),
                _ => drop(apply(&secrets, &secret("podinfo-token", "two")?).await?),
            }
            // /metrics has no watch: a bounded poll until the referenced edit is counted.
            let after = poll_until(
                &format!("the {kind} edit reaching the canary"),
                INIT,
                || async move {
                    let n = triggers(port, kind).await?;
                    Ok((n > before).then_some(n))
                },
            )
            .await
            .with_context(|| controller.log_tail())?;
            eprintln!("{kind}: {UNRELATED} unrelated created, triggers {before} -> {after}");
            // The referenced object's edit, and the controller's own writes of the `-primary`
            // copies a run may make meanwhile; one per unrelated object before.
            ensure!(
                after - before < 10,
                "{kind}: {} canary reconciles asked for after {UNRELATED} unrelated objects",
                after - before
            );
            if kind == "ConfigMap" {
                // Detected: the referenced ConfigMap's new data is a new revision to analyse.
                wait_phase(&api, APP, "Progressing", INIT, &controller).await?;
            }
        }
        Ok(())
    })
    .await
}
