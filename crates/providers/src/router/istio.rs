//! `istio`: VirtualService `<apex>` and DestinationRules `<apex>-primary`/`<apex>-canary`
//! (networking.istio.io/v1beta1, the version Flagger writes).
//!
//! A VirtualService the user already had is taken over without an owner reference; its previous
//! spec is kept so that deletion with `revertOnDeletion` can give it back.

use std::collections::BTreeMap;

use flagger_api::Canary;
use flagger_api::analysis::AbMatch;
use flagger_api::istio::HttpMatchRequest;
use flagger_api::service::CanaryService;
use flagger_core::{RouteState, Routes};
use kube::Client;
use kube::api::{DynamicObject, PostParams};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::session_affinity::{self, Destination, StickyRule};
use super::{
    FLUX_ANNOTATIONS, Router, RouterError, RouterFuture, apex_metadata, api_error, apply_value,
    dynamic_api, get_value, namespace, owner_reference, state, weight,
};

const GROUP: &str = "networking.istio.io";
const VERSION: &str = "v1beta1";

/// The spec a taken-over VirtualService had before flagger-rs wrote it (JSON), written once.
pub const ORIGINAL_CONFIGURATION: &str = "flagger.kubernetes.io/original-configuration";
/// Where `kubectl apply` already keeps the user's object, so no second copy is needed.
pub const KUBECTL_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub struct IstioRouter {
    client: Client,
}

impl IstioRouter {
    pub fn new(client: Client) -> Self {
        IstioRouter { client }
    }

    fn virtual_services(&self, canary: &Canary) -> kube::Api<DynamicObject> {
        dynamic_api(
            &self.client,
            &namespace(canary),
            (GROUP, VERSION, "VirtualService"),
            "virtualservices",
        )
    }

    fn destination_rules(&self, canary: &Canary) -> kube::Api<DynamicObject> {
        dynamic_api(
            &self.client,
            &namespace(canary),
            (GROUP, VERSION, "DestinationRule"),
            "destinationrules",
        )
    }

    async fn live(&self, canary: &Canary) -> Result<Option<Value>, RouterError> {
        get_value(&self.virtual_services(canary), canary.spec.apex_name()).await
    }

    /// Writes the VirtualService for `routes`, keeping how it relates to the live object.
    async fn apply_virtual_service(
        &self,
        canary: &Canary,
        live: Option<&Value>,
        routes: Routes,
    ) -> Result<(), RouterError> {
        let body = render(canary, routes, &Adoption::of(canary, live)?)?;
        apply_value(
            &self.virtual_services(canary),
            canary.spec.apex_name(),
            &body,
        )
        .await
    }
}

/// How the VirtualService relates to the canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Created by (or for) this canary: owner reference to it.
    Owned,
    /// The user's object, taken over without an owner reference. `original` is the annotation
    /// value to keep (None when `kubectl apply` already keeps the user's version).
    TakenOver { original: Option<String> },
}

impl Adoption {
    /// Decides from the live object: none or one owned by a Canary of this name is ours.
    pub fn of(canary: &Canary, live: Option<&Value>) -> Result<Adoption, RouterError> {
        let Some(live) = live else {
            return Ok(Adoption::Owned);
        };
        let owned = live["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| {
                o["kind"] == "Canary"
                    && o["name"] == canary.metadata.name.as_deref().unwrap_or_default()
            });
        if owned {
            return Ok(Adoption::Owned);
        }
        let annotations = &live["metadata"]["annotations"];
        if let Some(kept) = annotations[ORIGINAL_CONFIGURATION].as_str() {
            return Ok(Adoption::TakenOver {
                original: Some(kept.to_string()),
            });
        }
        if annotations.get(KUBECTL_LAST_APPLIED).is_some() {
            return Ok(Adoption::TakenOver { original: None });
        }
        let spec = live.get("spec").cloned().unwrap_or_else(|| json!({}));
        let original = serde_json::to_string(&spec)
            .map_err(|e| RouterError::Api(format!("encoding the VirtualService spec: {e}")))?;
        Ok(Adoption::TakenOver {
            original: Some(original),
        })
    }
}

fn service(canary: &Canary) -> Result<&CanaryService, RouterError> {
    canary
        .spec
        .service
        .as_ref()
        .ok_or_else(|| RouterError::Invalid("spec.service is required".to_string()))
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, RouterError> {
    serde_json::to_value(v).map_err(|e| RouterError::Invalid(format!("encoding: {e}")))
}

fn is_tcp(svc: &CanaryService) -> bool {
    svc.app_protocol
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("tcp"))
}

/// Destinations name the port only where the mesh cannot infer it: behind an ingress gateway,
/// or in a delegate VirtualService, when the Services have several ports (`portDiscovery`).
fn destination_port(svc: &CanaryService) -> Option<i64> {
    let behind_gateway = svc
        .gateways
        .as_ref()
        .and_then(|g| g.first())
        .is_some_and(|g| g != "mesh");
    let delegated = svc.delegation == Some(true);
    (svc.port_discovery == Some(true) && (behind_gateway || delegated))
        .then(|| svc.port.integer())
        .flatten()
}

