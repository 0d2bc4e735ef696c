//! `gatewayapi:v1` and `gatewayapi:v1beta1`: HTTPRoute `<apex>` with weighted backendRefs,
//! A/B matches and RequestMirror.

use std::collections::BTreeMap;

use flagger_api::Canary;
use flagger_api::istio::{CorsPolicy, HttpMatchRequest};
use flagger_api::service::HeaderOperations;
use flagger_api::string_match::StringMatch;
use flagger_core::{RouteState, Routes};
use kube::Client;
use serde_json::{Map, Value, json};

use super::session_affinity::{self, StickyRule};
use super::{
    Router, RouterError, RouterFuture, apex_metadata, apply_value, carried_routes, dynamic_api,
    get_value, namespace, owned_metadata, service_port, state, weight,
};

const GROUP: &str = "gateway.networking.k8s.io";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayVersion {
    V1,
    V1beta1,
}

impl GatewayVersion {
    fn as_str(self) -> &'static str {
        match self {
            GatewayVersion::V1 => "v1",
            GatewayVersion::V1beta1 => "v1beta1",
        }
    }
}

pub struct GatewayApiRouter {
    client: Client,
    version: GatewayVersion,
}

impl GatewayApiRouter {
    pub fn new(client: Client, version: GatewayVersion) -> Self {
        GatewayApiRouter { client, version }
    }

    fn api(&self, canary: &Canary) -> kube::Api<kube::api::DynamicObject> {
        dynamic_api(
            &self.client,
            &namespace(canary),
            (GROUP, self.version.as_str(), "HTTPRoute"),
            "httproutes",
        )
    }
}

fn invalid_match() -> RouterError {
    RouterError::Invalid("Invalid request matching selectors".to_string())
}

fn string_match(
    m: &StringMatch,
    exact: &str,
    regex: &str,
) -> Result<(String, String), RouterError> {
    match (&m.exact, &m.regex) {
        (Some(v), _) => Ok((exact.to_string(), v.clone())),
        (None, Some(v)) => Ok((regex.to_string(), v.clone())),
        _ => Err(invalid_match()),
    }
}

fn name_value_matches(
    map: Option<&BTreeMap<String, StringMatch>>,
) -> Result<Vec<Value>, RouterError> {
    map.into_iter()
        .flatten()
        .map(|(name, m)| {
            let (ty, value) = string_match(m, "Exact", "RegularExpression")?;
            Ok(json!({"type": ty, "name": name, "value": value}))
        })
        .collect()
}

/// One `service.match` entry as an HTTPRouteMatch.
fn route_match(m: &HttpMatchRequest) -> Result<Map<String, Value>, RouterError> {
    let mut out = Map::new();
    if let Some(uri) = &m.uri {
        let (ty, value) = match (&uri.exact, &uri.prefix, &uri.regex) {
            (Some(v), _, _) => ("Exact", v),
            (None, Some(v), _) => ("PathPrefix", v),
            (None, None, Some(v)) => ("RegularExpression", v),
            _ => return Err(invalid_match()),
        };
        out.insert("path".into(), json!({"type": ty, "value": value}));
    }
    if let Some(method) = &m.method {
        let v = method.exact.as_ref().ok_or_else(invalid_match)?;
        out.insert("method".into(), json!(v));
    }
    let headers = name_value_matches(m.headers.as_ref())?;
    if !headers.is_empty() {
        out.insert("headers".into(), json!(headers));
    }
    let query = name_value_matches(m.query_params.as_ref())?;
    if !query.is_empty() {
        out.insert("queryParams".into(), json!(query));
    }
    Ok(out)
}

fn service_matches(canary: &Canary) -> Result<Vec<Map<String, Value>>, RouterError> {
    canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.match_.as_ref())
        .into_iter()
        .flatten()
        .map(route_match)
        .collect()
}

