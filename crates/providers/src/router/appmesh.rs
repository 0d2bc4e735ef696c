//! `appmesh:v1beta2` and `appmesh` (v1beta1), appmesh.k8s.aws: VirtualNodes for the primary and
//! canary pods, a weighted VirtualRouter/VirtualService `<apex>` and a canary-only one
//! `<apex>-canary` for direct testing.

use std::collections::BTreeMap;

use flagger_api::Canary;
use flagger_api::string_match::HeaderMatch;
use flagger_core::{RouteState, Routes};
use kube::api::{Api, DynamicObject};
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};

use super::{
    FLUX_ANNOTATIONS, Router, RouterError, RouterFuture, apply_value, dynamic_api, get_value,
    namespace, owner_reference, service_port, state, weight,
};

const GROUP: &str = "appmesh.k8s.aws";
const ACCESS_LOG_ANNOTATION: &str = "appmesh.flagger.app/accesslog";
/// The selector labels Flagger looks for by default, in its order.
const SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppMeshVersion {
    V1beta1,
    V1beta2,
}

impl AppMeshVersion {
    fn as_str(self) -> &'static str {
        match self {
            AppMeshVersion::V1beta1 => "v1beta1",
            AppMeshVersion::V1beta2 => "v1beta2",
        }
    }
}

pub struct AppMeshRouter {
    client: Client,
    version: AppMeshVersion,
}

/// The pod label the primary and canary VirtualNodes select on (`<key>: <value>-primary` and
/// `<key>: <value>`), as the controller labels the primary pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLabel {
    pub key: String,
    pub value: String,
}

impl AppMeshRouter {
    pub fn new(client: Client, version: AppMeshVersion) -> Self {
        AppMeshRouter { client, version }
    }

    fn api(&self, canary: &Canary, kind: &str, plural: &str) -> Api<DynamicObject> {
        dynamic_api(
            &self.client,
            &namespace(canary),
            (GROUP, self.version.as_str(), kind),
            plural,
        )
    }

    /// The object holding the weights: the VirtualRouter `<apex>` (v1beta2) or the
    /// VirtualService `<apex>.<ns>` (v1beta1, which embeds its router).
    fn weighted(&self, canary: &Canary) -> (Api<DynamicObject>, String) {
        match self.version {
            AppMeshVersion::V1beta2 => (
                self.api(canary, "VirtualRouter", "virtualrouters"),
                canary.spec.apex_name().to_string(),
            ),
            AppMeshVersion::V1beta1 => (
                self.api(canary, "VirtualService", "virtualservices"),
                format!("{}.{}", canary.spec.apex_name(), namespace(canary)),
            ),
        }
    }

    /// The selector label of the target workload (a default selector label, else the one whose
    /// value is the target's name).
    async fn pod_label(&self, canary: &Canary) -> Result<PodLabel, RouterError> {
        let target = &canary.spec.target_ref;
        let plural = match target.kind.as_str() {
            "Deployment" => "deployments",
            "DaemonSet" => "daemonsets",
            other => {
                return Err(RouterError::Invalid(format!(
                    "App Mesh needs a Deployment or DaemonSet target, not {other}"
                )));
            }
        };
        let api = dynamic_api(
            &self.client,
            &namespace(canary),
            ("apps", "v1", &target.kind),
            plural,
        );
        let workload = get_value(&api, &target.name).await?.ok_or_else(|| {
            RouterError::Api(format!("{} {} not found", target.kind, target.name))
        })?;
        pod_label(canary, &workload)
    }
}

pub fn pod_label(canary: &Canary, workload: &Value) -> Result<PodLabel, RouterError> {
    let labels = workload["spec"]["selector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let target = &canary.spec.target_ref.name;
    SELECTOR_LABELS
        .iter()
        .find_map(|k| labels.get(*k).map(|v| (k.to_string(), v)))
        .or_else(|| {
            labels
                .iter()
                .find(|(_, v)| v.as_str() == Some(target))
                .map(|(k, v)| (k.clone(), v))
        })
        .and_then(|(key, v)| {
            v.as_str().map(|value| PodLabel {
                key,
                value: value.to_string(),
            })
        })
        .ok_or_else(|| {
            RouterError::Invalid(format!(
                "{target}: no selector label for App Mesh (one of {} or a label whose value is {target})",
                SELECTOR_LABELS.join(", ")
            ))
        })
}

// --- shared parts ---------------------------------------------------------------------------

fn metadata(
    canary: &Canary,
    name: &str,
    annotations: BTreeMap<String, String>,
) -> Result<Value, RouterError> {
    let mut annotations = annotations;
    for (k, v) in FLUX_ANNOTATIONS {
        annotations.insert(k.to_string(), v.to_string());
    }
    Ok(json!({
        "name": name,
        "namespace": namespace(canary),
        "annotations": annotations,
        "ownerReferences": [owner_reference(canary)?],
    }))
}

fn object(version: AppMeshVersion, kind: &str, meta: Value, spec: Value) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{}", version.as_str()),
        "kind": kind,
        "metadata": meta,
        "spec": spec,
    })
}

