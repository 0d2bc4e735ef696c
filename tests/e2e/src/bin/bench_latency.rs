//! Latency benchmark of the controller on the local cluster (issues 6 and 8): prints numbers, asserts nothing.
//! Run it inside the cluster's netns, normally through `hack/bench`.
//!
//! One namespace, one `flagger-rs controller` (kubernetes provider, `-slack-url` pointing at a loopback receiver),
//! one loadtester, and a private Prometheus + Alertmanager (deploy/monitoring/rules.yaml, the route of
//! deploy/monitoring/alertmanager.yaml with its Slack receiver replaced by a webhook to the bench's receiver).
//!
//! 1. Reaction: `REACTION_RUNS` blue/green canaries (interval 10 s, threshold 2, 10 iterations, no webhooks), each
//!    Initialized; one after the other, the target's image is changed and the bench times, through watches, the
//!    canary reaching `Progressing` and the target Deployment scaled up.
//! 2. Rollback (also 3 and 4): `ROLLBACK_RUNS` canaries with a pre-rollout webhook (the loadtester, `exit 1`) and
//!    threshold `BENCH_THRESHOLD`; one after the other the image is changed; timed: `Failed` and the target scaled
//!    to 0 (from the image change and from the decision, the controller's `Rolling back` log line), the
//!    Slack-format POST of the global notifier, and Alertmanager's webhook carrying `CanaryRollback` for it.
//!
//! Environment: `REACTION_RUNS` (20), `ROLLBACK_RUNS` (10), `BENCH_THRESHOLD` (1), `BENCH_INTERVAL` (10s, the
//! canaries' analysis interval), `PROM_INTERVAL` (10s: Prometheus scrape and rule evaluation interval),
//! `FLAGGER_RS_BIN` (controller binary, else target/debug/flagger-rs), `BENCH_OUT` (a file the final table is
//! also written to).

use std::time::Duration;

use anyhow::{Context as _, bail};
use e2e::bench::{
    self, Child, Receiver, TABLE_HEAD, Tracker, free_port, now_ms, parse_time_ms, row, rss_kib,
    wait_local,
};
use e2e::controller::{self as ctl, Loadtester, canaries, create_canary, set_image};
use e2e::monitoring::firing_rollbacks;
use e2e::objects::{APP_PORT, App};
use e2e::{PROMETHEUS, TestNamespace, apply, poll_until, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

fn env_num(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_str(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

struct Settings {
    reaction_runs: usize,
    rollback_runs: usize,
    threshold: usize,
    interval: String,
    prom_interval: String,
}

fn canary(name: &str, interval: &str, threshold: usize, iterations: u32, hooks: Value) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 120,
            "service": {"port": APP_PORT, "portDiscovery": true},
            "analysis": {
                "interval": interval,
                "threshold": threshold,
                "iterations": iterations,
                "webhooks": hooks,
            },
        },
    })
}

/// Samples in milliseconds, by measure.
#[derive(Default)]
struct Results {
    rows: Vec<(String, Vec<f64>)>,
    notes: Vec<String>,
}

impl Results {
    fn push(&mut self, what: &str, ms: f64) {
        match self.rows.iter_mut().find(|(w, _)| w == what) {
            Some((_, v)) => v.push(ms),
            None => self.rows.push((what.to_string(), vec![ms])),
        }
    }

    fn ensure(&mut self, what: &str) {
        if !self.rows.iter().any(|(w, _)| w == what) {
            self.rows.push((what.to_string(), Vec::new()));
        }
    }

    fn table(&self) -> String {
        let mut out = String::from(TABLE_HEAD);
        for (what, v) in &self.rows {
            out.push('\n');
            out.push_str(&row(what, v));
        }
        out
    }
}

/// Prometheus + Alertmanager of the bench, on free loopback ports.
struct Monitoring {
    _prometheus: Child,
    _alertmanager: Child,
    prometheus_url: String,
}

