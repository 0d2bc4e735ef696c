//! The strategy step of a passing analysis tick.

use flagger_api::analysis::HookType;
use flagger_api::status::{CanaryPhase, CheckKind};

use crate::action::{Action, EventName, Routes, Severity};
use crate::checks::{new_record, record, record_iteration};
use crate::normalize::{Ladder, Mirror, Strategy};
use crate::observation::RouteState;
use crate::promotion;
use crate::status::StatusExt;
use crate::tick::{Flow, Stop, Tick};

pub(crate) fn step(t: &mut Tick, routes: RouteState) -> Stop {
    let result = match &t.spec.strategy {
        Strategy::Canary(ladder) => canary(t, ladder, routes),
        Strategy::AbTesting { iterations } => ab_testing(t, *iterations),
        Strategy::BlueGreen { iterations } => blue_green(t, *iterations, routes),
    };
    match result {
        Ok(()) => Stop::End,
        Err(stop) => stop,
    }
}

/// Asked exactly before a canary weight increase. A closed gate holds the weight; it is not
/// a failed check. One alert per halt episode, not per closed tick, to keep the noise down.
fn traffic_gate(t: &mut Tick) -> Flow {
    let run = t.hooks(
        HookType::ConfirmTrafficIncrease,
        CanaryPhase::Progressing,
        false,
    )?;
    for hook in run.passed {
        // Recorded so that the next closed gate is seen as a new halt episode.
        let rec = new_record(t, CheckKind::Gate, &hook.name, false, None);
        record(t, rec);
        t.normal(
            EventName::Other,
            format!("Confirm-traffic-increase check {} passed", hook.name),
        );
    }
    let Some((hook, message)) = run.stopped_by else {
        return Ok(());
    };
    let previous = record_iteration(t) - 1;
    let ongoing = t.start.records().iter().any(|r| {
        r.kind == CheckKind::Gate && r.failed && r.name == hook.name && r.iteration == previous
    });
    let rec = new_record(t, CheckKind::Gate, &hook.name, true, Some(message));
    record(t, rec);
    t.warning(
        EventName::WaitingTrafficIncrease,
        format!(
            "Halt {} advancement waiting for traffic increase approval {}",
            t.spec.key(),
            hook.name
        ),
    );
    if !ongoing && !hook.mute_alert {
        t.alert(
            Severity::Warn,
            "Canary traffic increase is waiting for approval.".into(),
            Vec::new(),
            None,
        );
    }
    Err(Stop::End)
}

fn advance_weight(t: &mut Tick, routes: Routes) {
    t.push(Action::SetRoutes(routes));
    t.status.set_weight(routes.canary);
    t.status.set_mirror(routes.mirror);
    t.normal(
        EventName::WeightAdvanced,
        format!("Advance {} canary weight {}", t.spec.key(), routes.canary),
    );
}

fn canary(t: &mut Tick, ladder: &Ladder, routes: RouteState) -> Flow {
    let w = routes.canary;
    let s = ladder.next_step(w);
    if s == 0 {
        return Ok(());
    }
    if w >= ladder.max() {
        promotion::gate(t)?;
        return Err(promotion::promote(t));
    }
    if let (Some(mirror), 0) = (&t.spec.mirror, w) {
        return mirror_step(t, mirror, routes.mirrored, s);
    }
    traffic_gate(t)?;
    // Primary and canary always add up to 100, whatever the router reported.
    advance_weight(t, Routes::split(w.saturating_add(s)));
    Ok(())
}

/// Canary strategy at weight 0 with mirroring: shadow first, then the first real step.
fn mirror_step(t: &mut Tick, mirror: &Mirror, mirrored: bool, s: u32) -> Flow {
    let i = t.status.iter();
    if !mirrored {
        let k = 1;
        if mirror.ramp.is_some() {
            t.status.set_iter(k);
        }
        // Shadowing moves no user traffic, so no traffic-increase gate.
        advance_weight(
            t,
            Routes {
                primary: 100,
                canary: 0,
                mirror: mirror.percent(k),
            },
        );
        return Ok(());
    }
    if mirror.ramp.is_some() && i < mirror.iterations() {
        let k = i + 1;
        let pct = mirror.percent(k);
        t.status.set_iter(k);
        t.push(Action::SetRoutes(Routes {
            primary: 100,
            canary: 0,
            mirror: pct,
        }));
        t.status.set_mirror(pct);
        t.normal(
            EventName::WeightAdvanced,
            format!("Advance {} mirror weight {pct}", t.spec.key()),
        );
        return Ok(());
    }
    traffic_gate(t)?;
    advance_weight(t, Routes::split(s));
    Ok(())
}

fn advance_iteration(t: &mut Tick, i: u32, n: u32) {
    t.status.set_iter(i);
    t.normal(
        EventName::IterationAdvanced,
        format!("Advance {} canary iteration {i}/{n}", t.spec.key()),
    );
}

fn ab_testing(t: &mut Tick, n: u32) -> Flow {
    let i = t.status.iter();
    if i < n {
        // The router applies this to the requests matching `analysis.match` only.
        t.push(Action::SetRoutes(Routes::CANARY));
        advance_iteration(t, i + 1, n);
        return Ok(());
    }
    // Promote at i >= N, so lowering `iterations` mid-run cannot stall.
    promotion::gate(t)?;
    Err(promotion::promote(t))
}

fn blue_green(t: &mut Tick, n: u32, routes: RouteState) -> Flow {
    let i = t.status.iter();
    let spec = t.spec;
    if i < n {
        let next = i + 1;
        if let (true, Some(mirror)) = (spec.routes_traffic, &spec.mirror) {
            let pct = mirror.percent(next.min(mirror.iterations()));
            if !routes.mirrored || pct != t.status.mirror() {
                t.push(Action::SetRoutes(Routes {
                    primary: 100,
                    canary: 0,
                    mirror: pct,
                }));
                t.status.set_mirror(pct);
            }
        }
        advance_iteration(t, next, n);
        return Ok(());
    }
    promotion::gate(t)?;
    if i > n {
        return Err(promotion::promote(t));
    }
    // One more analysed tick with all traffic on the canary before the copy.
    if spec.routes_traffic {
        let text = if spec.mirror.is_some() {
            "Stop traffic mirroring and route all traffic to canary"
        } else {
            "Routing all traffic to canary"
        };
        t.normal(EventName::Other, text.into());
        t.push(Action::SetRoutes(Routes::CANARY));
        t.status.set_mirror(0);
    }
    t.status.set_iter(n + 1);
    Ok(())
}
