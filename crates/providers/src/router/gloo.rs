//! `gloo`: Upstreams `<ns>-<apex>-primaryupstream-<port>` and `<ns>-<apex>-canaryupstream-<port>`
//! (gloo.solo.io/v1) for the primary and canary Services, and a RouteTable `<apex>` (gateway.solo.io/v1)
//! splitting between them. The user's VirtualService delegates to the RouteTable.
//!
//! `upstreamRef` names an Upstream whose connection settings (TLS, circuit breakers, load balancing,
//! HTTP/2, …) the generated Upstreams copy; they are rendered again at every weight change, so an
//! edit of the referenced Upstream reaches them during the next run.
//!
//! A/B: one matcher per `analysis.match` entry (Gloo ORs matchers and ANDs the headers inside one) on
//! the weighted route, then a route without matchers keeps everything else on the primary.

use flagger_api::Canary;
use flagger_api::string_match::HeaderMatch;
use flagger_core::Routes;
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::{Map, Value, json};

use super::one_object::one_object;
use super::{
    RouterError, RouterFuture, apex_metadata, apply_value, dynamic_api, ensure_some_weight,
    get_value, namespace, owned_metadata, owner_reference, primary_entry_share, service_port,
    without_flux,
};

const UPSTREAM: (&str, &str, &str) = ("gloo.solo.io", "v1", "Upstream");
const ROUTE_TABLE: (&str, &str, &str) = ("gateway.solo.io", "v1", "RouteTable");

/// Settings of the `upstreamRef` Upstream the generated ones copy (Flagger's list; both spellings of
/// the proxy host name field, as Flagger writes one and Gloo documents the other).
const TEMPLATE_FIELDS: [&str; 9] = [
    "sslConfig",
    "circuitBreakers",
    "connectionConfig",
    "loadBalancerConfig",
    "useHttp2",
    "initialStreamWindowSize",
    "initialConnectionWindowSize",
    "httpProxyHostname",
    "httpProxyHostName",
];

pub struct GlooRouter {
    client: Client,
}

/// Which generated Upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Primary,
    Canary,
}

impl GlooRouter {
    pub fn new(client: Client) -> Self {
        GlooRouter { client }
    }

    fn api(&self, canary: &Canary, gvk: (&str, &str, &str), plural: &str) -> Api<DynamicObject> {
        dynamic_api(&self.client, &namespace(canary), gvk, plural)
    }

    fn route_tables(&self, canary: &Canary) -> Api<DynamicObject> {
        self.api(canary, ROUTE_TABLE, "routetables")
    }

    /// The `upstreamRef` Upstream, if the canary names one; an error when it is missing (the next tick
    /// tries again).
    async fn template(&self, canary: &Canary) -> Result<Option<Value>, RouterError> {
        let Some(r) = canary.spec.upstream_ref.as_ref() else {
            return Ok(None);
        };
        let ns = r.namespace.clone().unwrap_or_else(|| namespace(canary));
        let api = dynamic_api(&self.client, &ns, UPSTREAM, "upstreams");
        match get_value(&api, &r.name).await? {
            Some(u) => Ok(Some(u)),
            None => Err(RouterError::Api(format!(
                "Upstream {}.{ns} named by upstreamRef not found",
                r.name
            ))),
        }
    }

    async fn apply_upstreams(&self, canary: &Canary) -> Result<(), RouterError> {
        let template = self.template(canary).await?;
        let api = self.api(canary, UPSTREAM, "upstreams");
        for side in [Side::Primary, Side::Canary] {
            let body = upstream(canary, side, template.as_ref())?;
            apply_value(&api, &upstream_name(canary, side)?, &body).await?;
        }
        Ok(())
    }

    async fn apply(&self, canary: &Canary, routes: Routes) -> Result<(), RouterError> {
        self.apply_upstreams(canary).await?;
        let body = route_table(canary, routes)?;
        apply_value(&self.route_tables(canary), canary.spec.apex_name(), &body).await
    }
}

