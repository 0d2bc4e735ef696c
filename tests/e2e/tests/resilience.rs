//! Restart safety and leader election on the local cluster (issue 6): the controller is
//! SIGKILLed where a crash hurts most (Initializing, Waiting, just before and just after a rollback) and a new one
//! must finish the job exactly once; two replicas with leader election hand over on a kill and on SIGTERM, and a
//! replica that loses its Lease stops. Run with `hack/e2e` (skipped, passing, when FLAGGER_E2E is unset).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use e2e::controller::{
    self as ctl, Proc, Recorder, blue_green_canary, canaries, count_events, create_canary, deploy,
    image_of, phase, set_image, start_controller_named, start_controller_with_env, wait_canary,
    wait_event, wait_phase, wait_replicas,
};
use e2e::hooks::HookCatcher;
use e2e::objects::{App, deployment_available};
use e2e::{TestNamespace, apply, poll_until, skip_unless_e2e, wait_for, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ResourceQuota, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt as _};
use serde_json::json;

const INIT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(90);
const APP: &str = "podinfo";
/// The Lease a controller restricted to one namespace elects itself on, in that namespace.
const LEASE: &str = "flagger-leader-election";
/// A new leader is wanted within 15 s of a kill: a 4 s lease, renewed every second.
const FAST_ELECTION: [&str; 4] = [
    "-enable-leader-election",
    "-leader-election-lease-duration=4s",
    "-leader-election-renew-deadline=3s",
    "-leader-election-retry-period=1s",
];
const HANDOVER: Duration = Duration::from_secs(15);

fn primary_name() -> String {
    format!("{APP}-primary")
}

/// The apex, primary and canary Services select primary, primary and target pods (the primary serves 100 %).
async fn services_route_to_primary(ns: &TestNamespace) -> e2e::Result<()> {
    let services: Api<Service> = ns.api();
    for (svc, selects) in [
        (APP.to_string(), primary_name()),
        (primary_name(), primary_name()),
        (format!("{APP}-canary"), APP.to_string()),
    ] {
        let s = services
            .get(&svc)
            .await
            .with_context(|| format!("Service {svc}"))?;
        let selector = s.spec.and_then(|s| s.selector).unwrap_or_default();
        ensure!(
            selector.get("app") == Some(&selects),
            "Service {svc} selector {selector:?}, want app={selects}"
        );
    }
    Ok(())
}

/// Fails unless exactly one event of the Canary starts with each prefix.
async fn once_each(ns: &TestNamespace, prefixes: &[&str]) -> e2e::Result<()> {
    for prefix in prefixes {
        let n = count_events(ns, APP, prefix).await?;
        if n != 1 {
            let all = ctl::events_for(ns, "Canary", APP).await?;
            bail!("{n} events {prefix:?}, want 1: {all:#?}");
        }
    }
    Ok(())
}

/// SIGKILL while Initializing: a ResourceQuota keeps the primary's pod from being created, so the
/// controller has created the primary and waits for it; after the restart (quota gone) the canary is initialised
/// with the same primary, written once, the Services routing to it and the target at 0.
#[tokio::test]
async fn killed_while_initializing_initialises_once() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("res-init", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let deployments: Api<Deployment> = ns.api();
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        wait_for(&deployments, APP, "available", INIT, deployment_available()).await?;
        // The target's pod is the one pod the namespace may have.
        let quotas: Api<ResourceQuota> = ns.api();
        let quota: ResourceQuota = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "one-pod"},
            "spec": {"hard": {"pods": "1"}},
        }))?;
        apply(&quotas, &quota).await?;
        wait_for(
            &quotas,
            "one-pod",
            "counting the target's pod",
            INIT,
            |q: Option<&ResourceQuota>| {
                q.and_then(|q| q.status.as_ref())
                    .and_then(|s| s.used.as_ref())
                    .and_then(|u| u.get("pods"))
                    .is_some_and(|p| p.0 == "1")
            },
        )
        .await?;

        let mut controller = start_controller_named(&ns.name, "controller-1", &[])?;
        create_canary(&ns, blue_green_canary(APP, "2s", 2, json!([]))).await?;
        let api = canaries(&ns);
        let recorder = Recorder::start(&api, APP);
        // The controller has created the primary and found it not ready: the middle of the initialisation.
        wait_event(&ns, APP, "primary not ready", INIT, &controller, |e| {
            e.message.as_deref().is_some_and(|m| {
                m.starts_with(&format!("{}.", primary_name())) && m.contains("not ready")
            })
        })
        .await?;
        // The event is recorded before the tick's status write.
        wait_canary(&api, APP, "Initializing", INIT, &controller, |o| {
            phase(o) == "Initializing"
        })
        .await?;
        let primary = deployments.get(&primary_name()).await?;
        let uid = primary.uid();
        controller.ensure_running()?;
        controller.kill().await?;

        quotas.delete("one-pod", &DeleteParams::default()).await?;
        let controller = start_controller_named(&ns.name, "controller-2", &[])?;
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        eprintln!("observed: {}", recorder.render());

        let primary = deployments.get(&primary_name()).await?;
        ensure!(
            primary.uid() == uid,
            "the primary was re-created: uid {:?}, was {uid:?}",
            primary.uid()
        );
        ensure!(
            primary.metadata.generation == Some(1),
            "primary generation {:?}: written again after the restart",
            primary.metadata.generation
        );
        ensure!(
            image_of(&primary).ends_with(":6.0.0"),
            "primary image {}",
            image_of(&primary)
        );
        let names: Vec<String> = deployments
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|d| d.name_any())
            .collect();
        ensure!(
            names.len() == 2,
            "Deployments {names:?}, want the target and one primary"
        );
        wait_replicas(&deployments, APP, 0, &controller).await?;
        services_route_to_primary(&ns).await?;
        once_each(&ns, &["Initialization done!"]).await?;
        Ok(())
    })
    .await
}

