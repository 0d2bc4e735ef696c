//! Ticks per second of `advance()` on one core, for a few representative ticks.

use std::hint::black_box;
use std::time::Instant;

use flagger_api::Canary;
use flagger_api::analysis::HookType;
use flagger_api::status::{CanaryPhase, CanaryStatus};
use flagger_core::{
    HookResult, MetricOutcome, MetricResult, Observation, RouteState, Settings, advance, normalize,
};
use jiff::Timestamp;
use serde_json::json;

const ITERATIONS: u32 = 1_000_000;

fn main() {
    let canary: Canary = serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 50,
                "metrics": [
                    {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                    {"name": "request-duration", "thresholdRange": {"max": 500}}
                ],
                "webhooks": [{"name": "load", "type": "rollout", "url": "http://lt/"}]
            }
        }
    }))
    .unwrap_or_else(|e| panic!("bench canary: {e}"));
    let spec =
        normalize(&canary, &Settings::default()).unwrap_or_else(|e| panic!("bench spec: {e}"));
    let now = Timestamp::UNIX_EPOCH;

    let progressing = CanaryStatus {
        phase: Some(CanaryPhase::Progressing),
        canary_weight: Some(20),
        failed_checks: Some(0),
        iterations: Some(0),
        last_applied_spec: Some("r1.b".into()),
        last_promoted_spec: Some("r1.a".into()),
        tracked_configs: Some(Default::default()),
        ..CanaryStatus::default()
    };
    let mut analysed = Observation::ready(
        "r1.b",
        RouteState {
            primary: 80,
            canary: 20,
            mirrored: false,
        },
    );
    analysed.webhooks.push(HookResult {
        kind: HookType::Rollout,
        name: "load".into(),
        outcome: Ok(()),
    });
    for (name, v) in [("request-success-rate", 99.9), ("request-duration", 120.0)] {
        analysed.metrics.push(MetricResult {
            name: name.into(),
            query: None,
            outcome: MetricOutcome::Value(v),
        });
    }
    let asking = Observation::ready(
        "r1.b",
        RouteState {
            primary: 80,
            canary: 20,
            mirrored: false,
        },
    );
    let idle = CanaryStatus {
        phase: Some(CanaryPhase::Succeeded),
        ..progressing.clone()
    };
    let unchanged = Observation::ready("r1.b", RouteState::PRIMARY);

    let cases: [(&str, &CanaryStatus, &Observation); 3] = [
        ("analysis tick with a weight step", &progressing, &analysed),
        ("tick that asks for hook results", &progressing, &asking),
        ("idle canary, nothing changed", &idle, &unchanged),
    ];
    for (name, status, obs) in cases {
        let start = Instant::now();
        for _ in 0..ITERATIONS {
            black_box(advance(
                black_box(&spec),
                black_box(status),
                black_box(obs),
                black_box(now),
            ));
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "advance: {name}: {:.2} M ticks/s ({:.0} ns/tick)",
            f64::from(ITERATIONS) / secs / 1e6,
            secs * 1e9 / f64::from(ITERATIONS)
        );
    }
}
