//! The detail fields of the initialisation alert describe the canary's routing.

mod common;

use flagger_api::CanaryStatus;
use flagger_core::{Action, Observation, RouteState, advance};
use jiff::Timestamp;
use serde_json::json;

fn init_alert_fields(analysis: serde_json::Value) -> Vec<(String, String)> {
    let spec = common::spec(analysis);
    let obs = Observation::ready("r1.a", RouteState::PRIMARY);
    let (_, actions) = advance(&spec, &CanaryStatus::default(), &obs, Timestamp::UNIX_EPOCH);
    actions
        .into_iter()
        .find_map(|a| match a {
            Action::Alert(alert) => Some(alert.fields),
            _ => None,
        })
        .expect("initialisation sends an alert")
}

fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[test]
fn initialisation_alert_describes_target_threshold_deadline_and_routing() {
    let fields = init_alert_fields(json!({"stepWeight": 10, "maxWeight": 50, "threshold": 2}));
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Target",
            "Failed checks threshold",
            "Progress deadline",
            "Traffic routing"
        ]
    );
    assert_eq!(field(&fields, "Target"), "Deployment/podinfo.test");
    assert_eq!(field(&fields, "Failed checks threshold"), "2");
    assert_eq!(field(&fields, "Progress deadline"), "600s");
    assert_eq!(field(&fields, "Traffic routing"), "Weight step: 10 max: 50");
}

#[test]
fn routing_field_names_the_strategy() {
    let routing = |analysis| field(&init_alert_fields(analysis), "Traffic routing");
    assert_eq!(
        routing(json!({"stepWeights": [5, 25, 50], "threshold": 1})),
        "Weight steps: 5,25,50 max: 50"
    );
    // A stepWeight drives the steps even when stepWeights is set too (the ladder keeps the max).
    assert_eq!(
        routing(json!({"stepWeight": 10, "stepWeights": [5, 25, 50], "threshold": 1})),
        "Weight step: 10 max: 50"
    );
    assert_eq!(
        routing(json!({"iterations": 3, "threshold": 1})),
        "Blue/Green"
    );
    assert_eq!(
        routing(
            json!({"iterations": 3, "threshold": 1, "match": [{"headers": {"x-canary": {"exact": "1"}}}]})
        ),
        "A/B Testing"
    );
}

/// A webhook failing the same way on every tick is one line with a count; checks with values
/// differ per iteration and stay one line each.
#[test]
fn rollback_alert_lists_each_distinct_failed_check_once() {
    let spec = common::spec(
        json!({"stepWeight": 10, "maxWeight": 50, "threshold": 3, "webhooks": [
            {"name": "acceptance", "type": "pre-rollout", "url": "http://lt/"}
        ]}),
    );
    let mut h = common::Harness::progressing(spec);
    h.run(common::ok().fail("acceptance"));
    h.run(common::ok().fail("acceptance"));
    h.run(common::ok().fail("acceptance"));
    let fields = h
        .last_actions
        .iter()
        .find_map(|a| match a {
            Action::Alert(alert) => Some(alert.fields.clone()),
            _ => None,
        })
        .expect("the rollback sends an alert");
    assert_eq!(
        fields,
        vec![(
            "Failed check".to_string(),
            "acceptance: Halt podinfo.test advancement pre-rollout check acceptance failed 500 failed (3 times)"
                .to_string()
        )]
    );
}