/// SIGKILL at closed gates: in Waiting (confirm-rollout) and in WaitingPromotion (confirm-promotion). Each
/// new controller asks the gate again and keeps waiting (target at 0 before the run, primary unchanged before the
/// promotion); once the gates open the run is started once and promoted once.
#[tokio::test]
async fn killed_at_closed_gates_keeps_them() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("res-wait", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let mut hooks = HookCatcher::start().await?;
        let mut controller = start_controller_named(&ns.name, "controller-1", &[])?;
        let (rollout, promotion) = ("/gate/rollout", "/gate/promotion");
        let spec_hooks = json!([
            {"name": "rollout-gate", "type": "confirm-rollout", "url": hooks.at(rollout)},
            {"name": "promotion-gate", "type": "confirm-promotion", "url": hooks.at(promotion)},
        ]);
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, blue_green_canary(APP, "1s", 2, spec_hooks)).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();
        let generation = deployments.get(&primary_name()).await?.metadata.generation;

        set_image(&deployments, APP, "6.0.1").await?;
        for (n, (gate, waiting)) in [(rollout, "Waiting"), (promotion, "WaitingPromotion")]
            .into_iter()
            .enumerate()
        {
            wait_phase(&api, APP, waiting, RUN, &controller).await?;
            controller.ensure_running()?;
            controller.kill().await?;
            hooks.drain();
            controller = start_controller_named(&ns.name, &format!("controller-{}", n + 2), &[])?;
            // The new controller has asked the closed gate again: it resumed waiting, not something else.
            hooks
                .next(gate, INIT)
                .await
                .with_context(|| format!("new controller log tail:\n{}", controller.log_tail()))?;
            ensure!(
                phase(&api.get(APP).await?) == waiting,
                "left {waiting} with the gate closed: {}",
                recorder.render()
            );
            let primary = deployments.get(&primary_name()).await?;
            ensure!(
                image_of(&primary).ends_with(":6.0.0"),
                "promoted at a closed gate: primary image {}",
                image_of(&primary)
            );
            if waiting == "Waiting" {
                let target = deployments.get(APP).await?;
                ensure!(
                    target.spec.as_ref().and_then(|s| s.replicas) == Some(0),
                    "target scaled up while the gate is closed"
                );
            }
            hooks.open_gate(gate);
        }
        wait_phase(&api, APP, "Succeeded", RUN, &controller).await?;
        eprintln!("observed: {}", recorder.render());
        ctl::ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        once_each(&ns, &["New revision detected", "Copying"]).await?;
        Ok(())
    })
    .await
}

