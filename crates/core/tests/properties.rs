//! Invariants over random specs and random observation sequences.

mod common;

use common::{Harness, Obs, ok, spec_with, waiting};
use flagger_api::status::CanaryPhase;
use flagger_core::plan::plan;
use flagger_core::status::StatusExt;
use flagger_core::{Action, Outcome, Readiness, RolloutSpec, Routes, Settings};
use proptest::prelude::*;
use serde_json::{Value, json};

fn hooks() -> impl Strategy<Value = Vec<Value>> {
    let kinds = [
        "pre-rollout",
        "rollout",
        "confirm-promotion",
        "confirm-traffic-increase",
        "rollback",
        "post-rollout",
    ];
    proptest::sample::subsequence(kinds.to_vec(), 0..=kinds.len()).prop_map(|ks| {
        ks.into_iter()
            .map(|k| json!({"name": format!("{k}-hook"), "type": k, "url": "http://lt/"}))
            .collect()
    })
}

fn analysis() -> impl Strategy<Value = Value> {
    let canary =
        (1u32..=60, 0u32..=100).prop_map(|(s, m)| json!({"stepWeight": s, "maxWeight": m}));
    let ladder = proptest::collection::btree_set(1u32..=150, 1..6)
        .prop_map(|set| json!({"stepWeights": set.into_iter().collect::<Vec<_>>()}));
    let ab = (1u32..=12)
        .prop_map(|n| json!({"iterations": n, "match": [{"headers": {"x": {"exact": "y"}}}]}));
    let bg = (1u32..=12).prop_map(|n| json!({"iterations": n}));
    let strategy = prop_oneof![canary, ladder, ab, bg];
    let mirror = prop_oneof![
        Just(json!({})),
        (0u32..=100).prop_map(|w| json!({"mirror": true, "mirrorWeight": w})),
        (1u32..=50, 1u32..=5).prop_map(|(step, k)| json!({
            "mirror": true, "mirrorWeight": 0,
            "canaryAnalysis": {"stepWeightPromotion": step, "iterations": k}
        })),
    ];
    (
        strategy,
        mirror,
        0i64..=5,
        0u32..=60,
        hooks(),
        prop_oneof![Just("0s"), Just("90s")],
    )
        .prop_map(|(mut a, m, threshold, spw, hooks, delay)| {
            for (k, v) in m.as_object().into_iter().flatten() {
                a[k] = v.clone();
            }
            a["threshold"] = json!(threshold);
            a["stepWeightPromotion"] = json!(spw);
            a["webhooks"] = Value::Array(hooks);
            a["delay"] = json!(delay);
            a
        })
}

fn rollout(dry_run: bool) -> impl Strategy<Value = RolloutSpec> {
    (
        analysis(),
        prop_oneof![
            Just("istio"),
            Just("linkerd"),
            Just("kubernetes"),
            Just("gatewayapi:v1")
        ],
    )
        .prop_map(move |(a, provider)| {
            let settings = Settings {
                dry_run,
                ..Settings::default()
            };
            spec_with(json!({"provider": provider}), a, &settings)
        })
}

/// One tick's observation: mostly healthy, sometimes anything that can happen.
fn observation() -> impl Strategy<Value = (Obs, bool)> {
    let fail = |o: Obs, h: &'static str| o.fail(h);
    prop_oneof![
        10 => Just((ok(), false)),
        2 => Just((ok().metric("request-success-rate", 50.0), false)),
        1 => Just((fail(ok(), "rollout-hook"), false)),
        1 => Just((fail(ok(), "pre-rollout-hook"), false)),
        1 => Just((fail(ok(), "confirm-promotion-hook"), false)),
        1 => Just((fail(ok(), "confirm-traffic-increase-hook"), false)),
        1 => Just((ok().rollback("rollback-hook"), false)),
        1 => Just((ok().canary(waiting("rolling")), false)),
        1 => Just((ok().canary(Readiness::Failed { message: "deadline".into() }), false)),
        1 => Just((ok().primary(waiting("rolling")), false)),
        1 => Just((ok().primary(Readiness::Failed { message: "deadline".into() }), false)),
        1 => Just((ok(), true)),
    ]
}

fn sets_routes(actions: &[Action]) -> impl Iterator<Item = &Routes> {
    actions.iter().filter_map(|a| match a {
        Action::SetRoutes(r) => Some(r),
        Action::DryRun(inner) => match inner.as_ref() {
            Action::SetRoutes(r) => Some(r),
            _ => None,
        },
        _ => None,
    })
}