fn destination(svc: &CanaryService, host: &str, weight: u32) -> Value {
    let mut d = json!({"host": host});
    if let Some(port) = destination_port(svc) {
        d["port"] = json!({"number": port});
    }
    json!({"destination": d, "weight": weight})
}

/// `service.hosts` plus the apex Service, unless it or `*` is there; nothing when delegated.
fn hosts(svc: &CanaryService, apex: &str) -> Vec<String> {
    if svc.delegation == Some(true) {
        return Vec::new();
    }
    let mut hosts = svc.hosts.clone().unwrap_or_default();
    if !hosts.iter().any(|h| h == apex || h == "*") {
        hosts.push(apex.to_string());
    }
    hosts
}

/// `service.gateways`, the sidecars (`mesh`) when none is named; nothing when delegated.
fn gateways(svc: &CanaryService) -> Vec<String> {
    if svc.delegation == Some(true) {
        return Vec::new();
    }
    match svc.gateways.as_ref().filter(|g| !g.is_empty()) {
        Some(g) => g.clone(),
        None => vec!["mesh".to_string()],
    }
}

fn service_matches(svc: &CanaryService) -> Result<Vec<Value>, RouterError> {
    svc.match_.iter().flatten().map(to_value).collect()
}

/// `analysis.match` × `service.match`: an analysis entry's headers, sourceLabels and
/// queryParams replace the service entry's. Flagger drops the analysis queryParams when the
/// service has matches, which would send every request of the service match to the canary;
/// flagger-rs keeps them.
fn ab_matches(analysis: &[AbMatch], svc: &CanaryService) -> Result<Vec<Value>, RouterError> {
    let defaults: &[HttpMatchRequest] = svc.match_.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for ab in analysis {
        let overlay = to_value(ab)?;
        if defaults.is_empty() {
            out.push(overlay);
            continue;
        }
        for d in defaults {
            let mut merged = to_value(d)?;
            if let (Some(m), Some(o)) = (merged.as_object_mut(), overlay.as_object()) {
                m.extend(o.clone());
            }
            out.push(merged);
        }
    }
    Ok(out)
}

/// An HTTP route with the structural settings of `service` (rewrite, timeout, retries, CORS,
/// headers) and the given matches and destinations.
fn http_route(
    svc: &CanaryService,
    matches: Vec<Value>,
    route: Vec<Value>,
) -> Result<Value, RouterError> {
    let mut r = Map::new();
    if !matches.is_empty() {
        r.insert("match".into(), json!(matches));
    }
    if let Some(rw) = svc.rewrite.as_ref() {
        // Istio's rewrite has no `type` (that is the Gateway API's path-rewrite kind).
        let mut rewrite = Map::new();
        if let Some(uri) = &rw.uri {
            rewrite.insert("uri".into(), json!(uri));
        }
        if let Some(a) = &rw.authority {
            rewrite.insert("authority".into(), json!(a));
        }
        if !rewrite.is_empty() {
            r.insert("rewrite".into(), Value::Object(rewrite));
        }
    }
    if let Some(t) = &svc.timeout {
        r.insert("timeout".into(), json!(t));
    }
    if let Some(retries) = &svc.retries {
        r.insert("retries".into(), to_value(retries)?);
    }
    if let Some(cors) = &svc.cors_policy {
        r.insert("corsPolicy".into(), to_value(cors)?);
    }
    if let Some(h) = &svc.headers {
        r.insert("headers".into(), to_value(h)?);
    }
    r.insert("route".into(), json!(route));
    Ok(Value::Object(r))
}

/// The route that splits `matches` between primary and canary by `routes`, mirroring to the
/// canary while `routes.mirror > 0`. Kept apart so that rules placed before it (sticky
/// session-affinity routes) can be added around it.
fn weighted_route(
    canary: &Canary,
    svc: &CanaryService,
    matches: Vec<Value>,
    routes: Routes,
) -> Result<Value, RouterError> {
    let primary = canary.spec.primary_service_name();
    let canary_host = canary.spec.canary_service_name();
    let mut route = http_route(
        svc,
        matches,
        vec![
            destination(svc, &primary, routes.primary),
            destination(svc, &canary_host, routes.canary),
        ],
    )?;
    if routes.mirror > 0 {
        route["mirror"] = json!({"host": canary_host});
        // 100 % is Istio's default; the percentage is written whenever the user asked for one.
        let configured = canary
            .spec
            .analysis
            .mirror_weight
            .as_ref()
            .and_then(|w| w.integer())
            .is_some_and(|w| w > 0);
        if routes.mirror < 100 || configured {
            route["mirrorPercentage"] = json!({"value": routes.mirror.min(100)});
        }
    }
    Ok(route)
}

/// A response header operation adding `Set-Cookie: value` (added, not set: the application's own
/// cookies must survive), merged into the `headers` already at `at`.
fn add_set_cookie(at: &mut Value, value: &str) {
    at["headers"]["response"]["add"][session_affinity::SET_COOKIE_HEADER] = json!(value);
}

