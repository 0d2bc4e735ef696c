//! The series a service mesh's proxies would export for the requests a pod really serves.
//!
//! No mesh data plane runs in the local cluster (kwok pods have no processes, let alone sidecars), yet the builtin
//! `request-success-rate` / `request-duration` checks of each mesh provider query that mesh's own metric names and
//! labels. So the testapp, which serves every pod's traffic, records each request once per pod (container port,
//! status class, latency) and renders those observations under every mesh's names at scrape time, with the labels
//! that mesh would attach: Istio's `istio_requests_total`, Linkerd's `response_total`, OSM's `osm_request_total`
//! and Envoy's `envoy_cluster_upstream_rq` as App Mesh, Kuma, Contour, Gloo and Knative label it; APISIX's
//! `apisix_http_status` / `apisix_http_latency` for pods that name the route reaching them.
//!
//! Memory is bounded per pod: one entry per (container port, status class), each a counter and a fixed-bucket
//! latency histogram. Labels come from the pod's current identity (workload, Services reaching the port), so a
//! Service added later re-labels the pod's totals instead of multiplying what is stored.
//!
//! The exposition is Prometheus' text format (not OpenMetrics) because Envoy's counters carry no `_total` suffix.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Latency buckets in milliseconds (Linkerd's layout; fine enough that a P99 lands near the real latency).
/// Each bound is at most twice the one below it, so a P99 read from them is at most twice the real one.
const BUCKETS_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

/// Where a mesh attributes a pod's traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshIdentity {
    pub namespace: String,
    pub pod: String,
    /// The owning workload as meshes name it: a ReplicaSet's pods count for their Deployment.
    pub workload: String,
    /// The Services of the pod's namespace that select it, per container port they forward to.
    pub routes: Vec<ServiceRoute>,
    /// The APISIX route the pod's traffic comes through, as the APISIX ingress controller names it without its
    /// namespace prefix (`<ApisixRoute>_<http rule>`). Nothing in a pod tells which route reaches it, so the pod
    /// says so itself (an annotation); without it the pod has no APISIX series.
    pub apisix_route: Option<String>,
    /// The Knative revision the pod runs (Knative's own pod label); without it the pod has no Knative series.
    pub knative_revision: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRoute {
    pub container_port: u16,
    pub service: String,
    pub service_port: u16,
}

/// Requests of one (container port, status class): count, latency sum and cumulative-free bucket counts.
#[derive(Clone, Debug, Default)]
struct Observed {
    count: u64,
    sum_ms: f64,
    /// Requests whose latency fell in each bucket (not cumulative; cumulated when written).
    buckets: [u64; BUCKETS_MS.len()],
}

impl Observed {
    fn observe(&mut self, ms: f64) {
        self.count += 1;
        self.sum_ms += ms;
        if let Some(i) = BUCKETS_MS.iter().position(|b| ms <= *b) {
            self.buckets[i] += 1;
        }
    }

    fn merge(&mut self, other: &Observed) {
        self.count += other.count;
        self.sum_ms += other.sum_ms;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }
}

/// A container port and a status class.
type PortClass = (u16, u16);

/// One pod's observations. At most (declared ports × 5 status classes) entries.
#[derive(Debug, Default)]
pub struct PodSeries {
    observed: Mutex<BTreeMap<PortClass, Observed>>,
}

impl PodSeries {
    /// Records one served request: the container port it came in on, its status and how long it took.
    pub fn record(&self, port: u16, status: u16, ms: f64) {
        if let Ok(mut map) = self.observed.lock() {
            map.entry((port, status_class(status)))
                .or_default()
                .observe(ms);
        }
    }

    fn snapshot(&self) -> Vec<(PortClass, Observed)> {
        self.observed
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }
}

/// The class of a status as the representative code meshes' queries tell apart (`5.*` is a server error).
fn status_class(status: u16) -> u16 {
    (status / 100).clamp(1, 5) * 100
}

type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Histogram,
}