fn protocol(canary: &Canary) -> &'static str {
    let grpc = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.port_name.as_deref())
        .is_some_and(|n| n.contains("grpc"));
    if grpc { "grpc" } else { "http" }
}

/// App Mesh routes on a URI prefix only: the first `service.match` prefix, else `/`.
fn route_prefix(canary: &Canary) -> String {
    canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.match_.as_ref())
        .and_then(|m| m.first())
        .and_then(|m| m.uri.as_ref())
        .and_then(|u| u.prefix.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

fn millis(d: &str) -> Option<u128> {
    flagger_api::duration::parse(d).ok().map(|d| d.as_millis())
}

fn timeout_millis(canary: &Canary) -> Option<u128> {
    canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.timeout.as_deref())
        .and_then(millis)
}

/// `service.retries` as (per-try timeout in ms, attempts, events): 250 ms, 1 and
/// `gateway-error` unless set.
fn retries(canary: &Canary) -> Option<(u128, i64, Vec<String>)> {
    let r = canary.spec.service.as_ref()?.retries.as_ref()?;
    let per_try = r.per_try_timeout.as_deref().and_then(millis).unwrap_or(250);
    let attempts = r.attempts.filter(|a| *a > 0).map_or(1, i64::from);
    let events = match r.retry_on.as_deref().filter(|s| !s.is_empty()) {
        Some(on) => on.split(',').map(|e| e.trim().to_string()).collect(),
        None => vec!["gateway-error".to_string()],
    };
    Some((per_try, attempts, events))
}

/// The header matches of `analysis.match`, one list per entry that has headers (an entry's headers
/// are all required; the entries are alternatives, each becoming its own route).
fn header_matches(canary: &Canary) -> Vec<Vec<Value>> {
    let method = |h: &HeaderMatch| {
        let mut m = Map::new();
        for (k, v) in [
            ("exact", &h.exact),
            ("prefix", &h.prefix),
            ("suffix", &h.suffix),
            ("regex", &h.regex),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                m.insert(k.into(), json!(v));
            }
        }
        Value::Object(m)
    };
    canary
        .spec
        .analysis
        .matches()
        .iter()
        .map(|m| {
            m.headers
                .iter()
                .flatten()
                .map(|(name, h)| json!({"name": name, "match": method(h)}))
                .collect::<Vec<_>>()
        })
        .filter(|h| !h.is_empty())
        .collect()
}

/// App Mesh Gateway annotations on the apex VirtualService when `service.hosts` is set.
fn gateway_annotations(canary: &Canary) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let Some(svc) = canary.spec.service.as_ref() else {
        return a;
    };
    let Some(hosts) = svc.hosts.as_ref().filter(|h| !h.is_empty()) else {
        return a;
    };
    a.insert("gateway.appmesh.k8s.aws/expose".into(), "true".into());
    a.insert("gateway.appmesh.k8s.aws/domain".into(), hosts.join(","));
    if let Some(t) = svc.timeout.as_ref().filter(|t| !t.is_empty()) {
        a.insert("gateway.appmesh.k8s.aws/timeout".into(), t.clone());
    }
    if let Some(n) = svc
        .retries
        .as_ref()
        .and_then(|r| r.attempts)
        .filter(|n| *n > 0)
    {
        a.insert("gateway.appmesh.k8s.aws/retries".into(), n.to_string());
    }
    a
}

/// Container port of the listeners: a numeric `targetPort`, else `service.port`.
fn container_port(canary: &Canary) -> Result<i64, RouterError> {
    let target = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.target_port.as_ref())
        .and_then(|p| match p {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) if *i > 0 => {
                Some(i64::from(*i))
            }
            _ => None,
        });
    match target {
        Some(p) => Ok(p),
        None => service_port(canary),
    }
}

