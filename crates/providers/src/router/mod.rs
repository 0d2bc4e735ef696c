//! Routers: apply routes, set and read weights. One file per provider.

pub mod apisix;
mod appmesh;
mod canary_ingress;
pub mod contour;
mod gatewayapi;
pub mod gloo;
pub mod istio;
pub mod knative;
mod kubernetes;
mod kuma;
mod nginx;
mod one_object;
pub mod session_affinity;
mod skipper;
mod smi;
mod traefik;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use flagger_api::Canary;
use flagger_core::{RouteState, Routes};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

pub use apisix::ApisixRouter;
pub use appmesh::{AppMeshRouter, AppMeshVersion, PodLabel, v1beta2_objects};
pub use contour::ContourRouter;
pub use gatewayapi::{GatewayApiRouter, GatewayVersion};
pub use gloo::GlooRouter;
pub use istio::IstioRouter;
pub use knative::KnativeRouter;
pub use kubernetes::KubernetesRouter;
pub use kuma::{KumaRouter, render as render_traffic_route};
pub use nginx::NginxRouter;
pub use skipper::SkipperRouter;
pub use smi::{SmiRouter, SmiVersion, render as render_traffic_split, smi_provider};
pub use traefik::TraefikRouter;

/// The field manager of every object a router writes.
pub const FIELD_MANAGER: &str = "flagger";

/// Annotations on every generated routing object so GitOps tools leave them alone.
pub const FLUX_ANNOTATIONS: [(&str, &str); 2] = [
    ("helm.toolkit.fluxcd.io/driftDetection", "disabled"),
    ("kustomize.toolkit.fluxcd.io/reconcile", "disabled"),
];

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("{0}")]
    Api(String),
    /// Unreachable for a validated canary: validation refuses providers without a router.
    #[error("provider {0} has no router in flagger-rs")]
    Unsupported(String),
    /// The Canary cannot be routed as written (a user error, not a transient one).
    #[error("{0}")]
    Invalid(String),
}

pub type RouterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RouterError>> + Send + 'a>>;

/// The contract every router keeps. A reconcile never moves traffic: only `set_routes` writes
/// weights, mirrors and session-affinity rules.
pub trait Router: Send + Sync {
    /// Creates the routing objects if missing (primary 100, canary 0), otherwise updates their
    /// structure only.
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()>;
    /// `canary.status` is the status this tick is about to write: it carries the session-affinity
    /// cookies the core decided for these routes (see [`session_affinity::cookie_rules`]). Routes
    /// stay a small copyable value; the cookies are strings that must persist in the status anyway,
    /// so the status is how they reach the router.
    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()>;
    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState>;
    /// Reverts what was taken over (deletion with `revertOnDeletion`). Most routers take nothing
    /// over: their objects carry an owner reference and go with the Canary.
    fn finalize<'a>(&'a self, _canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// Controller flags the routers read.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `-ingress-class` (empty = unset).
    pub ingress_class: String,
    /// `-ingress-annotations-prefix` (nginx annotations).
    pub ingress_annotations_prefix: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ingress_class: String::new(),
            ingress_annotations_prefix: "nginx.ingress.kubernetes.io".to_string(),
        }
    }
}

