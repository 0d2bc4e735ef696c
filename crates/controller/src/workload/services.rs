//! The Kubernetes Services of a Deployment/DaemonSet target (routers.md §2, crds.md §7):
//! `<apex>` and `<apex>-primary` select the primary pods, `<apex>-canary` the target's.

use std::collections::BTreeSet;

use flagger_api::Canary;
use flagger_api::service::CustomMetadata;
use k8s_openapi::api::core::v1::{Container, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::workload::labels::{
    MANAGED_BY, MANAGED_BY_FLAGGER, StringMap, non_empty, with_flux_annotations, without_flux_keys,
};
use crate::workload::selector::SelectorLabel;
use crate::workload::{WorkloadError, is_controlled_by, owner_reference};

/// Service-mesh proxies whose ports are never exposed by port discovery.
const SIDECARS: [&str; 2] = ["istio-proxy", "envoy"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceRole {
    Apex,
    Primary,
    Canary,
}

impl ServiceRole {
    pub fn name(self, canary: &Canary) -> String {
        match self {
            ServiceRole::Apex => canary.spec.apex_name().to_string(),
            ServiceRole::Primary => canary.spec.primary_service_name(),
            ServiceRole::Canary => canary.spec.canary_service_name(),
        }
    }

    fn pod_selector_value(self, selector: &SelectorLabel) -> String {
        match self {
            ServiceRole::Canary => selector.value.clone(),
            ServiceRole::Apex | ServiceRole::Primary => selector.primary_value(),
        }
    }

    fn metadata(self, canary: &Canary) -> Option<&CustomMetadata> {
        let service = canary.spec.service.as_ref()?;
        match self {
            ServiceRole::Apex => service.apex.as_ref(),
            ServiceRole::Primary => service.primary.as_ref(),
            ServiceRole::Canary => service.canary.as_ref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("canary {canary}: service.port {port} is not a port number")]
pub struct InvalidPort {
    pub canary: String,
    pub port: String,
}

impl From<InvalidPort> for WorkloadError {
    fn from(e: InvalidPort) -> Self {
        WorkloadError::InvalidServicePort {
            canary: e.canary,
            port: e.port,
        }
    }
}

fn service_port(canary: &Canary) -> Result<i32, InvalidPort> {
    let port = canary.spec.service.as_ref().map(|s| &s.port);
    port.and_then(|p| p.integer())
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| InvalidPort {
            canary: canary.name_any(),
            port: port.map(|p| p.to_string()).unwrap_or_default(),
        })
}

/// `service.targetPort`, unless unset or 0 (Flagger's "zero value" test).
fn target_port(canary: &Canary) -> Option<IntOrString> {
    canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.target_port.clone())
        .filter(|t| {
            !matches!(t, IntOrString::Int(0))
                && !matches!(t, IntOrString::String(s) if s.is_empty() || s == "0")
        })
}

/// Extra ports when `service.portDiscovery` is on: every container port of the target except the
/// service's own port (or target port) and mesh sidecars', named after the container port or
/// `tcp-<container>-<index>`, sorted by name so the Service does not churn.
pub fn discovered_ports(canary: &Canary, containers: &[Container]) -> Vec<ServicePort> {
    let enabled = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.port_discovery)
        .unwrap_or(false);
    if !enabled {
        return Vec::new();
    }
    let main_port = service_port(canary).ok();
    let target = target_port(canary);
    let mut ports: Vec<ServicePort> = Vec::new();
    for c in containers
        .iter()
        .filter(|c| !SIDECARS.contains(&c.name.as_str()))
    {
        for (i, p) in c.ports.iter().flatten().enumerate() {
            let is_main = match &target {
                None => Some(p.container_port) == main_port,
                Some(IntOrString::Int(n)) => p.container_port == *n,
                Some(IntOrString::String(name)) => p.name.as_deref() == Some(name.as_str()),
            };
            if is_main {
                continue;
            }
            let name = p
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("tcp-{}-{i}", c.name));
            ports.push(ServicePort {
                name: Some(name),
                protocol: Some("TCP".into()),
                port: p.container_port,
                target_port: Some(IntOrString::Int(p.container_port)),
                ..ServicePort::default()
            });
        }
    }
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    ports
}

