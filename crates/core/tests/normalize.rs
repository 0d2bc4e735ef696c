//! From the Canary as written to the spec the machine runs.

mod common;

use std::time::Duration;

use common::canary_json;
use flagger_api::Canary;
use flagger_core::{Ladder, MetricKind, Settings, Strategy, normalize};
use serde_json::{Value, json};

fn norm_with(
    spec_extra: Value,
    analysis: Value,
    settings: &Settings,
) -> Result<flagger_core::RolloutSpec, String> {
    let canary: Canary =
        serde_json::from_value(canary_json(spec_extra, analysis)).map_err(|e| e.to_string())?;
    normalize(&canary, settings).map_err(|e| e.to_string())
}

fn norm(analysis: Value) -> Result<flagger_core::RolloutSpec, String> {
    norm_with(json!({}), analysis, &Settings::default())
}

#[test]
fn defaults_and_coercions() {
    let s = norm(json!({"stepWeight": 10, "threshold": 0})).unwrap();
    assert_eq!(s.threshold, 1);
    assert_eq!(s.interval, Duration::from_secs(60));
    assert_eq!(s.progress_deadline, Duration::from_secs(600));
    assert_eq!(s.delay, Duration::ZERO);
    assert_eq!(s.key, "podinfo.test");
    assert_eq!(s.target_key, "podinfo.test");
    assert_eq!(
        s.strategy,
        Strategy::Canary(Ladder {
            step_weight: 10,
            step_weights: vec![],
            max_weight: 100
        })
    );
    assert!(
        s.routes_traffic && !s.dry_run && !s.skip_analysis && !s.suspend && !s.revert_on_deletion
    );
    assert_eq!(
        norm(json!({"stepWeight": 10, "threshold": -3}))
            .unwrap()
            .threshold,
        1
    );
    assert_eq!(
        norm(json!({"stepWeight": 10, "threshold": 7}))
            .unwrap()
            .threshold,
        7
    );
    assert_eq!(
        norm(json!({"stepWeight": 10, "threshold": 1, "interval": "bogus"}))
            .unwrap()
            .interval,
        Duration::from_secs(60)
    );
    assert_eq!(
        norm(json!({"stepWeight": 10, "threshold": 1, "interval": "2s"}))
            .unwrap()
            .interval,
        Duration::from_secs(10)
    );
    assert_eq!(
        norm(json!({"stepWeight": 10, "threshold": 1, "interval": "15s"}))
            .unwrap()
            .interval,
        Duration::from_secs(15)
    );
    let fast = Settings {
        min_interval: Duration::from_secs(1),
        ..Settings::default()
    };
    assert_eq!(
        norm_with(
            json!({}),
            json!({"stepWeight": 10, "threshold": 1, "interval": "2s"}),
            &fast
        )
        .unwrap()
        .interval,
        Duration::from_secs(2)
    );
    let s = norm_with(
        json!({"progressDeadlineSeconds": 60, "skipAnalysis": true, "suspend": true, "revertOnDeletion": true}),
        json!({"stepWeight": 10, "threshold": 1, "delay": "30s", "maxWeight": 40, "stepWeightPromotion": 20}),
        &Settings { dry_run: true, ..Settings::default() },
    )
    .unwrap();
    assert_eq!(s.progress_deadline, Duration::from_secs(60));
    assert_eq!(s.delay, Duration::from_secs(30));
    assert_eq!(s.step_weight_promotion, 20);
    assert!(s.skip_analysis && s.suspend && s.revert_on_deletion && s.dry_run);
    assert_eq!(
        s.strategy,
        Strategy::Canary(Ladder {
            step_weight: 10,
            step_weights: vec![],
            max_weight: 40
        })
    );
}

