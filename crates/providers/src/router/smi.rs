//! `linkerd`, `smi:v1alpha1`/`v1alpha2`/`v1alpha3` (optionally `:<mesh>`) and `osm`: one SMI
//! TrafficSplit `<apex>` with the canary and primary Services as weighted backends.

use std::collections::BTreeMap;

use flagger_api::Canary;
use flagger_core::{RouteState, Routes};
use kube::Client;
use serde_json::{Value, json};

use super::{
    FLUX_ANNOTATIONS, Router, RouterError, RouterFuture, apply_value, carried_routes, dynamic_api,
    get_value, namespace, owner_reference, state,
};

const GROUP: &str = "split.smi-spec.io";
/// Tells Istio's SMI adapter which gateways the VirtualService it derives should bind to.
const ISTIO_GATEWAYS_ANNOTATION: &str = "VirtualService.v1alpha3.networking.istio.io/spec.gateways";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmiVersion {
    V1alpha1,
    V1alpha2,
    V1alpha3,
}

impl SmiVersion {
    fn as_str(self) -> &'static str {
        match self {
            SmiVersion::V1alpha1 => "v1alpha1",
            SmiVersion::V1alpha2 => "v1alpha2",
            SmiVersion::V1alpha3 => "v1alpha3",
        }
    }

    fn parse(v: &str) -> Option<SmiVersion> {
        match v {
            "v1alpha1" => Some(SmiVersion::V1alpha1),
            "v1alpha2" => Some(SmiVersion::V1alpha2),
            "v1alpha3" => Some(SmiVersion::V1alpha3),
            _ => None,
        }
    }
}

/// The SMI version and target mesh of a provider name: `linkerd`, `osm`, `smi:<version>` or
/// `smi:<version>:<mesh>` (the `-mesh-provider` flag form). `None` for anything else.
pub fn smi_provider(provider: &str) -> Option<(SmiVersion, Option<String>)> {
    match provider {
        "linkerd" => return Some((SmiVersion::V1alpha1, None)),
        "osm" => return Some((SmiVersion::V1alpha2, None)),
        _ => {}
    }
    let mut parts = provider.splitn(3, ':');
    if parts.next() != Some("smi") {
        return None;
    }
    let version = SmiVersion::parse(parts.next()?)?;
    let mesh = parts.next().filter(|m| !m.is_empty()).map(str::to_string);
    Some((version, mesh))
}

pub struct SmiRouter {
    client: Client,
    version: SmiVersion,
    mesh: Option<String>,
}

impl SmiRouter {
    pub fn new(client: Client, version: SmiVersion, mesh: Option<String>) -> Self {
        SmiRouter {
            client,
            version,
            mesh,
        }
    }

    fn api(&self, canary: &Canary) -> kube::Api<kube::api::DynamicObject> {
        dynamic_api(
            &self.client,
            &namespace(canary),
            (GROUP, self.version.as_str(), "TrafficSplit"),
            "trafficsplits",
        )
    }

    fn render(&self, canary: &Canary, routes: Routes) -> Result<Value, RouterError> {
        render(canary, self.version, self.mesh.as_deref(), routes)
    }
}

/// The whole TrafficSplit for `routes`. The vendor's schema types every version's weight as a
/// number; a bare number is also a valid Kubernetes quantity, which is what v1alpha1 readers
/// (Linkerd) parse, so every version is written with integers.
pub fn render(
    canary: &Canary,
    version: SmiVersion,
    mesh: Option<&str>,
    routes: Routes,
) -> Result<Value, RouterError> {
    let svc = canary.spec.service.as_ref();
    let apex = canary.spec.apex_name();
    let host = svc
        .and_then(|s| s.hosts.as_ref())
        .and_then(|h| h.first())
        .map_or(apex, String::as_str);
    let mut annotations: BTreeMap<String, String> = FLUX_ANNOTATIONS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let gateways = svc
        .and_then(|s| s.gateways.as_ref())
        .filter(|g| !g.is_empty());
    if let (Some("istio"), Some(gateways)) = (mesh, gateways) {
        annotations.insert(
            ISTIO_GATEWAYS_ANNOTATION.to_string(),
            serde_json::to_string(gateways)
                .map_err(|e| RouterError::Invalid(format!("spec.service.gateways: {e}")))?,
        );
    }
    Ok(json!({
        "apiVersion": format!("{GROUP}/{}", version.as_str()),
        "kind": "TrafficSplit",
        "metadata": {
            "name": apex,
            "namespace": namespace(canary),
            "annotations": annotations,
            "ownerReferences": [owner_reference(canary)?],
        },
        "spec": {
            "service": host,
            "backends": [
                {"service": canary.spec.canary_service_name(), "weight": routes.canary},
                {"service": canary.spec.primary_service_name(), "weight": routes.primary},
            ],
        },
    }))
}

/// A backend weight as a percentage: a number, or a quantity string (`"90"`, `"900m"`) as
/// v1alpha1 writers other than flagger-rs may store it. Anything unreadable counts as 0.
fn backend_weight(v: &Value) -> u32 {
    let value = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.strip_suffix('m') {
            Some(milli) => milli.trim().parse::<f64>().ok().map(|m| m / 1000.0),
            None => s.trim().parse::<f64>().ok(),
        },
        _ => None,
    };
    value
        .filter(|w| w.is_finite())
        // Clamped to a percentage first, so the cast is exact.
        .map_or(0, |w| w.clamp(0.0, 100.0).round() as u32)
}

