//! What the testapp knows about each pod: derived from the Pod object alone, so a change to a pod's
//! annotations takes effect on the next watch event without restarting anything.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::mesh_series::{MeshIdentity, ServiceRoute};

pub const ANN_ERROR_RATE: &str = "testapp.flagger-rs.dev/error-rate";
pub const ANN_LATENCY_MS: &str = "testapp.flagger-rs.dev/latency-ms";
/// Pods whose ports are served by a real process in the netns (e.g. the loadtester) opt out with "false".
pub const ANN_SERVE: &str = "testapp.flagger-rs.dev/serve";
pub const LABEL_VERSION: &str = "app.kubernetes.io/version";
/// The APISIX route reaching the pod, `<ApisixRoute name>/<http rule name>`: APISIX labels its series by route,
/// and only whoever wrote the route knows which pods it reaches, so the test that does says so on the pod.
pub const ANN_APISIX_ROUTE: &str = "testapp.flagger-rs.dev/apisix-route";
/// Knative's own label on a revision's pods.
pub const LABEL_KNATIVE_REVISION: &str = "serving.knative.dev/revision";
const ENV_ERROR_RATE: &str = "TESTAPP_ERROR_RATE";
const ENV_LATENCY_MS: &str = "TESTAPP_LATENCY_MS";
/// Upper bound on injected latency so a typo in an annotation cannot park connections for hours.
pub const MAX_LATENCY_MS: u64 = 60_000;

#[derive(Debug)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub version: String,
    pub error_rate: f64,
    pub latency_ms: u64,
    /// Request counter driving the error injection, shared across re-derivations of the same pod.
    pub requests: Arc<AtomicU64>,
    /// How a service mesh would name this pod's traffic.
    pub mesh: MeshIdentity,
}

impl PodView {
    /// Errors are spread evenly instead of drawn at random: request n fails when floor((n+1)·r) > floor(n·r).
    /// Any window of requests then sees the configured rate exactly, which keeps analysis thresholds in tests stable.
    pub fn next_is_error(&self) -> bool {
        let r = self.error_rate;
        if r <= 0.0 {
            return false;
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * r).floor() > (n * r).floor()
    }
}

/// Pod IPs of a pod that the testapp should answer for, or nothing if it must stay silent.
fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    // Terminating pods keep answering, as a real container does during its grace period: Services and Traefik
    // drop the endpoint a moment after the deletion starts, and requests in flight must not fail.
    if status.phase.as_deref() != Some("Running") {
        return Vec::new();
    }
    if !serves_on_its_own_ip(pod) {
        return Vec::new();
    }
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status.pod_ip.as_deref().and_then(|s| s.parse().ok())
    {
        ips.push(ip);
    }
    ips
}

fn serves(pod: &Pod) -> bool {
    annotation(pod, ANN_SERVE) != Some("false")
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The APISIX ingress controller's route name without its namespace prefix: `<ApisixRoute>_<http rule>`.
/// A value that is not `<route>/<rule>` gives no APISIX series, as a pod no route reaches.
fn apisix_route(pod: &Pod) -> Option<String> {
    let (route, rule) = annotation(pod, ANN_APISIX_ROUTE)?.split_once('/')?;
    (!route.is_empty() && !rule.is_empty()).then(|| format!("{route}_{rule}"))
}

fn knative_revision(pod: &Pod) -> Option<String> {
    pod.metadata
        .labels
        .as_ref()?
        .get(LABEL_KNATIVE_REVISION)
        .filter(|r| !r.is_empty())
        .cloned()
}

fn env_value<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == key)?
        .value
        .as_deref()
}

/// The pod's version as podinfo would report it: the version label, else the first container's image tag.
pub fn version_of(pod: &Pod) -> String {
    if let Some(v) = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_VERSION))
    {
        return v.clone();
    }
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default();
    image_tag(image).unwrap_or("latest").to_string()
}

fn image_tag(image: &str) -> Option<&str> {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':')
        .map(|(_, tag)| tag)
        .filter(|t| !t.is_empty())
}

fn parse_rate(s: Option<&str>) -> f64 {
    s.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite())
        .map(|r| r.clamp(0.0, 1.0))
        .unwrap_or(0.0)
}

fn parse_ms(s: Option<&str>) -> u64 {
    s.and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .min(MAX_LATENCY_MS)
}

/// A pod the testapp answers for on the pod's own addresses: one it serves, not on the host's network.
fn serves_on_its_own_ip(pod: &Pod) -> bool {
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network);
    host_network != Some(true) && serves(pod)
}

/// TCP container ports the testapp should listen on for this pod.
/// Taken from every pod, Running or not, so the listener exists before the pod turns Ready and gets traffic.
pub fn tcp_ports(pod: &Pod) -> Vec<u16> {
    if !serves_on_its_own_ip(pod) {
        return Vec::new();
    }
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP"))
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .filter(|p| *p != 0)
        .collect()
}

