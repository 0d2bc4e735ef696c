//! `contour`: HTTPProxy `<apex>` (projectcontour.io/v1) whose route splits `<apex>-primary` and
//! `<apex>-canary` by weight. The proxy has no virtual host: the user's root HTTPProxy includes it.
//!
//! A/B: one weighted route per `analysis.match` entry (its header conditions are ANDed by Contour,
//! the entries are alternatives), then a route without header conditions that sends everything else
//! to the primary.

use std::collections::BTreeMap;

use flagger_api::Canary;
use flagger_api::service::HeaderOperations;
use flagger_api::string_match::HeaderMatch;
use flagger_core::Routes;
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::{Map, Value, json};

use super::one_object::one_object;
use super::{
    RouterError, RouterFuture, apex_metadata, apply_value, dynamic_api, ensure_some_weight,
    namespace, owned_metadata, primary_entry_share, service_port,
};

const GVK: (&str, &str, &str) = ("projectcontour.io", "v1", "HTTPProxy");
const PLURAL: &str = "httpproxies";
/// The annotation Contour releases before `spec.ingressClassName` read the class from (and which
/// still takes precedence over the field when present).
pub const INGRESS_CLASS_ANNOTATION: &str = "projectcontour.io/ingress.class";
/// Linkerd routes by this header when Contour runs in front of a Linkerd mesh: it names the Service
/// the request is for, so the mesh does not re-balance it across primary and canary.
const LINKERD_OVERRIDE: &str = "l5d-dst-override";
/// Contour's idle timeout next to the response timeout, as Flagger sets it.
const IDLE_TIMEOUT: &str = "5m";

pub struct ContourRouter {
    client: Client,
    ingress_class: String,
}

impl ContourRouter {
    /// `ingress_class` is the controller's `-ingress-class` flag (empty = unset).
    pub fn new(client: Client, ingress_class: String) -> Self {
        ContourRouter {
            client,
            ingress_class,
        }
    }

    fn api(&self, canary: &Canary) -> Api<DynamicObject> {
        dynamic_api(&self.client, &namespace(canary), GVK, PLURAL)
    }

    async fn apply(&self, canary: &Canary, routes: Routes) -> Result<(), RouterError> {
        let body = render(canary, routes, &self.ingress_class)?;
        apply_value(&self.api(canary), canary.spec.apex_name(), &body).await
    }
}

/// The path prefix every route matches: the first `service.match` URI prefix, else `/`.
fn path_prefix(canary: &Canary) -> String {
    canary
        .spec
        .service
        .iter()
        .flat_map(|s| s.match_.iter().flatten())
        .find_map(|m| m.uri.as_ref().and_then(|u| u.prefix.clone()))
        .unwrap_or_else(|| "/".to_string())
}

/// A header condition in Contour's terms. Contour has no prefix or suffix match: like Flagger,
/// both become `contains`.
fn header_condition(name: &str, m: &HeaderMatch) -> Result<Value, RouterError> {
    let (op, value) = match (&m.exact, &m.prefix, &m.suffix, &m.regex) {
        (Some(v), ..) => ("exact", v),
        (None, Some(v), ..) | (None, None, Some(v), _) => ("contains", v),
        (None, None, None, Some(v)) => ("regex", v),
        _ => {
            return Err(RouterError::Invalid(format!(
                "analysis.match header {name} has no exact, prefix, suffix or regex value"
            )));
        }
    };
    Ok(json!({"name": name, op: value}))
}

/// The conditions of each weighted route: the prefix alone, or (A/B) the prefix and the headers of
/// one `analysis.match` entry, each its own condition (Contour refuses a second prefix in a route).
fn weighted_conditions(canary: &Canary) -> Result<Vec<Vec<Value>>, RouterError> {
    let prefix = path_prefix(canary);
    let matches = canary.spec.analysis.matches();
    if matches.is_empty() {
        return Ok(vec![vec![json!({"prefix": prefix})]]);
    }
    matches
        .iter()
        .map(|m| {
            let mut conditions = vec![json!({"prefix": prefix})];
            for (name, h) in m.headers.iter().flatten() {
                conditions.push(json!({"header": header_condition(name, h)?}));
            }
            Ok(conditions)
        })
        .collect()
}

