//! `Canary.status`: the controller's only memory of a run.

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::analysis::Toleration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CanaryPhase {
    /// Never processed.
    #[default]
    #[serde(rename = "")]
    New,
    Initializing,
    Initialized,
    Waiting,
    Progressing,
    WaitingPromotion,
    Promoting,
    Finalising,
    Succeeded,
    Failed,
    Terminating,
    Terminated,
}

impl CanaryPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryPhase::New => "",
            CanaryPhase::Initializing => "Initializing",
            CanaryPhase::Initialized => "Initialized",
            CanaryPhase::Waiting => "Waiting",
            CanaryPhase::Progressing => "Progressing",
            CanaryPhase::WaitingPromotion => "WaitingPromotion",
            CanaryPhase::Promoting => "Promoting",
            CanaryPhase::Finalising => "Finalising",
            CanaryPhase::Succeeded => "Succeeded",
            CanaryPhase::Failed => "Failed",
            CanaryPhase::Terminating => "Terminating",
            CanaryPhase::Terminated => "Terminated",
        }
    }
}

impl std::fmt::Display for CanaryPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    pub phase: Option<CanaryPhase>,
    pub failed_checks: Option<i32>,
    pub canary_weight: Option<i32>,
    pub iterations: Option<i32>,
    pub tracked_configs: Option<BTreeMap<String, String>>,
    pub last_applied_spec: Option<String>,
    pub last_promoted_spec: Option<String>,
    pub last_tracked_revision: Option<String>,
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_transition_time: Option<Timestamp>,
    pub session_affinity_cookie: Option<String>,
    pub primary_session_affinity_cookie: Option<String>,
    pub previous_session_affinity_cookie: Option<String>,
    pub conditions: Option<Vec<Condition>>,
    /// Seed extra: the check records of the current run.
    pub canary_analysis: Option<AnalysisRecords>,
    /// Seed extra: end of the `analysis.delay` warm-up hold.
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub delay_until: Option<Timestamp>,
    /// flagger-rs extra (issue 7): first tick of the current `noData: hold` episode; a hold
    /// older than `progressDeadlineSeconds` counts failed checks again.
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub held_since: Option<Timestamp>,
    /// Seed extra: mirror percentage currently configured (0 = not mirroring).
    pub mirror_weight: Option<i32>,
    /// Seed extra: the last `flagger.app/reset` token acted on.
    pub last_handled_reset: Option<String>,
    /// Seed extra: the target's own values at the paths canary pod overrides replace.
    pub pod_overrides: Option<PodOverridesStatus>,
    /// flagger-rs extra: the statistical judge's last look (`analysis.judge`).
    pub judge: Option<crate::judge::JudgeStatus>,
    /// flagger-rs extra: the last manual request (`flagger-rs.dev/request` annotation) handled,
    /// with the controller's answer; its id is what makes each request act once.
    pub last_request: Option<HandledRequest>,
    /// flagger-rs extra: who paused the run; present while a `pause` request holds the weights.
    pub paused_by: Option<String>,
}

/// A manual request the controller has answered. Nothing is required in the schema: the CRD
/// requires only what Flagger's does.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HandledRequest {
    pub id: String,
    /// `promote`, `abort`, `pause`, `resume` or `retry`, as asked.
    pub action: String,
    pub requested_by: Option<String>,
    /// Whether it took effect; a refused request changed nothing.
    pub accepted: bool,
    pub message: String,
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub handled_at: Option<Timestamp>,
}

/// A status condition as Flagger writes it (`lastUpdateTime` included, unlike metav1.Condition).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: Option<String>,
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_update_time: Option<Timestamp>,
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_transition_time: Option<Timestamp>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnalysisRecords {
    pub iterations: Option<Vec<CheckRecord>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    Metric,
    Webhook,
    PreRollout,
    Gate,
}

/// One evaluated check: what alert templates and `kubectl get canary -o jsonpath` show.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    /// Tick number within the run; 1 is the first analysis tick.
    pub iteration: i32,
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub time: Timestamp,
    pub kind: CheckKind,
    pub name: String,
    /// Absent when the check could not produce a value.
    pub value: Option<f64>,
    /// e.g. `min 99`, `max 500`.
    pub threshold: Option<String>,
    pub failed: bool,
    pub message: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverridesStatus {
    /// The target's own node selector, restored whole when the overrides are removed.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// The target's own toleration list.
    pub tolerations: Option<Vec<Toleration>>,
    pub applied: Option<bool>,
}
