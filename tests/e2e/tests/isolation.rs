//! One canary's webhook hangs for its whole timeout while 49 other canaries run their analysis on
//! the same controller: their ticks go on, on schedule. Run with `hack/e2e isolation` (skipped,
//! passing, when FLAGGER_E2E is unset).

use std::time::{Duration, Instant};

use anyhow::ensure;
use e2e::controller::{
    self as ctl, blue_green_canary, canaries, create_canary, deploy, phase, set_image,
    start_controller, wait_phase,
};
use e2e::hooks::{Call, HookCatcher};
use e2e::objects::App;
use e2e::{skip_unless_e2e, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;

const OTHERS: usize = 49;
const HUNG: &str = "hung";
const INTERVAL: Duration = Duration::from_secs(5);
const ITERATIONS: u32 = 4;
/// Longer than the others need to finish their runs: the hung hook is still waiting when they are
/// done, so everything they did happened during its wait.
const HOOK_TIMEOUT: Duration = Duration::from_secs(600);
const INIT: Duration = Duration::from_secs(180);
const RUN: Duration = Duration::from_secs(300);

/// How far each tick (a `rollout` hook call, made on every analysis tick) is from its canary's
/// schedule: the grid of `INTERVAL`s through the canary's first tick, nearest point.
fn lateness(calls: &[&Call]) -> Vec<Duration> {
    let Some(first) = calls.first() else {
        return Vec::new();
    };
    let interval = INTERVAL.as_secs_f64();
    calls
        .iter()
        .map(|call| {
            let since = call.received.duration_since(first.received).as_secs_f64();
            let off = since - (since / interval).round() * interval;
            Duration::from_secs_f64(off.abs())
        })
        .collect()
}

/// Before the hooks ran off the reconcile workers, the hung canary's tick held a worker for the
/// hook's whole timeout; with `-threadiness=1` that stopped every other canary. Now the others
/// promote while it waits, and the spread of their ticks around their schedule is printed (the
/// figure in docs/benchmarks.md).
#[tokio::test]
async fn isolation_a_hanging_webhook_holds_up_only_its_own_canary() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("isolation", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let mut catcher = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &["-threadiness=1"])?;
        let others: Vec<String> = (0..OTHERS).map(|i| format!("app-{i:02}")).collect();
        let interval = format!("{}s", INTERVAL.as_secs());
        for name in others.iter().map(String::as_str).chain([HUNG]) {
            deploy(&ns, &App::new(name, "6.0.0", 1), |_| {}).await?;
        }
        for name in &others {
            let hooks = json!([{"name": "tick", "type": "rollout", "url": catcher.at(&format!("/tick/{name}"))}]);
            create_canary(&ns, blue_green_canary(name, &interval, ITERATIONS, hooks)).await?;
        }
        let hang = json!([{"name": "hang", "type": "rollout", "url": catcher.at("/hold/hung"),
            "timeout": format!("{}s", HOOK_TIMEOUT.as_secs())}]);
        create_canary(&ns, blue_green_canary(HUNG, &interval, ITERATIONS, hang)).await?;
        let api = canaries(&ns);
        for name in others.iter().map(String::as_str).chain([HUNG]) {
            wait_phase(&api, name, "Initialized", INIT, &controller).await?;
        }

        let deployments: Api<Deployment> = ns.api();
        set_image(&deployments, HUNG, "6.0.1").await?;
        catcher.next("/hold/hung", RUN).await?;
        let hold_started = Instant::now();
        // New revisions spread over one interval, so the others' schedules do not all fall on
        // the same instants: what is measured is the hung hook's effect, not a pile-up of 49
        // ticks due at once on one worker. Pacing of the load, not synchronisation.
        let mut pace = tokio::time::interval(INTERVAL / OTHERS as u32);
        for name in &others {
            pace.tick().await;
            set_image(&deployments, name, "6.0.1").await?;
        }
        for name in &others {
            wait_phase(&api, name, "Succeeded", RUN, &controller).await?;
        }
        let others_done = hold_started.elapsed();

        ensure!(
            others_done < HOOK_TIMEOUT,
            "the others took {others_done:?}, longer than the hung hook's timeout: inconclusive"
        );
        let hung = api.get(HUNG).await?;
        ensure!(
            phase(&hung) == "Progressing" && catcher.count("/hold/hung") == 1,
            "the hung canary is {} after {} hook call(s); it should still wait for its first",
            phase(&hung),
            catcher.count("/hold/hung")
        );

        let calls = catcher.calls();
        let mut all = Vec::new();
        for name in &others {
            let path = format!("/tick/{name}");
            let ticks: Vec<&Call> = calls.iter().filter(|c| c.path == path).collect();
            // The first analysis tick runs the pre-rollout hooks, every later one the rollout hooks.
            ensure!(
                ticks.len() + 1 >= ITERATIONS as usize,
                "{name}: {} rollout hook calls in {ITERATIONS} iterations",
                ticks.len()
            );
            ensure!(
                ticks.iter().all(|t| t.received > hold_started),
                "{name} ticked before the hold began"
            );
            all.extend(lateness(&ticks));
        }
        all.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let pct = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize];
        eprintln!(
            "isolation: {OTHERS} canaries ({} ticks, interval {INTERVAL:?}, -threadiness=1) ran \
             while one webhook hung ({others_done:.1?} of its {HOOK_TIMEOUT:?} timeout): tick \
             lateness p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            all.len(),
            ms(pct(0.5)),
            ms(pct(0.99)),
            ms(pct(1.0))
        );
        Ok(())
    })
    .await
}