/// `<ns>-<apex>-primaryupstream-<port>` / `<ns>-<apex>-canaryupstream-<port>`.
pub fn upstream_name(canary: &Canary, side: Side) -> Result<String, RouterError> {
    let which = match side {
        Side::Primary => "primary",
        Side::Canary => "canary",
    };
    Ok(format!(
        "{}-{}-{which}upstream-{}",
        namespace(canary),
        canary.spec.apex_name(),
        service_port(canary)?
    ))
}

/// The Upstream of one side: the Kubernetes Service and port, plus the template's settings.
pub fn upstream(
    canary: &Canary,
    side: Side,
    template: Option<&Value>,
) -> Result<Value, RouterError> {
    let ns = namespace(canary);
    let service = match side {
        Side::Primary => canary.spec.primary_service_name(),
        Side::Canary => canary.spec.canary_service_name(),
    };
    let mut spec = Map::new();
    spec.insert(
        "kube".into(),
        json!({"serviceName": service, "serviceNamespace": ns, "servicePort": service_port(canary)?}),
    );
    let mut labels = Default::default();
    if let Some(t) = template {
        for field in TEMPLATE_FIELDS {
            if let Some(v) = t["spec"].get(field) {
                spec.insert(field.into(), v.clone());
            }
        }
        let from: Option<std::collections::BTreeMap<String, String>> =
            serde_json::from_value(t["metadata"]["labels"].clone()).ok();
        labels = without_flux(from.as_ref());
    }
    Ok(json!({
        "apiVersion": "gloo.solo.io/v1",
        "kind": "Upstream",
        "metadata": {
            "name": upstream_name(canary, side)?,
            "namespace": ns,
            "labels": labels,
            "ownerReferences": [owner_reference(canary)?],
        },
        "spec": spec,
    }))
}

fn header_matcher(name: &str, m: &HeaderMatch) -> Result<Value, RouterError> {
    match (&m.exact, &m.regex) {
        (Some(v), _) => Ok(json!({"name": name, "value": v})),
        (None, Some(v)) => Ok(json!({"name": name, "value": v, "regex": true})),
        _ => Err(RouterError::Invalid(format!(
            "gloo: analysis.match header {name} must be matched by exact or regex"
        ))),
    }
}

/// One matcher per `analysis.match` entry; empty when the canary is not A/B.
fn ab_matchers(canary: &Canary) -> Result<Vec<Value>, RouterError> {
    let entries = canary.spec.analysis.matches();
    entries
        .iter()
        .map(|m| {
            let headers = m
                .headers
                .iter()
                .flatten()
                .map(|(name, h)| header_matcher(name, h))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(json!({"headers": headers}))
        })
        .collect()
}

fn weighted_route(
    canary: &Canary,
    routes: Routes,
    matchers: Vec<Value>,
) -> Result<Value, RouterError> {
    let ns = namespace(canary);
    let destination = |side, weight| -> Result<Value, RouterError> {
        Ok(json!({
            "destination": {"upstream": {"name": upstream_name(canary, side)?, "namespace": ns}},
            "weight": weight,
        }))
    };
    let mut route = json!({
        "inheritablePathMatchers": true,
        "routeAction": {"multi": {"destinations": [
            destination(Side::Primary, routes.primary)?,
            destination(Side::Canary, routes.canary)?,
        ]}},
    });
    if !matchers.is_empty() {
        route["matchers"] = json!(matchers);
    }
    Ok(route)
}

/// The whole RouteTable for `routes`.
pub fn route_table(canary: &Canary, routes: Routes) -> Result<Value, RouterError> {
    ensure_some_weight("gloo", routes)?;
    let matchers = ab_matchers(canary)?;
    let ab = !matchers.is_empty();
    let mut out = vec![weighted_route(canary, routes, matchers)?];
    if ab {
        out.push(weighted_route(canary, Routes::PRIMARY, Vec::new())?);
    }
    let (labels, annotations) = apex_metadata(canary);
    Ok(json!({
        "apiVersion": "gateway.solo.io/v1",
        "kind": "RouteTable",
        "metadata": owned_metadata(canary, canary.spec.apex_name(), labels, annotations)?,
        "spec": {"routes": out},
    }))
}