async fn start_monitoring(
    dir: &std::path::Path,
    metrics_port: u16,
    receiver: &str,
    interval: &str,
) -> e2e::Result<Monitoring> {
    // Rules: the shipped file; only the group interval is rewritten when another interval is asked for.
    let rules_src = e2e::repo_path("deploy/monitoring/rules.yaml");
    let rules_text = std::fs::read_to_string(&rules_src)?;
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        rules_text.replace(
            "    interval: 10s\n",
            &format!("    interval: {interval}\n"),
        ),
    )?;

    // Alertmanager: deploy/monitoring/alertmanager.yaml with the Slack receiver turned into a webhook to us.
    let am_src = e2e::repo_path("deploy/monitoring/alertmanager.yaml");
    let mut am: Value = serde_saphyr::from_str(&std::fs::read_to_string(&am_src)?)
        .with_context(|| format!("parsing {}", am_src.display()))?;
    let receivers = am
        .get_mut("receivers")
        .and_then(Value::as_array_mut)
        .context("alertmanager.yaml has no receivers")?;
    for r in receivers.iter_mut() {
        if r.get("slack_configs").is_some() {
            let name = r.get("name").cloned().unwrap_or(Value::Null);
            *r = json!({"name": name, "webhook_configs": [{"url": format!("{receiver}/alerts"), "send_resolved": false}]});
        }
    }
    let am_port = free_port()?;
    let am_cfg = dir.join("alertmanager.json");
    std::fs::write(&am_cfg, serde_json::to_string_pretty(&am)?)?;
    let mut alertmanager = Child::spawn(
        "alertmanager",
        std::path::Path::new("prometheus-alertmanager"),
        &[
            format!("--config.file={}", am_cfg.display()),
            format!("--storage.path={}", dir.join("am").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
    )?;

    let prom_port = free_port()?;
    let prom_cfg = dir.join("prometheus.json");
    std::fs::write(
        &prom_cfg,
        serde_json::to_string_pretty(&json!({
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [rules.display().to_string()],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [format!("127.0.0.1:{am_port}")]}]}]},
            "scrape_configs": [{"job_name": "flagger-rs",
                "static_configs": [{"targets": [format!("127.0.0.1:{metrics_port}")]}]}],
        }))?,
    )?;
    let mut prometheus = Child::spawn(
        "prometheus",
        std::path::Path::new("prometheus"),
        &[
            format!("--config.file={}", prom_cfg.display()),
            format!("--storage.tsdb.path={}", dir.join("prom").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
    )?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    for (what, url) in [
        (
            "alertmanager",
            format!("http://127.0.0.1:{am_port}/-/ready"),
        ),
        (
            "prometheus",
            format!("http://127.0.0.1:{prom_port}/-/ready"),
        ),
    ] {
        let http = http.clone();
        poll_until(what, Duration::from_secs(60), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                Ok(match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                })
            }
        })
        .await?;
    }
    alertmanager.ensure_running()?;
    prometheus.ensure_running()?;
    Ok(Monitoring {
        _prometheus: prometheus,
        _alertmanager: alertmanager,
        prometheus_url: format!("http://127.0.0.1:{prom_port}"),
    })
}