#[test]
fn strategy_selection() {
    let ab = norm(
        json!({"iterations": 5, "threshold": 1, "match": [{"headers": {"x": {"exact": "y"}}}]}),
    )
    .unwrap();
    assert_eq!(ab.strategy, Strategy::AbTesting { iterations: 5 });
    assert_eq!(ab.strategy.label(), "ab-testing");
    let bg = norm(json!({"iterations": 5, "threshold": 1, "match": []})).unwrap();
    assert_eq!(bg.strategy, Strategy::BlueGreen { iterations: 5 });
    assert_eq!(bg.strategy.label(), "blue-green");
    assert_eq!(
        norm(json!({"stepWeight": 5, "threshold": 1}))
            .unwrap()
            .strategy
            .label(),
        "canary"
    );

    let k8s = Settings {
        mesh_provider: "kubernetes".into(),
        ..Settings::default()
    };
    let s = norm_with(
        json!({"provider": null}),
        json!({"stepWeight": 5, "threshold": 1}),
        &k8s,
    )
    .unwrap();
    assert_eq!(s.provider, "kubernetes");
    assert_eq!(s.strategy, Strategy::BlueGreen { iterations: 10 });
    assert!(!s.routes_traffic);
    assert_eq!(s.warnings.len(), 2);
    let s = norm_with(
        json!({"provider": "kubernetes"}),
        json!({"iterations": 4, "threshold": 1, "match": [{"headers": {"x": {"exact": "y"}}}]}),
        &Settings::default(),
    )
    .unwrap();
    assert_eq!(s.strategy, Strategy::BlueGreen { iterations: 4 });
    assert_eq!(
        s.warnings,
        ["A/B testing is not supported when using the kubernetes provider"]
    );

    let gw = Settings {
        mesh_provider: "gatewayapi".into(),
        ..Settings::default()
    };
    let s = norm_with(
        json!({"provider": null}),
        json!({"stepWeight": 5, "threshold": 1}),
        &gw,
    )
    .unwrap();
    assert_eq!(s.provider, "gatewayapi:v1");
    let s = norm_with(
        json!({"provider": ""}),
        json!({"stepWeight": 5, "threshold": 1}),
        &Settings::default(),
    )
    .unwrap();
    assert_eq!(s.provider, "istio");
}

#[test]
fn invalid_specs_are_reported_with_the_field() {
    let cases = [
        (
            json!({"stepWeight": 0, "threshold": 1}),
            "spec.analysis.stepWeight",
        ),
        (
            json!({"stepWeights": [10, 10], "threshold": 1}),
            "spec.analysis.stepWeights",
        ),
        (
            json!({"stepWeights": [20, 10], "threshold": 1}),
            "spec.analysis.stepWeights",
        ),
        (
            json!({"stepWeights": [0, 10], "threshold": 1}),
            "spec.analysis.stepWeights",
        ),
        (
            json!({"stepWeights": [10, -5], "threshold": 1}),
            "spec.analysis.stepWeights[1]",
        ),
        (
            json!({"stepWeight": 10.5, "threshold": 1}),
            "spec.analysis.stepWeight",
        ),
        (
            json!({"stepWeight": 101, "threshold": 1}),
            "spec.analysis.stepWeight",
        ),
        (
            json!({"stepWeight": 10, "maxWeight": 150, "threshold": 1}),
            "spec.analysis.maxWeight",
        ),
        (
            json!({"stepWeight": 10, "threshold": 1.5}),
            "spec.analysis.threshold",
        ),
        (
            json!({"iterations": -1, "threshold": 1}),
            "spec.analysis.iterations",
        ),
        (
            json!({"stepWeight": 10, "threshold": 1, "mirror": true, "mirrorWeight": 120}),
            "spec.analysis.mirrorWeight",
        ),
        (
            json!({"stepWeight": 10, "threshold": 1, "delay": "soon"}),
            "spec.analysis.delay",
        ),
        (
            json!({"stepWeight": 10, "threshold": 1, "stepWeightPromotion": 200}),
            "spec.analysis.stepWeightPromotion",
        ),
        (
            json!({"stepWeight": 10, "threshold": 1, "webhooks": [{"name": "x", "type": "bogus", "url": "http://x/"}]}),
            "spec.analysis.webhooks[0].type",
        ),
        (
            json!({"stepWeight": 10, "threshold": 1, "mirror": true, "mirrorWeight": 50,
                   "canaryAnalysis": {"stepWeightPromotion": 10, "maxMirrorWeight": 20}}),
            "spec.analysis.canaryAnalysis.maxMirrorWeight",
        ),
        (
            json!({"stepWeight": 10, "threshold": 1, "mirror": true,
                   "canaryAnalysis": {"stepWeightPromotion": 10, "iterations": 0}}),
            "spec.analysis.canaryAnalysis.iterations",
        ),
        (
            json!({"stepWeight": 10, "threshold": 1, "mirror": true, "canaryAnalysis": {"stepWeightPromotion": 120}}),
            "spec.analysis.canaryAnalysis.stepWeightPromotion",
        ),
    ];
    for (analysis, field) in cases {
        let err = norm(analysis.clone()).expect_err(&format!("{analysis} should be rejected"));
        assert!(err.starts_with(&format!("{field}: ")), "{analysis}: {err}");
    }
    let err = norm_with(
        json!({"progressDeadlineSeconds": -1}),
        json!({"stepWeight": 1, "threshold": 1}),
        &Settings::default(),
    );
    assert!(err.unwrap_err().starts_with("spec.progressDeadlineSeconds"));
}