/// SIGKILL around a rollback: once just before the decision (one failed check of two) and once while the
/// rollback's post-rollout hook is in flight, which is after the `Failed` status is written. The rollback is
/// decided, announced and notified once; the primary keeps the old image and all traffic, the target is at 0.
#[tokio::test]
async fn killed_around_a_rollback_rolls_back_once() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("res-rb", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let mut hooks = HookCatcher::start().await?;
        let mut controller = start_controller_named(&ns.name, "controller-1", &[])?;
        let spec_hooks = json!([
            {"name": "acceptance", "type": "pre-rollout", "url": hooks.at("/fail"), "timeout": "5s"},
            {"name": "notify", "type": "post-rollout", "url": hooks.at("/hold/post"), "timeout": "60s"},
        ]);
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        // Threshold 2; 3 s between ticks leaves time to kill between the first and the second failure.
        create_canary(&ns, blue_green_canary(APP, "3s", 3, spec_hooks)).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();

        set_image(&deployments, APP, "6.0.1").await?;
        let seen = wait_canary(&api, APP, "one failed check", RUN, &controller, |o| {
            ctl::step(o).failed_checks >= 1
        })
        .await?;
        ensure!(
            phase(&seen) == "Progressing" && ctl::step(&seen).failed_checks == 1,
            "not one check short of the rollback: {}",
            ctl::step(&seen)
        );
        controller.ensure_running()?;
        controller.kill().await?;
        let mut controller = start_controller_named(&ns.name, "controller-2", &[])?;

        hooks
            .next("/hold/post", RUN)
            .await
            .with_context(|| format!("controller-2 log tail:\n{}", controller.log_tail()))?;
        let at_hook = api.get(APP).await?;
        ensure!(
            phase(&at_hook) == "Failed",
            "the post-rollout hook was called before the Failed status was written (phase {:?})",
            phase(&at_hook)
        );
        controller.ensure_running()?;
        controller.kill().await?;
        let controller = start_controller_named(&ns.name, "controller-3", &[])?;

        // controller-3 acts on the next revision, so it has had its chance to repeat anything of the rollback.
        set_image(&deployments, APP, "6.0.2").await?;
        wait_canary(&api, APP, "Progressing on 6.0.2", INIT, &controller, |o| {
            phase(o) == "Progressing"
        })
        .await?;
        eprintln!("observed: {}", recorder.render());
        ensure!(
            hooks.count("/hold/post") == 1,
            "{} post-rollout calls for one rollback",
            hooks.count("/hold/post")
        );
        once_each(&ns, &["Rolling back", "Canary failed!"]).await?;
        let failed: Vec<_> = recorder
            .steps()
            .into_iter()
            .filter(|s| s.phase == "Failed")
            .collect();
        ensure!(
            failed.iter().all(|s| s.weight == 0),
            "canary weight left after the rollback: {}",
            recorder.render()
        );
        let primary = deployments.get(&primary_name()).await?;
        ensure!(
            image_of(&primary).ends_with(":6.0.0") && primary.metadata.generation == Some(1),
            "the primary was touched by the rollback: image {}, generation {:?}",
            image_of(&primary),
            primary.metadata.generation
        );
        services_route_to_primary(&ns).await?;
        Ok(())
    })
    .await
}

fn holder(lease: Option<&Lease>) -> Option<&str> {
    lease?.spec.as_ref()?.holder_identity.as_deref()
}

