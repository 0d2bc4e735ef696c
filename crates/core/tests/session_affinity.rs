//! S17 session affinity: when the core creates, keeps and retires the cookies, tick by tick.
//! Each tick's shell offers new random letters (`common::fresh_cookies`), so a cookie that stays
//! the same was kept, not redrawn.

mod common;

use std::collections::BTreeMap;

use common::{Harness, fresh_cookies, ok, spec_with};
use flagger_api::status::CanaryPhase::{self, *};
use flagger_core::{Observation, RolloutSpec, RouteState, Settings, advance};
use serde_json::{Value, json};

fn s17_spec(analysis: Value) -> RolloutSpec {
    let mut a = json!({"stepWeight": 10, "maxWeight": 20, "threshold": 2, "sessionAffinity": {
        "cookieName": "canary-flagger-cookie",
        "primaryCookieName": "primary-flagger-cookie",
    }});
    if let (Some(a), Some(extra)) = (a.as_object_mut(), analysis.as_object()) {
        a.extend(extra.clone());
    }
    spec_with(
        json!({"provider": "gatewayapi:v1", "service": {"port": 9898, "gatewayRefs": [{"name": "gw"}]}}),
        a,
        &Settings::default(),
    )
}

/// What a status cookie field must hold after a tick: nothing, or the value first seen under a
/// label (`c1`, `p1`, …), which later rows must see unchanged.
#[derive(Clone, Copy)]
enum Cookie {
    None,
    Is(&'static str),
}
use Cookie::Is;

/// One tick: the phase and routes after it, and the three cookie fields (current, previous,
/// primary).
struct Row {
    label: &'static str,
    obs: common::Obs,
    phase: CanaryPhase,
    routes: &'static str,
    current: Cookie,
    previous: Cookie,
    primary: Cookie,
}

fn row(
    label: &'static str,
    phase: CanaryPhase,
    routes: &'static str,
    current: Cookie,
    previous: Cookie,
    primary: Cookie,
) -> Row {
    Row {
        label,
        obs: ok(),
        phase,
        routes,
        current,
        previous,
        primary,
    }
}

/// Runs the rows, checking each cookie field against the labels seen so far.
fn table(h: &mut Harness, rows: Vec<Row>) -> BTreeMap<&'static str, String> {
    let mut seen: BTreeMap<&'static str, String> = BTreeMap::new();
    for r in rows {
        h.run(r.obs);
        assert_eq!(
            h.phase(),
            r.phase,
            "{}: phase; effects {:#?}",
            r.label,
            h.last
        );
        assert_eq!(h.routes(), r.routes, "{}: routes", r.label);
        let fields = [
            (
                "current",
                &h.status.session_affinity_cookie,
                r.current,
                "canary-flagger-cookie=",
            ),
            (
                "previous",
                &h.status.previous_session_affinity_cookie,
                r.previous,
                "canary-flagger-cookie=",
            ),
            (
                "primary",
                &h.status.primary_session_affinity_cookie,
                r.primary,
                "primary-flagger-cookie=",
            ),
        ];
        for (field, got, want, prefix) in fields {
            match want {
                Cookie::None => assert_eq!(got, &None, "{}: {field} cookie", r.label),
                Is(name) => {
                    let got = got
                        .clone()
                        .unwrap_or_else(|| panic!("{}: {field} cookie missing", r.label));
                    let value = got.strip_prefix(prefix).unwrap_or_else(|| {
                        panic!("{}: {field} cookie {got:?} is not {prefix}…", r.label)
                    });
                    assert!(
                        value.len() == 10 && value.bytes().all(|b| b.is_ascii_alphabetic()),
                        "{}: {field} cookie value {value:?} is not 10 letters",
                        r.label
                    );
                    let first = seen.entry(name).or_insert_with(|| got.clone());
                    assert_eq!(&got, first, "{}: {field} cookie is {name}", r.label);
                }
            }
        }
    }
    let distinct: std::collections::BTreeSet<&String> = seen.values().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "labels name distinct cookies: {seen:?}"
    );
    seen
}

#[test]
fn s17_cookie_created_at_the_first_step_kept_and_retired_at_promotion() {
    let mut h = Harness::progressing(s17_spec(json!({})));
    let n = Cookie::None;
    table(
        &mut h,
        vec![
            row("t3 w10", Progressing, "90/10", Is("c1"), n, Is("p1")),
            row("t4 w20", Progressing, "80/20", Is("c1"), n, Is("p1")),
            row("t5 promote", Promoting, "80/20", Is("c1"), n, Is("p1")),
            row(
                "t6 routes 100/0",
                Finalising,
                "100/0",
                n,
                Is("c1"),
                Is("p1"),
            ),
            row("t7 succeeded", Succeeded, "100/0", n, Is("c1"), Is("p1")),
        ],
    );
}