/// One weighted route: the shape differs by version only in field names.
struct RouteSpec<'a> {
    name: String,
    priority: Option<i64>,
    headers: &'a [Value],
    targets: Vec<(String, u32)>,
}

// --- v1beta2 --------------------------------------------------------------------------------

fn v1beta2_duration(ms: u128) -> Value {
    json!({"unit": "ms", "value": ms})
}

/// Where the two App Mesh API versions spell a route differently.
struct RouteDialect {
    target: fn(&str) -> Value,
    /// v1beta1 has no per-request timeout.
    timeout: Option<fn(u128) -> Value>,
    retry_policy: fn(u128, i64, Vec<String>) -> Value,
    http_key: &'static str,
}

const V1BETA2_ROUTE: RouteDialect = RouteDialect {
    target: |node| json!({"virtualNodeRef": {"name": node}}),
    timeout: Some(|ms| json!({"perRequest": v1beta2_duration(ms)})),
    retry_policy: |per_try, attempts, events| {
        json!({
            "perRetryTimeout": v1beta2_duration(per_try),
            "maxRetries": attempts,
            "httpRetryEvents": events,
        })
    },
    http_key: "httpRoute",
};

fn route(canary: &Canary, r: &RouteSpec, dialect: &RouteDialect) -> Value {
    let mut m = json!({"prefix": route_prefix(canary)});
    if !r.headers.is_empty() {
        m["headers"] = json!(r.headers);
    }
    let targets: Vec<Value> = r
        .targets
        .iter()
        .map(|(node, w)| {
            let mut target = (dialect.target)(node);
            target["weight"] = json!(w);
            target
        })
        .collect();
    let mut http = json!({"match": m, "action": {"weightedTargets": targets}});
    if let (Some(timeout), Some(ms)) = (dialect.timeout, timeout_millis(canary)) {
        http["timeout"] = timeout(ms);
    }
    if let Some((per_try, attempts, events)) = retries(canary) {
        http["retryPolicy"] = (dialect.retry_policy)(per_try, attempts, events);
    }
    let mut route = json!({"name": r.name});
    route[dialect.http_key] = http;
    if let Some(p) = r.priority {
        route["priority"] = json!(p);
    }
    route
}

fn v1beta2_node(
    canary: &Canary,
    name: &str,
    selector: &PodLabel,
    value: &str,
) -> Result<Value, RouterError> {
    let mut listener =
        json!({"portMapping": {"port": container_port(canary)?, "protocol": protocol(canary)}});
    if let Some(ms) = timeout_millis(canary) {
        listener["timeout"] = json!({"http": {"perRequest": v1beta2_duration(ms)}});
    }
    let mut spec = json!({
        "podSelector": {"matchLabels": {selector.key.as_str(): value}},
        "listeners": [listener],
        "serviceDiscovery": {"dns": {"hostname": format!("{name}.{}.svc.cluster.local.", namespace(canary))}},
    });
    let backends: Vec<Value> = mesh_backends(canary)
        .iter()
        .map(|b| {
            if b.starts_with("arn:aws") {
                json!({"virtualService": {"virtualServiceARN": b}})
            } else {
                json!({"virtualService": {"virtualServiceRef": {"name": b}}})
            }
        })
        .collect();
    if !backends.is_empty() {
        spec["backends"] = json!(backends);
    }
    if canary
        .annotations()
        .get(ACCESS_LOG_ANNOTATION)
        .map(String::as_str)
        == Some("enabled")
    {
        spec["logging"] = json!({"accessLog": {"file": {"path": "/dev/stdout"}}});
    }
    Ok(object(
        AppMeshVersion::V1beta2,
        "VirtualNode",
        metadata(canary, name, BTreeMap::new())?,
        spec,
    ))
}

/// `service.backends`: the services the canary's pods call through the mesh.
fn mesh_backends(canary: &Canary) -> &[String] {
    canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.backends.as_deref())
        .unwrap_or_default()
}

/// A router's `routes` as the API version's `dialect` writes them.
fn router_routes(
    canary: &Canary,
    apex_router: bool,
    routes: Routes,
    dialect: &RouteDialect,
) -> Vec<Value> {
    let ab = header_matches(canary);
    route_specs(canary, apex_router, routes, &ab)
        .iter()
        .map(|r| route(canary, r, dialect))
        .collect()
}

