//! The ingress-nginx setup a user has for the `nginx` router, served here by Traefik's ingress-nginx
//! provider: the `nginx` IngressClass and the user's Ingress for a host, which the router copies into the
//! canary Ingress it writes.

use serde_json::json;

use crate::gateway::apply_value;
use crate::objects::APP_PORT;
use crate::{Result, TestNamespace};

/// The `nginx` IngressClass and Ingress `name` routing `host` to Service `name` on [`APP_PORT`].
pub async fn install(ns: &TestNamespace, name: &str, host: &str) -> Result<()> {
    apply_value(
        &ns.client,
        None,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "nginx"},
            "spec": {"controller": "k8s.io/ingress-nginx"},
        }),
    )
    .await?;
    apply_value(
        &ns.client,
        Some(&ns.name),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": {"number": APP_PORT}}},
            }]}}]},
        }),
    )
    .await
}
