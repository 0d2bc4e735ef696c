//! `spec.service`: the generated Services' names and ports, and the routing settings.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::canary::Context;
use super::fields;
use super::names;
use super::problems::{Problems, child, index};
use super::providers;
use super::reason;
use crate::canary::CanarySpec;
use crate::istio::{HttpMatchRequest, TrafficPolicy};
use crate::service::{CanaryService, ParentReference};
use crate::string_match::StringMatch;

pub(crate) fn check(p: &mut Problems, spec: &CanarySpec, ctx: &Context) {
    let Some(s) = spec.service.as_ref() else {
        if ctx.workload_target {
            p.invalid(
                "spec.service",
                "required for Deployment and DaemonSet targets: the controller cannot create the Services without service.port",
            );
        }
        return;
    };
    derived_names(p, spec);
    ports(p, s, ctx);
    if let Some(td) = s.traffic_distribution.as_deref()
        && !matches!(td, "PreferClose" | "PreferSameZone" | "PreferSameNode")
    {
        p.schema(
            "spec.service.trafficDistribution",
            format!("unsupported value {td:?} (PreferClose, PreferSameZone or PreferSameNode)"),
        );
    }
    fields::go_duration(p, "spec.service.timeout", s.timeout.as_deref());
    fields::go_duration(
        p,
        "spec.service.backendTimeout",
        s.backend_timeout.as_deref(),
    );
    if let Some(r) = s.retries.as_ref() {
        fields::go_duration(
            p,
            "spec.service.retries.perTryTimeout",
            r.per_try_timeout.as_deref(),
        );
        if r.attempts.is_some_and(|a| a < 0) {
            p.invalid("spec.service.retries.attempts", "must not be negative");
        }
    }
    if s.delegation == Some(true) {
        for (field, set) in [
            ("hosts", s.hosts.is_some()),
            ("gateways", s.gateways.is_some()),
        ] {
            if set {
                p.invalid(
                    format!("spec.service.{field}"),
                    "must not be set together with delegation: true",
                );
            }
        }
    }
    if let Some(m) = s.match_.as_ref() {
        for (i, m) in m.iter().enumerate() {
            http_match(p, &index("spec.service.match", i), m);
        }
    }
    gateway_refs(p, s, ctx);
    mirrors(p, s, ctx);
    if let Some(cors) = s.cors_policy.as_ref() {
        for (i, o) in cors.allow_origins.iter().flatten().enumerate() {
            let path = index("spec.service.corsPolicy.allowOrigins", i);
            let set = fields::set_names(&[
                ("exact", o.exact.is_some()),
                ("prefix", o.prefix.is_some()),
                ("regex", o.regex.is_some()),
            ]);
            if set.len() != 1 {
                p.schema(
                    path.clone(),
                    format!(
                        "must set exactly one of exact, prefix, regex (has {})",
                        describe(&set)
                    ),
                );
            }
            if let Some(r) = o.regex.as_deref() {
                fields::regex(p, &child(&path, "regex"), r);
            }
        }
        if ctx
            .provider
            .as_deref()
            .is_some_and(providers::is_gateway_api)
        {
            fields::go_duration(p, "spec.service.corsPolicy.maxAge", cors.max_age.as_deref());
        }
    }
    if let Some(tp) = s.traffic_policy.as_ref() {
        traffic_policy(p, tp);
    }
}

fn describe(set: &[&str]) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.join(", ")
    }
}

/// `<apex>`, `<apex>-primary`, `<apex>-canary` are Service names: DNS-1035 labels of at most 63
/// characters, so the apex itself may have at most 55.
fn derived_names(p: &mut Problems, spec: &CanarySpec) {
    let apex = spec.apex_name();
    if apex.is_empty() {
        return;
    }
    let path = if spec.service.as_ref().is_some_and(|s| s.name.is_some()) {
        "spec.service.name"
    } else {
        "spec.targetRef.name"
    };
    for name in [
        apex.to_string(),
        spec.primary_service_name(),
        spec.canary_service_name(),
    ] {
        if let Err(e) = names::dns1035_label(&name) {
            let msg = if name.len() > 63 {
                format!(
                    "generated Service name {name:?} is {} characters, more than 63",
                    name.len()
                )
            } else {
                format!("generated Service name {name:?} is invalid: {e}")
            };
            p.invalid(path, msg);
            return;
        }
    }
}