/// The routes of a router: weighted `routes` on the apex one (A/B: `-a` matched, `-b` the
/// rest to the primary), 100 % canary on `<apex>-canary`.
fn route_specs<'a>(
    canary: &Canary,
    apex_router: bool,
    routes: Routes,
    ab: &'a [Vec<Value>],
) -> Vec<RouteSpec<'a>> {
    let apex = canary.spec.apex_name();
    let primary = canary.spec.primary_service_name();
    let canary_node = canary.spec.canary_service_name();
    if !apex_router {
        return vec![RouteSpec {
            name: canary_node.clone(),
            priority: None,
            headers: &[],
            targets: vec![(canary_node, 100), (primary, 0)],
        }];
    }
    let weighted = vec![
        (canary_node, routes.canary),
        (primary.clone(), routes.primary),
    ];
    if !ab.is_empty() {
        // Flagger writes one `-a` route requiring every entry's headers at once; the entries are
        // alternatives (as on every other router), so each gets its own route, first one first.
        let mut out: Vec<RouteSpec> = ab
            .iter()
            .enumerate()
            .map(|(i, headers)| RouteSpec {
                name: if i == 0 {
                    format!("{apex}-a")
                } else {
                    format!("{apex}-a-{i}")
                },
                priority: Some(10 + i64::try_from(i).unwrap_or(0)),
                headers,
                targets: weighted.clone(),
            })
            .collect();
        out.push(RouteSpec {
            name: format!("{apex}-b"),
            priority: Some(20.max(11 + i64::try_from(ab.len()).unwrap_or(0))),
            headers: &[],
            targets: vec![(primary, 100)],
        });
        return out;
    }
    vec![RouteSpec {
        name: apex.to_string(),
        priority: None,
        headers: &[],
        targets: weighted,
    }]
}

/// The VirtualRouter `name` (`<apex>` weighted by `routes`, or `<apex>-canary`).
pub fn v1beta2_router(
    canary: &Canary,
    apex_router: bool,
    routes: Routes,
) -> Result<Value, RouterError> {
    let name = if apex_router {
        canary.spec.apex_name().to_string()
    } else {
        canary.spec.canary_service_name()
    };
    let spec = json!({
        "listeners": [{"portMapping": {"port": container_port(canary)?, "protocol": protocol(canary)}}],
        "routes": router_routes(canary, apex_router, routes, &V1BETA2_ROUTE),
    });
    Ok(object(
        AppMeshVersion::V1beta2,
        "VirtualRouter",
        metadata(canary, &name, BTreeMap::new())?,
        spec,
    ))
}

pub fn v1beta2_service(canary: &Canary, apex_router: bool) -> Result<Value, RouterError> {
    let (name, annotations) = if apex_router {
        (
            canary.spec.apex_name().to_string(),
            gateway_annotations(canary),
        )
    } else {
        (canary.spec.canary_service_name(), BTreeMap::new())
    };
    let spec = json!({"provider": {"virtualRouter": {"virtualRouterRef": {"name": name}}}});
    Ok(object(
        AppMeshVersion::V1beta2,
        "VirtualService",
        metadata(canary, &name, annotations)?,
        spec,
    ))
}

/// Every v1beta2 object, in the order they are applied (nodes before the routers that name them,
/// routers before the services that name them).
pub fn v1beta2_objects(
    canary: &Canary,
    selector: &PodLabel,
    routes: Routes,
) -> Result<Vec<Value>, RouterError> {
    Ok(vec![
        v1beta2_node(
            canary,
            &canary.spec.primary_service_name(),
            selector,
            &format!("{}-primary", selector.value),
        )?,
        v1beta2_node(
            canary,
            &canary.spec.canary_service_name(),
            selector,
            &selector.value,
        )?,
        v1beta2_router(canary, true, routes)?,
        v1beta2_router(canary, false, Routes::CANARY)?,
        v1beta2_service(canary, true)?,
        v1beta2_service(canary, false)?,
    ])
}

// --- v1beta1 --------------------------------------------------------------------------------

fn mesh_name(canary: &Canary) -> Result<String, RouterError> {
    canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.mesh_name.clone())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            RouterError::Invalid("spec.service.meshName is required for appmesh".to_string())
        })
}

