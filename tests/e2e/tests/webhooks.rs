//! The webhook protocol on the local cluster: a receiver owned by the test
//! ([`e2e::hooks::HookCatcher`]) records every call of three runs of one canary and answers by path. Run with
//! `hack/e2e` (skipped, passing, when FLAGGER_E2E is unset).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::ensure;
use e2e::controller::{
    self as ctl, blue_green_canary, canaries, create_canary, deploy, set_image, start_controller,
    wait_phase,
};
use e2e::hooks::{Call, HookCatcher};
use e2e::objects::App;
use e2e::{skip_unless_e2e, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};

const INIT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(90);
const APP: &str = "podinfo";
/// The pre-rollout receiver whose answer each run sets.
const ACCEPTANCE: &str = "/acceptance";

fn field<'a>(call: &'a Call, key: &str) -> &'a str {
    call.body
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn meta<'a>(call: &'a Call, key: &str) -> &'a str {
    call.body
        .get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Hooks of one run: every type, a 202 and a once-failing receiver with retries, placeholders.
fn hooks_with(catcher: &HookCatcher) -> Value {
    json!([
        {"name": "confirm", "type": "confirm-rollout", "url": catcher.at("/ok/confirm-rollout")},
        {"name": "acceptance", "type": "pre-rollout", "url": catcher.at(ACCEPTANCE)},
        {"name": "flaky", "type": "pre-rollout", "url": catcher.at("/flaky/1"), "retries": 2},
        {"name": "load", "type": "rollout", "url": catcher.at("/ok/rollout"),
         "metadata": {"cmd": "echo {{ canaryWeight }}", "literal": "{{ .metadata.name }}"}},
        {"name": "promote", "type": "confirm-promotion", "url": catcher.at("/ok/confirm-promotion")},
        {"name": "post", "type": "post-rollout", "url": catcher.at("/ok/post-rollout")},
        {"name": "complete", "type": "event", "url": catcher.at("/ok/complete"),
         "metadata": {"eventType": "analysis-complete"}},
    ])
}

/// Run 1 passes (a 202 and a receiver that fails once but has `retries: 2`), runs 2 and 3 fail on a
/// pre-rollout receiver answering 203 and then 204. Every call is a JSON POST with name, namespace, phase and a
/// checksum that is the same within a run and differs between revisions; placeholders are filled, unknown ones
/// kept; post-rollout and the analysis-complete event hook are called once per run, with the run's outcome.
#[tokio::test]
async fn webhook_calls_follow_the_protocol() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("hooks-proto", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let mut catcher = HookCatcher::start().await?;
        let controller = start_controller(&ns.name, &[])?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, blue_green_canary(APP, "1s", 2, hooks_with(&catcher))).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        let deployments: Api<Deployment> = ns.api();

        let mut runs: Vec<Vec<Call>> = Vec::new();
        for (version, code, outcome) in [
            ("6.0.1", 202, "Succeeded"),
            ("6.0.2", 203, "Failed"),
            ("6.0.3", 204, "Failed"),
        ] {
            catcher.answer(ACCEPTANCE, code);
            let seen = catcher.calls().len();
            set_image(&deployments, APP, version).await?;
            wait_phase(&api, APP, outcome, RUN, &controller).await?;
            // Both are sent after the status write.
            let done = runs.len() + 1;
            catcher.wait_count("/ok/post-rollout", done, RUN).await?;
            catcher.wait_count("/ok/complete", done, RUN).await?;
            let calls = catcher.calls().split_off(seen);
            for call in calls.iter().filter(|c| c.path == "/ok/post-rollout") {
                ensure!(
                    field(call, "phase") == outcome,
                    "post-rollout phase {:?} after a {outcome} run",
                    field(call, "phase")
                );
            }
            for call in calls.iter().filter(|c| c.path == "/ok/complete") {
                eprintln!("{version}: analysis-complete call {}", call.body);
            }
            runs.push(calls);
        }

        let mut checksums = Vec::new();
        for (n, calls) in runs.iter().enumerate() {
            let paths: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
            eprintln!("run {}: {paths:?}", n + 1);
            for call in calls {
                ensure!(
                    call.method == "POST" && call.content_type.starts_with("application/json"),
                    "{} {} with content type {:?}",
                    call.method,
                    call.path,
                    call.content_type
                );
                ensure!(
                    field(call, "name") == APP
                        && field(call, "namespace") == ns.name
                        && !field(call, "phase").is_empty()
                        && !field(call, "checksum").is_empty(),
                    "call to {} lacks a protocol field: {}",
                    call.path,
                    call.body
                );
            }
            let count = |path: &str| calls.iter().filter(|c| c.path == path).count();
            ensure!(
                count("/ok/post-rollout") == 1 && count("/ok/complete") == 1,
                "run {}: {} post-rollout and {} analysis-complete calls",
                n + 1,
                count("/ok/post-rollout"),
                count("/ok/complete")
            );
            // confirm-rollout is asked before the run adopts the new revision.
            let sums: BTreeSet<&str> = calls
                .iter()
                .filter(|c| c.path != "/ok/confirm-rollout")
                .map(|c| field(c, "checksum"))
                .collect();
            ensure!(
                sums.len() == 1,
                "run {}: checksums {sums:?} within one revision",
                n + 1
            );
            checksums.extend(sums.into_iter().map(String::from));
        }
        let distinct: BTreeSet<&String> = checksums.iter().collect();
        ensure!(
            distinct.len() == 3,
            "checksums {checksums:?}: three revisions should give three"
        );

        let run1 = &runs[0];
        let count = |path: &str| run1.iter().filter(|c| c.path == path).count();
        ensure!(
            count("/flaky/1") >= 2,
            "the once-failing receiver was called {} times",
            count("/flaky/1")
        );
        let rollouts: Vec<&Call> = run1.iter().filter(|c| c.path == "/ok/rollout").collect();
        ensure!(!rollouts.is_empty(), "no rollout hook call");
        for call in rollouts {
            ensure!(
                meta(call, "cmd") == "echo 0" && meta(call, "literal") == "{{ .metadata.name }}",
                "rollout metadata {}",
                call.body
            );
        }
        for (n, code) in [(1, 203), (2, 204)] {
            ensure!(
                runs[n].iter().all(|c| c.path != "/ok/rollout"),
                "run {}: analysis went on past a pre-rollout answered {code}",
                n + 1
            );
        }
        Ok(())
    })
    .await
}