/// Reads `(primary, canary)` back from the backends; both 0 (or both missing) is an error.
pub fn parse(canary: &Canary, obj: &Value) -> Result<Routes, RouterError> {
    let primary_name = canary.spec.primary_service_name();
    let canary_name = canary.spec.canary_service_name();
    let (mut p, mut c) = (0, 0);
    for b in obj["spec"]["backends"].as_array().into_iter().flatten() {
        if b["service"] == primary_name.as_str() {
            p = backend_weight(&b["weight"]);
        } else if b["service"] == canary_name.as_str() {
            c = backend_weight(&b["weight"]);
        }
    }
    if p == 0 && c == 0 {
        return Err(RouterError::Api(format!(
            "TrafficSplit {}.{} does not contain routes for {primary_name} and {canary_name}",
            canary.spec.apex_name(),
            namespace(canary),
        )));
    }
    Ok(Routes {
        primary: p,
        canary: c,
        mirror: 0,
    })
}

impl Router for SmiRouter {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let api = self.api(canary);
            let name = canary.spec.apex_name();
            let routes = carried_routes(&api, name, |live| parse(canary, live)).await?;
            apply_value(&api, name, &self.render(canary, routes)?).await
        })
    }

    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let body = self.render(canary, routes)?;
            apply_value(&self.api(canary), canary.spec.apex_name(), &body).await
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState> {
        Box::pin(async move {
            let name = canary.spec.apex_name();
            let live = get_value(&self.api(canary), name).await?.ok_or_else(|| {
                RouterError::Api(format!(
                    "TrafficSplit {name}.{} not found",
                    namespace(canary)
                ))
            })?;
            parse(canary, &live).map(state)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;

    fn canary(provider: &str, service: Value) -> Canary {
        let mut svc = json!({"port": 9898});
        if let (Some(s), Some(e)) = (svc.as_object_mut(), service.as_object()) {
            s.extend(e.clone());
        }
        fixtures::canary(json!({
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": svc,
            "analysis": {"interval": "15s", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
        }))
    }

    #[test]
    fn provider_names_and_flag_suffixes() {
        assert_eq!(smi_provider("linkerd"), Some((SmiVersion::V1alpha1, None)));
        assert_eq!(smi_provider("osm"), Some((SmiVersion::V1alpha2, None)));
        assert_eq!(
            smi_provider("smi:v1alpha3:istio"),
            Some((SmiVersion::V1alpha3, Some("istio".to_string())))
        );
        assert_eq!(
            smi_provider("smi:v1alpha1"),
            Some((SmiVersion::V1alpha1, None))
        );
        assert_eq!(smi_provider("smi"), None);
        assert_eq!(smi_provider("smi:v1alpha4"), None);
        assert_eq!(smi_provider("istio"), None);
    }

    #[test]
    fn initial_routes_linkerd() {
        let c = canary("linkerd", json!({}));
        let obj = render(&c, SmiVersion::V1alpha1, None, Routes::PRIMARY).unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::PRIMARY);
    }

    #[test]
    fn canary_step_v1alpha3_on_istio() {
        let c = canary(
            "smi:v1alpha3",
            json!({"hosts": ["podinfo.example.com"], "gateways": ["public-gateway.istio-system.svc.cluster.local"]}),
        );
        let obj = render(&c, SmiVersion::V1alpha3, Some("istio"), Routes::split(30)).unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::split(30));
    }

    #[test]
    fn gateways_annotation_only_for_istio() {
        let c = canary("smi:v1alpha2", json!({"gateways": ["gw"]}));
        let obj = render(&c, SmiVersion::V1alpha2, Some("linkerd"), Routes::PRIMARY).unwrap();
        assert!(
            obj["metadata"]["annotations"]
                .get(ISTIO_GATEWAYS_ANNOTATION)
                .is_none()
        );
    }

    #[test]
    fn promotion_osm_sends_everything_to_the_canary() {
        let c = canary("osm", json!({}));
        let obj = render(&c, SmiVersion::V1alpha2, None, Routes::CANARY).unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&c, &obj).unwrap(), Routes::CANARY);
    }

    #[test]
    fn rollback_is_the_initial_split() {
        let c = canary("osm", json!({}));
        let step = render(&c, SmiVersion::V1alpha2, None, Routes::split(40)).unwrap();
        let back = render(&c, SmiVersion::V1alpha2, None, Routes::PRIMARY).unwrap();
        assert_eq!(parse(&c, &step).unwrap(), Routes::split(40));
        assert_eq!(parse(&c, &back).unwrap(), Routes::PRIMARY);
        assert_eq!(back["spec"]["backends"][0]["weight"], 0);
    }

    #[test]
    fn quantity_weights_are_read() {
        let c = canary("linkerd", json!({}));
        let obj = json!({"spec": {"backends": [
            {"service": "podinfo-canary", "weight": "250m"},
            {"service": "podinfo-primary", "weight": "90"},
        ]}});
        let r = parse(&c, &obj).unwrap();
        assert_eq!((r.primary, r.canary), (90, 0));
        let obj = json!({"spec": {"backends": [
            {"service": "podinfo-canary", "weight": "10"},
            {"service": "podinfo-primary", "weight": 90.0},
        ]}});
        assert_eq!(parse(&c, &obj).unwrap(), Routes::split(10));
    }

    #[test]
    fn missing_backends_are_an_error() {
        let c = canary("linkerd", json!({}));
        let err = parse(
            &c,
            &json!({"spec": {"backends": [{"service": "other", "weight": 100}]}}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "TrafficSplit podinfo.test does not contain routes for podinfo-primary and podinfo-canary"
        );
        assert!(parse(&c, &json!({"spec": {}})).is_err());
    }
}