/// Port 0 from `spec.service`, then the discovered ports. A discovered port that would clash with
/// port 0 (same name or number) is dropped: the API server rejects such a Service outright.
pub fn ports(canary: &Canary, discovered: &[ServicePort]) -> Result<Vec<ServicePort>, InvalidPort> {
    let svc = canary.spec.service.clone().unwrap_or_default();
    let port = service_port(canary)?;
    let name = svc
        .port_name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "http".into());
    let main = ServicePort {
        name: Some(name),
        protocol: Some("TCP".into()),
        port,
        target_port: Some(target_port(canary).unwrap_or(IntOrString::Int(port))),
        app_protocol: svc.app_protocol.filter(|p| !p.is_empty()),
        ..ServicePort::default()
    };
    let mut seen_names: BTreeSet<Option<String>> = [main.name.clone()].into();
    let mut seen_ports: BTreeSet<i32> = [main.port].into();
    let mut all = vec![main];
    for p in discovered {
        if seen_names.insert(p.name.clone()) && seen_ports.insert(p.port) {
            all.push(p.clone());
        }
    }
    Ok(all)
}

/// The Service to server-side apply for `role`, given the live one if it exists.
///
/// * Absent, or controlled by this Canary: the full object: ClusterIP (or headless at creation),
///   ports, selector, `trafficDistribution`, labels and annotations from `service.<role>` plus
///   `<label>: <name>`, `app.kubernetes.io/managed-by: flagger` and Flux's hands-off annotations,
///   owner reference.
/// * Pre-existing and not ours (a user's apex Service taken over): only ports and selector; its
///   metadata, type and ownership stay the user's.
///
/// Node ports of a taken-over Service are kept; keys listed in `service.unmanagedMetadata` keep their
/// live values.
pub fn desired_service(
    canary: &Canary,
    role: ServiceRole,
    selector: &SelectorLabel,
    discovered: &[ServicePort],
    live: Option<&Service>,
) -> Result<Service, WorkloadError> {
    let name = role.name(canary);
    let mut ports = ports(canary, discovered)?;
    let pod_selector = Some([(selector.key.clone(), role.pod_selector_value(selector))].into());
    let namespace = canary.namespace();
    let owned = live.is_none_or(|l| is_controlled_by(l.metadata.owner_references.as_ref(), canary));
    if !owned {
        // The user's Service keeps its type, so a NodePort/LoadBalancer keeps its node ports
        // (matched by port name, as Flagger does); ours are ClusterIP and have none.
        if let Some(live_ports) = live
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.ports.as_ref())
        {
            for p in ports.iter_mut() {
                p.node_port = live_ports
                    .iter()
                    .find(|l| l.name == p.name)
                    .and_then(|l| l.node_port)
                    .filter(|n| *n > 0);
            }
        }
        return Ok(Service {
            metadata: ObjectMeta {
                name: Some(name),
                namespace,
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(ports),
                selector: pod_selector,
                ..ServiceSpec::default()
            }),
            status: None,
        });
    }

    let svc = canary.spec.service.as_ref();
    let custom = role.metadata(canary);
    let mut labels = without_flux_keys(custom.and_then(|m| m.labels.as_ref()));
    labels.insert(selector.key.clone(), name.clone());
    labels
        .entry(MANAGED_BY.to_string())
        .or_insert_with(|| MANAGED_BY_FLAGGER.to_string());
    let mut annotations = with_flux_annotations(without_flux_keys(
        custom.and_then(|m| m.annotations.as_ref()),
    ));
    if let Some(unmanaged) = svc.and_then(|s| s.unmanaged_metadata.as_ref()) {
        keep_live(
            &mut labels,
            unmanaged.labels.as_deref(),
            live.and_then(|l| l.metadata.labels.as_ref()),
        );
        keep_live(
            &mut annotations,
            unmanaged.annotations.as_deref(),
            live.and_then(|l| l.metadata.annotations.as_ref()),
        );
    }

    let headless = svc.and_then(|s| s.headless).unwrap_or(false);
    let live_cluster_ip = live
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.cluster_ip.as_deref());
    // The cluster IP is immutable: headless is decided at creation; afterwards the field is left
    // out and the API server keeps whatever was allocated.
    let cluster_ip =
        (headless && live_cluster_ip.is_none_or(|ip| ip == "None")).then(|| "None".to_string());
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace,
            labels: Some(labels),
            annotations: non_empty(annotations),
            owner_references: Some(vec![owner_reference(canary)?]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip,
            ports: Some(ports),
            selector: pod_selector,
            traffic_distribution: svc
                .and_then(|s| s.traffic_distribution.clone())
                .filter(|t| !t.is_empty()),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// Unmanaged keys take their live value (or are left out when absent live), so applying never
/// changes or removes them.
fn keep_live(desired: &mut StringMap, keys: Option<&[String]>, live: Option<&StringMap>) {
    for k in keys.into_iter().flatten() {
        match live.and_then(|l| l.get(k)) {
            Some(v) => desired.insert(k.clone(), v.clone()),
            None => desired.remove(k),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;
    use serde_json::{Value, json};

    fn selector() -> SelectorLabel {
        SelectorLabel {
            key: "app".into(),
            value: "podinfo".into(),
        }
    }

    fn containers() -> Vec<Container> {
        fixtures::deployment()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers
    }

    fn render(canary: &Canary, role: ServiceRole, live: Option<&Service>) -> Value {
        let discovered = discovered_ports(canary, &containers());
        serde_json::to_value(desired_service(canary, role, &selector(), &discovered, live).unwrap())
            .unwrap()
    }

    fn owner() -> Value {
        json!([{
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
            "uid": fixtures::CANARY_UID, "controller": true, "blockOwnerDeletion": true
        }])
    }

    fn flux() -> Value {
        json!({"helm.toolkit.fluxcd.io/driftDetection": "disabled", "kustomize.toolkit.fluxcd.io/reconcile": "disabled"})
    }

    #[test]
    fn canary_service_snapshot() {
        assert_eq!(
            render(&fixtures::canary(), ServiceRole::Canary, None),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "podinfo-canary",
                    "namespace": "test",
                    "labels": {"app": "podinfo-canary", "app.kubernetes.io/managed-by": "flagger"},
                    "annotations": flux(),
                    "ownerReferences": owner()
                },
                "spec": {
                    "type": "ClusterIP",
                    "selector": {"app": "podinfo"},
                    "ports": [
                        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898},
                        {"name": "grpc", "protocol": "TCP", "port": 9999, "targetPort": 9999},
                        {"name": "http-metrics", "protocol": "TCP", "port": 9797, "targetPort": 9797}
                    ]
                }
            })
        );
    }

    #[test]
    fn primary_and_apex_select_the_primary_pods() {
        let canary = fixtures::canary_with(json!({"service": {
            "name": "frontend", "portDiscovery": false, "portName": "web", "appProtocol": "http",
            "trafficDistribution": "PreferClose",
            "apex": {"labels": {"tier": "edge", "kustomize.toolkit.fluxcd.io/name": "x"}, "annotations": {"a": "b"}},
            "primary": {"labels": {"role": "primary"}}
        }}));
        let apex = render(&canary, ServiceRole::Apex, None);
        assert_eq!(
            apex,
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "frontend",
                    "namespace": "test",
                    "labels": {"app": "frontend", "app.kubernetes.io/managed-by": "flagger", "tier": "edge"},
                    "annotations": {"a": "b", "helm.toolkit.fluxcd.io/driftDetection": "disabled", "kustomize.toolkit.fluxcd.io/reconcile": "disabled"},
                    "ownerReferences": owner()
                },
                "spec": {
                    "type": "ClusterIP",
                    "selector": {"app": "podinfo-primary"},
                    "trafficDistribution": "PreferClose",
                    "ports": [{"name": "web", "protocol": "TCP", "port": 80, "targetPort": 9898, "appProtocol": "http"}]
                }
            })
        );
        let primary = render(&canary, ServiceRole::Primary, None);
        assert_eq!(primary["metadata"]["name"], "frontend-primary");
        assert_eq!(
            primary["metadata"]["labels"],
            json!({"app": "frontend-primary", "app.kubernetes.io/managed-by": "flagger", "role": "primary"})
        );
        assert_eq!(
            primary["spec"]["selector"],
            json!({"app": "podinfo-primary"})
        );
    }

    #[test]
    fn target_port_defaults_to_port_and_headless_sets_cluster_ip_none() {
        let canary = fixtures::canary_with(
            json!({"service": {"targetPort": null, "portDiscovery": false, "headless": true}}),
        );
        let svc = render(&canary, ServiceRole::Canary, None);
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80}])
        );
        assert_eq!(svc["spec"]["clusterIP"], "None");

        // Once allocated, the cluster IP is never touched.
        let live = fixtures::service(
            json!({"metadata": {"name": "podinfo-canary", "ownerReferences": owner()}, "spec": {"clusterIP": "10.0.0.7"}}),
        );
        assert_eq!(
            render(&canary, ServiceRole::Canary, Some(&live))["spec"].get("clusterIP"),
            None
        );
    }

    #[test]
    fn named_target_port_excludes_that_container_port_from_discovery() {
        let canary = fixtures::canary_with(json!({"service": {"targetPort": "grpc"}}));
        let names: Vec<String> = discovered_ports(&canary, &containers())
            .into_iter()
            .filter_map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["http", "http-metrics"]);
    }

    #[test]
    fn discovery_skips_sidecars_and_names_unnamed_ports() {
        let canary = fixtures::canary();
        let cs: Vec<Container> = serde_json::from_value(json!([
            {"name": "app", "ports": [{"containerPort": 9898}, {"containerPort": 8080}]},
            {"name": "istio-proxy", "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}]}
        ]))
        .unwrap();
        let got: Vec<(String, i32)> = discovered_ports(&canary, &cs)
            .into_iter()
            .map(|p| (p.name.unwrap_or_default(), p.port))
            .collect();
        assert_eq!(got, vec![("tcp-app-1".to_string(), 8080)]);
    }

    #[test]
    fn a_users_apex_service_is_taken_over_without_touching_its_metadata() {
        let canary = fixtures::canary_with(json!({"service": {"portDiscovery": false}}));
        let live = fixtures::service(json!({
            "metadata": {"name": "podinfo", "namespace": "test", "labels": {"app": "podinfo"}, "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"type": "NodePort", "selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 80, "targetPort": 9898, "nodePort": 30080}]}
        }));
        assert_eq!(
            render(&canary, ServiceRole::Apex, Some(&live)),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "podinfo", "namespace": "test"},
                "spec": {
                    "selector": {"app": "podinfo-primary"},
                    "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898, "nodePort": 30080}]
                }
            })
        );
    }

    #[test]
    fn unmanaged_metadata_keeps_live_values() {
        let canary = fixtures::canary_with(json!({"service": {
            "portDiscovery": false,
            "apex": {"annotations": {"external-dns.alpha.kubernetes.io/hostname": "from-canary", "a": "b"}},
            "unmanagedMetadata": {"annotations": ["external-dns.alpha.kubernetes.io/hostname", "gone"], "labels": ["team"]}
        }}));
        let live = fixtures::service(json!({
            "metadata": {"name": "podinfo", "ownerReferences": owner(),
                         "labels": {"team": "web"}, "annotations": {"external-dns.alpha.kubernetes.io/hostname": "live.example.com"}},
            "spec": {}
        }));
        let svc = render(&canary, ServiceRole::Apex, Some(&live));
        assert_eq!(svc["metadata"]["labels"]["team"], "web");
        assert_eq!(
            svc["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"],
            "live.example.com"
        );
        assert_eq!(svc["metadata"]["annotations"]["a"], "b");
        assert_eq!(svc["metadata"]["annotations"].get("gone"), None);
    }

    #[test]
    fn invalid_port_is_an_error() {
        let canary = fixtures::canary_with(json!({"service": {"port": 80.5}}));
        let err =
            desired_service(&canary, ServiceRole::Canary, &selector(), &[], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "canary podinfo: service.port 80.5 is not a port number"
        );
    }
}