fn v1beta1_node(canary: &Canary, name: &str, host: &str) -> Result<Value, RouterError> {
    let mut spec = json!({
        "meshName": mesh_name(canary)?,
        "listeners": [{"portMapping": {"port": service_port(canary)?, "protocol": protocol(canary)}}],
        "serviceDiscovery": {"dns": {"hostName": host}},
    });
    let backends: Vec<Value> = mesh_backends(canary)
        .iter()
        .map(|b| json!({"virtualService": {"virtualServiceName": b}}))
        .collect();
    if !backends.is_empty() {
        spec["backends"] = json!(backends);
    }
    Ok(object(
        AppMeshVersion::V1beta1,
        "VirtualNode",
        metadata(canary, name, BTreeMap::new())?,
        spec,
    ))
}

const V1BETA1_ROUTE: RouteDialect = RouteDialect {
    target: |node| json!({"virtualNodeName": node}),
    timeout: None,
    retry_policy: |per_try, attempts, events| {
        json!({
            "perRetryTimeoutMillis": per_try,
            "maxRetries": attempts,
            "httpRetryPolicyEvents": events,
        })
    },
    http_key: "http",
};

/// The VirtualService `<apex>.<ns>` (weighted by `routes`) or `<apex>-canary.<ns>`.
pub fn v1beta1_service(
    canary: &Canary,
    apex_router: bool,
    routes: Routes,
) -> Result<Value, RouterError> {
    let ns = namespace(canary);
    let (name, router, annotations) = if apex_router {
        let apex = canary.spec.apex_name();
        (
            format!("{apex}.{ns}"),
            apex.to_string(),
            gateway_annotations(canary),
        )
    } else {
        let c = canary.spec.canary_service_name();
        (format!("{c}.{ns}"), c, BTreeMap::new())
    };
    let spec = json!({
        "meshName": mesh_name(canary)?,
        "virtualRouter": {
            "name": router,
            "listeners": [{"portMapping": {"port": service_port(canary)?, "protocol": protocol(canary)}}],
        },
        "routes": router_routes(canary, apex_router, routes, &V1BETA1_ROUTE),
    });
    Ok(object(
        AppMeshVersion::V1beta1,
        "VirtualService",
        metadata(canary, &name, annotations)?,
        spec,
    ))
}

/// Every v1beta1 object, nodes first. The apex node resolves to the primary's DNS name, as
/// Flagger's does.
pub fn v1beta1_objects(canary: &Canary, routes: Routes) -> Result<Vec<Value>, RouterError> {
    let ns = namespace(canary);
    let apex = canary.spec.apex_name();
    let primary = canary.spec.primary_service_name();
    let canary_name = canary.spec.canary_service_name();
    Ok(vec![
        v1beta1_node(canary, apex, &format!("{primary}.{ns}"))?,
        v1beta1_node(canary, &primary, &format!("{primary}.{ns}"))?,
        v1beta1_node(canary, &canary_name, &format!("{canary_name}.{ns}"))?,
        v1beta1_service(canary, true, routes)?,
        v1beta1_service(canary, false, Routes::CANARY)?,
    ])
}

// --- reading --------------------------------------------------------------------------------

/// Weights from the first route of the weighted object (the `-a` route with A/B), which must have
/// exactly the two targets.
pub fn parse(canary: &Canary, version: AppMeshVersion, obj: &Value) -> Result<Routes, RouterError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_else(|| canary.spec.apex_name());
    let (route_key, node_key) = match version {
        AppMeshVersion::V1beta2 => ("httpRoute", "/virtualNodeRef/name"),
        AppMeshVersion::V1beta1 => ("http", "/virtualNodeName"),
    };
    let targets = obj["spec"]["routes"][0][route_key]["action"]["weightedTargets"]
        .as_array()
        .filter(|t| t.len() == 2)
        .ok_or_else(|| RouterError::Api(format!("{name}: routes not found")))?;
    let find = |node: String| {
        targets
            .iter()
            .find(|t| t.pointer(node_key).and_then(Value::as_str) == Some(node.as_str()))
            .and_then(|t| weight(t.get("weight")))
            .unwrap_or(0)
    };
    let p = find(canary.spec.primary_service_name());
    let c = find(canary.spec.canary_service_name());
    if p == 0 && c == 0 {
        return Err(RouterError::Api(format!(
            "{name} does not contain routes for {} and {}",
            canary.spec.primary_service_name(),
            canary.spec.canary_service_name(),
        )));
    }
    Ok(Routes {
        primary: p,
        canary: c,
        mirror: 0,
    })
}

