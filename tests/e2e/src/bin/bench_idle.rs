//! Idle cost of the controller (issue 6): for 1, 10 and 50 blue/green canaries (interval 10 s, Initialized and
//! left alone), the controller's RSS and CPU time (from /proc) and the API requests it makes over
//! `IDLE_SECONDS`. Prints numbers, asserts nothing. Run it inside the cluster's netns, normally through
//! `hack/bench idle`.
//!
//! API requests: the local API server has no audit log and `apiserver_request_total` has no user label, so the
//! controller's share is a difference: the non-WATCH requests counted by the API server during the idle window
//! with the controller running, minus those of an equally long window with no controller (the cluster's own
//! components: controller-manager, scheduler, kwok, Traefik, the testapp). Breakdown by verb and resource.
//!
//! Environment: `IDLE_COUNTS` ("1 10 50"), `IDLE_SECONDS` (60), `FLAGGER_RS_BIN`, `BENCH_OUT`.

use std::time::Duration;

use anyhow::{Context as _, bail};
use e2e::bench::{
    self, Child, Counts, Tracker, cpu_seconds, delta, free_port, now_ms, request_counts, rss_kib,
    total, wait_local,
};
use e2e::controller::{self as ctl, canaries, create_canary};
use e2e::objects::{APP_PORT, App};
use e2e::{TestNamespace, apply, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

/// Window of `secs` seconds with the controller in `ns` running (or none): API request deltas.
async fn window(client: &kube::Client, secs: u64) -> e2e::Result<Counts> {
    let a = request_counts(client).await?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let b = request_counts(client).await?;
    Ok(delta(&a, &b))
}

struct Row {
    count: usize,
    init_s: f64,
    rss_mib: f64,
    cpu_pct: f64,
    requests: f64,
    breakdown: Counts,
}

async fn one(ns: TestNamespace, count: usize, secs: u64, baseline: &Counts) -> e2e::Result<Row> {
    ctl::install_crds(&ns.client).await?;
    let deployments: kube::Api<Deployment> = ns.api();
    let names: Vec<String> = (0..count).map(|i| format!("idle-{i:02}")).collect();
    for name in &names {
        apply(&deployments, &App::new(name, "6.0.0", 1).deployment()?).await?;
        create_canary(
            &ns,
            json!({
                "apiVersion": "flagger.app/v1beta1",
                "kind": "Canary",
                "metadata": {"name": name},
                "spec": {
                    "provider": "kubernetes",
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "service": {"port": APP_PORT},
                    "analysis": {"interval": "10s", "threshold": 2, "iterations": 3},
                },
            }),
        )
        .await?;
    }
    let tracker = Tracker::start(canaries(&ns), deployments.clone());
    let kubeconfig = ctl::controller_kubeconfig()?;
    let t0 = now_ms();
    let mut controller = Child::spawn(
        &format!("controller-{count}"),
        &ctl::binary()?,
        &[
            "controller".into(),
            format!("-kubeconfig={}", kubeconfig.display()),
            format!("-namespace={}", ns.name),
            "-mesh-provider=kubernetes".into(),
            "-include-label-prefix=app.kubernetes.io".into(),
            format!("-port={}", free_port()?),
            "-log-level=info".into(),
        ],
    )?;
    let mut last = t0;
    for name in &names {
        let r = wait_local(
            &format!("{name} Initialized"),
            Duration::from_secs(300),
            || tracker.canary_after(name, 0.0, |r| r.phase == "Initialized"),
        )
        .await?;
        last = last.max(r.at_ms);
    }
    drop(tracker);
    // Settle: the last initialisation's writes and one tick.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu0 = cpu_seconds(controller.pid);
    let with = window(&ns.client, secs).await?;
    let cpu1 = cpu_seconds(controller.pid);
    controller.ensure_running()?;
    let rss = rss_kib(controller.pid).unwrap_or(0) as f64 / 1024.0;
    let mut breakdown = Counts::new();
    for (k, v) in &with {
        let d = v - baseline.get(k).copied().unwrap_or(0.0);
        if d >= 1.0 {
            breakdown.insert(k.clone(), d);
        }
    }
    Ok(Row {
        count,
        init_s: (last - t0) / 1000.0,
        rss_mib: rss,
        cpu_pct: (cpu1 - cpu0) / secs as f64 * 100.0,
        requests: (total(&with) - total(baseline)).max(0.0),
        breakdown,
    })
}

#[tokio::main]
async fn main() -> e2e::Result<()> {
    if std::env::var_os("KUBECONFIG").is_none() {
        bail!("KUBECONFIG is unset: run inside the cluster's netns (hack/bench does)");
    }
    let counts: Vec<usize> = std::env::var("IDLE_COUNTS")
        .unwrap_or_else(|_| "1 10 50".into())
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .filter(|n| *n <= 200)
        .collect();
    let secs: u64 = std::env::var("IDLE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
        .clamp(5, 600);
    println!("load average at start: {}", bench::loadavg());
    let client = e2e::client().await?;
    println!("baseline window: {secs} s with no controller");
    let baseline = window(&client, secs).await?;
    println!(
        "baseline: {} non-WATCH API requests ({:.2}/s)",
        total(&baseline),
        total(&baseline) / secs as f64
    );
    let mut rows = Vec::new();
    for &count in &counts {
        let base = baseline.clone();
        let cell = std::sync::Arc::new(std::sync::Mutex::new(None));
        let sink = cell.clone();
        tokio::time::timeout(
            Duration::from_secs(secs + 600),
            with_namespace("bench-idle", |ns| async move {
                let row = one(ns, count, secs, &base).await?;
                *sink.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(row);
                Ok(())
            }),
        )
        .await
        .with_context(|| format!("{count} canaries: timed out"))??;
        if let Some(row) = cell.lock().ok().and_then(|mut c| c.take()) {
            println!(
                "{} canaries: initialised in {:.1} s, RSS {:.1} MiB, CPU {:.2} %, {:.0} API requests in {secs} s",
                row.count, row.init_s, row.rss_mib, row.cpu_pct, row.requests
            );
            rows.push(row);
        }
    }
    let mut out = format!(
        "\n## flagger-rs idle cost ({secs} s window, canaries Initialized, interval 10s, kubernetes provider)\n\
         controller {}; load average at the end: {}\n\
         API requests = non-WATCH apiserver_request_total during the window minus a {secs} s window without \
         controller ({} requests)\n\n\
         | canaries | all Initialized after (s) | RSS (MiB) | CPU (% of a core) | API requests in window | per second | by verb/resource (above baseline) |\n|---|---|---|---|---|---|---|",
        ctl::binary()?.display(),
        bench::loadavg(),
        total(&baseline)
    );
    for r in &rows {
        let by = r
            .breakdown
            .iter()
            .map(|((verb, res), n)| format!("{verb} {res}: {n:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "\n| {} | {:.1} | {:.1} | {:.2} | {:.0} | {:.2} | {} |",
            r.count,
            r.init_s,
            r.rss_mib,
            r.cpu_pct,
            r.requests,
            r.requests / secs as f64,
            if by.is_empty() { "-".into() } else { by }
        ));
    }
    println!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT")
        && !path.is_empty()
    {
        std::fs::write(&path, &out).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}
