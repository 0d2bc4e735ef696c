//! The Kubernetes Services of a Deployment/DaemonSet target:
//! `<apex>` and `<apex>-primary` select the primary pods, `<apex>-canary` the target's.

use std::collections::{BTreeMap, BTreeSet};

use flagger_api::Canary;
use flagger_api::service::CustomMetadata;
use k8s_openapi::api::core::v1::{Container, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde_json::{Map, Value, json};

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
    if is_taken_over(canary, live) {
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

/// Whether `live` exists and is not controlled by this Canary: a user's Service (usually the apex)
/// whose ports and selector we replace but whose metadata, type and ownership stay the user's.
pub fn is_taken_over(canary: &Canary, live: Option<&Service>) -> bool {
    live.is_some_and(|l| !is_controlled_by(l.metadata.owner_references.as_ref(), canary))
}

/// The merge patch that replaces the live Service's port list and selector with the desired ones,
/// or `None` when server-side apply alone gets the Service right.
///
/// Server-side apply merges list entries by their key (port and protocol for Service ports) and
/// only removes entries the applying manager owned, so a user's port 9898 named `http` would stay
/// beside our port 80 named `http` and the API server would refuse the duplicate name. Flagger
/// replaces the list instead, and so do we: a JSON merge patch replaces a list wholesale, and as a
/// non-apply write it also drops the other managers' ownership of the entries it removes. The
/// selector is replaced the same way (the user's other keys set to null), and the patch carries
/// the live resourceVersion so a concurrent edit of the Service makes it fail and retry rather
/// than be overwritten unseen.
///
/// * A taken-over Service gets this patch whenever its ports or selector differ; it is never
///   applied (its other fields are the user's).
/// * Our own Service gets it only when the live ports hold an entry that is not ours to keep (left
///   by another manager, e.g. Flagger's update before a switch to flagger-rs); the apply follows.
pub fn replacement_patch(desired: &Service, live: &Service, taken_over: bool) -> Option<Value> {
    let desired_spec = desired.spec.as_ref()?;
    let wanted_ports = desired_spec.ports.clone().unwrap_or_default();
    let wanted_selector = desired_spec.selector.clone().unwrap_or_default();
    let live_spec = live.spec.clone().unwrap_or_default();
    let live_ports = live_spec.ports.unwrap_or_default();
    let live_selector = live_spec.selector.unwrap_or_default();
    let needed = if taken_over {
        port_set(&live_ports) != port_set(&wanted_ports) || live_selector != wanted_selector
    } else {
        let keys: BTreeSet<(i32, String)> = wanted_ports.iter().map(port_key).collect();
        live_ports.iter().any(|p| !keys.contains(&port_key(p)))
    };
    if !needed {
        return None;
    }
    let mut selector: Map<String, Value> = live_selector
        .keys()
        .map(|k| (k.clone(), Value::Null))
        .collect();
    for (k, v) in &wanted_selector {
        selector.insert(k.clone(), Value::String(v.clone()));
    }
    Some(json!({
        "metadata": {"resourceVersion": live.metadata.resource_version},
        "spec": {"ports": wanted_ports, "selector": selector},
    }))
}

/// The key server-side apply merges Service ports by.
fn port_key(p: &ServicePort) -> (i32, String) {
    (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into()))
}

/// Name, target port (as text) and app protocol: what a port entry says besides its key.
type PortMeaning = (Option<String>, String, Option<String>);

/// What a port means, with the API server's defaults filled in and node ports left out (they are
/// allocated, or kept by name), in a form that ignores order.
fn port_set(ports: &[ServicePort]) -> BTreeMap<(i32, String), PortMeaning> {
    ports
        .iter()
        .map(|p| {
            let target = match p.target_port.as_ref() {
                None | Some(IntOrString::Int(0)) => p.port.to_string(),
                Some(IntOrString::Int(n)) => n.to_string(),
                Some(IntOrString::String(s)) => s.clone(),
            };
            (
                port_key(p),
                (p.name.clone(), target, p.app_protocol.clone()),
            )
        })
        .collect()
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

    /// The user's Service as `kubectl apply` leaves it: no owner, defaults filled in.
    fn users_service(ports: Value) -> Service {
        fixtures::service(json!({
            "metadata": {"name": "podinfo", "namespace": "test", "resourceVersion": "42",
                         "labels": {"team": "web"}},
            "spec": {"type": "ClusterIP", "selector": {"app": "podinfo", "tier": "web"}, "ports": ports}
        }))
    }

    /// The write that takes the user's Service over, as the API server would receive it.
    fn takeover(canary: &Canary, live: &Service) -> Option<Value> {
        let discovered = discovered_ports(canary, &containers());
        let desired = desired_service(
            canary,
            ServiceRole::Apex,
            &selector(),
            &discovered,
            Some(live),
        )
        .unwrap();
        assert!(is_taken_over(canary, Some(live)));
        replacement_patch(&desired, live, true)
    }

    fn replaced(ports: Value) -> Value {
        json!({
            "metadata": {"resourceVersion": "42"},
            "spec": {"ports": ports, "selector": {"app": "podinfo-primary", "tier": null}}
        })
    }

    #[test]
    fn takeover_replaces_a_different_port_with_the_same_name() {
        // Flagger's kubernetes scenario: the user's podinfo-svc serves 9898 as `http`.
        let canary = fixtures::canary_with(json!({"service": {"portDiscovery": false}}));
        let live = users_service(
            json!([{"name": "http", "protocol": "TCP", "port": 9898, "targetPort": 9898}]),
        );
        assert_eq!(
            takeover(&canary, &live),
            Some(replaced(json!([
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898}
            ])))
        );
    }

    #[test]
    fn takeover_replaces_a_named_target_port_with_a_numbered_one_and_back() {
        let numbered = fixtures::canary_with(json!({"service": {"portDiscovery": false}}));
        let named_live = users_service(
            json!([{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}]),
        );
        assert_eq!(
            takeover(&numbered, &named_live),
            Some(replaced(json!([
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898}
            ])))
        );
        let named = fixtures::canary_with(
            json!({"service": {"portDiscovery": false, "targetPort": "http"}}),
        );
        let numbered_live = users_service(
            json!([{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898}]),
        );
        assert_eq!(
            takeover(&named, &numbered_live),
            Some(replaced(json!([
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}
            ])))
        );
    }

    #[test]
    fn takeover_with_port_discovery_adds_the_containers_other_ports() {
        let canary = fixtures::canary();
        let live = users_service(
            json!([{"name": "http", "protocol": "TCP", "port": 9898, "targetPort": 9898}]),
        );
        assert_eq!(
            takeover(&canary, &live),
            Some(replaced(json!([
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898},
                {"name": "grpc", "protocol": "TCP", "port": 9999, "targetPort": 9999},
                {"name": "http-metrics", "protocol": "TCP", "port": 9797, "targetPort": 9797}
            ])))
        );
    }

    #[test]
    fn takeover_replaces_several_ports_whose_names_and_numbers_overlap_ours() {
        // `metrics` 9797 would clash by number with the discovered `http-metrics`, `http` by name.
        let canary = fixtures::canary();
        let live = users_service(json!([
            {"name": "http", "protocol": "TCP", "port": 9898, "targetPort": "http"},
            {"name": "metrics", "protocol": "TCP", "port": 9797, "targetPort": 9797},
            {"name": "udp", "protocol": "UDP", "port": 53, "targetPort": 53}
        ]));
        let patch = takeover(&canary, &live).unwrap();
        let ports: Vec<(&str, i64)> = patch["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["port"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            ports,
            vec![("http", 80), ("grpc", 9999), ("http-metrics", 9797)]
        );
    }

    #[test]
    fn a_taken_over_service_that_already_matches_is_not_written() {
        let canary = fixtures::canary_with(json!({"service": {"portDiscovery": false}}));
        let mut live = users_service(json!([
            {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898, "nodePort": 30080}
        ]));
        live.spec.as_mut().unwrap().selector =
            Some([("app".into(), "podinfo-primary".into())].into());
        assert_eq!(takeover(&canary, &live), None);
    }

    #[test]
    fn our_service_is_patched_only_to_drop_entries_another_manager_left() {
        let canary = fixtures::canary_with(json!({"service": {"portDiscovery": false}}));
        let live = fixtures::service(json!({
            "metadata": {"name": "podinfo-canary", "namespace": "test", "resourceVersion": "7", "ownerReferences": owner()},
            "spec": {"selector": {"app": "podinfo"}, "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898}
            ]}
        }));
        let desired =
            desired_service(&canary, ServiceRole::Canary, &selector(), &[], Some(&live)).unwrap();
        assert!(!is_taken_over(&canary, Some(&live)));
        assert_eq!(replacement_patch(&desired, &live, false), None);

        let mut stale = live.clone();
        stale.spec.as_mut().unwrap().ports.as_mut().unwrap().push(
            serde_json::from_value(json!({"name": "old", "protocol": "TCP", "port": 8080}))
                .unwrap(),
        );
        assert_eq!(
            replacement_patch(&desired, &stale, false),
            Some(json!({
                "metadata": {"resourceVersion": "7"},
                "spec": {
                    "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898}],
                    "selector": {"app": "podinfo"}
                }
            }))
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
