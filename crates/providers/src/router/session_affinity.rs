//! Session-affinity rules as provider-neutral data: each router that supports
//! `analysis.sessionAffinity` turns [`CookieRules`] into its own objects (HTTPRoute rules and
//! backendRef filters for the Gateway API; `http` routes and destination headers for Istio).
//!
//! Nothing here decides a cookie: the core creates, keeps and retires them in the status (a router
//! that drew its own value would lose it on restart), and `set_routes` receives the status the tick
//! writes. This module only says which rules those cookies call for at the given routes.

use flagger_api::Canary;
use flagger_api::analysis::SessionAffinity;
use flagger_core::Routes;

/// The request header the sticky rules match.
pub const COOKIE_HEADER: &str = "Cookie";
/// The response header that hands out or expires a cookie.
pub const SET_COOKIE_HEADER: &str = "Set-Cookie";

/// `Max-Age` of the canary cookie when `maxAge` is unset or 0 (one day, as Flagger's).
const DEFAULT_MAX_AGE: i64 = 86_400;
/// The analysis interval when none (or an unreadable one) is set, as the core assumes.
const DEFAULT_INTERVAL_SECS: u64 = 60;

/// Where a sticky rule sends the requests it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Primary 0 / canary 100.
    Canary,
    /// Primary 100 / canary 0.
    Primary,
    /// The weights of the weighted rule, without its `Set-Cookie` headers.
    Weighted,
}

impl Destination {
    /// The `(primary, canary)` weights of this destination given the weighted rule's routes.
    pub fn weights(self, routes: Routes) -> (u32, u32) {
        match self {
            Destination::Canary => (0, 100),
            Destination::Primary => (100, 0),
            Destination::Weighted => (routes.primary, routes.canary),
        }
    }
}

/// One rule placed before the weighted rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyRule {
    /// Regular expression the request's [`COOKIE_HEADER`] must match (combined with each
    /// `service.match` entry by the router).
    pub cookie_regex: String,
    pub destination: Destination,
    /// [`SET_COOKIE_HEADER`] value added to every response of this rule (a finished run's cookie,
    /// expired so that the client drops it).
    pub set_cookie: Option<String>,
}

/// What a router writes for session affinity at one set of routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CookieRules {
    /// Rules before the weighted rule, in this order.
    pub sticky: Vec<StickyRule>,
    /// [`SET_COOKIE_HEADER`] the weighted rule adds to responses of its canary destination.
    pub canary_set_cookie: Option<String>,
    /// [`SET_COOKIE_HEADER`] the weighted rule adds to responses of its primary destination.
    pub primary_set_cookie: Option<String>,
}

/// The cookie rules for `routes`, from `analysis.sessionAffinity` and the cookies in
/// `canary.status`; `None` when the canary has no session affinity or there is nothing to write.
///
/// While the canary gets traffic: a sticky rule per cookie (canary first, then primary) and
/// `Set-Cookie` headers on the weighted rule's destinations. At canary weight 0: a rule for the
/// previous run's cookie, routed like the weighted rule, that expires it (`Max-Age=-1`).
pub fn cookie_rules(canary: &Canary, routes: Routes) -> Option<CookieRules> {
    let sa = canary.spec.analysis.session_affinity.as_ref()?;
    let status = canary.status.as_ref()?;
    let cookie = |c: &Option<String>| c.clone().filter(|c| !c.is_empty());
    let attrs = attributes(sa);
    let mut rules = CookieRules::default();
    if routes.canary > 0 {
        let current = cookie(&status.session_affinity_cookie)?;
        rules.sticky.push(StickyRule {
            cookie_regex: cookie_regex(&current),
            destination: Destination::Canary,
            set_cookie: None,
        });
        rules.canary_set_cookie = Some(format!("{current}; Max-Age={}{attrs}", max_age(sa)));
        if sa
            .primary_cookie_name
            .as_deref()
            .is_some_and(|p| !p.is_empty())
            && let Some(primary) = cookie(&status.primary_session_affinity_cookie)
        {
            rules.sticky.push(StickyRule {
                cookie_regex: cookie_regex(&primary),
                destination: Destination::Primary,
                set_cookie: None,
            });
            rules.primary_set_cookie = Some(format!(
                "{primary}; Max-Age={}{attrs}",
                interval_secs(canary)
            ));
        }
    } else {
        let previous = cookie(&status.previous_session_affinity_cookie)?;
        // Domain and Path as when it was set: a browser only drops a cookie whose scope matches.
        rules.sticky.push(StickyRule {
            cookie_regex: cookie_regex(&previous),
            destination: Destination::Weighted,
            set_cookie: Some(format!("{previous}; Max-Age=-1{attrs}")),
        });
    }
    Some(rules)
}

