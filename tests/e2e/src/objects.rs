//! Builders for the objects tests create, and the conditions they wait on.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::wait::Condition;
use serde_json::json;

use crate::Result;

/// Port every test workload declares; the testapp listens on it for all pods (podinfo's port).
pub const APP_PORT: u16 = 9898;

/// A podinfo-like Deployment served by the testapp. `version` becomes the image tag and the version label.
pub struct App<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub replicas: i32,
    /// Pod annotations, e.g. `testapp.flagger-rs.dev/error-rate`.
    pub annotations: BTreeMap<String, String>,
}

impl<'a> App<'a> {
    pub fn new(name: &'a str, version: &'a str, replicas: i32) -> Self {
        App {
            name,
            version,
            replicas,
            annotations: BTreeMap::new(),
        }
    }

    pub fn annotate(mut self, k: &str, v: &str) -> Self {
        self.annotations.insert(k.to_string(), v.to_string());
        self
    }

    pub fn deployment(&self) -> Result<Deployment> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "labels": {"app": self.name}},
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": {"app": self.name}},
                "template": {
                    "metadata": {
                        "labels": {"app": self.name, "app.kubernetes.io/version": self.version},
                        "annotations": self.annotations,
                    },
                    "spec": {
                        "containers": [{
                            "name": "podinfod",
                            "image": format!("ghcr.io/stefanprodan/podinfo:{}", self.version),
                            "ports": [{"name": "http", "containerPort": APP_PORT, "protocol": "TCP"}],
                        }],
                    },
                },
            },
        }))?)
    }

    pub fn service(&self) -> Result<Service> {
        service(self.name, self.name)
    }
}

/// A ClusterIP Service `name` selecting `app: <app>` on [`APP_PORT`].
pub fn service(name: &str, app: &str) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": app},
            "ports": [{"name": "http", "port": APP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }))?)
}

/// An autoscaling/v2 HPA `name` scaling the Deployment `name` between `min` and `max` replicas on CPU (the
/// kwok pods report no usage, so it never acts: tests look at the copy, not at scaling).
pub fn hpa(name: &str, min: i32, max: i32) -> Result<HorizontalPodAutoscaler> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min, "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 99}}}],
        },
    }))?)
}

/// The `autoscalerRef` of a canary whose target has the HPA [`hpa`] `name`.
pub fn autoscaler_ref(name: &str) -> serde_json::Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": name})
}

/// Deployment rolled out: the `Available` condition is True and every desired replica is updated and available
/// for the current generation.
pub fn deployment_available() -> impl Condition<Deployment> {
    |d: Option<&Deployment>| {
        let Some(d) = d else { return false };
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let Some(st) = &d.status else { return false };
        let observed = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
        let available = st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Available" && c.status == "True");
        observed
            && available
            && st.updated_replicas.unwrap_or(0) == want
            && st.available_replicas.unwrap_or(0) == want
            && st.replicas.unwrap_or(0) == want
    }
}

pub fn traefik_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("traefik.io", "v1alpha1", kind),
        plural,
    )
}

/// TraefikService `name` splitting by weight across `(service, weight)` on [`APP_PORT`].
pub fn weighted_traefik_service(name: &str, backends: &[(&str, u32)]) -> Result<DynamicObject> {
    let services: Vec<_> = backends
        .iter()
        .map(|(svc, w)| json!({"name": svc, "port": APP_PORT, "weight": w}))
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TraefikService",
        "metadata": {"name": name},
        "spec": {"weighted": {"services": services}},
    }))?)
}

/// IngressRoute `name` on the `web` entry point, matching `Host(host)`, sending to TraefikService `target`.
pub fn ingress_route(name: &str, host: &str, target: &str) -> Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRoute",
        "metadata": {"name": name},
        "spec": {
            "entryPoints": ["web"],
            "routes": [{
                "match": format!("Host(`{host}`)"),
                "kind": "Rule",
                "services": [{"name": target, "kind": "TraefikService"}],
            }],
        },
    }))?)
}
