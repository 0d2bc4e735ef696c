//! What each router can express, as far as validation needs to know.

use crate::canary::PROVIDERS;

/// The provider a canary runs with: `spec.provider`, else the controller flag in the normalised
/// form the schema enum uses (`gatewayapi` → `gatewayapi:v1`, `smi:v1alpha3:istio` →
/// `smi:v1alpha3`, `gloo:...` → `gloo`).
pub fn effective(spec_provider: Option<&str>, default_provider: &str) -> String {
    if let Some(p) = spec_provider {
        return p.to_string();
    }
    let flag = default_provider.trim();
    if flag.is_empty() {
        return "istio".into();
    }
    if flag == "gatewayapi" {
        return "gatewayapi:v1".into();
    }
    if PROVIDERS.contains(&flag) {
        return flag.to_string();
    }
    let mut parts = flag.splitn(3, ':');
    let first = parts.next().unwrap_or_default();
    let second = parts.next();
    match (first, second) {
        ("smi", Some(v)) => format!("smi:{v}"),
        ("gatewayapi", Some(v)) => format!("gatewayapi:{v}"),
        (family, _) => family.to_string(),
    }
}

/// Whether flagger-rs has a router for the provider. A provider Flagger knows but flagger-rs cannot
/// run yet is refused by validation, so the controller creates nothing for such a canary (no primary,
/// no re-pointed apex Service) instead of half-initialising it and failing every tick.
/// `flagger_providers::router::for_provider` is tested to agree with this list.
pub fn runs(p: &str) -> bool {
    matches!(
        p,
        "kubernetes"
            | "traefik"
            | "nginx"
            | "istio"
            | "linkerd"
            | "smi:v1alpha1"
            | "smi:v1alpha2"
            | "smi:v1alpha3"
            | "osm"
            | "kuma"
            | "appmesh"
            | "appmesh:v1beta2"
            | "contour"
            | "gloo"
            | "skipper"
            | "knative"
            | "apisix"
    ) || is_gateway_api(p)
}

/// Routers a `targetRef` of kind Service (not Knative) runs with.
pub fn runs_service_target(p: &str) -> bool {
    p == "kubernetes" || is_gateway_api(p)
}

pub fn is_gateway_api(p: &str) -> bool {
    p.starts_with("gatewayapi")
}

/// Header operators a router can route on; `None` = no A/B support at all.
pub fn header_ops(p: &str) -> Option<&'static [&'static str]> {
    match p {
        "istio" => Some(&["exact", "prefix", "regex"]),
        _ if is_gateway_api(p) => Some(&["exact", "regex"]),
        "nginx" | "gloo" => Some(&["exact", "regex"]),
        "contour" | "appmesh" | "appmesh:v1beta2" => Some(&["exact", "prefix", "suffix", "regex"]),
        _ => None,
    }
}

/// Query-parameter operators for A/B; empty = query matches are not supported.
pub fn query_ops(p: &str) -> &'static [&'static str] {
    match p {
        "istio" => &["exact", "prefix", "regex"],
        _ if is_gateway_api(p) => &["exact", "regex"],
        _ => &[],
    }
}

/// Mirroring during Blue/Green iterations.
pub fn mirrors_blue_green(p: &str) -> bool {
    matches!(p, "istio" | "traefik") || is_gateway_api(p)
}

/// Mirroring during the weighted canary strategy.
pub fn mirrors_canary(p: &str) -> bool {
    matches!(p, "istio" | "traefik")
}

/// A configurable mirror percentage (progressive mirroring, `mirrorWeight`).
pub fn mirror_percentage(p: &str) -> bool {
    matches!(p, "istio" | "traefik" | "gatewayapi:v1")
}

/// The routers that write session-affinity cookie rules (Flagger's and ours alike); the core decides
/// the cookies only for these providers, and elsewhere the field is accepted and ignored as in Flagger.
pub fn session_affinity(p: &str) -> bool {
    p == "istio" || is_gateway_api(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_forms_are_normalised() {
        assert_eq!(effective(None, "gatewayapi"), "gatewayapi:v1");
        assert_eq!(effective(None, "smi:v1alpha3:istio"), "smi:v1alpha3");
        assert_eq!(effective(None, "gloo:gloo-system"), "gloo");
        assert_eq!(effective(None, "kubernetes"), "kubernetes");
        assert_eq!(effective(Some("nginx"), "istio"), "nginx");
    }
}