/// What one request is seen as by a mesh: the pod, the port it came in on and its status class.
struct Request<'a> {
    id: &'a MeshIdentity,
    port: u16,
    class: u16,
}

impl Request<'_> {
    fn code(&self) -> String {
        self.class.to_string()
    }

    fn server_error(&self) -> bool {
        self.class == 500
    }

    /// The Services through which this request could have come, with their own port.
    fn routes(&self) -> impl Iterator<Item = &ServiceRoute> {
        self.id
            .routes
            .iter()
            .filter(move |r| r.container_port == self.port)
    }
}

/// One exported metric family: its name as written on the wire, its type, and the label sets a request is
/// counted under (none when the mesh would not see it, several when several Services reach the port).
struct Family {
    name: &'static str,
    kind: Kind,
    labels: fn(&Request) -> Vec<Labels>,
}

fn istio(r: &Request) -> Vec<Labels> {
    vec![vec![
        ("reporter", "destination".into()),
        ("destination_workload_namespace", r.id.namespace.clone()),
        ("destination_workload", r.id.workload.clone()),
        ("response_code", r.code()),
    ]]
}

fn linkerd(r: &Request, classified: bool) -> Vec<Labels> {
    let mut l = vec![
        ("direction", "inbound".into()),
        ("namespace", r.id.namespace.clone()),
        ("deployment", r.id.workload.clone()),
        ("pod", r.id.pod.clone()),
        ("status_code", r.code()),
    ];
    if classified {
        let class = if r.server_error() {
            "failure"
        } else {
            "success"
        };
        l.push(("classification", class.into()));
    }
    vec![l]
}

fn osm(r: &Request) -> Vec<Labels> {
    vec![vec![
        ("destination_namespace", r.id.namespace.clone()),
        ("destination_kind", "Deployment".into()),
        ("destination_name", r.id.workload.clone()),
        ("destination_pod", r.id.pod.clone()),
        ("response_code", r.code()),
    ]]
}

/// Envoy's request counter has the response code, its latency histogram does not.
fn envoy(mut sets: Vec<Labels>, r: &Request, with_code: bool) -> Vec<Labels> {
    if with_code {
        for l in &mut sets {
            l.push(("envoy_response_code", r.code()));
        }
    }
    sets
}

/// App Mesh: the sidecar's ingress cluster, with the pod's namespace and name added by the scrape config.
fn appmesh(r: &Request) -> Vec<Labels> {
    vec![vec![
        ("kubernetes_namespace", r.id.namespace.clone()),
        ("kubernetes_pod_name", r.id.pod.clone()),
        (
            "envoy_cluster_name",
            format!(
                "cds_ingress_{}_{}_http_{}",
                r.id.namespace, r.id.workload, r.port
            ),
        ),
    ]]
}

/// Kuma: the data plane's inbound, tagged with the Kuma service of each Service reaching the port.
fn kuma(r: &Request) -> Vec<Labels> {
    r.routes()
        .map(|s| {
            vec![
                (
                    "service",
                    format!("{}_{}_svc_{}", s.service, r.id.namespace, s.service_port),
                ),
                ("envoy_cluster_name", format!("localhost:{}", r.port)),
            ]
        })
        .collect()
}

/// Contour: Envoy's cluster per Service and port, `<namespace>_<service>_<port>`.
fn contour(r: &Request) -> Vec<Labels> {
    r.routes()
        .map(|s| {
            vec![(
                "envoy_cluster_name",
                format!("{}_{}_{}", r.id.namespace, s.service, s.service_port),
            )]
        })
        .collect()
}

/// Gloo: the Upstream Flagger writes per Service (`<namespace>-<service>upstream-<port>`) in that namespace.
fn gloo(r: &Request) -> Vec<Labels> {
    r.routes()
        .map(|s| {
            vec![(
                "envoy_cluster_name",
                format!(
                    "{ns}-{}upstream-{}_{ns}",
                    s.service,
                    s.service_port,
                    ns = r.id.namespace
                ),
            )]
        })
        .collect()
}

