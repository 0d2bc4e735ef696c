//! The `MetricTemplate` kind: a reusable query against a metrics backend.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::status::Condition;

pub const METRIC_PROVIDERS: &[&str] = &[
    "prometheus",
    "influxdb",
    "datadog",
    "externalmetrics",
    "stackdriver",
    "cloudwatch",
    "newrelic",
    "graphite",
    "dynatrace",
    "keptn",
    "splunk",
];

#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "MetricTemplate",
    namespaced,
    category = "all",
    status = "MetricTemplateStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider.type"}"#
)]
pub struct MetricTemplateSpec {
    pub provider: MetricProvider,
    /// A Go text/template rendered with `name`, `namespace`, `target`, `service`, `interval`,
    /// `variables.<key>`.
    pub query: String,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = METRIC_PROVIDERS))]
    pub type_: String,
    pub address: Option<String>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub secret_ref: Option<SecretRef>,
    pub region: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

/// A Secret in the referring object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    pub name: String,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricTemplateStatus {
    pub conditions: Option<Vec<Condition>>,
}