/// Waits (watch) until the Lease is held by `identity`.
async fn wait_holder(
    leases: &Api<Lease>,
    identity: &str,
    timeout: Duration,
    logs: &[&Proc],
) -> e2e::Result<Lease> {
    let want = identity.to_string();
    wait_for(
        leases,
        LEASE,
        &format!("held by {identity}"),
        timeout,
        move |l: Option<&Lease>| holder(l) == Some(want.as_str()),
    )
    .await
    .with_context(|| {
        logs.iter()
            .map(|p| format!("log tail:\n{}", p.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// A replica with a distinct identity `<name>_<pid>` (the controller uses `$HOSTNAME_<pid>`).
fn replica(ns: &TestNamespace, name: &str, election: &[&str]) -> e2e::Result<(Proc, String)> {
    let proc = start_controller_with_env(&ns.name, name, election, &[("HOSTNAME", name)])?;
    let pid = proc.pid().context("replica has no pid")?;
    Ok((proc, format!("{name}_{pid}")))
}

/// Waits until a follower has read the Lease and stands by (a process log has no watch: bounded poll).
async fn standing_by(follower: &Proc, leader: &str) -> e2e::Result<()> {
    poll_until("the follower standing by", Duration::from_secs(30), || {
        let log = follower.log();
        async move {
            Ok(log
                .lines()
                .any(|l| {
                    l.contains("another instance has been elected as leader") && l.contains(leader)
                })
                .then_some(()))
        }
    })
    .await
    .with_context(|| format!("follower log tail:\n{}", follower.log_tail()))
}

/// Two replicas: only the Lease holder acts (its log has every canary event, the follower's none); the
/// leader is SIGKILLed mid-run, the follower takes the Lease within 15 s and finishes the run, which promotes once
/// and never repeats or regresses a step.
#[tokio::test]
async fn leader_election_hands_over_on_kill() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("res-leader", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let leases: Api<Lease> = ns.api();
        let (mut a, id_a) = replica(&ns, "replica-a", &FAST_ELECTION)?;
        wait_holder(&leases, &id_a, INIT, &[&a]).await?;
        let (b, id_b) = replica(&ns, "replica-b", &FAST_ELECTION)?;
        standing_by(&b, &id_a).await?;

        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, blue_green_canary(APP, "2s", 4, json!([]))).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &a).await?;
        let recorder = Recorder::start(&api, APP);
        let deployments: Api<Deployment> = ns.api();
        let generation = deployments.get(&primary_name()).await?.metadata.generation;

        set_image(&deployments, APP, "6.0.1").await?;
        let seen = wait_canary(&api, APP, "Progressing with an iteration", RUN, &a, |o| {
            phase(o) == "Progressing" && ctl::step(o).iterations >= 1
        })
        .await?;
        a.ensure_running()?;
        ensure!(
            !b.log().contains(APP),
            "the follower acted on the canary while the leader ran; follower log tail:\n{}",
            b.log_tail()
        );
        a.kill().await?;
        let killed = Instant::now();
        let lease = wait_holder(&leases, &id_b, HANDOVER, &[&b]).await?;
        eprintln!(
            "killed the leader at {}; {id_b} took the Lease {:.1}s later",
            ctl::step(&seen),
            killed.elapsed().as_secs_f64()
        );
        let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions);
        ensure!(
            transitions == Some(1),
            "lease transitions {transitions:?}, want one hand-over"
        );

        wait_phase(&api, APP, "Succeeded", RUN, &b).await?;
        eprintln!("observed: {}", recorder.render());
        let log_a = a.log();
        let log_b = b.log();
        for (what, log, text) in [
            ("leader", &log_a, "Initialization done!"),
            ("leader", &log_a, "New revision detected"),
            ("successor", &log_b, "Promotion completed!"),
        ] {
            ensure!(log.contains(text), "the {what} did not log {text:?}");
        }
        ensure!(
            !log_a.contains("Promotion completed!"),
            "the killed leader promoted"
        );
        ctl::ensure_primary_promoted_once(&deployments, APP, "6.0.1", generation).await?;
        once_each(
            &ns,
            &["Initialization done!", "New revision detected", "Copying"],
        )
        .await?;
        let steps = recorder.steps();
        let iterations: Vec<i64> = steps
            .iter()
            .filter(|s| s.phase == "Progressing")
            .map(|s| s.iterations)
            .collect();
        ensure!(
            iterations.windows(2).all(|w| w[0] < w[1]),
            "an iteration repeated or regressed: {}",
            recorder.render()
        );
        recorder.ensure_promoted_once()?;
        wait_replicas(&deployments, APP, 0, &b).await?;
        Ok(())
    })
    .await
}

/// A leader stopped with SIGTERM gives its Lease up on the way out, so the follower takes over without waiting for
/// the lease to expire; a leader whose Lease is taken from it exits instead of acting on.
#[tokio::test]
async fn leader_releases_on_sigterm_and_stops_when_the_lease_is_taken() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("res-lease", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let leases: Api<Lease> = ns.api();
        // A lease far longer than any wait below: only a release explains a quick hand-over.
        let election = [
            "-enable-leader-election",
            "-leader-election-lease-duration=120s",
            "-leader-election-renew-deadline=10s",
            "-leader-election-retry-period=1s",
        ];
        let (mut a, id_a) = replica(&ns, "replica-a", &election)?;
        wait_holder(&leases, &id_a, INIT, &[&a]).await?;
        let (mut b, id_b) = replica(&ns, "replica-b", &election)?;
        standing_by(&b, &id_a).await?;

        let status = a.terminate(Duration::from_secs(20)).await?;
        ensure!(
            status.success(),
            "the leader exited with {status} on SIGTERM; log tail:\n{}",
            a.log_tail()
        );
        let after = leases.get(LEASE).await?;
        ensure!(
            holder(Some(&after)) != Some(id_a.as_str()),
            "the Lease still names the stopped leader: {:?}",
            after.spec
        );
        wait_holder(&leases, &id_b, Duration::from_secs(30), &[&b]).await?;

        // Someone else takes the Lease (as a replica would after a network partition): b must stop acting.
        // b renews every second, so a take-over can lose the compare-and-swap: try again on a conflict.
        let mut taken = None;
        for _ in 0..5 {
            let mut lease = leases.get(LEASE).await?;
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = Some("intruder".into());
                spec.lease_duration_seconds = Some(3600);
            }
            match leases.replace(LEASE, &PostParams::default(), &lease).await {
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                result => {
                    taken = Some(result.context("taking the Lease")?);
                    break;
                }
            }
        }
        ensure!(
            taken.is_some(),
            "the Lease kept changing under five take-over attempts"
        );
        let status = b.wait_exit(Duration::from_secs(30)).await?;
        ensure!(!status.success(), "the deposed leader exited with {status}");
        ensure!(
            b.log().contains("leadership lost"),
            "no 'leadership lost' in the log; tail:\n{}",
            b.log_tail()
        );
        Ok(())
    })
    .await
}