/// Knative: the activator/queue path's Envoy cluster per revision, `<namespace>/<revision>`.
fn knative(r: &Request) -> Vec<Labels> {
    r.id.knative_revision
        .iter()
        .map(|rev| vec![("envoy_cluster_name", format!("{}/{rev}", r.id.namespace))])
        .collect()
}

fn envoy_sets(r: &Request) -> Vec<Labels> {
    [appmesh(r), kuma(r), contour(r), gloo(r), knative(r)].concat()
}

/// APISIX: the route as the ingress controller names it, `<namespace>_<ApisixRoute>_<http rule>`.
fn apisix_route(r: &Request) -> Option<(&'static str, String)> {
    let route = r.id.apisix_route.as_ref()?;
    Some(("route", format!("{}_{route}", r.id.namespace)))
}

fn apisix_status(r: &Request) -> Vec<Labels> {
    apisix_route(r)
        .map(|route| vec![route, ("code", r.code())])
        .into_iter()
        .collect()
}

/// APISIX's latency histogram has one series per stage; its builtin check reads the whole request's.
fn apisix_latency(r: &Request) -> Vec<Labels> {
    apisix_route(r)
        .map(|route| vec![("type", "request".into()), route])
        .into_iter()
        .collect()
}

const FAMILIES: [Family; 10] = [
    Family {
        name: "istio_requests_total",
        kind: Kind::Counter,
        labels: istio,
    },
    Family {
        name: "istio_request_duration_milliseconds",
        kind: Kind::Histogram,
        labels: istio,
    },
    Family {
        name: "response_total",
        kind: Kind::Counter,
        labels: |r| linkerd(r, true),
    },
    Family {
        name: "response_latency_ms",
        kind: Kind::Histogram,
        labels: |r| linkerd(r, false),
    },
    Family {
        name: "osm_request_total",
        kind: Kind::Counter,
        labels: osm,
    },
    Family {
        name: "osm_request_duration_ms",
        kind: Kind::Histogram,
        labels: osm,
    },
    Family {
        name: "envoy_cluster_upstream_rq",
        kind: Kind::Counter,
        labels: |r| envoy(envoy_sets(r), r, true),
    },
    Family {
        name: "envoy_cluster_upstream_rq_time",
        kind: Kind::Histogram,
        labels: |r| envoy(envoy_sets(r), r, false),
    },
    Family {
        name: "apisix_http_status",
        kind: Kind::Counter,
        labels: apisix_status,
    },
    Family {
        name: "apisix_http_latency",
        kind: Kind::Histogram,
        labels: apisix_latency,
    },
];

/// Prometheus text exposition of every family for the given pods (their identity and observations).
pub fn render<'a>(pods: impl IntoIterator<Item = (&'a MeshIdentity, &'a PodSeries)>) -> String {
    let pods: Vec<(&MeshIdentity, Vec<(PortClass, Observed)>)> = pods
        .into_iter()
        .map(|(id, series)| (id, series.snapshot()))
        .collect();
    let mut out = String::new();
    for family in &FAMILIES {
        // Requests that land on the same label set (e.g. a histogram without the status label) add up.
        let mut merged: BTreeMap<Labels, Observed> = BTreeMap::new();
        for (id, observed) in &pods {
            for ((port, class), o) in observed {
                let request = Request {
                    id,
                    port: *port,
                    class: *class,
                };
                for labels in (family.labels)(&request) {
                    merged.entry(labels).or_default().merge(o);
                }
            }
        }
        if merged.is_empty() {
            continue;
        }
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for (labels, o) in &merged {
            match family.kind {
                Kind::Counter => write_sample(&mut out, family.name, labels, None, o.count as f64),
                Kind::Histogram => write_histogram(&mut out, family.name, labels, o),
            }
        }
    }
    out
}