/// `analysis.match` × service matches; the analysis entry's headers and queryParams replace the
/// service entry's. Empty when the canary is not A/B.
fn ab_matches(
    canary: &Canary,
    service: &[Map<String, Value>],
) -> Result<Vec<Map<String, Value>>, RouterError> {
    let mut out = Vec::new();
    for ab in canary.spec.analysis.matches().iter() {
        let mut overlay = Map::new();
        let headers = ab
            .headers
            .iter()
            .flatten()
            .map(|(name, h)| {
                let (ty, value) = match (&h.exact, &h.regex) {
                    (Some(v), _) => ("Exact", v),
                    (None, Some(v)) => ("RegularExpression", v),
                    _ => return Err(invalid_match()),
                };
                Ok(json!({"type": ty, "name": name, "value": value}))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !headers.is_empty() {
            overlay.insert("headers".into(), json!(headers));
        }
        let query = name_value_matches(ab.query_params.as_ref())?;
        if !query.is_empty() {
            overlay.insert("queryParams".into(), json!(query));
        }
        if service.is_empty() {
            out.push(overlay);
        } else {
            for s in service {
                let mut merged = s.clone();
                merged.extend(overlay.clone());
                out.push(merged);
            }
        }
    }
    Ok(out)
}

fn header_modifier(ops: &HeaderOperations) -> Value {
    let pairs = |m: &Option<BTreeMap<String, String>>| -> Vec<Value> {
        // BTreeMap: sorted by name (then value, names being unique).
        m.iter()
            .flatten()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect()
    };
    let mut out = Map::new();
    let add = pairs(&ops.add);
    if !add.is_empty() {
        out.insert("add".into(), json!(add));
    }
    let set = pairs(&ops.set);
    if !set.is_empty() {
        out.insert("set".into(), json!(set));
    }
    if let Some(remove) = ops.remove.as_ref().filter(|r| !r.is_empty()) {
        let mut remove = remove.clone();
        remove.sort();
        out.insert("remove".into(), json!(remove));
    }
    Value::Object(out)
}

/// The structural filters of the weighted rule: header modifiers, rewrite, static mirrors.
fn static_filters(canary: &Canary, version: GatewayVersion) -> Vec<Value> {
    let mut filters = Vec::new();
    let Some(svc) = canary.spec.service.as_ref() else {
        return filters;
    };
    if let Some(h) = svc.headers.as_ref() {
        if let Some(req) = h.request.as_ref() {
            filters.push(json!({"type": "RequestHeaderModifier", "requestHeaderModifier": header_modifier(req)}));
        }
        if let Some(resp) = h.response.as_ref() {
            filters.push(json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": header_modifier(resp)}));
        }
    }
    if let Some(rw) = svc.rewrite.as_ref() {
        let mut rewrite = Map::new();
        if let Some(uri) = &rw.uri {
            let path = if rw.type_.as_deref() == Some("ReplaceFullPath") {
                json!({"type": "ReplaceFullPath", "replaceFullPath": uri})
            } else {
                json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": uri})
            };
            rewrite.insert("path".into(), path);
        }
        if let Some(host) = &rw.authority {
            rewrite.insert("hostname".into(), json!(host));
        }
        if !rewrite.is_empty() {
            filters.push(json!({"type": "URLRewrite", "urlRewrite": rewrite}));
        }
    }
    if let Some(cors) = svc
        .cors_policy
        .as_ref()
        .filter(|_| version == GatewayVersion::V1)
    {
        filters.push(json!({"type": "CORS", "cors": cors_filter(cors)}));
    }
    for m in svc.mirror.iter().flatten() {
        filters
            .push(json!({"type": "RequestMirror", "requestMirror": {"backendRef": m.backend_ref}}));
    }
    filters
}

/// `service.corsPolicy` as a Gateway API CORS filter (v1 only). Origins: the exact ones (and the legacy
/// `allowOrigin` list); `maxAge` in whole seconds.
fn cors_filter(cors: &CorsPolicy) -> Value {
    let mut out = Map::new();
    let origins: Vec<&String> = cors
        .allow_origin
        .iter()
        .flatten()
        .chain(
            cors.allow_origins
                .iter()
                .flatten()
                .filter_map(|o| o.exact.as_ref()),
        )
        .collect();
    if !origins.is_empty() {
        out.insert("allowOrigins".into(), json!(origins));
    }
    for (key, list) in [
        ("allowMethods", &cors.allow_methods),
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        if let Some(l) = list.as_ref().filter(|l| !l.is_empty()) {
            out.insert(key.into(), json!(l));
        }
    }
    if let Some(age) = cors
        .max_age
        .as_deref()
        .and_then(|a| flagger_api::duration::parse(a).ok())
    {
        out.insert("maxAge".into(), json!(age.as_secs()));
    }
    if let Some(c) = cors.allow_credentials {
        out.insert("allowCredentials".into(), json!(c));
    }
    Value::Object(out)
}

fn backend(name: &str, port: i64, weight: Option<u32>) -> Value {
    let mut b = json!({"group": "", "kind": "Service", "name": name, "port": port});
    if let Some(w) = weight {
        b["weight"] = json!(w);
    }
    b
}

/// `ResponseHeaderModifier` adding one `Set-Cookie` header (added, not set: the application's own
/// cookies must survive).
fn set_cookie_filter(value: String) -> Value {
    json!({
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"add": [{"name": session_affinity::SET_COOKIE_HEADER, "value": value}]},
    })
}

fn set_cookie_on_backend(backend: &mut Value, value: Option<String>) {
    if let Some(v) = value {
        backend["filters"] = json!([set_cookie_filter(v)]);
    }
}

/// A copy of the weighted rule (its filters and timeouts) for the requests carrying a cookie: the
/// cookie's `Cookie` header regex is added to each of the service's matches (the A/B conditions do
/// not apply: a pinned client stays pinned).
fn sticky_rule(
    weighted: &Value,
    sticky: &StickyRule,
    service_matches: &[Value],
    routes: Routes,
) -> Value {
    let cookie = json!({
        "type": "RegularExpression",
        "name": session_affinity::COOKIE_HEADER,
        "value": sticky.cookie_regex,
    });
    let matches: Vec<Value> = service_matches
        .iter()
        .map(|m| {
            let mut m = m.clone();
            match m["headers"].as_array_mut() {
                Some(headers) => headers.push(cookie.clone()),
                None => m["headers"] = json!([cookie]),
            }
            m
        })
        .collect();
    let mut rule = weighted.clone();
    rule["matches"] = json!(matches);
    let (p, c) = sticky.destination.weights(routes);
    rule["backendRefs"][0]["weight"] = json!(p);
    rule["backendRefs"][1]["weight"] = json!(c);
    if let Some(v) = sticky.set_cookie.clone() {
        let mut filters = rule["filters"].as_array().cloned().unwrap_or_default();
        filters.push(set_cookie_filter(v));
        rule["filters"] = json!(filters);
    }
    rule
}

/// The whole HTTPRoute for `routes` (annotations are merged with existing ones by server-side
/// apply: only the keys written here are owned).
pub fn render(
    canary: &Canary,
    version: GatewayVersion,
    routes: Routes,
) -> Result<Value, RouterError> {
    let svc = canary
        .spec
        .service
        .as_ref()
        .ok_or_else(|| RouterError::Invalid("spec.service is required".to_string()))?;
    let parent_refs = svc
        .gateway_refs
        .as_ref()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            RouterError::Invalid("spec.service.gatewayRefs is required for gatewayapi".to_string())
        })?;
    let port = service_port(canary)?;
    let primary = canary.spec.primary_service_name();
    let canary_svc = canary.spec.canary_service_name();

    let service = service_matches(canary)?;
    let default_matches = if service.is_empty() {
        vec![json!({"path": {"type": "PathPrefix", "value": "/"}})]
    } else {
        service.iter().cloned().map(Value::Object).collect()
    };
    let ab = ab_matches(canary, &service)?;

    let mut filters = static_filters(canary, version);
    if routes.mirror > 0 {
        let mut mirror = json!({"backendRef": backend(&canary_svc, port, None)});
        if let Some(b) = mirror["backendRef"].as_object_mut() {
            b.remove("weight");
        }
        if routes.mirror < 100 {
            mirror["percent"] = json!(routes.mirror);
        }
        filters.push(json!({"type": "RequestMirror", "requestMirror": mirror}));
    }
    let mut weighted = json!({
        "matches": if ab.is_empty() { default_matches.clone() } else { ab.iter().cloned().map(Value::Object).collect() },
        "backendRefs": [
            backend(&primary, port, Some(routes.primary)),
            backend(&canary_svc, port, Some(routes.canary)),
        ],
    });
    if !filters.is_empty() {
        weighted["filters"] = json!(filters);
    }
    if version == GatewayVersion::V1 {
        let mut timeouts = Map::new();
        if let Some(t) = &svc.timeout {
            timeouts.insert("request".into(), json!(t));
        }
        if let Some(t) = &svc.backend_timeout {
            timeouts.insert("backendRequest".into(), json!(t));
        }
        if !timeouts.is_empty() {
            weighted["timeouts"] = Value::Object(timeouts);
        }
    }
    let mut rules = Vec::new();
    if let Some(cookies) = session_affinity::cookie_rules(canary, routes) {
        for sticky in &cookies.sticky {
            rules.push(sticky_rule(&weighted, sticky, &default_matches, routes));
        }
        set_cookie_on_backend(&mut weighted["backendRefs"][0], cookies.primary_set_cookie);
        set_cookie_on_backend(&mut weighted["backendRefs"][1], cookies.canary_set_cookie);
    }
    rules.push(weighted);
    if !ab.is_empty() {
        let mut rest = json!({
            "matches": default_matches,
            "backendRefs": [backend(&primary, port, None)],
        });
        let structural = static_filters(canary, version);
        if !structural.is_empty() {
            rest["filters"] = json!(structural);
        }
        rules.push(rest);
    }

    let (labels, annotations) = apex_metadata(canary);
    let mut spec = json!({"parentRefs": parent_refs, "rules": rules});
    if let Some(hosts) = svc.hosts.as_ref().filter(|h| !h.is_empty()) {
        spec["hostnames"] = json!(hosts);
    }
    Ok(json!({
        "apiVersion": format!("{GROUP}/{}", version.as_str()),
        "kind": "HTTPRoute",
        "metadata": owned_metadata(canary, canary.spec.apex_name(), labels, annotations)?,
        "spec": spec,
    }))
}

