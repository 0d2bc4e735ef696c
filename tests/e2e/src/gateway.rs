//! Gateway API through Traefik's Gateway provider: the objects a user creates so Traefik serves the
//! HTTPRoutes the `gatewayapi` router writes, and the wait for Traefik to accept a route.

use std::time::Duration;

use anyhow::Context as _;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::{Result, TestNamespace, wait_for};

/// Server-side apply of any object given as JSON (namespaced when `ns` is set).
pub async fn apply_value(client: &Client, ns: Option<&str>, obj: Value) -> Result<()> {
    let api_version = obj["apiVersion"].as_str().context("apiVersion")?;
    let kind = obj["kind"].as_str().context("kind")?;
    let name = obj["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "Canary" => "canaries".to_string(),
        "Ingress" => "ingresses".to_string(),
        "IngressClass" | "GatewayClass" => format!("{}es", kind.to_ascii_lowercase()),
        _ => format!("{}s", kind.to_ascii_lowercase()),
    };
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    apply_with(&api, &ar, &name, obj).await?;
    Ok(())
}

/// Server-side apply of `obj`, an object of the resource `ar`, in the test namespace; the object
/// as the API server stored it.
pub async fn apply_resource(
    ns: &TestNamespace,
    ar: &ApiResource,
    obj: Value,
) -> Result<DynamicObject> {
    let name = obj["metadata"]["name"]
        .as_str()
        .context("object has no name")?
        .to_string();
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, ar);
    apply_with(&api, ar, &name, obj).await
}

async fn apply_with(
    api: &Api<DynamicObject>,
    ar: &ApiResource,
    name: &str,
    obj: Value,
) -> Result<DynamicObject> {
    let obj: DynamicObject = serde_json::from_value(obj)?;
    api.patch(
        name,
        &PatchParams::apply(crate::FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .with_context(|| format!("applying {} {name}", ar.kind))
}

/// The `traefik` GatewayClass and a Gateway `gateway` on Traefik's `web` entry point (port 8000)
/// accepting routes from the test namespace.
pub async fn install(ns: &TestNamespace) -> Result<()> {
    apply_value(
        &ns.client,
        None,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "traefik"},
            "spec": {"controllerName": "traefik.io/gateway-controller"},
        }),
    )
    .await?;
    apply_value(
        &ns.client,
        Some(&ns.name),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gateway"},
            "spec": {"gatewayClassName": "traefik", "listeners": [{
                "name": "web", "protocol": "HTTP", "port": 8000,
                "allowedRoutes": {"namespaces": {"from": "Same"}},
            }]},
        }),
    )
    .await
}

pub fn httproute_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

pub fn httproutes(ns: &TestNamespace) -> Api<DynamicObject> {
    Api::namespaced_with(ns.client.clone(), &ns.name, &httproute_resource())
}

/// Awaits Traefik's `Accepted=True` on the HTTPRoute `name` (the v1 router waits for it too).
pub async fn wait_accepted(ns: &TestNamespace, name: &str, timeout: Duration) -> Result<()> {
    let accepted = |r: Option<&DynamicObject>| {
        r.is_some_and(|r| {
            r.data["status"]["parents"][0]["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Accepted" && c["status"] == "True")
                })
        })
    };
    wait_for(
        &httproutes(ns),
        name,
        "Accepted by Traefik",
        timeout,
        accepted,
    )
    .await
    .map(|_| ())
}
