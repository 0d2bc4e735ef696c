//! The builtin `request-success-rate` / `request-duration` queries per router.
//!
//! The texts are kept on one line in the form they are sent (whitespace already collapsed), so
//! what a snapshot, an event and Prometheus see is the same string.

use flagger_api::TargetRef;

use super::template::{QueryModel, RenderError, collapse_whitespace, render};

pub const REQUEST_SUCCESS_RATE: &str = "request-success-rate";
pub const REQUEST_DURATION: &str = "request-duration";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BuiltinMetric {
    RequestSuccessRate,
    RequestDuration,
}

impl BuiltinMetric {
    /// Builtin only by name; the caller checks that neither `query` nor `templateRef` is set
    /// (with either, only the query/template runs).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            REQUEST_SUCCESS_RATE => Some(BuiltinMetric::RequestSuccessRate),
            REQUEST_DURATION => Some(BuiltinMetric::RequestDuration),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BuiltinMetric::RequestSuccessRate => REQUEST_SUCCESS_RATE,
            BuiltinMetric::RequestDuration => REQUEST_DURATION,
        }
    }
}

/// The unit of what the query returns, before the controller converts durations to ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawUnit {
    Percent,
    Milliseconds,
    Seconds,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuerySet {
    Istio,
    Linkerd,
    AppMesh,
    Contour,
    Gloo,
    Nginx,
    /// `kubernetes` and `gatewayapi:*`: the app's own `http_request_duration_seconds`.
    Http,
    Skipper,
    Traefik,
    Osm,
    Kuma,
    Apisix,
    Knative,
}