#[test]
fn metric_checks() {
    let s = norm(json!({"stepWeight": 10, "threshold": 1, "metrics": [
        {"name": "request-success-rate", "threshold": 99},
        {"name": "request-duration", "threshold": 500},
        {"name": "errors", "query": "sum(x)", "threshold": 5},
        {"name": "latency", "templateRef": {"name": "t"}},
        {"name": "request-success-rate", "templateRef": {"name": "t"}, "threshold": 1},
        {"name": "ranged", "query": "q", "thresholdRange": {"min": 1, "max": 5.5}, "threshold": 100}
    ]}))
    .unwrap();
    let got: Vec<_> = s
        .metrics
        .iter()
        .map(|m| (m.kind, m.min, m.max, m.threshold.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                MetricKind::SuccessRate,
                Some(99.0),
                None,
                Some("min 99".to_string())
            ),
            (
                MetricKind::Duration,
                None,
                Some(500.0),
                Some("max 500".to_string())
            ),
            (
                MetricKind::Custom,
                None,
                Some(5.0),
                Some("max 5".to_string())
            ),
            (
                MetricKind::Custom,
                None,
                Some(0.0),
                Some("max 0".to_string())
            ),
            (
                MetricKind::Custom,
                None,
                Some(1.0),
                Some("max 1".to_string())
            ),
            (
                MetricKind::Custom,
                Some(1.0),
                Some(5.5),
                Some("min 1 max 5.5".to_string())
            ),
        ]
    );
    let s =
        norm(json!({"stepWeight": 10, "threshold": 1, "metrics": [{"name": "request-duration"}]}))
            .unwrap();
    assert_eq!(
        (
            s.metrics[0].min,
            s.metrics[0].max,
            s.metrics[0].threshold.clone()
        ),
        (None, None, None)
    );
}

#[test]
fn mirroring_support_and_ramps() {
    let mirror = |provider: &str, analysis: Value| {
        norm_with(
            json!({"provider": provider}),
            analysis,
            &Settings::default(),
        )
        .unwrap()
        .mirror
    };
    let canary = json!({"stepWeight": 10, "threshold": 1, "mirror": true});
    let bg = json!({"iterations": 3, "threshold": 1, "mirror": true});
    assert!(mirror("istio", canary.clone()).is_some());
    assert!(mirror("traefik", canary.clone()).is_some());
    assert!(mirror("gatewayapi:v1", canary.clone()).is_none());
    assert!(mirror("gatewayapi:v1", bg.clone()).is_some());
    assert!(mirror("gatewayapi:v1beta1", bg.clone()).is_some());
    assert!(mirror("linkerd", bg.clone()).is_none());
    assert!(mirror("smi:v1alpha3:istio", bg.clone()).is_none());
    let ab = json!({"iterations": 3, "threshold": 1, "mirror": true, "match": [{"headers": {"x": {"exact": "y"}}}]});
    assert!(mirror("istio", ab).is_none());
    assert!(
        mirror(
            "istio",
            json!({"stepWeight": 10, "threshold": 1, "mirror": false})
        )
        .is_none()
    );

    let m = mirror(
        "istio",
        json!({"stepWeight": 10, "threshold": 1, "mirror": true, "mirrorWeight": 10,
        "canaryAnalysis": {"stepWeightPromotion": 10, "maxMirrorWeight": 100}}),
    )
    .unwrap();
    assert_eq!(m.iterations(), 10);
    assert_eq!(
        (1..=11).map(|k| m.percent(k)).collect::<Vec<_>>(),
        [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100]
    );
    let m = mirror(
        "istio",
        json!({"stepWeight": 10, "threshold": 1, "mirror": true,
        "canaryAnalysis": {"stepWeightPromotion": 30, "maxMirrorWeight": 80}}),
    )
    .unwrap();
    assert_eq!(
        (
            m.iterations(),
            m.percent(1),
            m.percent(2),
            m.percent(3),
            m.percent(4)
        ),
        (3, 30, 60, 80, 80)
    );
    let m = mirror(
        "istio",
        json!({"stepWeight": 10, "threshold": 1, "mirror": true, "mirrorWeight": 40,
        "canaryAnalysis": {"stepWeightPromotion": 0}}),
    )
    .unwrap();
    assert_eq!(
        (m.ramp.clone(), m.iterations(), m.percent(1), m.percent(5)),
        (None, 1, 40, 40)
    );
    let m = mirror(
        "istio",
        json!({"stepWeight": 10, "threshold": 1, "mirror": true, "mirrorWeight": 0}),
    )
    .unwrap();
    assert_eq!(m.percent(1), 100);
}

