//! Snapshots of what `status`, `events` and `why` print, text and JSON, for a canary in each
//! phase: fixture Canaries as the controller leaves them, at a fixed "now".

use flagger_api::Canary;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use serde_json::{Value, json};

use crate::events::{self, EventView};
use crate::output::{Output, structured};
use crate::status::model::view;
use crate::status::render_text::{Style, change_line, detail, table};
use crate::{status, why};

const NOW: &str = "2026-12-05T03:00:00Z";
const SINCE: &str = "2026-12-05T02:57:30Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn spec() -> Value {
    json!({
        "provider": "istio",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {
            "interval": "1m", "threshold": 3, "maxWeight": 50, "stepWeight": 10,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                {"name": "error-rate", "query": "sum(rate(http_errors_total[1m]))",
                 "thresholdRange": {"max": 1}}
            ],
            "webhooks": [
                {"name": "approve", "type": "confirm-promotion", "url": "http://gate/approve"},
                {"name": "load-test", "url": "http://loadtester/"}
            ]
        }
    })
}

fn record(
    iteration: i32,
    kind: &str,
    name: &str,
    value: Option<f64>,
    threshold: Option<&str>,
    failed: bool,
    message: Option<&str>,
) -> Value {
    json!({"iteration": iteration, "time": "2026-12-05T02:59:00Z", "kind": kind, "name": name,
           "value": value, "threshold": threshold, "failed": failed, "message": message})
}

fn passing(iteration: i32) -> Vec<Value> {
    vec![
        record(
            iteration,
            "metric",
            "request-success-rate",
            Some(99.8),
            Some("min 99"),
            false,
            None,
        ),
        record(
            iteration,
            "metric",
            "error-rate",
            Some(0.2),
            Some("max 1"),
            false,
            None,
        ),
        record(iteration, "webhook", "load-test", None, None, false, None),
    ]
}

fn canary(status: Value) -> Canary {
    serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": spec(), "status": status
    }))
    .unwrap()
}

fn promoted(status: &str, reason: &str, message: &str) -> Value {
    json!([{"type": "Promoted", "status": status, "reason": reason, "message": message,
            "lastUpdateTime": SINCE, "lastTransitionTime": SINCE}])
}

/// The canary in each phase a run goes through, named for the snapshot.
fn phases() -> Vec<(&'static str, Canary)> {
    let run = |phase: &str, weight: i32, failed: i32, iterations: i32, records: Vec<Value>| {
        canary(json!({
            "phase": phase, "canaryWeight": weight, "failedChecks": failed,
            "iterations": iterations, "lastTransitionTime": SINCE,
            "lastAppliedSpec": "7d9f", "lastPromotedSpec": "5c4b",
            "conditions": promoted("Unknown", "Progressing", "New revision detected, progressing canary analysis."),
            "canaryAnalysis": {"iterations": records}
        }))
    };
    let mut failing = passing(2);
    failing.extend([
        record(
            3,
            "metric",
            "request-success-rate",
            Some(97.25),
            Some("min 99"),
            true,
            None,
        ),
        record(
            3,
            "metric",
            "error-rate",
            Some(0.4),
            Some("max 1"),
            false,
            None,
        ),
    ]);
    let mut rolled_back = failing.clone();
    rolled_back.extend([record(
        5,
        "metric",
        "error-rate",
        Some(3.5),
        Some("max 1"),
        true,
        None,
    )]);
    let mut gated = passing(5);
    gated.push(record(
        6,
        "gate",
        "approve",
        None,
        None,
        true,
        Some("gate closed"),
    ));
    vec![
        (
            "initialized",
            canary(json!({
                "phase": "Initialized", "canaryWeight": 0, "failedChecks": 0, "iterations": 0,
                "lastTransitionTime": SINCE, "lastAppliedSpec": "5c4b", "lastPromotedSpec": "5c4b",
                "conditions": promoted("True", "Initialized", "Deployment initialization completed.")
            })),
        ),
        ("progressing", run("Progressing", 30, 0, 3, passing(3))),
        ("progressing_failing", run("Progressing", 20, 1, 3, failing)),
        (
            "waiting_promotion",
            run("WaitingPromotion", 50, 0, 6, gated),
        ),
        ("promoting", run("Promoting", 50, 0, 6, passing(5))),
        (
            "succeeded",
            canary(json!({
                "phase": "Succeeded", "canaryWeight": 0, "failedChecks": 0, "iterations": 0,
                "lastTransitionTime": SINCE, "lastAppliedSpec": "7d9f", "lastPromotedSpec": "7d9f",
                "conditions": promoted("True", "Succeeded", "Canary analysis completed successfully, promotion finished.")
            })),
        ),
        (
            "failed",
            canary(json!({
                "phase": "Failed", "canaryWeight": 0, "failedChecks": 3, "iterations": 0,
                "lastTransitionTime": SINCE, "lastAppliedSpec": "7d9f", "lastPromotedSpec": "5c4b",
                "conditions": promoted("False", "Failed", "Canary analysis failed, Deployment scaled to zero."),
                "canaryAnalysis": {"iterations": rolled_back}
            })),
        ),
    ]
}

fn event(type_: &str, reason: &str, message: &str, first: &str, last: &str, count: i32) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("podinfo.{first}"), "namespace": "test"},
        "involvedObject": {"kind": "Canary", "name": "podinfo", "namespace": "test"},
        "type": type_, "reason": reason, "message": message,
        "firstTimestamp": first, "lastTimestamp": last, "count": count
    }))
    .unwrap()
}