/// The primary's weight in the first route, canary = 100 − primary.
pub fn parse(canary: &Canary, obj: &Value) -> Result<Routes, RouterError> {
    let name = canary.spec.apex_name();
    let destinations = obj["spec"]["routes"][0]["routeAction"]["multi"]["destinations"]
        .as_array()
        .filter(|d| d.len() >= 2)
        .ok_or_else(|| {
            RouterError::Api(format!(
                "RouteTable {name} has no primary and canary destinations"
            ))
        })?;
    let primary = upstream_name(canary, Side::Primary)?;
    primary_entry_share(
        destinations,
        |d| d["destination"]["upstream"]["name"] == primary.as_str(),
        || format!("RouteTable {name} does not contain routes for {primary}"),
    )
}

one_object!(GlooRouter, "RouteTable", route_tables);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;

    fn canary(extra_analysis: Value) -> Canary {
        let mut analysis =
            json!({"interval": "15s", "threshold": 5, "maxWeight": 50, "stepWeight": 10});
        if let (Some(a), Some(e)) = (analysis.as_object_mut(), extra_analysis.as_object()) {
            a.extend(e.clone());
        }
        fixtures::canary(json!({
            "provider": "gloo",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "upstreamRef": {"apiVersion": "gloo.solo.io/v1", "kind": "Upstream", "name": "template"},
            "service": {"port": 9898, "apex": {"labels": {"team": "a"}}},
            "analysis": analysis,
        }))
    }

    fn template() -> Value {
        json!({
            "metadata": {"name": "template", "labels": {"tier": "backend", "kustomize.toolkit.fluxcd.io/name": "x"}},
            "spec": {
                "kube": {"serviceName": "other", "servicePort": 80},
                "connectionConfig": {"maxRequestsPerConnection": 100},
                "circuitBreakers": {"maxConnections": 10},
                "useHttp2": true,
                "healthChecks": [{"timeout": "1s"}],
            },
        })
    }

    #[test]
    fn upstreams_copy_the_template_settings() {
        let c = canary(json!({}));
        let primary = upstream(&c, Side::Primary, Some(&template())).unwrap();
        insta::assert_yaml_snapshot!(primary);
        let plain = upstream(&c, Side::Canary, None).unwrap();
        assert_eq!(
            plain["metadata"]["name"],
            "test-podinfo-canaryupstream-9898"
        );
        assert_eq!(
            plain["spec"],
            json!({"kube": {"serviceName": "podinfo-canary", "serviceNamespace": "test", "servicePort": 9898}})
        );
    }

    #[test]
    fn canary_step() {
        let c = canary(json!({}));
        let obj = route_table(&c, Routes::split(30)).unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::split(30));
    }

    #[test]
    fn ab_matchers_then_catch_all_to_the_primary() {
        let c = canary(json!({"iterations": 5, "match": [
            {"headers": {"x-canary": {"exact": "insider"}, "x-region": {"regex": "eu-.*"}}},
            {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
        ]}));
        let obj = route_table(&c, Routes::CANARY).unwrap();
        insta::assert_yaml_snapshot!(obj["spec"]);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::CANARY);
        let routes = obj["spec"]["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 2);
        assert!(routes[1].get("matchers").is_none());
    }

    #[test]
    fn promotion_rollback_and_errors() {
        let c = canary(json!({}));
        for routes in [Routes::CANARY, Routes::PRIMARY] {
            assert_eq!(
                parse(&c, &route_table(&c, routes).unwrap()).unwrap(),
                routes
            );
        }
        let none = Routes {
            primary: 0,
            canary: 0,
            mirror: 0,
        };
        assert!(route_table(&c, none).is_err());
        let one = json!({"spec": {"routes": [{"routeAction": {"multi": {"destinations": [{"weight": 100}]}}}]}});
        assert!(parse(&c, &one).is_err());
        let prefix =
            canary(json!({"iterations": 5, "match": [{"headers": {"x": {"prefix": "a"}}}]}));
        assert!(route_table(&prefix, Routes::PRIMARY).is_err());
    }
}
