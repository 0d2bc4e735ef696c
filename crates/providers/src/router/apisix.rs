//! `apisix`: ApisixRoute `<routeRef>-<apex>-canary` (apisix.apache.org/v2) made from the user's
//! `routeRef` route: its `http` entry that sends to `<apex>`, given the highest priority so APISIX
//! picks it over the user's own, with that backend split into `<apex>-primary` and `<apex>-canary`
//! by weight. The user's route is never written; deleting the Canary deletes the generated one.
//!
//! APISIX routes are not matched on headers by Flagger's router, so A/B testing and mirroring are
//! not offered for it (validation refuses the one and ignores the other).

use std::collections::BTreeMap;

use flagger_api::Canary;
use flagger_core::Routes;
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

use super::one_object::one_object;
use super::{
    FLUX_ANNOTATIONS, RouterError, RouterFuture, apply_value, dynamic_api, ensure_some_weight,
    get_value, namespace, owned_metadata, primary_entry_share, without_flux,
};

const GVK: (&str, &str, &str) = ("apisix.apache.org", "v2", "ApisixRoute");
const PLURAL: &str = "apisixroutes";
/// Above any priority a user gives their own routes, so the generated route wins for the same match.
const PRIORITY: i64 = 10000;
/// What the copied backend keeps besides its service and weight, for the canary's backend as well.
const SHARED_BACKEND_FIELDS: [&str; 3] = ["servicePort", "resolveGranularity", "subset"];

pub struct ApisixRouter {
    client: Client,
}

impl ApisixRouter {
    pub fn new(client: Client) -> Self {
        ApisixRouter { client }
    }

    fn api(&self, canary: &Canary) -> Api<DynamicObject> {
        dynamic_api(&self.client, &namespace(canary), GVK, PLURAL)
    }

    /// The user's `routeRef` route; missing is an error the next tick retries.
    async fn user_route(&self, canary: &Canary) -> Result<Value, RouterError> {
        let name = route_ref(canary)?;
        get_value(&self.api(canary), name).await?.ok_or_else(|| {
            RouterError::Api(format!(
                "ApisixRoute {name}.{} named by routeRef not found",
                namespace(canary)
            ))
        })
    }

    async fn apply(&self, canary: &Canary, routes: Routes) -> Result<(), RouterError> {
        let body = render(canary, &self.user_route(canary).await?, routes)?;
        apply_value(&self.api(canary), &canary_route_name(canary)?, &body).await
    }
}

fn route_ref(canary: &Canary) -> Result<&str, RouterError> {
    canary
        .spec
        .route_ref
        .as_ref()
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            RouterError::Invalid("spec.routeRef is required with the apisix provider".to_string())
        })
}

/// `<routeRef>-<apex>-canary`, the name Flagger gives it (and its builtin metric queries match).
pub fn canary_route_name(canary: &Canary) -> Result<String, RouterError> {
    Ok(format!(
        "{}-{}-canary",
        route_ref(canary)?,
        canary.spec.apex_name()
    ))
}

fn backends(entry: &Value) -> &[Value] {
    entry["backends"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The first `http` entry with a backend named `service`.
fn entry_for<'v>(route: &'v Value, service: &str) -> Option<&'v Value> {
    route["spec"]["http"]
        .as_array()?
        .iter()
        .find(|e| backends(e).iter().any(|b| b["serviceName"] == service))
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    let map: Option<BTreeMap<String, String>> = serde_json::from_value(v.clone()).ok();
    without_flux(map.as_ref())
}

/// The generated ApisixRoute for `routes`, made from the user's route `user`.
pub fn render(canary: &Canary, user: &Value, routes: Routes) -> Result<Value, RouterError> {
    ensure_some_weight("apisix", routes)?;
    let apex = canary.spec.apex_name();
    let user_name = route_ref(canary)?;
    let mut entry = entry_for(user, apex).cloned().ok_or_else(|| {
        RouterError::Invalid(format!(
            "ApisixRoute {user_name} has no http route with a backend {apex}"
        ))
    })?;
    let [backend] = backends(&entry) else {
        return Err(RouterError::Invalid(format!(
            "ApisixRoute {user_name}: the http route {} that sends to {apex} must have exactly one backend",
            entry["name"].as_str().unwrap_or_default()
        )));
    };
    let mut primary = backend.clone();
    primary["serviceName"] = json!(canary.spec.primary_service_name());
    primary["weight"] = json!(routes.primary);
    let mut canary_backend = json!({
        "serviceName": canary.spec.canary_service_name(),
        "weight": routes.canary,
    });
    for field in SHARED_BACKEND_FIELDS {
        if let Some(v) = backend.get(field) {
            canary_backend[field] = v.clone();
        }
    }
    entry["priority"] = json!(PRIORITY);
    entry["backends"] = json!([primary, canary_backend]);

    let mut annotations = string_map(&user["metadata"]["annotations"]);
    for (k, v) in FLUX_ANNOTATIONS {
        annotations.insert(k.to_string(), v.to_string());
    }
    let labels = string_map(&user["metadata"]["labels"]);
    // Only the one http entry: the user's stream routes and other http entries stay theirs alone
    // (a copy would serve them twice under a second route id).
    let mut spec = json!({"http": [entry]});
    if let Some(class) = user["spec"].get("ingressClassName") {
        spec["ingressClassName"] = class.clone();
    }
    Ok(json!({
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": owned_metadata(canary, &canary_route_name(canary)?, labels, annotations)?,
        "spec": spec,
    }))
}