/// Weights from the weighted rule; mirror percentage from its RequestMirror.
///
/// The weighted rule is the one whose backendRefs carry filters (the `Set-Cookie` headers of a
/// session-affinity run); otherwise the last rule holding the canary backend, since the cookie
/// rules that may precede it pin clients to one side and say nothing about the split.
pub fn parse(canary: &Canary, obj: &Value) -> Result<Routes, RouterError> {
    let primary = canary.spec.primary_service_name();
    let canary_svc = canary.spec.canary_service_name();
    let rules = obj["spec"]["rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let refs = |rule: &Value| rule["backendRefs"].as_array().cloned().unwrap_or_default();
    let has_canary = |rule: &&Value| refs(rule).iter().any(|b| b["name"] == canary_svc.as_str());
    let has_backend_filters = |rule: &&Value| {
        refs(rule)
            .iter()
            .any(|b| b["filters"].as_array().is_some_and(|f| !f.is_empty()))
    };
    let weighted = rules
        .iter()
        .filter(has_canary)
        .find(has_backend_filters)
        .or_else(|| rules.iter().rev().find(has_canary));
    if let Some(rule) = weighted {
        let refs = refs(rule);
        let find = |name: &str| {
            refs.iter()
                .find(|b| b["name"] == name)
                .map(|b| weight(b.get("weight")).unwrap_or(1))
        };
        let c = find(&canary_svc).unwrap_or(0);
        let p = find(&primary).unwrap_or(0);
        let mirror = rule["filters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| {
                f["type"] == "RequestMirror"
                    && f["requestMirror"]["backendRef"]["name"] == canary_svc.as_str()
            })
            .map(|f| weight(f["requestMirror"].get("percent")).unwrap_or(100))
            .unwrap_or(0);
        return Ok(Routes {
            primary: p,
            canary: c,
            mirror,
        });
    }
    Err(RouterError::Api(format!(
        "HTTPRoute {} does not contain routes for {canary_svc}",
        canary.spec.apex_name()
    )))
}

