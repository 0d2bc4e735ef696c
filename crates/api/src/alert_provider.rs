//! The `AlertProvider` kind: where a canary's notifications go.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::metric_template::SecretRef;
use crate::status::Condition;

pub const ALERT_PROVIDER_TYPES: &[&str] =
    &["slack", "msteams", "discord", "rocket", "gchat", "generic"];

#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "AlertProvider",
    namespaced,
    category = "all",
    status = "AlertProviderStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["type", "address"]}, {"required": ["type", "secretRef"]}]))]
pub struct AlertProviderSpec {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ALERT_PROVIDER_TYPES))]
    pub type_: String,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub address: Option<String>,
    pub proxy: Option<String>,
    pub secret_ref: Option<SecretRef>,
    /// Seed extra: a Go text/template that replaces the message body.
    pub message_template: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertProviderStatus {
    pub conditions: Option<Vec<Condition>>,
}