/// The router for an effective provider name (`spec.provider` or the `-mesh-provider` flag).
pub fn for_provider(
    provider: &str,
    client: Client,
    settings: &Settings,
) -> Result<Box<dyn Router>, RouterError> {
    match provider {
        "kubernetes" => Ok(Box::new(KubernetesRouter)),
        "traefik" => Ok(Box::new(TraefikRouter::new(client))),
        "istio" => Ok(Box::new(IstioRouter::new(client))),
        "nginx" => Ok(Box::new(NginxRouter::new(
            client,
            settings.ingress_annotations_prefix.clone(),
        ))),
        p if p.starts_with("gatewayapi:v1beta1") => Ok(Box::new(GatewayApiRouter::new(
            client,
            GatewayVersion::V1beta1,
        ))),
        // Flagger treats a bare `gatewayapi` (and `gatewayapi:v1…`) as v1.
        p if p == "gatewayapi" || p.starts_with("gatewayapi:v1") => {
            Ok(Box::new(GatewayApiRouter::new(client, GatewayVersion::V1)))
        }
        "kuma" => Ok(Box::new(KumaRouter::new(client))),
        p if p == "gloo" || p.starts_with("gloo:") => Ok(Box::new(GlooRouter::new(client))),
        "contour" => Ok(Box::new(ContourRouter::new(
            client,
            settings.ingress_class.clone(),
        ))),
        "skipper" => Ok(Box::new(SkipperRouter::new(client))),
        "knative" => Ok(Box::new(KnativeRouter::new(client))),
        "apisix" => Ok(Box::new(ApisixRouter::new(client))),
        "appmesh" => Ok(Box::new(AppMeshRouter::new(
            client,
            AppMeshVersion::V1beta1,
        ))),
        "appmesh:v1beta2" => Ok(Box::new(AppMeshRouter::new(
            client,
            AppMeshVersion::V1beta2,
        ))),
        p => match smi_provider(p) {
            Some((version, mesh)) => Ok(Box::new(SmiRouter::new(client, version, mesh))),
            None => Err(RouterError::Unsupported(p.to_string())),
        },
    }
}

// --- helpers shared by the routers ---------------------------------------------------------------

fn api_error(what: &str, e: kube::Error) -> RouterError {
    RouterError::Api(format!("{what}: {}", crate::wording::kube_error(&e)))
}

fn namespace(canary: &Canary) -> String {
    canary.namespace().unwrap_or_else(|| "default".to_string())
}

/// `service.port` as an integer (required by every router that names a port).
fn service_port(canary: &Canary) -> Result<i64, RouterError> {
    canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.port.integer())
        .ok_or_else(|| RouterError::Invalid("spec.service.port is required".to_string()))
}

/// The controller owner reference to the Canary.
fn owner_reference(canary: &Canary) -> Result<Value, RouterError> {
    let uid = canary.metadata.uid.as_deref().ok_or_else(|| {
        RouterError::Invalid(format!("canary {} has no uid yet", canary.name_any()))
    })?;
    Ok(json!({
        "apiVersion": flagger_api::API_VERSION,
        "kind": "Canary",
        "name": canary.name_any(),
        "uid": uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }))
}