impl QuerySet {
    pub const ALL: [QuerySet; 13] = [
        QuerySet::Istio,
        QuerySet::Linkerd,
        QuerySet::AppMesh,
        QuerySet::Contour,
        QuerySet::Gloo,
        QuerySet::Nginx,
        QuerySet::Http,
        QuerySet::Skipper,
        QuerySet::Traefik,
        QuerySet::Osm,
        QuerySet::Kuma,
        QuerySet::Apisix,
        QuerySet::Knative,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuerySet::Istio => "istio",
            QuerySet::Linkerd => "linkerd",
            QuerySet::AppMesh => "appmesh",
            QuerySet::Contour => "contour",
            QuerySet::Gloo => "gloo",
            QuerySet::Nginx => "nginx",
            QuerySet::Http => "http",
            QuerySet::Skipper => "skipper",
            QuerySet::Traefik => "traefik",
            QuerySet::Osm => "osm",
            QuerySet::Kuma => "kuma",
            QuerySet::Apisix => "apisix",
            QuerySet::Knative => "knative",
        }
    }

    /// The controller's `-mesh-provider`, overridden by `spec.provider`
    /// (unless the global one is linkerd), suffixed `:service` for Service targets.
    pub fn select(mesh_provider: &str, canary_provider: Option<&str>, target: &TargetRef) -> Self {
        QuerySet::from_key(&selection_key(mesh_provider, canary_provider, target))
    }

    pub fn from_key(key: &str) -> Self {
        match key {
            k if k.starts_with("appmesh") => QuerySet::AppMesh,
            "linkerd" => QuerySet::Linkerd,
            "istio" => QuerySet::Istio,
            "contour" => QuerySet::Contour,
            k if k.starts_with("gloo") => QuerySet::Gloo,
            "nginx" => QuerySet::Nginx,
            k if k == "kubernetes" || k.starts_with("gatewayapi") => QuerySet::Http,
            "skipper" => QuerySet::Skipper,
            "traefik" => QuerySet::Traefik,
            "osm" => QuerySet::Osm,
            "kuma" => QuerySet::Kuma,
            "apisix" => QuerySet::Apisix,
            "knative" => QuerySet::Knative,
            _ => QuerySet::Istio,
        }
    }

    pub fn query(self, metric: BuiltinMetric) -> &'static str {
        let (success_rate, duration) = self.queries();
        match metric {
            BuiltinMetric::RequestSuccessRate => success_rate,
            BuiltinMetric::RequestDuration => duration,
        }
    }

    pub fn raw_unit(self, metric: BuiltinMetric) -> RawUnit {
        match (metric, self) {
            (BuiltinMetric::RequestSuccessRate, _) => RawUnit::Percent,
            (BuiltinMetric::RequestDuration, QuerySet::Http) => RawUnit::Seconds,
            (BuiltinMetric::RequestDuration, _) => RawUnit::Milliseconds,
        }
    }

    /// Renders the builtin query for a canary. Skipper route names have every non-word
    /// character replaced by `_`, so its model values are encoded the same way first.
    pub fn render(self, metric: BuiltinMetric, model: &QueryModel) -> Result<String, RenderError> {
        let rendered = if self == QuerySet::Skipper {
            render(self.query(metric), &skipper_model(model))?
        } else {
            render(self.query(metric), model)?
        };
        Ok(collapse_whitespace(&rendered))
    }

    fn queries(self) -> (&'static str, &'static str) {
        match self {
            QuerySet::Istio => (
                r#"sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}",response_code!~"5.*"}[{{ interval }}])) / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}"}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}"}[{{ interval }}])) by (le))"#,
            ),
            QuerySet::Linkerd => (
                r#"sum(rate(response_total{namespace="{{ namespace }}",deployment=~"{{ target }}",direction="inbound",classification!="failure"}[{{ interval }}])) / sum(rate(response_total{namespace="{{ namespace }}",deployment=~"{{ target }}",direction="inbound"}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="{{ namespace }}",deployment=~"{{ target }}",direction="inbound"}[{{ interval }}])) by (le))"#,
            ),
            QuerySet::AppMesh => (
                r#"sum(rate(envoy_cluster_upstream_rq{kubernetes_namespace="{{ namespace }}",kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",envoy_response_code!~"5.*"}[{{ interval }}])) / sum(rate(envoy_cluster_upstream_rq{kubernetes_namespace="{{ namespace }}",kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{kubernetes_namespace="{{ namespace }}",kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[{{ interval }}])) by (le))"#,
            ),
            QuerySet::Contour => (
                r#"sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+",envoy_response_code!~"5.*"}[{{ interval }}])) / sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+",}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+",}[{{ interval }}])) by (le))"#,
            ),
            QuerySet::Gloo => (
                r#"sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+",envoy_response_code!~"5.*"}[{{ interval }}])) / sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+",}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+",}[{{ interval }}])) by (le))"#,
            ),
            QuerySet::Nginx => (
                r#"sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",ingress="{{ ingress }}",canary!="",status!~"5.*"}[{{ interval }}])) / sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",ingress="{{ ingress }}",canary!=""}[{{ interval }}])) * 100"#,
                r#"sum(rate(nginx_ingress_controller_response_duration_seconds_sum{namespace="{{ namespace }}",ingress="{{ ingress }}",canary!=""}[{{ interval }}])) / sum(rate(nginx_ingress_controller_response_duration_seconds_count{namespace="{{ namespace }}",ingress="{{ ingress }}",canary!=""}[{{ interval }}])) * 1000"#,
            ),
            QuerySet::Http => (
                r#"sum(rate(http_request_duration_seconds_count{kubernetes_namespace="{{ namespace }}",kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status!~"5.*"}[{{ interval }}])) / sum(rate(http_request_duration_seconds_count{kubernetes_namespace="{{ namespace }}",kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{kubernetes_namespace="{{ namespace }}",kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[{{ interval }}])) by (le))"#,
            ),
            QuerySet::Skipper => (
                r#"{{- $route := printf "kube(ew)?_%s__%s_canary__.*__%s_canary(_[0-9]+)?" namespace ingress service }}sum(rate(skipper_response_duration_seconds_bucket{route=~"{{ $route }}",code!~"5..",le="+Inf"}[{{ interval }}])) / sum(rate(skipper_response_duration_seconds_bucket{route=~"{{ $route }}",le="+Inf"}[{{ interval }}])) * 100"#,
                r#"{{- $route := printf "kube(ew)?_%s__%s_canary__.*__%s_canary(_[0-9]+)?" namespace ingress service }}sum(rate(skipper_serve_route_duration_seconds_sum{route=~"{{ $route }}"}[{{ interval }}])) / sum(rate(skipper_serve_route_duration_seconds_count{route=~"{{ $route }}"}[{{ interval }}])) * 1000"#,
            ),
            QuerySet::Traefik => (
                r#"sum(rate(traefik_service_request_duration_seconds_bucket{service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd",code!~"5..",le="+Inf"}[{{ interval }}])) / sum(rate(traefik_service_request_duration_seconds_bucket{service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd",le="+Inf"}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(traefik_service_request_duration_seconds_bucket{service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd"}[{{ interval }}])) by (le)) * 1000"#,
            ),
            QuerySet::Osm => (
                r#"sum(rate(osm_request_total{destination_namespace="{{ namespace }}",destination_kind="Deployment",destination_name="{{ target }}",response_code!~"5.*"}[{{ interval }}])) / sum(rate(osm_request_total{destination_namespace="{{ namespace }}",destination_kind="Deployment",destination_name="{{ target }}"}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(osm_request_duration_ms_bucket{destination_namespace="{{ namespace }}",destination_kind="Deployment",destination_name="{{ target }}"}[{{ interval }}])) by (le))"#,
            ),
            QuerySet::Kuma => (
                r#"sum(rate(envoy_cluster_upstream_rq{service=~"{{ target }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+",envoy_response_code!~"5.*"}[{{ interval }}])) / sum(rate(envoy_cluster_upstream_rq{service=~"{{ target }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+",}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{service=~"{{ target }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+",}[{{ interval }}])) by (le))"#,
            ),
            QuerySet::Apisix => (
                r#"sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+",code!~"5.."}[{{ interval }}])) / sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+"}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{type=~"request",route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+"}[{{ interval }}])) by (le))"#,
            ),
            QuerySet::Knative => (
                r#"sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"{{ namespace }}/{{ route }}",envoy_response_code!~"5.*"}[{{ interval }}])) / sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"{{ namespace }}/{{ route }}",}[{{ interval }}])) * 100"#,
                r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"{{ namespace }}/{{ route }}",}[{{ interval }}])) by (le))"#,
            ),
        }
    }
}

