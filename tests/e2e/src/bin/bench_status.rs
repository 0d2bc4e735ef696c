//! `flagger-rs status` against many canaries (issue 19): `STATUS_COUNT` (1000) Canaries in one namespace,
//! each with a Progressing status carrying check records (written through the status subresource, as the
//! controller leaves them), then `flagger-rs status -n <ns>` run `STATUS_RUNS` (5) times in text and in JSON,
//! wall time per run from process start to exit. Prints numbers, asserts nothing about time. Run it inside the
//! cluster's netns, normally through `hack/bench status`.
//!
//! Environment: `STATUS_COUNT`, `STATUS_RUNS`, `FLAGGER_RS_BIN`, `BENCH_OUT` (a file the table is also written to).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use e2e::bench::{row, summarize};
use e2e::controller::{self as ctl, canaries};
use e2e::{TestNamespace, with_namespace};
use futures::StreamExt as _;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

/// Requests the bench keeps in flight while it creates the canaries.
const IN_FLIGHT: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn canary(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": format!("app-{i:04}")},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("app-{i:04}")},
            "service": {"port": 9898},
            "analysis": {
                "interval": "30s", "threshold": 5, "stepWeight": 10, "maxWeight": 50,
                "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}],
            },
        },
    })
}

fn progressing(i: usize) -> serde_json::Value {
    let weight = 10 * (i % 5 + 1);
    json!({"status": {
        "phase": "Progressing", "canaryWeight": weight, "failedChecks": i % 3, "iterations": 0,
        "lastTransitionTime": "2026-12-05T03:00:00Z", "lastAppliedSpec": "new", "lastPromotedSpec": "old",
        "canaryAnalysis": {"iterations": [{
            "iteration": 3, "time": "2026-12-05T03:00:00Z", "kind": "metric",
            "name": "request-success-rate", "value": 99.5, "threshold": "min 99", "failed": false
        }]},
    }})
}

async fn create_all(ns: &TestNamespace, count: usize) -> anyhow::Result<()> {
    let api = canaries(ns);
    let make = |i: usize| {
        let api = api.clone();
        async move {
            let obj: DynamicObject = serde_json::from_value(canary(i))?;
            let name = obj.metadata.name.clone().unwrap_or_default();
            api.create(&PostParams::default(), &obj).await?;
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(progressing(i)),
            )
            .await?;
            anyhow::Ok(())
        }
    };
    let mut results = futures::stream::iter((0..count).map(make)).buffer_unordered(IN_FLIGHT);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}

/// One `flagger-rs status` run: its wall time in milliseconds and the lines it printed.
fn run_status(ns: &str, output: &str) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let out = Command::new(ctl::binary()?)
        .args(["status", "-n", ns, "-o", output])
        .output()
        .context("running flagger-rs status")?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    ensure!(
        out.status.success(),
        "flagger-rs status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((ms, out.stdout.iter().filter(|b| **b == b'\n').count()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("KUBECONFIG").is_none() {
        bail!("KUBECONFIG is unset: run inside the cluster's netns (hack/bench does)");
    }
    let count = env_usize("STATUS_COUNT", 1000);
    let runs = env_usize("STATUS_RUNS", 5);
    let cell = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = cell.clone();
    tokio::time::timeout(
        Duration::from_secs(1800),
        with_namespace("bench-status", |ns| async move {
            ctl::install_crds(&ns.client).await?;
            let created = Instant::now();
            create_all(&ns, count).await?;
            println!("{count} canaries created in {:.1} s", created.elapsed().as_secs_f64());
            let mut table = format!(
                "\n## `flagger-rs status` against {count} canaries\n\n\
                 | output | runs | min (s) | p50 (s) | p90 (s) | p99 (s) | max (s) |\n|---|---|---|---|---|---|---|"
            );
            for output in ["text", "json"] {
                let mut times = Vec::new();
                for _ in 0..runs {
                    let (ms, lines) = run_status(&ns.name, output)?;
                    // The table has a header line and one line per canary.
                    if output == "text" {
                        ensure!(lines == count + 1, "status printed {lines} lines for {count} canaries");
                    }
                    times.push(ms);
                }
                table.push('\n');
                table.push_str(&row(output, &times));
                if let Some(s) = summarize(&times) {
                    println!("status -o {output}: p50 {:.3} s, max {:.3} s", s.p50 / 1000.0, s.max / 1000.0);
                }
            }
            *sink.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = table;
            Ok(())
        }),
    )
    .await
    .context("timed out")??;
    let table = cell
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    println!("{table}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(path, &table)?;
    }
    Ok(())
}