#[test]
fn s17_next_run_gets_a_new_cookie_and_keeps_the_primary_one() {
    let mut h = Harness::progressing(s17_spec(json!({})));
    let n = Cookie::None;
    let rows = vec![
        row("t3 w10", Progressing, "90/10", Is("c1"), n, Is("p1")),
        row("t4 w20", Progressing, "80/20", Is("c1"), n, Is("p1")),
        row("t5 promote", Promoting, "80/20", Is("c1"), n, Is("p1")),
        row(
            "t6 routes 100/0",
            Finalising,
            "100/0",
            n,
            Is("c1"),
            Is("p1"),
        ),
        row("t7 succeeded", Succeeded, "100/0", n, Is("c1"), Is("p1")),
    ];
    let seen = table(&mut h, rows);
    h.revision = "r1.6.0.2".into();
    let mut more = Harness {
        status: h.status.clone(),
        ..Harness::new(h.spec.clone())
    };
    more.revision = h.revision.clone();
    more.now = h.now;
    more.router = h.router;
    let again = table(
        &mut more,
        vec![
            row(
                "t8 new revision",
                Progressing,
                "100/0",
                n,
                Is("c1"),
                Is("p1"),
            ),
            row("t9 w10", Progressing, "90/10", Is("c2"), Is("c1"), Is("p1")),
        ],
    );
    assert_eq!(again["c1"], seen["c1"]);
    assert_eq!(
        again["p1"], seen["p1"],
        "the primary cookie is never rotated"
    );
}

#[test]
fn s17_rollback_retires_the_cookie() {
    let mut h = Harness::progressing(s17_spec(json!({})));
    let n = Cookie::None;
    let failing = || ok().metric("request-success-rate", 50.0);
    let mut rows = vec![row("t3 w10", Progressing, "90/10", Is("c1"), n, Is("p1"))];
    rows.push(Row {
        obs: failing(),
        ..row(
            "t4 check fails",
            Progressing,
            "90/10",
            Is("c1"),
            n,
            Is("p1"),
        )
    });
    rows.push(Row {
        obs: failing(),
        ..row("t5 rollback", Failed, "100/0", n, Is("c1"), Is("p1"))
    });
    table(&mut h, rows);
}

#[test]
fn s17_a_restarted_controller_keeps_the_runs_cookie() {
    let mut h = Harness::progressing(s17_spec(json!({})));
    h.run(ok());
    let cookie = h.status.session_affinity_cookie.clone();
    assert!(cookie.is_some());
    // A new controller knows only the status and what it reads back from the router, and draws
    // new letters of its own.
    let mut obs = Observation::ready(
        h.revision.clone(),
        RouteState {
            primary: 90,
            canary: 10,
            mirrored: false,
        },
    );
    obs.fresh_cookies = fresh_cookies(h.now + jiff::SignedDuration::from_hours(5));
    let settle = |obs: &Observation, status| advance(&h.spec, status, obs, h.now);
    let (asked, _) = settle(&obs, &h.status);
    assert_eq!(asked.session_affinity_cookie, cookie);
    let mut answered = obs.clone();
    for name in ["request-success-rate", "request-duration"] {
        answered.metrics.push(flagger_core::MetricResult {
            name: name.into(),
            query: None,
            outcome: flagger_core::MetricOutcome::Value(if name == "request-duration" {
                100.0
            } else {
                99.9
            }),
        });
    }
    let (stepped, actions) = settle(&answered, &h.status);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, flagger_core::Action::SetRoutes(r) if r.canary == 20)),
        "{actions:#?}"
    );
    assert_eq!(stepped.session_affinity_cookie, cookie);
}

#[test]
fn s17_without_primary_cookie_name_only_the_canary_cookie_exists() {
    let mut h = Harness::progressing(s17_spec(
        json!({"sessionAffinity": {"cookieName": "canary-flagger-cookie"}}),
    ));
    let n = Cookie::None;
    table(
        &mut h,
        vec![
            row("t3 w10", Progressing, "90/10", Is("c1"), n, n),
            row("t4 w20", Progressing, "80/20", Is("c1"), n, n),
        ],
    );
}

#[test]
fn s17_ab_testing_creates_the_cookie_when_the_match_rule_reaches_the_canary() {
    let ab = json!({"iterations": 2, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]});
    let mut h = Harness::progressing(s17_spec(ab));
    let n = Cookie::None;
    table(
        &mut h,
        vec![
            row("t3 i1", Progressing, "0/100", Is("c1"), n, Is("p1")),
            row("t4 i2", Progressing, "0/100", Is("c1"), n, Is("p1")),
        ],
    );
}

#[test]
fn no_cookie_without_random_letters_or_a_router_that_renders_cookie_rules() {
    // A shell that supplies no letters gets no cookie rather than an empty, guessable one.
    let mut h = Harness::progressing(s17_spec(json!({})));
    let obs = Observation::ready(h.revision.clone(), RouteState::PRIMARY);
    let (status, _) = advance(&h.spec, &h.status, &obs, h.now);
    assert_eq!(status.session_affinity_cookie, None);
    h.run(ok());
    assert!(h.status.session_affinity_cookie.is_some());

    // nginx has no cookie rules (validation warns that the field is ignored): no cookies either.
    let nginx = spec_with(
        json!({"provider": "nginx"}),
        json!({"stepWeight": 10, "sessionAffinity": {"cookieName": "c"}}),
        &Settings::default(),
    );
    assert_eq!(nginx.session_affinity, None);
    let mut h = Harness::progressing(nginx);
    h.run(ok());
    assert_eq!(h.routes(), "90/10");
    assert_eq!(h.status.session_affinity_cookie, None);
}