/// The selection key, before it is mapped to a query set.
pub fn selection_key(
    mesh_provider: &str,
    canary_provider: Option<&str>,
    target: &TargetRef,
) -> String {
    let global = if mesh_provider.contains("crossover") {
        "crossover"
    } else {
        mesh_provider
    };
    let mut key = match canary_provider.filter(|p| !p.is_empty()) {
        Some(_) if global.contains("linkerd") => "linkerd".to_string(),
        Some(p) => p.to_string(),
        None => global.to_string(),
    };
    let knative = target.api_version.starts_with("serving.knative.dev");
    if target.kind == "Service" && !knative {
        key.push_str(":service");
    }
    key
}

fn skipper_model(model: &QueryModel) -> QueryModel {
    let encode = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    QueryModel {
        name: encode(&model.name),
        namespace: encode(&model.namespace),
        target: encode(&model.target),
        service: encode(&model.service),
        ingress: encode(&model.ingress),
        ..model.clone()
    }
}

/// A builtin result in the unit its thresholds use: success rate in %, duration in whole
/// milliseconds (truncated, as Flagger converts through `time.Duration`).
pub fn to_threshold_unit(raw: f64, unit: RawUnit) -> f64 {
    match unit {
        RawUnit::Percent => raw,
        RawUnit::Milliseconds => raw.trunc(),
        RawUnit::Seconds => (raw * 1000.0).trunc(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(api_version: &str, kind: &str) -> TargetRef {
        TargetRef {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "podinfo".into(),
        }
    }

    #[test]
    fn selection_rule() {
        let dep = target("apps/v1", "Deployment");
        let svc = target("v1", "Service");
        let kn = target("serving.knative.dev/v1", "Service");
        let cases = [
            ("istio", None, &dep, QuerySet::Istio),
            ("linkerd", None, &dep, QuerySet::Linkerd),
            ("linkerd", Some("traefik"), &dep, QuerySet::Linkerd),
            ("istio", Some("traefik"), &dep, QuerySet::Traefik),
            ("", Some("traefik"), &dep, QuerySet::Traefik),
            ("appmesh:v1beta2", None, &dep, QuerySet::AppMesh),
            ("gloo:v1", None, &dep, QuerySet::Gloo),
            ("gatewayapi:v1", None, &dep, QuerySet::Http),
            ("gatewayapi:v1", None, &svc, QuerySet::Http),
            ("kubernetes", None, &dep, QuerySet::Http),
            ("kubernetes", None, &svc, QuerySet::Istio),
            ("istio", None, &svc, QuerySet::Istio),
            ("smi:linkerd", None, &dep, QuerySet::Istio),
            ("crossover:x", None, &dep, QuerySet::Istio),
            ("knative", None, &kn, QuerySet::Knative),
            ("nginx", None, &dep, QuerySet::Nginx),
            ("contour", None, &dep, QuerySet::Contour),
            ("skipper", None, &dep, QuerySet::Skipper),
            ("osm", None, &dep, QuerySet::Osm),
            ("kuma", None, &dep, QuerySet::Kuma),
            ("apisix", None, &dep, QuerySet::Apisix),
        ];
        for (mesh, provider, t, want) in cases {
            assert_eq!(
                QuerySet::select(mesh, provider, t),
                want,
                "{mesh} {provider:?} {t:?}"
            );
        }
        assert_eq!(
            selection_key("kubernetes", None, &svc),
            "kubernetes:service"
        );
    }

    /// Every provider name a Canary may carry reaches a query set, whether it comes from the
    /// controller's `-mesh-provider` or from `spec.provider`: the meshes their own, SMI Istio's.
    #[test]
    fn every_provider_name_reaches_its_query_set() {
        let dep = target("apps/v1", "Deployment");
        let want = |p: &str| match p {
            "apisix" => QuerySet::Apisix,
            "appmesh" | "appmesh:v1beta2" => QuerySet::AppMesh,
            "contour" => QuerySet::Contour,
            "gatewayapi:v1" | "gatewayapi:v1beta1" | "kubernetes" => QuerySet::Http,
            "gloo" => QuerySet::Gloo,
            "istio" | "smi:v1alpha1" | "smi:v1alpha2" | "smi:v1alpha3" => QuerySet::Istio,
            "knative" => QuerySet::Knative,
            "kuma" => QuerySet::Kuma,
            "linkerd" => QuerySet::Linkerd,
            "nginx" => QuerySet::Nginx,
            "osm" => QuerySet::Osm,
            "skipper" => QuerySet::Skipper,
            "traefik" => QuerySet::Traefik,
            other => panic!("provider {other} has no expected query set in this test"),
        };
        for &p in flagger_api::canary::PROVIDERS {
            assert_eq!(QuerySet::select(p, None, &dep), want(p), "flag {p}");
            assert_eq!(
                QuerySet::select("kubernetes", Some(p), &dep),
                want(p),
                "spec.provider {p}"
            );
        }
    }

    #[test]
    fn units() {
        assert_eq!(
            QuerySet::Http.raw_unit(BuiltinMetric::RequestDuration),
            RawUnit::Seconds
        );
        assert_eq!(to_threshold_unit(0.5159, RawUnit::Seconds), 515.0);
        assert_eq!(to_threshold_unit(499.9, RawUnit::Milliseconds), 499.0);
        assert_eq!(to_threshold_unit(99.95, RawUnit::Percent), 99.95);
        assert_eq!(
            to_threshold_unit(f64::INFINITY, RawUnit::Milliseconds),
            f64::INFINITY
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            BuiltinMetric::from_name("request-success-rate"),
            Some(BuiltinMetric::RequestSuccessRate)
        );
        assert_eq!(BuiltinMetric::from_name("error-rate"), None);
    }
}