/// The service's matches, each also requiring the request's `Cookie` header to match `regex`
/// (the A/B conditions do not apply: a pinned client stays pinned).
fn cookie_matches(svc: &CanaryService, regex: &str) -> Result<Vec<Value>, RouterError> {
    let mut matches = service_matches(svc)?;
    if matches.is_empty() {
        matches.push(json!({}));
    }
    for m in &mut matches {
        m["headers"][session_affinity::COOKIE_HEADER] = json!({"regex": regex});
    }
    Ok(matches)
}

/// The route for the requests carrying a session-affinity cookie, routed as `sticky` says.
fn sticky_route(
    canary: &Canary,
    svc: &CanaryService,
    sticky: &StickyRule,
    routes: Routes,
) -> Result<Value, RouterError> {
    let (primary, canary_weight) = sticky.destination.weights(routes);
    let pinned = Routes {
        primary,
        canary: canary_weight,
        // Only the expiry route stands in for the weighted route (mirror included); a pinned
        // client is served by one side alone.
        mirror: if sticky.destination == Destination::Weighted {
            routes.mirror
        } else {
            0
        },
    };
    let mut route = weighted_route(
        canary,
        svc,
        cookie_matches(svc, &sticky.cookie_regex)?,
        pinned,
    )?;
    if let Some(cookie) = &sticky.set_cookie {
        add_set_cookie(&mut route, cookie);
    }
    Ok(route)
}

/// The weighted route for `matches`, preceded by the session-affinity routes its cookies call for;
/// its destinations hand out the run's cookies.
fn weighted_routes(
    canary: &Canary,
    svc: &CanaryService,
    matches: Vec<Value>,
    routes: Routes,
) -> Result<Vec<Value>, RouterError> {
    let mut weighted = weighted_route(canary, svc, matches, routes)?;
    let Some(cookies) = session_affinity::cookie_rules(canary, routes) else {
        return Ok(vec![weighted]);
    };
    let mut out = cookies
        .sticky
        .iter()
        .map(|sticky| sticky_route(canary, svc, sticky, routes))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, cookie) in [cookies.primary_set_cookie, cookies.canary_set_cookie]
        .iter()
        .enumerate()
    {
        if let Some(cookie) = cookie {
            add_set_cookie(&mut weighted["route"][i], cookie);
        }
    }
    out.push(weighted);
    Ok(out)
}

fn tcp_routes(canary: &Canary, svc: &CanaryService, routes: Routes) -> Value {
    let matches: Vec<Value> = svc
        .match_
        .iter()
        .flatten()
        .map(|m| match m.port {
            Some(port) => json!({"port": port}),
            None => json!({}),
        })
        .collect();
    let mut r = json!({"route": [
        destination(svc, &canary.spec.primary_service_name(), routes.primary),
        destination(svc, &canary.spec.canary_service_name(), routes.canary),
    ]});
    if !matches.is_empty() {
        r["match"] = json!(matches);
    }
    json!([r])
}

/// The VirtualService spec for `routes`.
fn virtual_service_spec(canary: &Canary, routes: Routes) -> Result<Value, RouterError> {
    let svc = service(canary)?;
    let apex = canary.spec.apex_name();
    let named = |l: &Option<Vec<String>>| l.as_ref().is_some_and(|l| !l.is_empty());
    if svc.delegation == Some(true) && (named(&svc.hosts) || named(&svc.gateways)) {
        return Err(RouterError::Invalid(format!(
            "VirtualService {apex}.{} cannot have hosts and gateways when delegation is enabled",
            namespace(canary)
        )));
    }
    let mut spec = json!({"hosts": hosts(svc, apex), "gateways": gateways(svc)});
    if is_tcp(svc) {
        spec["tcp"] = tcp_routes(canary, svc, routes);
        return Ok(spec);
    }
    let ab = canary.spec.analysis.matches();
    let http = if ab.is_empty() {
        weighted_routes(canary, svc, service_matches(svc)?, routes)?
    } else {
        // Requests that match the A/B conditions are split; all the others stay on the primary.
        let rest = vec![destination(svc, &canary.spec.primary_service_name(), 100)];
        let split = Routes {
            mirror: 0,
            ..routes
        };
        let mut http = weighted_routes(canary, svc, ab_matches(ab, svc)?, split)?;
        http.push(http_route(svc, service_matches(svc)?, rest)?);
        http
    };
    spec["http"] = json!(http);
    Ok(spec)
}

/// The whole VirtualService for `routes`.
pub fn render(canary: &Canary, routes: Routes, adoption: &Adoption) -> Result<Value, RouterError> {
    let (labels, mut annotations) = apex_metadata(canary);
    let mut metadata = json!({
        "name": canary.spec.apex_name(),
        "namespace": namespace(canary),
        "labels": labels,
    });
    match adoption {
        Adoption::Owned => {
            metadata["ownerReferences"] = json!([owner_reference(canary)?]);
        }
        Adoption::TakenOver { original } => {
            if let Some(o) = original {
                annotations.insert(ORIGINAL_CONFIGURATION.to_string(), o.clone());
            }
        }
    }
    metadata["annotations"] = json!(annotations);
    Ok(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "VirtualService",
        "metadata": metadata,
        "spec": virtual_service_spec(canary, routes)?,
    }))
}