/// The workload a mesh reports a pod under: a ReplicaSet's pods belong to its Deployment (the ReplicaSet's name
/// less the pod-template-hash suffix), any other owner names itself, an unowned pod is its own workload.
pub fn workload_of(pod: &Pod) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let Some(owner) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    else {
        return name;
    };
    let hash = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"));
    match hash {
        Some(hash) if owner.kind == "ReplicaSet" => owner
            .name
            .strip_suffix(&format!("-{hash}"))
            .unwrap_or(&owner.name)
            .to_string(),
        _ => owner.name.clone(),
    }
}

/// The Services (of the pod's namespace) whose selector matches it, per TCP container port they forward to.
fn service_routes(pod: &Pod, services: &[&Service]) -> Vec<ServiceRoute> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let container_ports: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .collect();
    let mut routes = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let selector = spec.selector.clone().unwrap_or_default();
        if selector.is_empty() || selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            continue;
        }
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                continue;
            }
            let target = match &port.target_port {
                None => Some(port.port),
                Some(IntOrString::Int(n)) => Some(*n),
                Some(IntOrString::String(name)) => container_ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port),
            };
            if let (Some(container_port), Ok(service_port)) = (
                target.and_then(|t| u16::try_from(t).ok()),
                u16::try_from(port.port),
            ) {
                routes.push(ServiceRoute {
                    container_port,
                    service: svc.metadata.name.clone().unwrap_or_default(),
                    service_port,
                });
            }
        }
    }
    routes
}

/// The lookup table requests are answered from: pod IP → pod.
#[derive(Default)]
pub struct Index {
    pub by_ip: HashMap<IpAddr, Arc<PodView>>,
    pub ports: BTreeSet<u16>,
    /// Prometheus file_sd entries for pods annotated `prometheus.io/scrape: "true"`. Debian's Prometheus is built
    /// without Kubernetes service discovery, so the testapp, which watches pods anyway, provides the targets.
    pub scrape_targets: Vec<serde_json::Value>,
}

fn scrape_target(pod: &Pod, ip: IpAddr) -> Option<serde_json::Value> {
    if annotation(pod, "prometheus.io/scrape") != Some("true") {
        return None;
    }
    let port = match annotation(pod, "prometheus.io/port") {
        Some(p) => p.parse::<u16>().ok()?,
        None => *tcp_ports(pod).first()?,
    };
    let path = annotation(pod, "prometheus.io/path").unwrap_or("/metrics");
    let mut labels = serde_json::Map::new();
    labels.insert(
        "namespace".into(),
        pod.metadata.namespace.clone().unwrap_or_default().into(),
    );
    labels.insert(
        "pod".into(),
        pod.metadata.name.clone().unwrap_or_default().into(),
    );
    labels.insert("__metrics_path__".into(), path.into());
    for (k, v) in pod.metadata.labels.iter().flatten() {
        let name: String = k
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        labels.insert(
            format!("__meta_kubernetes_pod_label_{name}"),
            v.clone().into(),
        );
    }
    let target = match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    Some(serde_json::json!({"targets": [target], "labels": labels}))
}