/// The primary backend's weight in the generated route, canary = 100 − primary.
pub fn parse(canary: &Canary, obj: &Value) -> Result<Routes, RouterError> {
    let primary = canary.spec.primary_service_name();
    let missing = || {
        format!(
            "ApisixRoute {} does not contain routes for {primary}",
            obj["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    let entry = entry_for(obj, &primary).ok_or_else(|| RouterError::Api(missing()))?;
    primary_entry_share(
        backends(entry),
        |b| b["serviceName"] == primary.as_str(),
        missing,
    )
}

one_object!(ApisixRouter, "ApisixRoute", api, name: canary_route_name);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;

    fn canary(analysis: Value) -> Canary {
        fixtures::canary(json!({
            "provider": "apisix",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"},
            "service": {"port": 80, "targetPort": 9898},
            "analysis": analysis,
        }))
    }

    fn weighted() -> Canary {
        canary(json!({"interval": "15s", "threshold": 5, "maxWeight": 50, "stepWeight": 10}))
    }

    /// A user's route as the Flagger tutorial writes it, with a second http entry and a stream
    /// route the generated one must leave out.
    fn user_route() -> Value {
        json!({
            "apiVersion": "apisix.apache.org/v2",
            "kind": "ApisixRoute",
            "metadata": {
                "name": "podinfo", "namespace": "test",
                "labels": {"app": "podinfo", "kustomize.toolkit.fluxcd.io/name": "apps"},
                "annotations": {"team": "a"},
            },
            "spec": {
                "ingressClassName": "apisix",
                "http": [
                    {"name": "static", "match": {"paths": ["/static/*"]},
                     "backends": [{"serviceName": "static", "servicePort": 80}]},
                    {"name": "method", "priority": 1,
                     "match": {"hosts": ["app.example.com"], "methods": ["GET"], "paths": ["/*"]},
                     "plugins": [{"name": "prometheus", "enable": true, "config": {"disable": false}}],
                     "backends": [{"serviceName": "podinfo", "servicePort": 80, "resolveGranularity": "service", "subset": "v1"}]},
                ],
                "stream": [{"name": "tcp", "protocol": "TCP", "match": {"ingressPort": 9100},
                            "backend": {"serviceName": "podinfo", "servicePort": 9100}}],
            },
        })
    }

    #[test]
    fn initial_route() {
        let obj = render(&weighted(), &user_route(), Routes::PRIMARY).unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&weighted(), &obj).unwrap(), Routes::PRIMARY);
    }

    #[test]
    fn canary_step() {
        let obj = render(&weighted(), &user_route(), Routes::split(30)).unwrap();
        insta::assert_yaml_snapshot!(obj["spec"]);
        assert_eq!(parse(&weighted(), &obj).unwrap(), Routes::split(30));
    }

    /// Blue/green is the canary strategy's weights at 0 and 100: all to the canary while the
    /// iterations run, back to the primary at promotion.
    #[test]
    fn blue_green_sends_everything_to_the_canary() {
        let c = canary(json!({"interval": "15s", "threshold": 5, "iterations": 5}));
        let obj = render(&c, &user_route(), Routes::CANARY).unwrap();
        insta::assert_yaml_snapshot!(obj["spec"]["http"][0]["backends"]);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::CANARY);
        assert_eq!(
            parse(&c, &render(&c, &user_route(), Routes::PRIMARY).unwrap()).unwrap(),
            Routes::PRIMARY
        );
    }

    #[test]
    fn names_and_user_route_errors() {
        let c = weighted();
        assert_eq!(canary_route_name(&c).unwrap(), "podinfo-podinfo-canary");
        let none = Routes {
            primary: 0,
            canary: 0,
            mirror: 0,
        };
        assert!(render(&c, &user_route(), none).is_err());
        let mut two = user_route();
        two["spec"]["http"][1]["backends"]
            .as_array_mut()
            .unwrap()
            .push(json!({"serviceName": "other", "servicePort": 80}));
        let e = render(&c, &two, Routes::PRIMARY).unwrap_err().to_string();
        assert!(e.contains("exactly one backend"), "{e}");
        let mut elsewhere = user_route();
        elsewhere["spec"]["http"][1]["backends"][0]["serviceName"] = json!("other");
        let e = render(&c, &elsewhere, Routes::PRIMARY)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no http route with a backend podinfo"), "{e}");
        let mut unnamed = c.clone();
        unnamed.spec.route_ref = None;
        assert!(canary_route_name(&unnamed).is_err());
        assert!(parse(&c, &json!({"spec": {"http": []}})).is_err());
    }
}