/// DestinationRule `host` (`<apex>-primary` or `<apex>-canary`) with `service.trafficPolicy`.
pub fn destination_rule(canary: &Canary, host: &str) -> Result<Value, RouterError> {
    let svc = service(canary)?;
    let mut spec = json!({"host": host});
    if let Some(tp) = &svc.traffic_policy {
        spec["trafficPolicy"] = to_value(tp)?;
    }
    let annotations: BTreeMap<&str, &str> = FLUX_ANNOTATIONS.into_iter().collect();
    Ok(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "DestinationRule",
        "metadata": {
            "name": host,
            "namespace": namespace(canary),
            "annotations": annotations,
            "ownerReferences": [owner_reference(canary)?],
        },
        "spec": spec,
    }))
}

/// Reads the routes back from the route (HTTP, or TCP for `appProtocol: tcp`) that holds the
/// canary destination (with session affinity: whose destinations carry response headers); the
/// mirror percentage from its `mirror`/`mirrorPercentage`.
pub fn parse(canary: &Canary, obj: &Value) -> Result<Routes, RouterError> {
    let primary = canary.spec.primary_service_name();
    let canary_host = canary.spec.canary_service_name();
    let tcp = canary.spec.service.as_ref().is_some_and(is_tcp);
    let list = if tcp { "tcp" } else { "http" };
    let host_of = |d: &Value| d["destination"]["host"].as_str().map(str::to_string);
    let destinations = |r: &Value| r["route"].as_array().cloned().unwrap_or_default();
    let has_canary = |r: &&Value| {
        destinations(r)
            .iter()
            .any(|d| host_of(d).as_deref() == Some(canary_host.as_str()))
    };
    let hands_out_cookies = |r: &Value| {
        destinations(r)
            .iter()
            .any(|d| d["headers"]["response"].is_object())
    };
    let candidates: Vec<&Value> = obj["spec"][list]
        .as_array()
        .into_iter()
        .flatten()
        .filter(has_canary)
        .collect();
    // Session-affinity routes before the weighted one pin clients to one side and say nothing
    // about the split; the weighted route is the one whose destinations hand out cookies.
    let route = candidates
        .iter()
        .copied()
        .find(|r| hands_out_cookies(r))
        .or_else(|| candidates.first().copied());
    let (mut p, mut c, mut mirror) = (0, 0, 0);
    if let Some(route) = route {
        for d in route["route"].as_array().into_iter().flatten() {
            let w = weight(d.get("weight")).unwrap_or(0);
            match host_of(d) {
                Some(h) if h == primary => p = w,
                Some(h) if h == canary_host => c = w,
                _ => {}
            }
        }
        let mirrored = !tcp
            && route["mirror"]["host"]
                .as_str()
                .is_some_and(|h| !h.is_empty());
        if mirrored {
            mirror = route["mirrorPercentage"]["value"]
                .as_f64()
                .map(|v| v.round().clamp(0.0, 100.0) as u32)
                .unwrap_or(100);
        }
    }
    if p == 0 && c == 0 {
        let apex = canary.spec.apex_name();
        return Err(RouterError::Api(format!(
            "VirtualService {apex}.{} does not contain routes for {primary} and {canary_host}",
            namespace(canary)
        )));
    }
    Ok(Routes {
        primary: p,
        canary: c,
        mirror,
    })
}

/// The spec to give back on finalize: the kubectl copy, else the one flagger-rs kept.
pub fn original_spec(obj: &Value) -> Result<Option<Value>, RouterError> {
    let annotations = &obj["metadata"]["annotations"];
    let decode = |key: &str, text: &str| {
        serde_json::from_str::<Value>(text)
            .map_err(|e| RouterError::Api(format!("decoding annotation {key}: {e}")))
    };
    if let Some(text) = annotations[KUBECTL_LAST_APPLIED].as_str() {
        let applied = decode(KUBECTL_LAST_APPLIED, text)?;
        return Ok(Some(
            applied.get("spec").cloned().unwrap_or_else(|| json!({})),
        ));
    }
    if let Some(text) = annotations[ORIGINAL_CONFIGURATION].as_str() {
        return decode(ORIGINAL_CONFIGURATION, text).map(Some);
    }
    Ok(None)
}