fn ports(p: &mut Problems, s: &CanaryService, ctx: &Context) {
    if let Some(port) = fields::integer(p, "spec.service.port", &s.port) {
        if port <= 0 && ctx.workload_target {
            p.invalid(
                "spec.service.port",
                format!("must be > 0 for Deployment and DaemonSet targets, got {port}"),
            );
        } else if port > 65535 {
            p.invalid(
                "spec.service.port",
                format!("must be at most 65535, got {port}"),
            );
        }
    }
    match s.target_port.as_ref() {
        Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => {
            p.invalid(
                "spec.service.targetPort",
                format!("must be between 1 and 65535, got {n}"),
            );
        }
        Some(IntOrString::String(name)) => {
            if let Err(e) = names::iana_svc_name(name) {
                p.invalid("spec.service.targetPort", e);
            }
        }
        _ => {}
    }
    if let Some(name) = s.port_name.as_deref()
        && let Err(e) = names::dns1123_label(name)
    {
        p.invalid("spec.service.portName", e);
    }
}

fn string_match(p: &mut Problems, path: &str, m: &StringMatch) {
    let set = fields::set_names(&[
        ("exact", m.exact.is_some()),
        ("prefix", m.prefix.is_some()),
        ("regex", m.regex.is_some()),
    ]);
    if set.len() > 1 {
        p.schema(
            path,
            format!(
                "must set at most one of exact, prefix, regex (has {})",
                set.join(", ")
            ),
        );
    }
    if let Some(r) = m.regex.as_deref() {
        fields::regex(p, &child(path, "regex"), r);
    }
}

fn http_match(p: &mut Problems, path: &str, m: &HttpMatchRequest) {
    for (field, v) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(v) = v {
            string_match(p, &child(path, field), v);
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (k, v) in map.iter().flatten() {
            string_match(p, &child(&child(path, field), k), v);
        }
    }
    if let Some(port) = m.port
        && !(1..=65535).contains(&port)
    {
        p.invalid(
            child(path, "port"),
            format!("must be between 1 and 65535, got {port}"),
        );
    }
}

fn gateway_refs(p: &mut Problems, s: &CanaryService, ctx: &Context) {
    let refs = s.gateway_refs.as_deref().unwrap_or_default();
    if ctx
        .provider
        .as_deref()
        .is_some_and(providers::is_gateway_api)
        && refs.is_empty()
    {
        p.invalid(
            "spec.service.gatewayRefs",
            "at least one gateway is required with the Gateway API provider",
        );
    }
    if refs.len() > 32 {
        p.schema(
            "spec.service.gatewayRefs",
            format!("must have at most 32 items, has {}", refs.len()),
        );
    }
    for (i, r) in refs.iter().enumerate() {
        parent_ref(p, &index("spec.service.gatewayRefs", i), r);
    }
}

fn parent_ref(p: &mut Problems, path: &str, r: &ParentReference) {
    if r.name.is_empty() || r.name.len() > 253 {
        p.schema(child(path, "name"), "required: 1 to 253 characters");
    }
    if let Some(g) = r.group.as_deref()
        && !g.is_empty()
        && let Err(e) = names::dns1123_subdomain(g)
    {
        p.schema(child(path, "group"), e);
    }
    if let Some(k) = r.kind.as_deref()
        && !is_kind(k)
    {
        p.schema(
            child(path, "kind"),
            format!("{k:?} is not a valid kind name"),
        );
    }
    if let Some(ns) = r.namespace.as_deref()
        && let Err(e) = names::dns1123_label(ns)
    {
        p.schema(child(path, "namespace"), e);
    }
    if let Some(sn) = r.section_name.as_deref()
        && let Err(e) = names::dns1123_subdomain(sn)
    {
        p.schema(child(path, "sectionName"), e);
    }
    if let Some(port) = r.port
        && !(1..=65535).contains(&port)
    {
        p.schema(
            child(path, "port"),
            format!("must be between 1 and 65535, got {port}"),
        );
    }
}

