//! MetricTemplate.

use super::canary::object_meta;
use super::fields;
use super::problems::Problems;
use super::{Problem, template};
use crate::metric_template::{METRIC_PROVIDERS, MetricTemplate};

/// Backends that have no default address.
const ADDRESS_REQUIRED: &[&str] = &["prometheus", "graphite", "influxdb", "dynatrace", "splunk"];

pub fn metric_template(t: &MetricTemplate) -> Vec<Problem> {
    let mut p = Problems::default();
    object_meta(&mut p, &t.metadata);
    let provider = &t.spec.provider;
    let kind = provider.type_.as_str();
    if kind.is_empty() {
        p.schema("spec.provider.type", "required");
    } else if !METRIC_PROVIDERS.contains(&kind) {
        p.schema(
            "spec.provider.type",
            format!(
                "unknown metric provider {kind:?} (one of {})",
                METRIC_PROVIDERS.join(", ")
            ),
        );
    }
    match provider.address.as_deref() {
        // Flagger takes SignalFx's streaming address (`wss://stream.<realm>…`) as well.
        Some(addr) if kind == "splunk" && is_ws_url(addr) => {}
        Some(addr) if !addr.is_empty() => {
            if let Err(e) = fields::http_url(addr) {
                p.invalid("spec.provider.address", e);
            }
        }
        _ if ADDRESS_REQUIRED.contains(&kind) => {
            p.invalid(
                "spec.provider.address",
                format!("required for the {kind} provider"),
            );
        }
        _ => {}
    }
    if kind == "cloudwatch" && provider.region.as_deref().unwrap_or("").is_empty() {
        p.invalid(
            "spec.provider.region",
            "required for the cloudwatch provider",
        );
    }
    if kind == "stackdriver" && provider.secret_ref.is_none() {
        p.invalid(
            "spec.provider.secretRef",
            "required for the stackdriver provider: its Secret names the project (key `project`)",
        );
    }
    if provider
        .secret_ref
        .as_ref()
        .is_some_and(|s| s.name.is_empty())
    {
        p.schema("spec.provider.secretRef.name", "required");
    }
    if t.spec.query.trim().is_empty() {
        p.schema("spec.query", "required");
    } else if let Err(e) = template::check_query_template(&t.spec.query) {
        p.invalid("spec.query", e);
    }
    p.into_vec()
}

fn is_ws_url(addr: &str) -> bool {
    url::Url::parse(addr).is_ok_and(|u| {
        matches!(u.scheme(), "ws" | "wss") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}