/// v1: the route must be accepted by every parent that reported on its current generation.
fn check_accepted(obj: &Value) -> Result<(), RouterError> {
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    for parent in obj["status"]["parents"].as_array().into_iter().flatten() {
        for cond in parent["conditions"].as_array().into_iter().flatten() {
            if cond["type"] != "Accepted" {
                continue;
            }
            let observed = cond["observedGeneration"].as_i64().unwrap_or(0);
            if cond["status"] != "True" || observed < generation {
                return Err(RouterError::Api(format!(
                    "HTTPRoute {name} parent {} not accepted yet for generation {generation} (Accepted={}, observedGeneration {observed}): {}",
                    parent["parentRef"]["name"].as_str().unwrap_or_default(),
                    cond["status"].as_str().unwrap_or_default(),
                    cond["message"].as_str().unwrap_or_default(),
                )));
            }
        }
    }
    Ok(())
}

impl Router for GatewayApiRouter {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let api = self.api(canary);
            let name = canary.spec.apex_name();
            let routes = carried_routes(&api, name, |live| parse(canary, live)).await?;
            apply_value(&api, name, &render(canary, self.version, routes)?).await
        })
    }

    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let body = render(canary, self.version, routes)?;
            apply_value(&self.api(canary), canary.spec.apex_name(), &body).await
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState> {
        Box::pin(async move {
            let name = canary.spec.apex_name();
            let live = get_value(&self.api(canary), name)
                .await?
                .ok_or_else(|| RouterError::Api(format!("HTTPRoute {name} not found")))?;
            if self.version == GatewayVersion::V1 {
                check_accepted(&live)?;
            }
            parse(canary, &live).map(state)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;

    fn canary(extra_analysis: Value, extra_service: Value) -> Canary {
        let mut service = json!({
            "port": 9898,
            "hosts": ["www.example.com"],
            "gatewayRefs": [{"name": "gateway", "namespace": "gateway-ns"}],
            "timeout": "30s",
            "apex": {"annotations": {"team": "a"}},
        });
        if let (Some(s), Some(e)) = (service.as_object_mut(), extra_service.as_object()) {
            s.extend(e.clone());
        }
        let mut analysis =
            json!({"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10});
        if let (Some(a), Some(e)) = (analysis.as_object_mut(), extra_analysis.as_object()) {
            a.extend(e.clone());
        }
        fixtures::canary(json!({
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": service,
            "analysis": analysis,
        }))
    }

    #[test]
    fn canary_weights_v1() {
        let c = canary(json!({}), json!({}));
        let obj = render(&c, GatewayVersion::V1, Routes::split(30)).unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::split(30));
    }

    #[test]
    fn structural_filters_v1() {
        let c = canary(
            json!({}),
            json!({
                "headers": {
                    "request": {"set": {"x-b": "2", "x-a": "1"}, "remove": ["x-z", "x-y"]},
                    "response": {"add": {"x-served-by": "flagger"}},
                },
                "rewrite": {"uri": "/v2", "authority": "backend.example.com"},
                "corsPolicy": {
                    "allowOrigins": [{"exact": "https://example.com"}],
                    "allowMethods": ["GET", "POST"],
                    "maxAge": "24h",
                    "allowCredentials": true,
                },
            }),
        );
        insta::assert_yaml_snapshot!(
            render(&c, GatewayVersion::V1, Routes::PRIMARY).unwrap()["spec"]["rules"]
        );
        let beta = render(&c, GatewayVersion::V1beta1, Routes::PRIMARY).unwrap();
        let types: Vec<&str> = beta["spec"]["rules"][0]["filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "RequestHeaderModifier",
                "ResponseHeaderModifier",
                "URLRewrite"
            ]
        );
    }

    #[test]
    fn v1beta1_has_no_timeouts() {
        let c = canary(json!({}), json!({}));
        let obj = render(&c, GatewayVersion::V1beta1, Routes::PRIMARY).unwrap();
        assert_eq!(obj["apiVersion"], "gateway.networking.k8s.io/v1beta1");
        assert!(obj["spec"]["rules"][0].get("timeouts").is_none());
    }

    #[test]
    fn ab_header_and_query_matches() {
        let c = canary(
            json!({"iterations": 10, "match": [
                {"headers": {"x-canary": {"exact": "insider"}}},
                {"queryParams": {"canary": {"regex": "^(yes|true)$"}}},
            ]}),
            json!({"match": [{"uri": {"prefix": "/api"}}]}),
        );
        let obj = render(&c, GatewayVersion::V1, Routes::CANARY).unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::CANARY);
    }

    #[test]
    fn blue_green_mirroring() {
        let c = canary(json!({"iterations": 5, "mirror": true}), json!({}));
        let routes = Routes {
            primary: 100,
            canary: 0,
            mirror: 25,
        };
        let obj = render(&c, GatewayVersion::V1, routes).unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&c, &obj).unwrap(), routes);
    }

    #[test]
    fn prefix_header_match_is_invalid() {
        let c = canary(
            json!({"match": [{"headers": {"x": {"prefix": "a"}}}]}),
            json!({}),
        );
        let err = render(&c, GatewayVersion::V1, Routes::PRIMARY).unwrap_err();
        assert_eq!(err.to_string(), "Invalid request matching selectors");
    }

    #[test]
    fn gateway_refs_are_required() {
        let mut c = canary(json!({}), json!({}));
        if let Some(s) = c.spec.service.as_mut() {
            s.gateway_refs = None;
        }
        assert!(render(&c, GatewayVersion::V1, Routes::PRIMARY).is_err());
    }

    /// A session-affinity canary with the cookies the core put in the status.
    fn sticky(extra_analysis: Value, extra_service: Value, status: Value) -> Canary {
        let mut analysis = json!({"sessionAffinity": {
            "cookieName": "canary-flagger-cookie",
            "primaryCookieName": "primary-flagger-cookie",
            "maxAge": 21600,
            "path": "/",
            "secure": true,
        }});
        if let (Some(a), Some(e)) = (analysis.as_object_mut(), extra_analysis.as_object()) {
            a.extend(e.clone());
        }
        let mut c = canary(analysis, extra_service);
        c.status = serde_json::from_value(status).unwrap();
        c
    }

    fn run_cookies() -> Value {
        json!({
            "sessionAffinityCookie": "canary-flagger-cookie=abcdefghij",
            "primarySessionAffinityCookie": "primary-flagger-cookie=KLMNOPQRST",
        })
    }

    #[test]
    fn session_affinity_step_pins_cookie_holders_and_hands_out_cookies() {
        let c = sticky(json!({}), json!({}), run_cookies());
        let obj = render(&c, GatewayVersion::V1, Routes::split(10)).unwrap();
        insta::assert_yaml_snapshot!(obj["spec"]["rules"]);
        // The sticky rules pin clients; the split is read from the rule that hands out cookies.
        assert_eq!(parse(&c, &obj).unwrap(), Routes::split(10));
        // A reconcile (live routes, persisted cookies) renders the same object again.
        let again = render(&c, GatewayVersion::V1, parse(&c, &obj).unwrap()).unwrap();
        assert_eq!(again, obj);
    }

    #[test]
    fn session_affinity_after_the_run_expires_the_previous_cookie() {
        let c = sticky(
            json!({}),
            json!({"match": [{"uri": {"prefix": "/api"}, "headers": {"x-env": {"exact": "prod"}}}]}),
            json!({
                "previousSessionAffinityCookie": "canary-flagger-cookie=abcdefghij",
                "primarySessionAffinityCookie": "primary-flagger-cookie=KLMNOPQRST",
            }),
        );
        let obj = render(&c, GatewayVersion::V1, Routes::PRIMARY).unwrap();
        insta::assert_yaml_snapshot!(obj["spec"]["rules"]);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::PRIMARY);
    }

    #[test]
    fn session_affinity_with_ab_pins_before_the_match_rule_v1beta1() {
        let c = sticky(
            json!({"iterations": 10, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}),
            json!({}),
            json!({"sessionAffinityCookie": "canary-flagger-cookie=abcdefghij"}),
        );
        let obj = render(&c, GatewayVersion::V1beta1, Routes::CANARY).unwrap();
        insta::assert_yaml_snapshot!(obj["spec"]["rules"]);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::CANARY);
    }

    #[test]
    fn session_affinity_without_cookies_yet_is_the_plain_route() {
        let c = sticky(json!({}), json!({}), json!({}));
        assert_eq!(
            render(&c, GatewayVersion::V1, Routes::PRIMARY).unwrap(),
            render(
                &canary(json!({}), json!({})),
                GatewayVersion::V1,
                Routes::PRIMARY
            )
            .unwrap()
        );
    }

    #[test]
    fn unaccepted_parent_ends_the_tick() {
        let obj = json!({
            "metadata": {"name": "podinfo", "generation": 3},
            "status": {"parents": [{"parentRef": {"name": "gateway"}, "conditions": [
                {"type": "Accepted", "status": "True", "observedGeneration": 2},
            ]}]},
        });
        assert!(check_accepted(&obj).is_err());
        let ok = json!({
            "metadata": {"name": "podinfo", "generation": 3},
            "status": {"parents": [{"parentRef": {"name": "gateway"}, "conditions": [
                {"type": "Accepted", "status": "True", "observedGeneration": 3},
            ]}]},
        });
        assert!(check_accepted(&ok).is_ok());
    }
}