fn plural(kind: &str) -> &'static str {
    match kind {
        "VirtualNode" => "virtualnodes",
        "VirtualRouter" => "virtualrouters",
        _ => "virtualservices",
    }
}

impl AppMeshRouter {
    async fn apply_all(&self, canary: &Canary, objects: Vec<Value>) -> Result<(), RouterError> {
        for obj in objects {
            let kind = obj["kind"].as_str().unwrap_or_default();
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            apply_value(&self.api(canary, kind, plural(kind)), name, &obj).await?;
        }
        Ok(())
    }

    async fn live_routes(&self, canary: &Canary) -> Result<Option<Routes>, RouterError> {
        let (api, name) = self.weighted(canary);
        Ok(get_value(&api, &name)
            .await?
            .and_then(|live| parse(canary, self.version, &live).ok()))
    }
}

impl Router for AppMeshRouter {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            // The live weights are carried over: only set_routes moves traffic.
            let routes = self.live_routes(canary).await?.unwrap_or(Routes::PRIMARY);
            let objects = match self.version {
                AppMeshVersion::V1beta2 => {
                    let selector = self.pod_label(canary).await?;
                    v1beta2_objects(canary, &selector, routes)?
                }
                AppMeshVersion::V1beta1 => v1beta1_objects(canary, routes)?,
            };
            self.apply_all(canary, objects).await
        })
    }

    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let body = match self.version {
                AppMeshVersion::V1beta2 => v1beta2_router(canary, true, routes)?,
                AppMeshVersion::V1beta1 => v1beta1_service(canary, true, routes)?,
            };
            let (api, name) = self.weighted(canary);
            apply_value(&api, &name, &body).await
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState> {
        Box::pin(async move {
            let (api, name) = self.weighted(canary);
            let live = get_value(&api, &name)
                .await?
                .ok_or_else(|| RouterError::Api(format!("{name} not found")))?;
            parse(canary, self.version, &live).map(state)
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
            "targetPort": 8080,
            "portName": "http",
            "meshName": "global",
            "timeout": "15s",
            "retries": {"attempts": 3, "perTryTimeout": "5s", "retryOn": "gateway-error,client-error"},
            "backends": ["backend1", "arn:aws:appmesh:eu-west-1:123456789012:mesh/global/virtualService/backend2"],
        });
        if let (Some(s), Some(e)) = (service.as_object_mut(), extra_service.as_object()) {
            s.extend(e.clone());
        }
        let mut analysis =
            json!({"interval": "15s", "threshold": 5, "maxWeight": 50, "stepWeight": 10});
        if let (Some(a), Some(e)) = (analysis.as_object_mut(), extra_analysis.as_object()) {
            a.extend(e.clone());
        }
        let mut c = fixtures::canary(json!({
            "provider": "appmesh:v1beta2",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": service,
            "analysis": analysis,
        }));
        c.metadata.annotations =
            Some([(ACCESS_LOG_ANNOTATION.to_string(), "enabled".to_string())].into());
        c
    }

    fn label() -> PodLabel {
        PodLabel {
            key: "app".into(),
            value: "podinfo".into(),
        }
    }

    fn ab() -> Value {
        json!({"iterations": 10, "match": [
            {"headers": {"x-canary": {"exact": "insider"}}},
            {"headers": {"user-agent": {"suffix": "Firefox"}}},
        ]})
    }

    #[test]
    fn v1beta2_initial_objects() {
        let c = canary(
            json!({}),
            json!({"hosts": ["podinfo.example.com", "www.example.com"]}),
        );
        let objects = v1beta2_objects(&c, &label(), Routes::PRIMARY).unwrap();
        insta::assert_yaml_snapshot!(objects);
        assert_eq!(
            parse(&c, AppMeshVersion::V1beta2, &objects[2]).unwrap(),
            Routes::PRIMARY
        );
        assert_eq!(
            parse(&c, AppMeshVersion::V1beta2, &objects[3]).unwrap(),
            Routes::CANARY
        );
    }

    #[test]
    fn v1beta2_canary_step() {
        let c = canary(json!({}), json!({}));
        let router = v1beta2_router(&c, true, Routes::split(30)).unwrap();
        insta::assert_yaml_snapshot!(router["spec"]["routes"]);
        assert_eq!(
            parse(&c, AppMeshVersion::V1beta2, &router).unwrap(),
            Routes::split(30)
        );
    }

    #[test]
    fn v1beta2_promotion_and_rollback() {
        let c = canary(json!({}), json!({}));
        let promoting = v1beta2_router(&c, true, Routes::CANARY).unwrap();
        assert_eq!(
            parse(&c, AppMeshVersion::V1beta2, &promoting).unwrap(),
            Routes::CANARY
        );
        let back = v1beta2_router(&c, true, Routes::PRIMARY).unwrap();
        assert_eq!(
            back,
            v1beta2_objects(&c, &label(), Routes::PRIMARY).unwrap()[2]
        );
    }

    #[test]
    fn v1beta2_ab_routes() {
        let c = canary(ab(), json!({"match": [{"uri": {"prefix": "/api"}}]}));
        let router = v1beta2_router(&c, true, Routes::CANARY).unwrap();
        insta::assert_yaml_snapshot!(router["spec"]["routes"]);
        assert_eq!(
            parse(&c, AppMeshVersion::V1beta2, &router).unwrap(),
            Routes::CANARY
        );
        // The canary router stays a plain 100 % canary route.
        let canary_router = v1beta2_router(&c, false, Routes::CANARY).unwrap();
        assert_eq!(canary_router["spec"]["routes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn grpc_port_name_and_no_access_log() {
        let mut c = canary(
            json!({}),
            json!({"portName": "grpc-api", "targetPort": "grpc"}),
        );
        c.metadata.annotations = None;
        let node = v1beta2_node(&c, "podinfo-canary", &label(), "podinfo").unwrap();
        assert_eq!(
            node["spec"]["listeners"][0]["portMapping"],
            json!({"port": 9898, "protocol": "grpc"})
        );
        assert!(node["spec"].get("logging").is_none());
    }

    #[test]
    fn v1beta1_objects_and_ab() {
        let c = canary(ab(), json!({"hosts": ["podinfo.example.com"]}));
        let objects = v1beta1_objects(&c, Routes::split(20)).unwrap();
        insta::assert_yaml_snapshot!(objects);
        assert_eq!(
            parse(&c, AppMeshVersion::V1beta1, &objects[3]).unwrap(),
            Routes::split(20)
        );
    }

    #[test]
    fn v1beta1_needs_a_mesh_name() {
        let mut c = canary(json!({}), json!({}));
        if let Some(s) = c.spec.service.as_mut() {
            s.mesh_name = None;
        }
        assert_eq!(
            v1beta1_objects(&c, Routes::PRIMARY)
                .unwrap_err()
                .to_string(),
            "spec.service.meshName is required for appmesh"
        );
    }

    #[test]
    fn routes_need_two_targets_with_weight() {
        let c = canary(json!({}), json!({}));
        let one = json!({"metadata": {"name": "podinfo"}, "spec": {"routes": [{"httpRoute": {"action": {"weightedTargets": [
            {"virtualNodeRef": {"name": "podinfo-primary"}, "weight": 100},
        ]}}}]}});
        assert_eq!(
            parse(&c, AppMeshVersion::V1beta2, &one)
                .unwrap_err()
                .to_string(),
            "podinfo: routes not found"
        );
        let zero = json!({"metadata": {"name": "podinfo"}, "spec": {"routes": [{"httpRoute": {"action": {"weightedTargets": [
            {"virtualNodeRef": {"name": "a"}, "weight": 50},
            {"virtualNodeRef": {"name": "b"}, "weight": 50},
        ]}}}]}});
        assert!(parse(&c, AppMeshVersion::V1beta2, &zero).is_err());
    }

    #[test]
    fn selector_label_of_the_target() {
        let c = canary(json!({}), json!({}));
        let w = json!({"spec": {"selector": {"matchLabels": {"tier": "web", "app": "podinfo"}}}});
        assert_eq!(pod_label(&c, &w).unwrap(), label());
        let w = json!({"spec": {"selector": {"matchLabels": {"tier": "web", "svc": "podinfo"}}}});
        assert_eq!(pod_label(&c, &w).unwrap().key, "svc");
        let w = json!({"spec": {"selector": {"matchLabels": {"tier": "web"}}}});
        assert!(pod_label(&c, &w).is_err());
    }
}