fn write_histogram(out: &mut String, name: &str, labels: &Labels, o: &Observed) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (le, n) in BUCKETS_MS.iter().zip(o.buckets) {
        cumulative += n;
        write_sample(
            out,
            &bucket,
            labels,
            Some(&le.to_string()),
            cumulative as f64,
        );
    }
    write_sample(out, &bucket, labels, Some("+Inf"), o.count as f64);
    write_sample(out, &format!("{name}_sum"), labels, None, o.sum_ms);
    write_sample(out, &format!("{name}_count"), labels, None, o.count as f64);
}

fn write_sample(out: &mut String, name: &str, labels: &Labels, le: Option<&str>, value: f64) {
    out.push_str(name);
    out.push('{');
    let extra = le.map(|le| ("le", le.to_string()));
    for (i, (k, v)) in labels.iter().chain(extra.as_ref()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    let _ = writeln!(out, "}} {value}");
}

/// Label values as the text format wants them: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(workload: &str, pod: &str) -> MeshIdentity {
        MeshIdentity {
            namespace: "test".into(),
            pod: pod.into(),
            workload: workload.into(),
            routes: vec![ServiceRoute {
                container_port: 9898,
                service: format!("{workload}-canary"),
                service_port: 80,
            }],
            ..MeshIdentity::default()
        }
    }

    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(name)).collect()
    }

    #[test]
    fn each_bucket_bound_is_at_most_twice_the_one_below() {
        assert!(
            BUCKETS_MS
                .windows(2)
                .all(|w| w[1] > w[0] && w[1] <= 2.0 * w[0])
        );
    }

    #[test]
    fn statuses_are_kept_per_class() {
        assert_eq!(
            [100, 200, 204, 302, 404, 500, 503, 599].map(status_class),
            [100, 200, 200, 300, 400, 500, 500, 500]
        );
    }

    #[test]
    fn every_mesh_sees_the_requests_under_its_own_names() {
        let id = identity("podinfo", "podinfo-7d9c-abcde");
        let series = PodSeries::default();
        for i in 0..10 {
            series.record(9898, if i < 3 { 500 } else { 200 }, 42.0);
        }
        let text = render([(&id, &series)]);
        let istio = lines_of(&text, "istio_requests_total{");
        assert_eq!(
            istio,
            [
                r#"istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo",response_code="200"} 7"#,
                r#"istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo",response_code="500"} 3"#,
            ]
        );
        assert!(text.contains(
            r#"response_total{direction="inbound",namespace="test",deployment="podinfo",pod="podinfo-7d9c-abcde",status_code="500",classification="failure"} 3"#
        ));
        assert!(text.contains(
            r#"osm_request_total{destination_namespace="test",destination_kind="Deployment",destination_name="podinfo",destination_pod="podinfo-7d9c-abcde",response_code="200"} 7"#
        ));
        // Envoy: one counter series per flavour (App Mesh, Kuma, Contour, Gloo) and status class.
        let envoy = lines_of(&text, "envoy_cluster_upstream_rq{");
        assert_eq!(envoy.len(), 8, "{envoy:#?}");
        assert!(text.contains(
            r#"envoy_cluster_upstream_rq{service="podinfo-canary_test_svc_80",envoy_cluster_name="localhost:9898",envoy_response_code="500"} 3"#
        ));
        assert!(text.contains(r#"envoy_cluster_upstream_rq{envoy_cluster_name="test_podinfo-canary_80",envoy_response_code="200"} 7"#));
        assert!(text.contains(r#"envoy_cluster_upstream_rq{envoy_cluster_name="test-podinfo-canaryupstream-80_test",envoy_response_code="200"} 7"#));
        // Histograms without a status label add both classes up; buckets are cumulative.
        let envoy_time = lines_of(&text, "envoy_cluster_upstream_rq_time_count{");
        assert_eq!(envoy_time.len(), 4, "{envoy_time:#?}");
        assert!(
            envoy_time.iter().all(|l| l.ends_with(" 10")),
            "{envoy_time:#?}"
        );
        assert!(text.contains(
            r#"response_latency_ms_bucket{direction="inbound",namespace="test",deployment="podinfo",pod="podinfo-7d9c-abcde",status_code="200",le="40"} 0"#
        ));
        assert!(text.contains(
            r#"response_latency_ms_bucket{direction="inbound",namespace="test",deployment="podinfo",pod="podinfo-7d9c-abcde",status_code="200",le="50"} 7"#
        ));
        assert!(text.contains(
            r#"response_latency_ms_bucket{direction="inbound",namespace="test",deployment="podinfo",pod="podinfo-7d9c-abcde",status_code="200",le="+Inf"} 7"#
        ));
        assert!(text.contains(
            r#"istio_request_duration_milliseconds_sum{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo",response_code="500"} 126"#
        ));
        // APISIX's two families need the pod to name its route.
        assert_eq!(lines_of(&text, "# TYPE ").len(), FAMILIES.len() - 2);
    }

    #[test]
    fn apisix_and_knative_see_pods_that_name_their_route_and_revision() {
        let id = MeshIdentity {
            apisix_route: Some("podinfo-podinfo-canary_http".into()),
            knative_revision: Some("podinfo-00002".into()),
            ..identity("podinfo", "podinfo-00002-deployment-abcde")
        };
        let series = PodSeries::default();
        for i in 0..10 {
            series.record(9898, if i < 3 { 500 } else { 200 }, 42.0);
        }
        let text = render([(&id, &series)]);
        assert_eq!(
            lines_of(&text, "apisix_http_status{"),
            [
                r#"apisix_http_status{route="test_podinfo-podinfo-canary_http",code="200"} 7"#,
                r#"apisix_http_status{route="test_podinfo-podinfo-canary_http",code="500"} 3"#,
            ]
        );
        assert!(text.contains("# TYPE apisix_http_latency histogram\n"));
        assert!(text.contains(
            r#"apisix_http_latency_bucket{type="request",route="test_podinfo-podinfo-canary_http",le="50"} 10"#
        ));
        assert!(text.contains(
            r#"apisix_http_latency_count{type="request",route="test_podinfo-podinfo-canary_http"} 10"#
        ));
        assert!(text.contains(
            r#"envoy_cluster_upstream_rq{envoy_cluster_name="test/podinfo-00002",envoy_response_code="500"} 3"#
        ));
        assert!(text.contains(
            r#"envoy_cluster_upstream_rq_time_count{envoy_cluster_name="test/podinfo-00002"} 10"#
        ));
        assert_eq!(lines_of(&text, "# TYPE ").len(), FAMILIES.len());
    }

    #[test]
    fn pods_of_one_workload_stay_apart_where_the_mesh_labels_pods() {
        let a = identity("podinfo", "podinfo-1-a");
        let b = identity("podinfo", "podinfo-1-b");
        let (sa, sb) = (PodSeries::default(), PodSeries::default());
        sa.record(9898, 200, 1.0);
        sb.record(9898, 200, 1.0);
        let text = render([(&a, &sa), (&b, &sb)]);
        // Istio labels the workload only: the two pods add up. Linkerd labels the pod: two series.
        assert!(text.contains(r#"destination_workload="podinfo",response_code="200"} 2"#));
        assert_eq!(lines_of(&text, "response_total{").len(), 2);
    }

    #[test]
    fn a_port_no_service_reaches_has_no_service_keyed_series() {
        let id = identity("podinfo", "podinfo-1-a");
        let series = PodSeries::default();
        series.record(8080, 200, 1.0);
        let text = render([(&id, &series)]);
        // Only App Mesh's pod-keyed series remain for Envoy.
        assert_eq!(lines_of(&text, "envoy_cluster_upstream_rq{").len(), 1);
        assert_eq!(lines_of(&text, "istio_requests_total{").len(), 1);
    }

    #[test]
    fn nothing_served_renders_nothing_and_values_are_escaped() {
        assert_eq!(render(std::iter::empty()), "");
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