fn is_kind(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 63
        && k.starts_with(|c: char| c.is_ascii_alphabetic())
        && k.ends_with(|c: char| c.is_ascii_alphanumeric())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn mirrors(p: &mut Problems, s: &CanaryService, ctx: &Context) {
    let Some(mirrors) = s.mirror.as_deref() else {
        return;
    };
    if let Some(provider) = ctx.provider.as_deref()
        && !providers::is_gateway_api(provider)
        && !mirrors.is_empty()
    {
        p.warn(
            reason::IGNORED,
            "spec.service.mirror",
            format!("used only by the Gateway API provider, not {provider}"),
        );
    }
    for (i, m) in mirrors.iter().enumerate() {
        let path = child(&index("spec.service.mirror", i), "backendRef");
        let b = &m.backend_ref;
        if b.name.is_empty() || b.name.len() > 253 {
            p.schema(child(&path, "name"), "required: 1 to 253 characters");
        }
        if let Some(ns) = b.namespace.as_deref()
            && let Err(e) = names::dns1123_label(ns)
        {
            p.schema(child(&path, "namespace"), e);
        }
        if let Some(k) = b.kind.as_deref()
            && !is_kind(k)
        {
            p.schema(
                child(&path, "kind"),
                format!("{k:?} is not a valid kind name"),
            );
        }
        match b.port {
            Some(port) if !(1..=65535).contains(&port) => {
                p.schema(
                    child(&path, "port"),
                    format!("must be between 1 and 65535, got {port}"),
                );
            }
            None if b.group.as_deref().unwrap_or("").is_empty()
                && b.kind.as_deref().unwrap_or("Service") == "Service" =>
            {
                p.schema(child(&path, "port"), "Must have port for Service reference");
            }
            _ => {}
        }
    }
}

fn traffic_policy(p: &mut Problems, tp: &TrafficPolicy) {
    let base = "spec.service.trafficPolicy";
    if let Some(h) = tp.connection_pool.as_ref().and_then(|c| c.http.as_ref())
        && let Some(v) = h.h2_upgrade_policy.as_deref()
        && !matches!(v, "DEFAULT" | "DO_NOT_UPGRADE" | "UPGRADE")
    {
        p.schema(
            format!("{base}.connectionPool.http.h2UpgradePolicy"),
            format!("unsupported value {v:?} (DEFAULT, DO_NOT_UPGRADE or UPGRADE)"),
        );
    }
    if let Some(lb) = tp.load_balancer.as_ref() {
        let path = format!("{base}.loadBalancer");
        let set = fields::set_names(&[
            ("simple", lb.simple.is_some()),
            ("consistentHash", lb.consistent_hash.is_some()),
        ]);
        if set.len() != 1 {
            p.schema(
                path.clone(),
                format!(
                    "must set exactly one of simple, consistentHash (has {})",
                    describe(&set)
                ),
            );
        }
        if let Some(v) = lb.simple.as_deref()
            && !matches!(
                v,
                "ROUND_ROBIN" | "LEAST_CONN" | "RANDOM" | "PASSTHROUGH" | "LEAST_REQUEST"
            )
        {
            p.schema(
                format!("{path}.simple"),
                format!("unsupported value {v:?} (ROUND_ROBIN, LEAST_CONN, RANDOM, PASSTHROUGH or LEAST_REQUEST)"),
            );
        }
        if let Some(ch) = lb.consistent_hash.as_ref() {
            let set = fields::set_names(&[
                ("httpHeaderName", ch.http_header_name.is_some()),
                ("httpCookie", ch.http_cookie.is_some()),
                ("useSourceIp", ch.use_source_ip.is_some()),
                (
                    "httpQueryParameterName",
                    ch.http_query_parameter_name.is_some(),
                ),
            ]);
            if set.len() != 1 {
                p.schema(
                    format!("{path}.consistentHash"),
                    format!(
                        "must set exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName (has {})",
                        describe(&set)
                    ),
                );
            }
        }
    }
    if let Some(mode) = tp.tls.as_ref().and_then(|t| t.mode.as_deref())
        && !matches!(mode, "DISABLE" | "SIMPLE" | "MUTUAL" | "ISTIO_MUTUAL")
    {
        p.schema(
            format!("{base}.tls.mode"),
            format!("unsupported value {mode:?} (DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL)"),
        );
    }
}