/// `.*<name>.*<value>.*` for a `name=value` cookie, with regex metacharacters of the name escaped
/// (cookie names may contain `.`, `+`, `*`, `|`, `^`, `$`; the value is ASCII letters).
fn cookie_regex(cookie: &str) -> String {
    let (name, value) = cookie.split_once('=').unwrap_or((cookie, ""));
    format!(".*{}.*{}.*", escape(name), escape(value))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn max_age(sa: &SessionAffinity) -> i64 {
    match sa.max_age.as_ref().and_then(|n| n.integer()) {
        Some(age) if age > 0 => age,
        _ => DEFAULT_MAX_AGE,
    }
}

fn interval_secs(canary: &Canary) -> u64 {
    canary
        .spec
        .analysis
        .interval
        .as_deref()
        .and_then(|s| flagger_api::duration::parse(s).ok())
        .map(|d| d.as_secs())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_INTERVAL_SECS)
}

/// The configured cookie attributes, in Flagger's order.
fn attributes(sa: &SessionAffinity) -> String {
    let mut out = String::new();
    let non_empty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    if let Some(domain) = non_empty(&sa.domain) {
        out.push_str(&format!("; Domain={domain}"));
    }
    if sa.http_only == Some(true) {
        out.push_str("; HttpOnly");
    }
    if sa.partitioned == Some(true) {
        out.push_str("; Partitioned");
    }
    if let Some(path) = non_empty(&sa.path) {
        out.push_str(&format!("; Path={path}"));
    }
    if let Some(same_site) = non_empty(&sa.same_site) {
        out.push_str(&format!("; SameSite={same_site}"));
    }
    if sa.secure == Some(true) {
        out.push_str("; Secure");
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::router::fixtures;

    fn canary(sa: serde_json::Value, status: serde_json::Value) -> Canary {
        let mut c = fixtures::canary(json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "30s", "sessionAffinity": sa},
        }));
        c.status = serde_json::from_value(status).unwrap();
        c
    }

    const COOKIES: &str = "canary-flagger-cookie=abcdefghij";

    #[test]
    fn active_run_pins_both_cookies_and_hands_them_out() {
        let c = canary(
            json!({"cookieName": "canary-flagger-cookie", "primaryCookieName": "primary-flagger-cookie"}),
            json!({"sessionAffinityCookie": COOKIES, "primarySessionAffinityCookie": "primary-flagger-cookie=KLMNOPQRST"}),
        );
        let rules = cookie_rules(&c, Routes::split(10)).unwrap();
        assert_eq!(
            rules,
            CookieRules {
                sticky: vec![
                    StickyRule {
                        cookie_regex: ".*canary-flagger-cookie.*abcdefghij.*".into(),
                        destination: Destination::Canary,
                        set_cookie: None,
                    },
                    StickyRule {
                        cookie_regex: ".*primary-flagger-cookie.*KLMNOPQRST.*".into(),
                        destination: Destination::Primary,
                        set_cookie: None,
                    },
                ],
                canary_set_cookie: Some(format!("{COOKIES}; Max-Age=86400")),
                primary_set_cookie: Some("primary-flagger-cookie=KLMNOPQRST; Max-Age=30".into()),
            }
        );
    }

    #[test]
    fn attributes_follow_max_age_in_flaggers_order() {
        let c = canary(
            json!({"cookieName": "canary-flagger-cookie", "maxAge": 21600, "secure": true, "sameSite": "Lax",
                   "path": "/app", "partitioned": true, "httpOnly": true, "domain": "example.com"}),
            json!({"sessionAffinityCookie": COOKIES}),
        );
        let rules = cookie_rules(&c, Routes::split(10)).unwrap();
        assert_eq!(
            rules.canary_set_cookie.as_deref(),
            Some(
                "canary-flagger-cookie=abcdefghij; Max-Age=21600; Domain=example.com; HttpOnly; Partitioned; Path=/app; SameSite=Lax; Secure"
            )
        );
        assert_eq!(rules.primary_set_cookie, None);
    }

    #[test]
    fn weight_zero_expires_the_previous_cookie_only() {
        let c = canary(
            json!({"cookieName": "canary-flagger-cookie", "primaryCookieName": "p"}),
            json!({"previousSessionAffinityCookie": COOKIES, "primarySessionAffinityCookie": "p=KLMNOPQRST"}),
        );
        let rules = cookie_rules(&c, Routes::PRIMARY).unwrap();
        assert_eq!(
            rules.sticky,
            [StickyRule {
                cookie_regex: ".*canary-flagger-cookie.*abcdefghij.*".into(),
                destination: Destination::Weighted,
                set_cookie: Some(format!("{COOKIES}; Max-Age=-1")),
            }]
        );
        assert_eq!(rules.canary_set_cookie, None);
        assert_eq!(rules.primary_set_cookie, None);
    }

    #[test]
    fn nothing_to_write_without_affinity_or_cookies() {
        let none = canary(json!(null), json!({"sessionAffinityCookie": COOKIES}));
        assert_eq!(cookie_rules(&none, Routes::split(10)), None);
        let fresh = canary(json!({"cookieName": "c"}), json!({}));
        assert_eq!(cookie_rules(&fresh, Routes::PRIMARY), None);
        assert_eq!(cookie_rules(&fresh, Routes::split(10)), None);
    }

    #[test]
    fn metacharacters_of_cookie_names_are_escaped() {
        assert_eq!(cookie_regex("a.b+c=XYZ"), r".*a\.b\+c.*XYZ.*");
        assert_eq!(Destination::Weighted.weights(Routes::split(30)), (70, 30));
    }
}
