//! `spec.service`: the generated Services and the routing they carry.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::istio::{CorsPolicy, HttpMatchRequest, TrafficPolicy};
use crate::number::Number;

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryService {
    pub name: Option<String>,
    pub port: Number,
    pub port_name: Option<String>,
    // `default` keeps the field optional in the schema: schema_with hides the Option from schemars.
    #[serde(default)]
    #[schemars(schema_with = "int_or_string")]
    pub target_port: Option<IntOrString>,
    pub app_protocol: Option<String>,
    #[schemars(extend("enum" = ["PreferClose", "PreferSameZone", "PreferSameNode"]))]
    pub traffic_distribution: Option<String>,
    pub port_discovery: Option<bool>,
    pub headless: Option<bool>,
    pub timeout: Option<String>,
    pub backend_timeout: Option<String>,
    pub mesh_name: Option<String>,
    pub backends: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    pub delegation: Option<bool>,
    #[serde(rename = "match")]
    pub match_: Option<Vec<HttpMatchRequest>>,
    pub retries: Option<HttpRetry>,
    pub rewrite: Option<HttpRewrite>,
    pub mirror: Option<Vec<HttpRequestMirror>>,
    // Boxed: Istio's policies and header operations are rarely set and ~900 bytes inline, and the
    // controller holds every watched Canary in memory (10 000 and more).
    pub headers: Option<Box<HeadersOperations>>,
    pub gateways: Option<Vec<String>>,
    #[schemars(length(max = 32))]
    pub gateway_refs: Option<Vec<ParentReference>>,
    pub cors_policy: Option<Box<CorsPolicy>>,
    pub traffic_policy: Option<Box<TrafficPolicy>>,
    pub apex: Option<CustomMetadata>,
    pub primary: Option<CustomMetadata>,
    pub canary: Option<CustomMetadata>,
    pub unmanaged_metadata: Option<UnmanagedMetadata>,
}

fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-int-or-string": true })
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    #[schemars(extend("format" = "int32"))]
    pub attempts: Option<i32>,
    pub per_try_timeout: Option<String>,
    pub retry_on: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpRewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestMirror {
    pub backend_ref: BackendObjectReference,
}

/// Gateway API BackendObjectReference.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "message": "Must have port for Service reference",
    "rule": "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true"
}]))]
pub struct BackendObjectReference {
    #[schemars(extend("default" = ""), length(max = 253), regex(pattern = DNS_SUBDOMAIN_OR_EMPTY))]
    pub group: Option<String>,
    #[schemars(extend("default" = "Service"), length(min = 1, max = 63), regex(pattern = KIND))]
    pub kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub namespace: Option<String>,
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub port: Option<i32>,
}

/// Gateway API ParentReference (an HTTPRoute `parentRefs` entry).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    #[schemars(extend("default" = "gateway.networking.k8s.io"), length(max = 253), regex(pattern = DNS_SUBDOMAIN_OR_EMPTY))]
    pub group: Option<String>,
    #[schemars(extend("default" = "Gateway"), length(min = 1, max = 63), regex(pattern = KIND))]
    pub kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub namespace: Option<String>,
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub section_name: Option<String>,
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub port: Option<i32>,
}

pub(crate) const DNS_SUBDOMAIN_OR_EMPTY: &str =
    r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
pub(crate) const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
pub(crate) const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
pub(crate) const KIND: &str = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$";

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeadersOperations {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeaderOperations {
    pub add: Option<BTreeMap<String, String>>,
    pub set: Option<BTreeMap<String, String>>,
    pub remove: Option<Vec<String>>,
}

/// Extra labels and annotations for a generated Service.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomMetadata {
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Keys on the generated Services that the controller never touches.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UnmanagedMetadata {
    pub annotations: Option<Vec<String>>,
    pub labels: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller holds every watched Canary in memory (10 000 and more), so a large field
    /// added inline costs its size ten thousand times; rarely set ones go behind a `Box`.
    #[test]
    fn a_canary_stays_small_inline() {
        let inline = std::mem::size_of::<crate::Canary>();
        assert!(inline <= 3_072, "a Canary is {inline} bytes inline");
        assert!(std::mem::size_of::<CanaryService>() <= 800);
    }
}