async fn bench(ns: TestNamespace, s: &Settings) -> e2e::Result<()> {
    ctl::install_crds(&ns.client).await?;
    let mut results = Results::default();
    let dir = std::env::temp_dir().join(format!("flagger-rs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let slack = Receiver::start().await?;
    let alerts = Receiver::start().await?;
    let metrics_port = free_port()?;
    let bin = ctl::binary()?;
    let kubeconfig = ctl::controller_kubeconfig()?;
    let controller_args = vec![
        "controller".to_string(),
        format!("-kubeconfig={}", kubeconfig.display()),
        format!("-namespace={}", ns.name),
        "-mesh-provider=kubernetes".to_string(),
        "-min-analysis-interval=1s".to_string(),
        "-include-label-prefix=app.kubernetes.io".to_string(),
        format!("-port={metrics_port}"),
        "-log-level=info".to_string(),
        "-zap-encoding=console".to_string(),
        format!("-slack-url={}/slack", slack.url),
        "-slack-channel=bench".to_string(),
    ];
    let mut controller = Child::spawn("controller", &bin, &controller_args)?;
    let monitoring = start_monitoring(&dir, metrics_port, &alerts.url, &s.prom_interval).await?;
    let lt = Loadtester::start(&ns.name).await?;
    let deployments: kube::Api<Deployment> = ns.api();
    let tracker = Tracker::start(canaries(&ns), deployments.clone());

    // All the canaries first, initialised together (the reaction runs then happen while the earlier ones are
    // progressing, as in a namespace with many canaries).
    let react: Vec<String> = (0..s.reaction_runs)
        .map(|i| format!("app-{i:02}"))
        .collect();
    let roll: Vec<String> = (0..s.rollback_runs).map(|i| format!("rb-{i:02}")).collect();
    let hooks = json!([{"name": "acceptance-test", "type": "pre-rollout", "url": lt.at("/"), "timeout": "5s",
        "metadata": {"type": "bash", "cmd": "echo failing on purpose; exit 1"}}]);
    let t_create = now_ms();
    for name in &react {
        apply(&deployments, &App::new(name, "6.0.0", 1).deployment()?).await?;
        create_canary(&ns, canary(name, &s.interval, 2, 10, json!([]))).await?;
    }
    for name in &roll {
        apply(&deployments, &App::new(name, "6.0.0", 1).deployment()?).await?;
        create_canary(
            &ns,
            canary(name, &s.interval, s.threshold, 10, hooks.clone()),
        )
        .await?;
    }
    let all: Vec<String> = react.iter().chain(roll.iter()).cloned().collect();
    let mut last_init = t_create;
    for name in &all {
        let r = wait_local(
            &format!("{name} Initialized"),
            Duration::from_secs(180),
            || tracker.canary_after(name, t_create, |r| r.phase == "Initialized"),
        )
        .await
        .with_context(|| format!("controller log: {}", controller.log.display()))?;
        last_init = last_init.max(r.at_ms);
    }
    controller.ensure_running()?;
    let rss_idle = rss_kib(controller.pid).unwrap_or(0);
    println!(
        "{} canaries Initialized {:.1} s after their creation; controller RSS {} MiB",
        all.len(),
        (last_init - t_create) / 1000.0,
        rss_idle / 1024
    );

    // 1. Reaction.
    for (i, name) in react.iter().enumerate() {
        // Spread the image changes over the canaries' 10 s tick.
        tokio::time::sleep(Duration::from_millis(700 + 370 * (i as u64 % 10))).await;
        let t0 = now_ms();
        set_image(&deployments, name, "6.0.1").await?;
        let t_patched = now_ms();
        let prog = wait_local(
            &format!("{name} Progressing"),
            Duration::from_secs(60),
            || tracker.canary_after(name, t0, |r| r.phase == "Progressing"),
        )
        .await?;
        let up = wait_local(
            &format!("{name} scaled up"),
            Duration::from_secs(60),
            || tracker.deployment_after(name, t0, |r| r.replicas >= 1),
        )
        .await?;
        results.push("1. image change → Progressing", prog.at_ms - t0);
        results.push("1. image change → canary scaled up", up.at_ms - t0);
        results.push("1. (patch request round trip)", t_patched - t0);
        println!(
            "reaction {name}: Progressing +{} s, scaled up +{} s",
            bench::secs(prog.at_ms - t0),
            bench::secs(up.at_ms - t0)
        );
    }
    controller.ensure_running()?;
    let rss_busy = rss_kib(controller.pid).unwrap_or(0);

    // 2-4. Rollbacks.
    e2e::monitoring::wait_scraped(
        &monitoring.prometheus_url,
        &format!("127.0.0.1:{metrics_port}"),
        Duration::from_secs(60),
    )
    .await?;
    let mut decisions: Vec<(String, f64)> = Vec::new();
    for (i, name) in roll.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(700 + 370 * (i as u64 % 10))).await;
        let t0 = now_ms();
        set_image(&deployments, name, "6.0.1").await?;
        let failed = wait_local(&format!("{name} Failed"), Duration::from_secs(120), || {
            tracker.canary_after(name, t0, |r| r.phase == "Failed")
        })
        .await
        .with_context(|| format!("controller log: {}", controller.log.display()))?;
        let up = tracker.deployment_after(name, t0, |r| r.replicas >= 1);
        let zero = wait_local(
            &format!("{name} scaled to 0"),
            Duration::from_secs(60),
            || {
                let from = up.as_ref().map_or(t0, |u| u.at_ms);
                tracker.deployment_after(name, from, |r| r.replicas == 0)
            },
        )
        .await?;
        let post = wait_local(
            &format!("{name} Slack POST"),
            Duration::from_secs(30),
            || {
                slack.hits().into_iter().find(|h| {
                    h.at_ms >= t0
                        && h.body.contains(&format!("{name}.{}", ns.name))
                        && h.body.contains("threshold reached")
                })
            },
        )
        .await;
        let log = controller.log_text();
        let decision = bench::log_time_ms(
            &log,
            &format!("Rolling back {name}.{}", ns.name),
            t0 - 1000.0,
        );
        let transition = parse_time_ms(&failed.transition);
        results.push("2. image change → Failed", failed.at_ms - t0);
        results.push("2. image change → canary scaled to 0", zero.at_ms - t0);
        if let Some(d) = decision {
            decisions.push((name.clone(), d));
            results.push("2. decision (log) → Failed seen", failed.at_ms - d);
            results.push("2. decision (log) → canary scaled to 0", zero.at_ms - d);
        } else {
            results.notes.push(format!(
                "{name}: no `Rolling back` line in the controller log"
            ));
        }
        match &post {
            Ok(h) => {
                if i == 0 {
                    println!("first Slack-format POST ({}): {}", h.path, h.body);
                }
                if let Some(d) = decision {
                    results.push("3. decision (log) → Slack POST", h.at_ms - d);
                }
                if let Some(tr) = transition {
                    results.push("3. Failed lastTransitionTime → Slack POST", h.at_ms - tr);
                }
                results.push("3. image change → Slack POST", h.at_ms - t0);
            }
            Err(e) => results.notes.push(format!("{name}: {e:#}")),
        }
        println!(
            "rollback {name}: Failed +{} s, scaled to 0 +{} s, decision {}, Slack {}",
            bench::secs(failed.at_ms - t0),
            bench::secs(zero.at_ms - t0),
            decision.map_or("?".into(), |d| format!("+{} s", bench::secs(d - t0))),
            post.as_ref().map_or("none".into(), |h| format!(
                "+{} s",
                bench::secs(h.at_ms - t0)
            ))
        );
    }
    results.ensure("3. decision (log) → Slack POST");

    // 4. Alertmanager webhook: one CanaryRollback group per target name.
    let am_deadline = Duration::from_secs(90);
    let pending = |hits: &[bench::Hit]| {
        decisions
            .iter()
            .filter(|(name, _)| {
                !hits.iter().any(|h| {
                    firing_rollbacks(&h.body)
                        .iter()
                        .any(|(n, _)| n == name.as_str())
                })
            })
            .count()
    };
    let _ = wait_local("every CanaryRollback", am_deadline, || {
        (pending(&alerts.hits()) == 0).then_some(())
    })
    .await;
    let hits = alerts.hits();
    for (name, d) in &decisions {
        let first = hits.iter().find_map(|h| {
            firing_rollbacks(&h.body)
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, starts)| (h.at_ms, starts))
        });
        match first {
            Some((at, starts)) => {
                results.push(
                    "4. decision (log) → Alertmanager webhook CanaryRollback",
                    at - d,
                );
                if let Some(st) = starts.as_deref().and_then(parse_time_ms) {
                    results.push("4. decision (log) → alert startsAt (scrape + eval)", st - d);
                    results.push("4. startsAt → webhook (notify + group_wait)", at - st);
                }
            }
            None => results.notes.push(format!(
                "{name}: no CanaryRollback at the receiver within {am_deadline:?}"
            )),
        }
    }
    results.ensure("4. decision (log) → Alertmanager webhook CanaryRollback");
    controller.ensure_running()?;
    let rss_end = rss_kib(controller.pid).unwrap_or(0);

    let out = format!(
        "\n## flagger-rs latency ({} reaction runs, {} rollback runs)\n\
         settings: kubernetes provider (blue/green), analysis interval {}, rollback threshold {} (pre-rollout \
         webhook exits 1), controller {}; Prometheus scrape = evaluation = rule group interval {}; Alertmanager \
         route of deploy/monitoring/alertmanager.yaml (group_wait 5s); load average at the end: {}\n\
         controller RSS: {} MiB idle with {} canaries, {} MiB after the reaction runs, {} MiB at the end\n\n{}\n{}",
        s.reaction_runs,
        s.rollback_runs,
        s.interval,
        s.threshold,
        bin.display(),
        s.prom_interval,
        bench::loadavg(),
        rss_idle / 1024,
        all.len(),
        rss_busy / 1024,
        rss_end / 1024,
        results.table(),
        results
            .notes
            .iter()
            .map(|n| format!("note: {n}\n"))
            .collect::<String>()
    );
    println!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT")
        && !path.is_empty()
    {
        std::fs::write(&path, &out).with_context(|| format!("writing {path}"))?;
    }
    drop(tracker);
    drop(monitoring);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[tokio::main]
async fn main() -> e2e::Result<()> {
    if std::env::var_os("KUBECONFIG").is_none() {
        bail!("KUBECONFIG is unset: run inside the cluster's netns (hack/bench does)");
    }
    let _ = PROMETHEUS; // the cluster's own Prometheus is left alone; the bench runs its own.
    let s = Settings {
        reaction_runs: env_num("REACTION_RUNS", 20),
        rollback_runs: env_num("ROLLBACK_RUNS", 10),
        threshold: env_num("BENCH_THRESHOLD", 1),
        interval: env_str("BENCH_INTERVAL", "10s"),
        prom_interval: env_str("PROM_INTERVAL", "10s"),
    };
    println!("load average at start: {}", bench::loadavg());
    // The whole bench is bounded: 30 canaries, 30 runs of at most a few minutes' waits each.
    tokio::time::timeout(
        Duration::from_secs(1800),
        with_namespace("bench", |ns| async move { bench(ns, &s).await }),
    )
    .await
    .context("bench timed out after 30 min")?
}
