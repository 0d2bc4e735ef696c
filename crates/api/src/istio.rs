//! Istio shapes that Flagger embeds in `spec.service` and passes through to the mesh.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::string_match::{OriginMatch, StringMatch};

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    pub headers: Option<BTreeMap<String, StringMatch>>,
    pub query_params: Option<BTreeMap<String, StringMatch>>,
    pub without_headers: Option<BTreeMap<String, StringMatch>>,
    pub port: Option<i64>,
    pub source_labels: Option<BTreeMap<String, String>>,
    pub source_namespace: Option<String>,
    pub gateways: Option<Vec<String>>,
    pub ignore_uri_case: Option<bool>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    pub allow_origin: Option<Vec<String>>,
    pub allow_origins: Option<Vec<OriginMatch>>,
    pub allow_methods: Option<Vec<String>>,
    pub allow_headers: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub max_age: Option<String>,
    pub allow_credentials: Option<bool>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub connection_pool: Option<ConnectionPool>,
    pub load_balancer: Option<LoadBalancer>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTls>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionPool {
    pub http: Option<HttpConnectionPool>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpConnectionPool {
    #[schemars(extend("enum" = ["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]))]
    pub h2_upgrade_policy: Option<String>,
    #[serde(rename = "http1MaxPendingRequests")]
    #[schemars(extend("format" = "int32"))]
    pub http1_max_pending_requests: Option<i32>,
    #[serde(rename = "http2MaxRequests")]
    #[schemars(extend("format" = "int32"))]
    pub http2_max_requests: Option<i32>,
    pub idle_timeout: Option<String>,
    #[schemars(extend("format" = "int32"))]
    pub max_requests_per_connection: Option<i32>,
    #[schemars(extend("format" = "int32"))]
    pub max_retries: Option<i32>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["simple"]}, {"required": ["consistentHash"]}]))]
pub struct LoadBalancer {
    #[schemars(extend("enum" = ["ROUND_ROBIN", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "LEAST_REQUEST"]))]
    pub simple: Option<String>,
    pub consistent_hash: Option<ConsistentHash>,
    pub locality_lb_setting: Option<LocalityLbSetting>,
    pub warmup_duration_secs: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    {"required": ["httpHeaderName"]}, {"required": ["httpCookie"]},
    {"required": ["useSourceIp"]}, {"required": ["httpQueryParameterName"]}
]))]
pub struct ConsistentHash {
    pub http_header_name: Option<String>,
    pub http_cookie: Option<HttpCookie>,
    pub use_source_ip: Option<bool>,
    pub http_query_parameter_name: Option<String>,
    pub minimum_ring_size: Option<i64>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpCookie {
    pub name: Option<String>,
    pub path: Option<String>,
    pub ttl: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LocalityLbSetting {
    pub enabled: Option<bool>,
    pub distribute: Option<Vec<LocalityDistribute>>,
    pub failover: Option<Vec<LocalityFailover>>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LocalityDistribute {
    pub from: Option<String>,
    pub to: Option<BTreeMap<String, i64>>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LocalityFailover {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    pub base_ejection_time: Option<String>,
    #[serde(rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<i64>,
    #[schemars(extend("format" = "int32"))]
    pub consecutive_errors: Option<i32>,
    #[schemars(extend("format" = "int32"))]
    pub consecutive_gateway_errors: Option<i32>,
    #[schemars(extend("format" = "int32"))]
    pub consecutive_local_origin_failures: Option<i32>,
    pub interval: Option<String>,
    #[schemars(extend("format" = "int32"))]
    pub max_ejection_percent: Option<i32>,
    #[schemars(extend("format" = "int32"))]
    pub min_health_percent: Option<i32>,
    pub split_external_local_origin_errors: Option<bool>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientTls {
    pub ca_certificates: Option<String>,
    pub client_certificate: Option<String>,
    #[schemars(extend("enum" = ["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]))]
    pub mode: Option<String>,
    pub private_key: Option<String>,
    pub sni: Option<String>,
    pub subject_alt_names: Option<Vec<String>>,
}