/// The events the controller would have written up to each phase (the API server lists them
/// in no promised order; the last one here comes first to prove the sorting).
fn events_of(phase: &str) -> Vec<EventView> {
    let mut list = vec![event(
        "Normal",
        "Synced",
        "Initialization done! podinfo.test",
        "2026-12-05T02:40:00Z",
        "2026-12-05T02:40:00Z",
        1,
    )];
    if phase != "initialized" {
        list.push(event(
            "Normal",
            "Synced",
            "New revision detected! Scaling up podinfo.test",
            "2026-12-05T02:55:00Z",
            "2026-12-05T02:55:00Z",
            1,
        ));
        list.push(event(
            "Normal",
            "Synced",
            "Advance podinfo.test canary weight 10",
            "2026-12-05T02:56:00Z",
            "2026-12-05T02:56:00Z",
            1,
        ));
    }
    if phase == "progressing_failing" || phase == "failed" {
        list.push(event(
            "Warning",
            "Synced",
            "Halt podinfo.test advancement request-success-rate 97.25 < 99",
            "2026-12-05T02:58:00Z",
            "2026-12-05T02:59:00Z",
            2,
        ));
    }
    if phase == "waiting_promotion" {
        list.push(event(
            "Warning",
            "Synced",
            "Halt podinfo.test advancement waiting for approval approve",
            "2026-12-05T02:58:00Z",
            "2026-12-05T02:59:30Z",
            4,
        ));
    }
    if phase == "failed" {
        list.push(event(
            "Warning",
            "Synced",
            "Rolling back podinfo.test failed checks threshold reached 3",
            "2026-12-05T02:59:30Z",
            "2026-12-05T02:59:30Z",
            1,
        ));
    }
    if phase == "succeeded" {
        list.push(event(
            "Normal",
            "Synced",
            "Promotion completed! Scaling down podinfo.test",
            "2026-12-05T02:57:30Z",
            "2026-12-05T02:57:30Z",
            1,
        ));
    }
    list.reverse();
    events::views(&list)
}

#[test]
fn status_of_a_canary_in_each_phase() {
    for (phase, canary) in phases() {
        let v = view(&canary, now());
        insta::assert_snapshot!(
            format!("status_text_{phase}"),
            status::render_one(&v, Output::Text).unwrap()
        );
        insta::assert_snapshot!(
            format!("status_json_{phase}"),
            status::render_one(&v, Output::Json).unwrap()
        );
        insta::assert_snapshot!(format!("status_line_{phase}"), change_line(&v, now()));
    }
}

#[test]
fn status_of_every_canary_is_a_table() {
    let views: Vec<_> = phases()
        .into_iter()
        .map(|(phase, mut c)| {
            c.metadata.name = Some(phase.replace('_', "-"));
            view(&c, now())
        })
        .collect();
    insta::assert_snapshot!("status_table", table(&views, Style::PLAIN));
    insta::assert_snapshot!(
        "status_table_json",
        structured(&views, Output::Json).unwrap()
    );
    assert_eq!(table(&[], Style::PLAIN), "no canaries found");
}

#[test]
fn a_terminal_gets_colours_a_pipe_does_not() {
    let (_, canary) = &phases()[2];
    let v = view(canary, now());
    let coloured = detail(&v, Style { colour: true });
    assert!(
        coloured.contains("\x1b[33mProgressing\x1b[0m"),
        "{coloured}"
    );
    assert!(coloured.contains("\x1b[31m✗\x1b[0m"));
    assert!(!detail(&v, Style::PLAIN).contains('\x1b'));
}

#[test]
fn events_of_a_canary_in_each_phase() {
    for (phase, _) in phases() {
        let views = events_of(phase);
        insta::assert_snapshot!(
            format!("events_text_{phase}"),
            events::render(&views, now())
        );
        insta::assert_snapshot!(
            format!("events_json_{phase}"),
            structured(&views, Output::Json).unwrap()
        );
    }
}

#[test]
fn why_of_a_canary_in_each_phase() {
    for (phase, canary) in phases() {
        let w = why::explain(&canary, &events_of(phase), now());
        insta::assert_snapshot!(format!("why_text_{phase}"), why::render(&w));
        insta::assert_snapshot!(
            format!("why_json_{phase}"),
            structured(&w, Output::Json).unwrap()
        );
    }
}

#[test]
fn yaml_is_the_json_as_yaml() {
    let (_, canary) = &phases()[1];
    let v = view(canary, now());
    let yaml = status::render_one(&v, Output::Yaml).unwrap();
    let from_yaml: Value = serde_saphyr::from_str(&yaml).unwrap();
    let from_json: Value =
        serde_json::from_str(&status::render_one(&v, Output::Json).unwrap()).unwrap();
    assert_eq!(from_yaml, from_json);
}

#[test]
fn the_eta_follows_the_controllers_minimum_interval() {
    let (_, mut canary) = phases().swap_remove(1);
    canary.spec.analysis.interval = Some("1s".into());
    // Weight 30 of 50: 40, 50, promote, finalise, succeed.
    assert_eq!(view(&canary, now()).seconds_to_promotion, Some(50));
    let test_cluster = flagger_core::Settings {
        min_interval: std::time::Duration::from_secs(1),
        ..flagger_core::Settings::default()
    };
    assert_eq!(
        crate::status::model::view_with(&canary, &test_cluster, now()).seconds_to_promotion,
        Some(5)
    );
}