/// Contour sets and removes headers; an `add` of Flagger's header operations is written as a set
/// (the same for a header the request does not carry yet).
fn headers_policy(ops: &HeaderOperations) -> Option<Value> {
    let mut set: BTreeMap<&str, &str> = BTreeMap::new();
    for map in [&ops.add, &ops.set].into_iter().flatten() {
        for (k, v) in map {
            set.insert(k, v);
        }
    }
    let mut policy = Map::new();
    if !set.is_empty() {
        let entries: Vec<Value> = set
            .into_iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        policy.insert("set".into(), json!(entries));
    }
    if let Some(remove) = ops.remove.as_ref().filter(|r| !r.is_empty()) {
        policy.insert("remove".into(), json!(remove));
    }
    (!policy.is_empty()).then_some(Value::Object(policy))
}

/// What every route carries besides its conditions and services: timeouts, retries, headers.
fn route_policies(canary: &Canary) -> Map<String, Value> {
    let mut route = Map::new();
    let Some(svc) = canary.spec.service.as_ref() else {
        return route;
    };
    if let Some(t) = svc.timeout.as_ref().filter(|t| !t.is_empty()) {
        route.insert(
            "timeoutPolicy".into(),
            json!({"response": t, "idle": IDLE_TIMEOUT}),
        );
    }
    if let Some(r) = svc.retries.as_ref() {
        let mut retry = Map::new();
        if let Some(n) = r.attempts {
            retry.insert("count".into(), json!(n));
        }
        if let Some(t) = r.per_try_timeout.as_ref().filter(|t| !t.is_empty()) {
            retry.insert("perTryTimeout".into(), json!(t));
        }
        let on: Vec<&str> = r
            .retry_on
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if !on.is_empty() {
            retry.insert("retryOn".into(), json!(on));
        }
        route.insert("retryPolicy".into(), Value::Object(retry));
    }
    if let Some(h) = svc.headers.as_ref() {
        for (field, ops) in [
            ("requestHeadersPolicy", &h.request),
            ("responseHeadersPolicy", &h.response),
        ] {
            if let Some(policy) = ops.as_ref().and_then(headers_policy) {
                route.insert(field.into(), policy);
            }
        }
    }
    route
}

fn services(canary: &Canary, port: i64, routes: Routes) -> Vec<Value> {
    let ns = namespace(canary);
    [
        (canary.spec.primary_service_name(), routes.primary),
        (canary.spec.canary_service_name(), routes.canary),
    ]
    .into_iter()
    .map(|(name, weight)| {
        let dst = format!("{name}.{ns}.svc.cluster.local:{port}");
        json!({
            "name": name, "port": port, "weight": weight,
            "requestHeadersPolicy": {"set": [{"name": LINKERD_OVERRIDE, "value": dst}]},
        })
    })
    .collect()
}

/// The whole HTTPProxy for `routes`; `ingress_class` is the `-ingress-class` flag (empty = unset).
pub fn render(canary: &Canary, routes: Routes, ingress_class: &str) -> Result<Value, RouterError> {
    ensure_some_weight("contour", routes)?;
    let port = service_port(canary)?;
    let policies = route_policies(canary);
    let route = |conditions: Vec<Value>, routes: Routes| {
        let mut r = policies.clone();
        r.insert("conditions".into(), json!(conditions));
        r.insert("services".into(), json!(services(canary, port, routes)));
        Value::Object(r)
    };
    let mut out: Vec<Value> = weighted_conditions(canary)?
        .into_iter()
        .map(|c| route(c, routes))
        .collect();
    if !canary.spec.analysis.matches().is_empty() {
        out.push(route(
            vec![json!({"prefix": path_prefix(canary)})],
            Routes::PRIMARY,
        ));
    }
    let (labels, mut annotations) = apex_metadata(canary);
    let mut spec = json!({"routes": out});
    if !ingress_class.is_empty() {
        annotations.insert(
            INGRESS_CLASS_ANNOTATION.to_string(),
            ingress_class.to_string(),
        );
        spec["ingressClassName"] = json!(ingress_class);
    }
    Ok(json!({
        "apiVersion": "projectcontour.io/v1",
        "kind": "HTTPProxy",
        "metadata": owned_metadata(canary, canary.spec.apex_name(), labels, annotations)?,
        "spec": spec,
    }))
}