/// User metadata with Flux keys removed (they are never copied).
fn without_flux(map: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    map.into_iter()
        .flatten()
        .filter(|(k, _)| !k.contains("toolkit.fluxcd.io"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Labels and annotations from `service.apex`, plus the Flux annotations.
fn apex_metadata(canary: &Canary) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let apex = canary.spec.service.as_ref().and_then(|s| s.apex.as_ref());
    let labels = without_flux(apex.and_then(|a| a.labels.as_ref()));
    let mut annotations = without_flux(apex.and_then(|a| a.annotations.as_ref()));
    for (k, v) in FLUX_ANNOTATIONS {
        annotations.insert(k.to_string(), v.to_string());
    }
    (labels, annotations)
}

fn dynamic_api(
    client: &Client,
    ns: &str,
    gvk: (&str, &str, &str),
    plural: &str,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2), plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Server-side apply (field manager `flagger`, forced) of a rendered object.
async fn apply_value(
    api: &Api<DynamicObject>,
    name: &str,
    body: &Value,
) -> Result<(), RouterError> {
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
    .map_err(|e| api_error(&format!("applying {name}"), e))
}

async fn get_value(api: &Api<DynamicObject>, name: &str) -> Result<Option<Value>, RouterError> {
    match api.get_opt(name).await {
        Ok(Some(obj)) => serde_json::to_value(obj)
            .map(Some)
            .map_err(|e| RouterError::Api(format!("decoding {name}: {e}"))),
        Ok(None) => Ok(None),
        Err(e) => Err(api_error(&format!("reading {name}"), e)),
    }
}

/// The metadata of a routing object a router generates: its name in the canary's namespace, the
/// given labels and annotations, and the Canary as its controller owner so it goes with the Canary.
fn owned_metadata(
    canary: &Canary,
    name: &str,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> Result<Value, RouterError> {
    Ok(json!({
        "name": name,
        "namespace": namespace(canary),
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [owner_reference(canary)?],
    }))
}

/// Weights that send traffic nowhere are refused rather than written: the proxy would answer every
/// request with an error.
fn ensure_some_weight(router: &str, routes: Routes) -> Result<(), RouterError> {
    if routes.primary == 0 && routes.canary == 0 {
        return Err(RouterError::Invalid(format!(
            "{router}: primary and canary weights cannot both be 0"
        )));
    }
    Ok(())
}

/// The routes a reconcile writes again: the live object's, since only `set_routes` moves traffic;
/// everything on the primary when the object is missing or no longer says.
async fn carried_routes(
    api: &Api<DynamicObject>,
    name: &str,
    parse: impl FnOnce(&Value) -> Result<Routes, RouterError>,
) -> Result<Routes, RouterError> {
    Ok(get_value(api, name)
        .await?
        .and_then(|live| parse(&live).ok())
        .unwrap_or(Routes::PRIMARY))
}

/// The routes held by a weighted list whose primary entry `is_primary` picks; `missing` says what
/// is wrong when the list has no such entry.
fn primary_entry_share(
    entries: &[Value],
    is_primary: impl Fn(&Value) -> bool,
    missing: impl FnOnce() -> String,
) -> Result<Routes, RouterError> {
    entries
        .iter()
        .find(|e| is_primary(e))
        .map(primary_share)
        .ok_or_else(|| RouterError::Api(missing()))
}

/// A weight read from an object as a percentage.
fn weight(v: Option<&Value>) -> Option<u32> {
    v.and_then(Value::as_i64)
        .and_then(|w| u32::try_from(w.clamp(0, 100)).ok())
}

/// Routes from the primary's entry of a router that holds the primary's weight: canary = 100 − primary.
fn primary_share(primary: &Value) -> Routes {
    let p = weight(primary.get("weight")).unwrap_or(0);
    Routes {
        primary: p,
        canary: 100 - p,
        mirror: 0,
    }
}

/// Routes as a router stores them, including the mirror percentage `RouteState` does not carry.
fn state(routes: Routes) -> RouteState {
    RouteState {
        primary: routes.primary,
        canary: routes.canary,
        mirrored: routes.mirror > 0,
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use flagger_api::Canary;

    /// A Canary as the API server returns it (namespace, uid).
    pub fn canary(spec: serde_json::Value) -> Canary {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "3b3f4c2e-0000-4000-8000-000000000001"},
            "spec": spec,
        }))
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service-mesh providers validation lets run, in the schema's names and the
    /// `-mesh-provider` flag's suffix forms, each get a router.
    #[tokio::test]
    async fn mesh_providers_that_validate_have_a_router() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let names = [
            "skipper",
            "knative",
            "linkerd",
            "osm",
            "kuma",
            "appmesh",
            "appmesh:v1beta2",
            "smi:v1alpha1",
            "smi:v1alpha2",
            "smi:v1alpha3",
            "smi:v1alpha3:istio",
            "smi:v1alpha1:linkerd",
            "contour",
            "gloo",
            "gloo:gloo-system",
            "apisix",
        ];
        for flag in names {
            let effective = flagger_api::validate::providers::effective(None, flag);
            assert!(flagger_api::validate::providers::runs(&effective), "{flag}");
            assert!(
                for_provider(flag, client.clone(), &Settings::default()).is_ok(),
                "{flag}"
            );
        }
        for refused in ["smi", "smi:v1alpha4", "smi:istio"] {
            let effective = flagger_api::validate::providers::effective(None, refused);
            assert!(
                !flagger_api::validate::providers::runs(&effective),
                "{refused}"
            );
            assert!(for_provider(refused, client.clone(), &Settings::default()).is_err());
        }
    }
}