fn check_tick(h: &Harness, threshold: u32, failed_before: u32) -> Result<(), TestCaseError> {
    let actions = &h.last_actions;
    for r in sets_routes(actions) {
        prop_assert_eq!(r.primary + r.canary, 100, "routes {:?}", r);
    }
    prop_assert!(h.status.weight() <= 100);
    let promoted = actions.iter().any(|a| {
        matches!(a, Action::Promote) || matches!(a, Action::DryRun(b) if **b == Action::Promote)
    });
    let skipped = actions
        .iter()
        .any(|a| matches!(a, Action::Report(Outcome::Succeeded { skipped: true })));
    if promoted && !skipped {
        prop_assert!(
            failed_before < threshold && h.status.failed() < threshold,
            "promoted with failed checks"
        );
    }
    if let Some(Action::Report(Outcome::RolledBack { .. })) = actions
        .iter()
        .find(|a| matches!(a, Action::Report(Outcome::RolledBack { .. })))
    {
        let last_routes = sets_routes(actions).last().copied();
        prop_assert_eq!(last_routes, Some(Routes::PRIMARY));
        let scaled = actions.iter().any(|a| {
            matches!(a, Action::ScaleTargetToZero)
                || matches!(a, Action::DryRun(b) if **b == Action::ScaleTargetToZero)
        });
        prop_assert!(scaled, "rollback without scale-down: {:?}", h.last);
        prop_assert_eq!(h.status.phase_or_new(), CanaryPhase::Failed);
        prop_assert_eq!(
            (h.status.weight(), h.status.failed(), h.status.iter()),
            (0, 0, 0)
        );
    }
    if h.spec.dry_run {
        for a in actions {
            prop_assert!(!a.is_effect(), "dry-run emitted {:?}", a);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn invariants_hold_over_random_runs(
        spec in rollout(false),
        ticks in proptest::collection::vec(observation(), 1..80),
    ) {
        let threshold = spec.threshold;
        let mut h = Harness::initialized(spec);
        let mut n = 2;
        for (obs, new_revision) in ticks {
            if new_revision {
                n += 1;
                h.revision = format!("r1.{n}");
            }
            let failed_before = h.status.failed();
            h.run(obs);
            check_tick(&h, threshold, failed_before)?;
        }
    }

    #[test]
    fn dry_run_never_touches_traffic_or_workloads(
        spec in rollout(true),
        ticks in proptest::collection::vec(observation(), 1..60),
    ) {
        let threshold = spec.threshold;
        let mut h = Harness::new(spec);
        for (obs, new_revision) in ticks {
            if new_revision {
                h.revision = format!("r1.{}", h.now.as_second());
            }
            let failed_before = h.status.failed();
            h.run(obs);
            check_tick(&h, threshold, failed_before)?;
        }
    }

    #[test]
    fn all_healthy_reaches_succeeded_within_the_planned_ticks(spec in rollout(false)) {
        let planned = plan(&spec, None);
        let promote_after = planned.promote_after_seconds;
        prop_assert!(promote_after.is_some(), "plan never promotes: {:?}", planned.steps.last());
        let planned_ticks = planned.steps.len();
        let mut h = Harness::initialized(spec.clone());
        let mut ticks = 0;
        while h.phase() != CanaryPhase::Succeeded {
            h.run(ok());
            ticks += 1;
            prop_assert!(ticks <= planned_ticks, "not Succeeded after {} ticks", ticks);
            check_tick(&h, spec.threshold, 0)?;
        }
        prop_assert_eq!(ticks, planned_ticks);
        // An independent bound: run start, first tick, every step, the promotion, the traffic
        // shift back and finalisation, plus the warm-up hold.
        let steps = match &spec.strategy {
            flagger_core::Strategy::Canary(l) => {
                let mut w = 0;
                let mut k = 0;
                while w < l.max() { w += l.next_step(w); k += 1; }
                k + spec.mirror.as_ref().map_or(0, |m| m.iterations())
            }
            flagger_core::Strategy::AbTesting { iterations } => *iterations,
            flagger_core::Strategy::BlueGreen { iterations } => iterations + 1,
        } as usize;
        let spw = spec.step_weight_promotion as usize;
        let shift = if spw == 0 { 1 } else { 100usize.div_ceil(spw) };
        let hold = if spec.delay.is_zero() { 0 } else { 2 + (spec.delay.as_secs() / spec.interval.as_secs()) as usize };
        prop_assert!(ticks <= 3 + steps + shift + 1 + hold, "{} ticks for {:?}", ticks, spec.strategy);
    }

    #[test]
    fn resuming_from_the_status_alone_changes_nothing(
        spec in rollout(false),
        ticks in proptest::collection::vec(observation(), 1..40),
        cut in 0usize..40,
    ) {
        // A controller killed between two ticks restarts with only the persisted status (round
        // tripped through JSON) and must decide exactly as the one that kept running.
        let mut a = Harness::initialized(spec.clone());
        let mut b = Harness::initialized(spec);
        for (i, (obs, _)) in ticks.into_iter().enumerate() {
            if i == cut {
                let json = serde_json::to_string(&a.status).expect("status serialises");
                b.status = serde_json::from_str(&json).expect("status deserialises");
            }
            a.run(obs.clone());
            b.run(obs);
            prop_assert_eq!(&a.last, &b.last);
            prop_assert_eq!(&a.status, &b.status);
        }
    }
}