/// Reads the routes back from the first route: the primary's weight, canary = 100 − primary.
pub fn parse(canary: &Canary, obj: &Value) -> Result<Routes, RouterError> {
    let name = canary.spec.apex_name();
    let primary_name = canary.spec.primary_service_name();
    let services = obj["spec"]["routes"][0]["services"]
        .as_array()
        .filter(|s| s.len() >= 2)
        .ok_or_else(|| {
            RouterError::Api(format!(
                "HTTPProxy {name} has no route with primary and canary services"
            ))
        })?;
    primary_entry_share(
        services,
        |s| s["name"] == primary_name.as_str(),
        || format!("HTTPProxy {name} does not contain routes for {primary_name}"),
    )
}

one_object!(ContourRouter, "HTTPProxy", api);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;

    fn canary(extra_service: Value, extra_analysis: Value) -> Canary {
        let mut service = json!({
            "port": 9898,
            "apex": {"labels": {"team": "a"}, "annotations": {"kustomize.toolkit.fluxcd.io/x": "y"}},
        });
        let mut analysis =
            json!({"interval": "15s", "threshold": 5, "maxWeight": 50, "stepWeight": 10});
        for (base, extra) in [
            (&mut service, extra_service),
            (&mut analysis, extra_analysis),
        ] {
            if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
        }
        fixtures::canary(json!({
            "provider": "contour",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": service,
            "analysis": analysis,
        }))
    }

    fn full() -> Canary {
        canary(
            json!({
                "match": [{"uri": {"prefix": "/api"}}],
                "timeout": "30s",
                "retries": {"attempts": 3, "perTryTimeout": "5s", "retryOn": "5xx, gateway-error"},
                "headers": {
                    "request": {"add": {"x-b": "2"}, "set": {"x-a": "1"}, "remove": ["x-internal"]},
                    "response": {"set": {"x-served-by": "flagger"}},
                },
            }),
            json!({}),
        )
    }

    #[test]
    fn initial_routes() {
        let obj = render(&canary(json!({}), json!({})), Routes::PRIMARY, "").unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(
            parse(&canary(json!({}), json!({})), &obj).unwrap(),
            Routes::PRIMARY
        );
    }

    #[test]
    fn canary_step_with_policies_and_ingress_class() {
        let obj = render(&full(), Routes::split(30), "contour-public").unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&full(), &obj).unwrap(), Routes::split(30));
    }

    #[test]
    fn ab_routes_one_weighted_route_per_match_then_primary() {
        let c = canary(
            json!({"match": [{"uri": {"prefix": "/api"}}]}),
            json!({"iterations": 5, "match": [
                {"headers": {"x-canary": {"exact": "insider"}, "user-agent": {"suffix": "Firefox"}}},
                {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
            ]}),
        );
        let obj = render(&c, Routes::CANARY, "").unwrap();
        insta::assert_yaml_snapshot!(obj["spec"]);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::CANARY);
        let routes = obj["spec"]["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[2]["services"][1]["weight"], 0);
    }

    #[test]
    fn promotion_and_rollback_round_trip() {
        let c = full();
        for routes in [Routes::CANARY, Routes::PRIMARY, Routes::split(90)] {
            let obj = render(&c, routes, "").unwrap();
            assert_eq!(parse(&c, &obj).unwrap(), routes);
        }
    }

    #[test]
    fn both_zero_is_an_error() {
        let none = Routes {
            primary: 0,
            canary: 0,
            mirror: 0,
        };
        assert!(render(&full(), none, "").is_err());
    }

    #[test]
    fn a_proxy_without_weighted_services_is_an_error() {
        let c = full();
        assert!(parse(&c, &json!({"spec": {"routes": []}})).is_err());
        let other = json!({"spec": {"routes": [{"services": [{"name": "a"}, {"name": "b"}]}]}});
        assert!(parse(&c, &other).is_err());
    }
}
