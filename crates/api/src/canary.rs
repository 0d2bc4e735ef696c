//! The `Canary` kind.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::analysis::CanaryAnalysis;
use crate::number::Number;
use crate::service::CanaryService;
use crate::status::CanaryStatus;

pub const PROVIDERS: &[&str] = &[
    "apisix",
    "appmesh",
    "appmesh:v1beta2",
    "contour",
    "gatewayapi:v1",
    "gatewayapi:v1beta1",
    "gloo",
    "istio",
    "knative",
    "kubernetes",
    "kuma",
    "linkerd",
    "nginx",
    "osm",
    "skipper",
    "smi:v1alpha1",
    "smi:v1alpha2",
    "smi:v1alpha3",
    "traefik",
];

/// The canary's desired state: which workload is released, how traffic reaches it, how it is judged.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "Canary",
    plural = "canaries",
    singular = "canary",
    namespaced,
    category = "all",
    status = "CanaryStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"string","jsonPath":".status.canaryWeight"}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend","priority":1}"#,
    printcolumn = r#"{"name":"FailedChecks","type":"string","jsonPath":".status.failedChecks","priority":1}"#,
    printcolumn = r#"{"name":"Interval","type":"string","jsonPath":".spec.analysis.interval","priority":1}"#,
    printcolumn = r#"{"name":"Mirror","type":"boolean","jsonPath":".spec.analysis.mirror","priority":1}"#,
    printcolumn = r#"{"name":"StepWeight","type":"string","jsonPath":".spec.analysis.stepWeight","priority":1}"#,
    printcolumn = r#"{"name":"StepWeights","type":"string","jsonPath":".spec.analysis.stepWeights","priority":1}"#,
    printcolumn = r#"{"name":"MaxWeight","type":"string","jsonPath":".spec.analysis.maxWeight","priority":1}"#,
    printcolumn = r#"{"name":"LastTransitionTime","type":"string","jsonPath":".status.lastTransitionTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    #[schemars(extend("enum" = PROVIDERS))]
    pub provider: Option<String>,
    pub metrics_server: Option<String>,
    pub progress_deadline_seconds: Option<Number>,
    pub target_ref: TargetRef,
    pub autoscaler_ref: Option<AutoscalerRef>,
    pub ingress_ref: Option<KindRef>,
    pub route_ref: Option<KindRef>,
    pub upstream_ref: Option<UpstreamRef>,
    pub service: Option<CanaryService>,
    pub skip_analysis: Option<bool>,
    pub revert_on_deletion: Option<bool>,
    pub suspend: Option<bool>,
    pub analysis: CanaryAnalysis,
}

/// The workload under test.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    pub api_version: String,
    #[schemars(extend("enum" = ["DaemonSet", "Deployment", "Service"]))]
    pub kind: String,
    pub name: String,
}

impl TargetRef {
    /// A Knative Service, whose revisions play the primary and canary (a plain `v1` Service is a
    /// Service target of its own kind).
    pub fn is_knative_service(&self) -> bool {
        self.kind == "Service" && self.api_version.starts_with("serving.knative.dev/")
    }
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerRef {
    pub api_version: String,
    #[schemars(extend("enum" = ["HorizontalPodAutoscaler", "ScaledObject"]))]
    pub kind: String,
    pub name: String,
    pub primary_scaler_queries: Option<BTreeMap<String, String>>,
    pub primary_scaler_replicas: Option<ScalerReplicas>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalerReplicas {
    #[schemars(range(min = 1))]
    pub min_replicas: Option<i32>,
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,
}

/// `ingressRef` (kind `Ingress`) and `routeRef` (kind `ApisixRoute`); the kind enum is set per field
/// when the CRD is generated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

/// The Gloo Upstream whose settings the generated upstreams copy.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamRef {
    pub api_version: String,
    #[schemars(extend("enum" = ["Upstream"]))]
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

impl CanarySpec {
    /// `<apex>`: `service.name`, else the target's name.
    pub fn apex_name(&self) -> &str {
        self.service
            .as_ref()
            .and_then(|s| s.name.as_deref())
            .unwrap_or(&self.target_ref.name)
    }

    pub fn primary_service_name(&self) -> String {
        format!("{}-primary", self.apex_name())
    }

    pub fn canary_service_name(&self) -> String {
        format!("{}-canary", self.apex_name())
    }

    /// The primary workload is always named after the target, never after `service.name`.
    pub fn primary_workload_name(&self) -> String {
        format!("{}-primary", self.target_ref.name)
    }
}