impl Router for IstioRouter {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let rules = self.destination_rules(canary);
            for host in [
                canary.spec.canary_service_name(),
                canary.spec.primary_service_name(),
            ] {
                apply_value(&rules, &host, &destination_rule(canary, &host)?).await?;
            }
            let live = self.live(canary).await?;
            // The live routes are carried over: only set_routes moves traffic. A user's
            // VirtualService without our destinations starts at primary 100.
            let routes = live
                .as_ref()
                .and_then(|l| parse(canary, l).ok())
                .unwrap_or(Routes::PRIMARY);
            self.apply_virtual_service(canary, live.as_ref(), routes)
                .await
        })
    }

    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let live = self.live(canary).await?;
            self.apply_virtual_service(canary, live.as_ref(), routes)
                .await
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState> {
        Box::pin(async move {
            let live = self.live(canary).await?.ok_or_else(|| {
                RouterError::Api(format!(
                    "VirtualService {}.{} not found",
                    canary.spec.apex_name(),
                    namespace(canary)
                ))
            })?;
            parse(canary, &live).map(state)
        })
    }

    fn finalize<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let api = self.virtual_services(canary);
            let name = canary.spec.apex_name();
            let Some(live) = api
                .get_opt(name)
                .await
                .map_err(|e| api_error(&format!("reading {name}"), e))?
            else {
                return Ok(());
            };
            let value = to_value(&live)?;
            // A VirtualService created by flagger-rs has nothing to give back (the owner
            // reference removes it with the Canary).
            let Some(spec) = original_spec(&value)? else {
                return Ok(());
            };
            let mut restored = live;
            restored.data["spec"] = spec;
            restored
                .metadata
                .annotations
                .as_mut()
                .map(|a| a.remove(ORIGINAL_CONFIGURATION));
            // A replace, not an apply: the spec must be exactly the user's again, including
            // the fields flagger-rs took over.
            api.replace(name, &PostParams::default(), &restored)
                .await
                .map(|_| ())
                .map_err(|e| api_error(&format!("restoring {name}"), e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;

    /// A Canary behind an ingress gateway with every structural setting the VirtualService carries;
    /// `service` and `analysis` entries given here replace the defaults.
    fn canary(extra_service: Value, extra_analysis: Value) -> Canary {
        let mut service = json!({
            "port": 9898,
            "targetPort": 9898,
            "portDiscovery": true,
            "gateways": ["public-gateway.istio-system.svc.cluster.local", "mesh"],
            "hosts": ["app.example.com"],
            "match": [{"uri": {"prefix": "/api"}}],
            "rewrite": {"uri": "/", "authority": "backend.example.com"},
            "timeout": "30s",
            "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "gateway-error,connect-failure"},
            "headers": {"request": {"set": {"x-served-by": "flagger"}}, "response": {"remove": ["x-envoy-upstream-service-time"]}},
            "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}], "allowMethods": ["GET"], "maxAge": "24h"},
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            "apex": {"labels": {"team": "a", "kustomize.toolkit.fluxcd.io/name": "x"}, "annotations": {"owner": "team-a"}},
        });
        merge(&mut service, extra_service);
        let mut analysis =
            json!({"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10});
        merge(&mut analysis, extra_analysis);
        fixtures::canary(json!({
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": service,
            "analysis": analysis,
        }))
    }

    fn merge(base: &mut Value, extra: Value) {
        if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
            for (k, v) in e {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    b.insert(k, v);
                }
            }
        }
    }

    fn plain() -> Canary {
        canary(json!({}), json!({}))
    }

    fn owned(c: &Canary, routes: Routes) -> Value {
        render(c, routes, &Adoption::Owned).unwrap()
    }

    fn mirrored(percent: u32) -> Routes {
        Routes {
            primary: 100,
            canary: 0,
            mirror: percent,
        }
    }

    #[test]
    fn initial_reconcile() {
        let c = plain();
        let vs = owned(&c, Routes::PRIMARY);
        insta::assert_yaml_snapshot!("initial_virtual_service", vs);
        insta::assert_yaml_snapshot!(
            "initial_destination_rules",
            [
                destination_rule(&c, "podinfo-primary").unwrap(),
                destination_rule(&c, "podinfo-canary").unwrap(),
            ]
        );
        assert_eq!(parse(&c, &vs).unwrap(), Routes::PRIMARY);
    }

    #[test]
    fn canary_step() {
        let c = plain();
        let vs = owned(&c, Routes::split(30));
        insta::assert_yaml_snapshot!(vs["spec"]["http"]);
        assert_eq!(parse(&c, &vs).unwrap(), Routes::split(30));
    }

    #[test]
    fn mesh_only_defaults_apex_host_and_no_destination_port() {
        let c = canary(
            json!({"gateways": null, "hosts": null, "match": null, "rewrite": null, "headers": null,
                   "corsPolicy": null, "retries": null, "timeout": null}),
            json!({}),
        );
        let spec = &owned(&c, Routes::split(10))["spec"];
        assert_eq!(spec["hosts"], json!(["podinfo"]));
        assert_eq!(spec["gateways"], json!(["mesh"]));
        assert_eq!(
            spec["http"],
            json!([{"route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 90},
                {"destination": {"host": "podinfo-canary"}, "weight": 10},
            ]}])
        );
    }

    #[test]
    fn wildcard_or_apex_host_is_not_added_twice() {
        for hosts in [json!(["*"]), json!(["podinfo", "app.example.com"])] {
            let c = canary(json!({"hosts": hosts.clone()}), json!({}));
            assert_eq!(owned(&c, Routes::PRIMARY)["spec"]["hosts"], hosts);
        }
    }

    #[test]
    fn ab_cross_product_with_catch_all_to_primary() {
        let c = canary(
            json!({"match": [{"uri": {"prefix": "/api"}}, {"uri": {"prefix": "/v2"}, "headers": {"x-tenant": {"exact": "a"}}}]}),
            json!({"stepWeight": null, "maxWeight": null, "iterations": 10, "match": [
                {"headers": {"x-canary": {"exact": "insider"}}},
                {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
                {"queryParams": {"canary": {"exact": "yes"}}, "sourceLabels": {"app": "frontend"}},
            ]}),
        );
        let vs = owned(&c, Routes::CANARY);
        insta::assert_yaml_snapshot!(vs["spec"]["http"]);
        assert_eq!(vs["spec"]["http"][0]["match"].as_array().unwrap().len(), 6);
        assert_eq!(parse(&c, &vs).unwrap(), Routes::CANARY);
    }

    #[test]
    fn ab_without_service_match_uses_the_analysis_entries_as_they_are() {
        let c = canary(
            json!({"match": null}),
            json!({"stepWeight": null, "iterations": 10, "match": [
                {"queryParams": {"canary": {"prefix": "y"}}},
            ]}),
        );
        let http = &owned(&c, Routes::CANARY)["spec"]["http"];
        assert_eq!(
            http[0]["match"],
            json!([{"queryParams": {"canary": {"prefix": "y"}}}])
        );
        assert!(
            http[1].get("match").is_none(),
            "the second route takes everything else"
        );
        assert_eq!(
            http[1]["route"],
            json!([{"destination": {"host": "podinfo-primary", "port": {"number": 9898}}, "weight": 100}])
        );
    }

    #[test]
    fn blue_green_mirroring() {
        let c = canary(
            json!({}),
            json!({"stepWeight": null, "maxWeight": null, "iterations": 5, "mirror": true}),
        );
        let vs = owned(&c, mirrored(100));
        insta::assert_yaml_snapshot!(vs["spec"]["http"]);
        assert!(vs["spec"]["http"][0].get("mirrorPercentage").is_none());
        let back = parse(&c, &vs).unwrap();
        assert_eq!(back, mirrored(100));
        assert!(state(back).mirrored);
    }

    #[test]
    fn canary_mirroring_with_mirror_weight() {
        let c = canary(json!({}), json!({"mirror": true, "mirrorWeight": 50}));
        let vs = owned(&c, mirrored(50));
        insta::assert_yaml_snapshot!(vs["spec"]["http"]);
        assert_eq!(parse(&c, &vs).unwrap(), mirrored(50));
        // mirrorWeight 100 is written as Flagger does, though it is Istio's default.
        let c = canary(json!({}), json!({"mirror": true, "mirrorWeight": 100}));
        let vs = owned(&c, mirrored(100));
        assert_eq!(
            vs["spec"]["http"][0]["mirrorPercentage"],
            json!({"value": 100})
        );
    }

    #[test]
    fn progressive_mirroring_writes_the_current_percentage() {
        let c = canary(
            json!({}),
            json!({"mirror": true, "mirrorWeight": 10,
                   "canaryAnalysis": {"stepWeightPromotion": 30, "maxMirrorWeight": 100, "iterations": 4}}),
        );
        for pct in [10, 40, 70, 100] {
            let vs = owned(&c, mirrored(pct));
            assert_eq!(
                vs["spec"]["http"][0]["mirror"],
                json!({"host": "podinfo-canary"})
            );
            assert_eq!(
                vs["spec"]["http"][0]["mirrorPercentage"],
                json!({"value": pct})
            );
            assert_eq!(parse(&c, &vs).unwrap(), mirrored(pct));
        }
    }

    #[test]
    fn tcp() {
        let c = canary(
            json!({"appProtocol": "TCP", "match": [{"port": 9898}]}),
            json!({}),
        );
        let vs = owned(&c, Routes::split(20));
        insta::assert_yaml_snapshot!(vs["spec"]);
        assert!(vs["spec"].get("http").is_none());
        assert_eq!(parse(&c, &vs).unwrap(), Routes::split(20));
    }

    #[test]
    fn delegation() {
        let c = canary(
            json!({"delegation": true, "hosts": null, "gateways": null}),
            json!({}),
        );
        let vs = owned(&c, Routes::split(10));
        insta::assert_yaml_snapshot!(vs["spec"]);
        assert_eq!(vs["spec"]["hosts"], json!([]));
        assert_eq!(
            vs["spec"]["http"][0]["route"][0]["destination"]["port"],
            json!({"number": 9898})
        );
    }

    #[test]
    fn delegation_with_hosts_is_an_error() {
        let c = canary(json!({"delegation": true, "gateways": null}), json!({}));
        let err = render(&c, Routes::PRIMARY, &Adoption::Owned).unwrap_err();
        assert!(err.to_string().contains("delegation"), "{err}");
    }

    #[test]
    fn destination_port_needs_port_discovery() {
        let c = canary(json!({"portDiscovery": null}), json!({}));
        let vs = owned(&c, Routes::PRIMARY);
        assert!(
            vs["spec"]["http"][0]["route"][0]["destination"]
                .get("port")
                .is_none()
        );
    }

    fn user_virtual_service(annotations: Value) -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "podinfo", "namespace": "test", "annotations": annotations},
            "spec": {"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "podinfo"}}]}]},
        })
    }

    #[test]
    fn takeover_keeps_the_previous_spec_once() {
        let c = plain();
        let live = user_virtual_service(json!({}));
        let adoption = Adoption::of(&c, Some(&live)).unwrap();
        let vs = render(&c, Routes::PRIMARY, &adoption).unwrap();
        insta::assert_yaml_snapshot!(vs["metadata"]);
        // Once kept, the annotation is not rewritten from the (now flagger-rs) spec.
        let mut after = vs.clone();
        after["spec"] = owned(&c, Routes::split(10))["spec"].clone();
        assert_eq!(Adoption::of(&c, Some(&after)).unwrap(), adoption);
        let restored = original_spec(&after).unwrap().unwrap();
        assert_eq!(restored, live["spec"]);
    }

    #[test]
    fn takeover_of_a_kubectl_applied_object_keeps_no_copy() {
        let c = plain();
        let applied = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "podinfo"}, "spec": {"hosts": ["podinfo"], "gateways": ["mesh"]}});
        let live = user_virtual_service(
            json!({KUBECTL_LAST_APPLIED: serde_json::to_string(&applied).unwrap()}),
        );
        let adoption = Adoption::of(&c, Some(&live)).unwrap();
        assert_eq!(adoption, Adoption::TakenOver { original: None });
        let vs = render(&c, Routes::PRIMARY, &adoption).unwrap();
        assert!(
            vs["metadata"]["annotations"]
                .get(ORIGINAL_CONFIGURATION)
                .is_none()
        );
        assert!(vs["metadata"].get("ownerReferences").is_none());
        // Finalize prefers the kubectl copy.
        assert_eq!(original_spec(&live).unwrap(), Some(applied["spec"].clone()));
    }

    #[test]
    fn our_own_virtual_service_is_owned_and_has_nothing_to_restore() {
        let c = plain();
        let vs = owned(&c, Routes::split(10));
        assert_eq!(Adoption::of(&c, Some(&vs)).unwrap(), Adoption::Owned);
        assert_eq!(Adoption::of(&c, None).unwrap(), Adoption::Owned);
        assert_eq!(original_spec(&vs).unwrap(), None);
    }

    #[test]
    fn finalize_restore() {
        let c = plain();
        let live = user_virtual_service(json!({}));
        let adoption = Adoption::of(&c, Some(&live)).unwrap();
        let taken = render(&c, Routes::split(40), &adoption).unwrap();
        insta::assert_yaml_snapshot!(original_spec(&taken).unwrap());
    }

    #[test]
    fn promotion_and_rollback_send_everything_to_the_primary() {
        let c = canary(json!({}), json!({"mirror": true, "mirrorWeight": 50}));
        // Promotion ends at 100/0 after the copy; a rollback from a mirrored step drops the mirror.
        let promoted = owned(&c, Routes::PRIMARY);
        insta::assert_yaml_snapshot!("promotion", promoted["spec"]["http"]);
        let rolled_back = owned(&c, Routes::PRIMARY);
        assert!(rolled_back["spec"]["http"][0].get("mirror").is_none());
        assert_eq!(parse(&c, &rolled_back).unwrap(), Routes::PRIMARY);
        // Blue/Green's last analysed tick routes everything to the canary.
        let all_canary = owned(&c, Routes::CANARY);
        insta::assert_yaml_snapshot!("all_to_canary", all_canary["spec"]["http"][0]["route"]);
        assert_eq!(parse(&c, &all_canary).unwrap(), Routes::CANARY);
    }

    #[test]
    fn reconcile_keeps_live_weights_and_mirror() {
        let c = canary(json!({}), json!({"mirror": true, "mirrorWeight": 30}));
        let live = owned(
            &c,
            Routes {
                primary: 70,
                canary: 30,
                mirror: 30,
            },
        );
        let kept = parse(&c, &live).unwrap();
        assert_eq!(owned(&c, kept), live);
    }

    #[test]
    fn get_routes_errors_without_our_destinations() {
        let c = plain();
        let user = user_virtual_service(json!({}));
        let err = parse(&c, &user).unwrap_err().to_string();
        assert_eq!(
            err,
            "VirtualService podinfo.test does not contain routes for podinfo-primary and podinfo-canary"
        );
        let zero = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "podinfo-primary"}, "weight": 0},
            {"destination": {"host": "podinfo-canary"}},
        ]}]}});
        assert!(
            parse(&c, &zero)
                .unwrap_err()
                .to_string()
                .contains("does not contain routes")
        );
    }

    #[test]
    fn get_routes_reads_the_route_holding_the_canary() {
        let c = plain();
        // A first user route without the canary is skipped; weights come from the second.
        let obj = json!({"spec": {"http": [
            {"route": [{"destination": {"host": "other"}, "weight": 100}]},
            {"route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 60},
                {"destination": {"host": "podinfo-canary"}, "weight": 40},
            ], "mirror": {"host": "podinfo-canary"}, "mirrorPercentage": {"value": 12.6}},
        ]}});
        assert_eq!(
            parse(&c, &obj).unwrap(),
            Routes {
                primary: 60,
                canary: 40,
                mirror: 13
            }
        );
        // TCP canaries read `tcp`, never `http`.
        let tcp = canary(json!({"appProtocol": "tcp"}), json!({}));
        assert!(parse(&tcp, &obj).is_err());
        let obj = json!({"spec": {"tcp": [{"route": [
            {"destination": {"host": "podinfo-primary"}, "weight": 100},
            {"destination": {"host": "podinfo-canary"}, "weight": 0},
        ]}]}});
        assert_eq!(parse(&tcp, &obj).unwrap(), Routes::PRIMARY);
    }

    /// A session-affinity canary with the cookies the core put in the status.
    fn sticky(extra_analysis: Value, status: Value) -> Canary {
        let mut analysis = json!({"sessionAffinity": {
            "cookieName": "canary-flagger-cookie",
            "maxAge": 21600,
            "path": "/",
            "secure": true,
        }});
        merge(&mut analysis, extra_analysis);
        let mut c = canary(json!({}), analysis);
        c.status = serde_json::from_value(status).unwrap();
        c
    }

    const CANARY_COOKIE: &str = "canary-flagger-cookie=abcdefghij";

    fn with_primary_cookie() -> Value {
        json!({"sessionAffinity": {
            "cookieName": "canary-flagger-cookie",
            "primaryCookieName": "primary-flagger-cookie",
        }})
    }

    /// Reconcile reads the live weights and renders again with the saved cookies: nothing moves.
    fn reconcile_keeps(c: &Canary, vs: &Value) {
        assert_eq!(&owned(c, parse(c, vs).unwrap()), vs);
    }

    #[test]
    fn session_affinity_step_pins_cookie_holders_and_hands_out_the_cookie() {
        let c = sticky(json!({}), json!({"sessionAffinityCookie": CANARY_COOKIE}));
        let vs = owned(&c, Routes::split(20));
        insta::assert_yaml_snapshot!(vs["spec"]["http"]);
        assert_eq!(parse(&c, &vs).unwrap(), Routes::split(20));
        reconcile_keeps(&c, &vs);
    }

    #[test]
    fn session_affinity_with_primary_cookie_pins_both_sides() {
        let c = sticky(
            with_primary_cookie(),
            json!({
                "sessionAffinityCookie": CANARY_COOKIE,
                "primarySessionAffinityCookie": "primary-flagger-cookie=KLMNOPQRST",
            }),
        );
        let vs = owned(&c, Routes::split(30));
        insta::assert_yaml_snapshot!(vs["spec"]["http"]);
        let http = vs["spec"]["http"].as_array().unwrap();
        assert_eq!(http.len(), 3);
        assert_eq!(
            http[1]["match"][0]["headers"]["Cookie"]["regex"],
            ".*primary-flagger-cookie.*KLMNOPQRST.*"
        );
        assert_eq!(parse(&c, &vs).unwrap(), Routes::split(30));
        reconcile_keeps(&c, &vs);
    }

    #[test]
    fn session_affinity_after_promotion_expires_the_previous_cookie() {
        let c = sticky(
            json!({}),
            json!({"previousSessionAffinityCookie": CANARY_COOKIE}),
        );
        let vs = owned(&c, Routes::PRIMARY);
        insta::assert_yaml_snapshot!(vs["spec"]["http"]);
        // The service's own response headers stay next to the expiring cookie.
        let expiry = &vs["spec"]["http"][0]["headers"]["response"];
        assert_eq!(
            expiry["add"]["Set-Cookie"],
            "canary-flagger-cookie=abcdefghij; Max-Age=-1; Path=/; Secure"
        );
        assert_eq!(expiry["remove"], json!(["x-envoy-upstream-service-time"]));
        assert_eq!(parse(&c, &vs).unwrap(), Routes::PRIMARY);
        reconcile_keeps(&c, &vs);
    }

    #[test]
    fn session_affinity_with_ab_pins_before_the_match_route() {
        let c = sticky(
            json!({"iterations": 10, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}),
            json!({"sessionAffinityCookie": CANARY_COOKIE}),
        );
        let vs = owned(&c, Routes::CANARY);
        insta::assert_yaml_snapshot!(vs["spec"]["http"]);
        assert_eq!(parse(&c, &vs).unwrap(), Routes::CANARY);
        reconcile_keeps(&c, &vs);
    }

    #[test]
    fn session_affinity_without_cookies_yet_is_the_plain_route() {
        let c = sticky(json!({}), json!({}));
        assert_eq!(
            owned(&c, Routes::split(10)),
            owned(&plain(), Routes::split(10))
        );
    }

    #[test]
    fn get_routes_reads_the_route_handing_out_cookies() {
        let c = plain();
        let destination =
            |host: &str, weight: u32| json!({"destination": {"host": host}, "weight": weight});
        let mut canary_side = destination("podinfo-canary", 40);
        canary_side["headers"] = json!({"response": {"add": {"Set-Cookie": CANARY_COOKIE}}});
        // The sticky route comes first and routes everything to the canary; it is not the split.
        let obj = json!({"spec": {"http": [
            {"match": [{"headers": {"Cookie": {"regex": ".*c.*"}}}],
             "route": [destination("podinfo-primary", 0), destination("podinfo-canary", 100)]},
            {"route": [destination("podinfo-primary", 60), canary_side]},
        ]}});
        assert_eq!(parse(&c, &obj).unwrap(), Routes::split(40));
    }
}