#[test]
fn ladder_steps() {
    let l = Ladder {
        step_weight: 0,
        step_weights: vec![1, 2, 10, 80],
        max_weight: 30,
    };
    assert_eq!(l.max(), 80);
    assert_eq!(
        [0, 1, 2, 10, 80, 33].map(|w| l.next_step(w)),
        [1, 1, 8, 70, 20, 67]
    );
    assert_eq!(l.next_step(100), 1);
    let l = Ladder {
        step_weight: 0,
        step_weights: vec![10, 200],
        max_weight: 30,
    };
    assert_eq!((l.max(), l.next_step(0), l.next_step(10)), (100, 10, 90));
    let l = Ladder {
        step_weight: 0,
        step_weights: vec![150],
        max_weight: 30,
    };
    assert_eq!(l.next_step(0), 100);
    let l = Ladder {
        step_weight: 20,
        step_weights: vec![1, 2],
        max_weight: 50,
    };
    assert_eq!((l.max(), l.next_step(0), l.next_step(40)), (2, 20, 20));
    let l = Ladder {
        step_weight: 0,
        step_weights: vec![],
        max_weight: 50,
    };
    assert_eq!((l.max(), l.next_step(10)), (50, 0));
}

#[test]
fn strategy_boundaries() {
    // One iteration is a valid Blue/Green run on kubernetes: neither coerced nor warned about.
    let s = norm_with(
        json!({"provider": "kubernetes"}),
        json!({"iterations": 1, "threshold": 1}),
        &Settings::default(),
    )
    .unwrap();
    assert_eq!(s.strategy, Strategy::BlueGreen { iterations: 1 });
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // A match without iterations does not make an A/B run: the weights decide.
    let s = norm(
        json!({"stepWeight": 10, "threshold": 1, "match": [{"headers": {"x": {"exact": "y"}}}]}),
    )
    .unwrap();
    assert_eq!(s.strategy.label(), "canary");
}

#[test]
fn a_builtin_name_with_a_query_is_a_custom_metric() {
    let s = norm(json!({"stepWeight": 10, "threshold": 1, "metrics": [
        {"name": "request-duration", "query": "histogram_quantile(0.99, x)"},
        {"name": "request-success-rate", "query": "sum(y)"}
    ]}))
    .unwrap();
    let got: Vec<_> = s.metrics.iter().map(|m| (m.kind, m.min, m.max)).collect();
    assert_eq!(
        got,
        [
            (MetricKind::Custom, None, Some(0.0)),
            (MetricKind::Custom, None, Some(0.0))
        ]
    );
}

#[test]
fn the_mirror_ramp_may_start_at_its_maximum() {
    let s = norm(
        json!({"stepWeight": 10, "threshold": 1, "mirror": true, "mirrorWeight": 40,
        "canaryAnalysis": {"stepWeightPromotion": 10, "maxMirrorWeight": 40}}),
    )
    .unwrap();
    let m = s.mirror.expect("istio mirrors");
    assert_eq!((m.iterations(), m.percent(1), m.percent(2)), (1, 40, 40));
}

/// The message quotes the value the user wrote, not Rust's `Some("…")`: it reaches the `Valid` condition.
#[test]
fn an_unknown_webhook_type_is_quoted_as_written() {
    let err = norm(json!({"stepWeight": 10, "threshold": 1, "webhooks": [
        {"name": "x", "type": "post-promote", "url": "http://127.0.0.1/"}
    ]}))
    .unwrap_err();
    assert!(
        err.contains(r#"unknown webhook type "post-promote""#) && !err.contains("Some("),
        "{err}"
    );
}
