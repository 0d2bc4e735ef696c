//! Session-affinity cookies (`analysis.sessionAffinity`): when a run's cookie is created, kept and
//! retired.
//!
//! The cookies live in the status, the only memory that survives a restart, and the router renders
//! its cookie rules from them: a router that drew its own random value would pin clients to a cookie
//! the next controller never heard of. The core has no randomness, so the shell draws fresh values
//! every tick ([`FreshCookies`]) and the core uses them only when it creates a cookie.

use flagger_api::status::CanaryStatus;

use crate::action::{Action, Routes};
use crate::normalize::RolloutSpec;

/// The cookie names of `analysis.sessionAffinity`, kept only for routers that render cookie rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieNames {
    pub cookie: String,
    /// Optional cookie that pins a client to the primary.
    pub primary: Option<String>,
}

/// Random cookie values drawn by the shell for this tick (10 ASCII letters each, as Flagger's).
/// Empty values mean "none supplied": the core then creates no cookie rather than a cookie anyone
/// could guess.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreshCookies {
    pub canary: String,
    pub primary: String,
}

/// Updates the status cookies for the routes this tick sets (the last `SetRoutes` wins, as on the
/// router). A tick that sets no routes leaves them alone, so a restart keeps the run's cookie.
///
/// While the canary gets traffic the run's cookie exists and never changes; when the canary's
/// weight returns to 0 (a new run starting, promotion, rollback) it becomes the previous cookie,
/// which the router answers with a deleting `Set-Cookie`. The primary cookie, once created, is never
/// rotated.
pub(crate) fn decide(
    spec: &RolloutSpec,
    status: &mut CanaryStatus,
    actions: &[Action],
    fresh: &FreshCookies,
) {
    let Some(names) = spec.session_affinity.as_ref() else {
        return;
    };
    let Some(routes) = last_routes(actions) else {
        return;
    };
    if routes.canary > 0 {
        create(
            &mut status.session_affinity_cookie,
            &names.cookie,
            &fresh.canary,
        );
        if let Some(primary) = names.primary.as_deref() {
            create(
                &mut status.primary_session_affinity_cookie,
                primary,
                &fresh.primary,
            );
        }
    } else if let Some(current) = status.session_affinity_cookie.take()
        && !current.is_empty()
    {
        status.previous_session_affinity_cookie = Some(current);
    }
}

fn last_routes(actions: &[Action]) -> Option<Routes> {
    actions.iter().rev().find_map(|a| match a {
        Action::SetRoutes(r) => Some(*r),
        _ => None,
    })
}

fn create(slot: &mut Option<String>, name: &str, value: &str) {
    if slot.as_deref().is_none_or(str::is_empty) && !value.is_empty() {
        *slot = Some(format!("{name}={value}"));
    }
}