impl Index {
    /// Rebuilds the table from the reflector's store; counters of pods that are still there carry over.
    pub fn build(pods: &[Arc<Pod>], services: &[Arc<Service>], previous: &Index) -> Index {
        let counters: HashMap<&str, &Arc<AtomicU64>> = previous
            .by_ip
            .values()
            .map(|p| (p.uid.as_str(), &p.requests))
            .collect();
        let mut services_by_ns: HashMap<&str, Vec<&Service>> = HashMap::new();
        for svc in services {
            let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
            services_by_ns.entry(ns).or_default().push(svc);
        }
        let mut index = Index::default();
        for pod in pods {
            index.ports.extend(tcp_ports(pod));
            let ips = pod_ips(pod);
            if ips.is_empty() {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let mesh = MeshIdentity {
                namespace: namespace.clone(),
                pod: name.clone(),
                workload: workload_of(pod),
                routes: service_routes(
                    pod,
                    services_by_ns
                        .get(namespace.as_str())
                        .map_or(&[], Vec::as_slice),
                ),
                apisix_route: apisix_route(pod),
                knative_revision: knative_revision(pod),
            };
            let requests = counters
                .get(uid.as_str())
                .map(|c| Arc::clone(c))
                .unwrap_or_default();
            let view = Arc::new(PodView {
                namespace,
                name,
                uid,
                version: version_of(pod),
                error_rate: parse_rate(
                    annotation(pod, ANN_ERROR_RATE).or(env_value(pod, ENV_ERROR_RATE)),
                ),
                latency_ms: parse_ms(
                    annotation(pod, ANN_LATENCY_MS).or(env_value(pod, ENV_LATENCY_MS)),
                ),
                requests,
                mesh,
            });
            if let Some(t) = ips.first().and_then(|ip| scrape_target(pod, *ip)) {
                index.scrape_targets.push(t);
            }
            for ip in ips {
                index.by_ip.insert(ip, Arc::clone(&view));
            }
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: serde_json::Value) -> Pod {
        serde_json::from_value(yaml).unwrap_or_default()
    }

    fn running(annotations: serde_json::Value, image: &str) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u1", "annotations": annotations},
            "spec": {"containers": [{"name": "c", "image": image, "ports": [{"containerPort": 9898}, {"containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}]}
        }))
    }

    #[test]
    fn image_tags() {
        assert_eq!(
            image_tag("ghcr.io/stefanprodan/podinfo:6.0.1"),
            Some("6.0.1")
        );
        assert_eq!(image_tag("localhost:5000/podinfo"), None);
        assert_eq!(
            image_tag("localhost:5000/podinfo:1.2@sha256:abc"),
            Some("1.2")
        );
    }

    #[test]
    fn index_uses_annotations_and_tcp_ports() {
        let p = Arc::new(running(
            serde_json::json!({ANN_ERROR_RATE: "0.25", ANN_LATENCY_MS: "999999"}),
            "podinfo:6.0.0",
        ));
        let idx = Index::build(&[p], &[], &Index::default());
        assert_eq!(idx.ports.iter().copied().collect::<Vec<_>>(), vec![9898]);
        let view = &idx.by_ip[&"10.244.0.7"
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))];
        assert_eq!(view.version, "6.0.0");
        assert_eq!(view.latency_ms, MAX_LATENCY_MS);
        let errors = (0..1000).filter(|_| view.next_is_error()).count();
        assert_eq!(errors, 250);
    }

    #[test]
    fn opted_out_pods_are_silent() {
        let p = Arc::new(running(
            serde_json::json!({ANN_SERVE: "false"}),
            "loadtester:1",
        ));
        let idx = Index::build(&[p], &[], &Index::default());
        assert!(idx.ports.is_empty() && idx.by_ip.is_empty());
    }

    #[test]
    fn mesh_identity_names_the_deployment_and_the_services_reaching_each_port() {
        let p = Arc::new(pod(serde_json::json!({
            "metadata": {"name": "podinfo-5d8f9c7b4-x2x9k", "namespace": "n", "uid": "u1",
                "labels": {"app": "podinfo", "pod-template-hash": "5d8f9c7b4"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "podinfo-5d8f9c7b4",
                    "uid": "rs", "controller": true}]},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 9898}]}]},
            "status": {"phase": "Running", "podIP": "10.244.0.7"}
        })));
        let svc = |name: &str, ns: &str, app: &str, target: serde_json::Value| {
            Arc::new(
                serde_json::from_value::<Service>(serde_json::json!({
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": target}]}
                }))
                .unwrap_or_default(),
            )
        };
        let services = [
            svc("podinfo-canary", "n", "podinfo", serde_json::json!("http")),
            svc("by-number", "n", "podinfo", serde_json::json!(9898)),
            svc(
                "podinfo-primary",
                "n",
                "podinfo-primary",
                serde_json::json!("http"),
            ),
            svc("elsewhere", "other", "podinfo", serde_json::json!("http")),
        ];
        let idx = Index::build(&[p], &services, &Index::default());
        let view = idx.by_ip.values().next().map(Arc::clone);
        let mesh = view.map(|v| v.mesh.clone()).unwrap_or_default();
        assert_eq!(mesh.workload, "podinfo");
        let routes: Vec<_> = mesh
            .routes
            .iter()
            .map(|r| (r.service.as_str(), r.service_port, r.container_port))
            .collect();
        assert_eq!(
            routes,
            [("podinfo-canary", 80, 9898), ("by-number", 80, 9898)]
        );
        assert_eq!((mesh.apisix_route, mesh.knative_revision), (None, None));
    }

    #[test]
    fn apisix_route_and_knative_revision_come_from_the_pod() {
        let with = |annotations: serde_json::Value, labels: serde_json::Value| {
            pod(serde_json::json!({
                "metadata": {"name": "p", "namespace": "n", "annotations": annotations, "labels": labels}
            }))
        };
        let p = with(
            serde_json::json!({ANN_APISIX_ROUTE: "edge-podinfo-canary/http"}),
            serde_json::json!({LABEL_KNATIVE_REVISION: "podinfo-00002"}),
        );
        assert_eq!(
            apisix_route(&p).as_deref(),
            Some("edge-podinfo-canary_http")
        );
        assert_eq!(knative_revision(&p).as_deref(), Some("podinfo-00002"));
        for malformed in ["edge", "/http", "edge/"] {
            let p = with(
                serde_json::json!({ANN_APISIX_ROUTE: malformed}),
                serde_json::json!({}),
            );
            assert_eq!(apisix_route(&p), None, "{malformed}");
        }
    }
}
