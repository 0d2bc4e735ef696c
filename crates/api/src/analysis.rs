//! `spec.analysis`: schedule, checks, hooks and alerts of a canary run.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::number::Number;
use crate::string_match::{HeaderMatch, StringMatch};

/// Flagger's schema pattern for duration strings (unanchored at the end, kept as Flagger has it).
pub const DURATION_PATTERN: &str = "^[0-9]+(m|s)";

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    {"required": ["interval", "threshold", "iterations"]},
    {"required": ["interval", "threshold", "stepWeight"]},
    {"required": ["interval", "threshold", "stepWeights"]}
]))]
pub struct CanaryAnalysis {
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    pub iterations: Option<Number>,
    pub threshold: Option<Number>,
    pub max_weight: Option<Number>,
    pub step_weight: Option<Number>,
    pub step_weights: Option<Vec<Number>>,
    pub step_weight_promotion: Option<Number>,
    pub mirror: Option<bool>,
    pub mirror_weight: Option<Number>,
    pub primary_ready_threshold: Option<Number>,
    pub canary_ready_threshold: Option<Number>,
    #[serde(rename = "match")]
    pub match_: Option<Vec<AbMatch>>,
    pub metrics: Option<Vec<CanaryMetric>>,
    pub alerts: Option<Vec<CanaryAlert>>,
    pub webhooks: Option<Vec<CanaryWebhook>>,
    pub session_affinity: Option<SessionAffinity>,
    /// Seed extra: hold the first analysis step of a run until the canary has been ready this long.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub delay: Option<String>,
    /// Seed extra: progressive mirroring and canary pod overrides.
    pub canary_analysis: Option<CanaryAnalysisExtras>,
    /// flagger-rs extra: compare the canary with a baseline statistically (see docs/judge.md).
    pub judge: Option<crate::judge::AnalysisJudge>,
}

impl CanaryAnalysis {
    /// The A/B `match` entries; empty when the canary is not A/B.
    pub fn matches(&self) -> &[AbMatch] {
        self.match_.as_deref().unwrap_or_default()
    }
}

/// One A/B condition set; entries of `analysis.match` are OR-ed, conditions inside one are AND-ed.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AbMatch {
    pub headers: Option<BTreeMap<String, HeaderMatch>>,
    pub query_params: Option<BTreeMap<String, StringMatch>>,
    pub source_labels: Option<BTreeMap<String, String>>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetric {
    pub name: String,
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    pub threshold: Option<Number>,
    pub threshold_range: Option<ThresholdRange>,
    pub query: Option<String>,
    pub template_ref: Option<CrossNamespaceRef>,
    pub template_variables: Option<BTreeMap<String, String>>,
    /// flagger-rs extra (issue 7): the check is run and reported but never fails, nor holds,
    /// the analysis. Absent = false (Flagger).
    pub dry_run: Option<bool>,
    /// flagger-rs extra (issue 7): what a tick does when this metric has no data or its query
    /// failed: `fail` counts a failed check (Flagger, the default), `hold` neither advances nor
    /// counts a failure.
    #[schemars(extend("enum" = ["fail", "hold"]))]
    pub no_data: Option<String>,
    /// flagger-rs extra: judge this metric against the baseline (needs `analysis.judge`).
    pub judge: Option<crate::judge::MetricJudge>,
}

/// Values of `analysis.metrics[].noData`.
pub const NO_DATA_POLICIES: &[&str] = &["fail", "hold"];

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThresholdRange {
    pub min: Option<Number>,
    pub max: Option<Number>,
}

/// A reference to an object by name, in the referrer's namespace unless `namespace` is set.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CrossNamespaceRef {
    pub name: String,
    pub namespace: Option<String>,
}

pub const WEBHOOK_TYPES: &[&str] = &[
    "",
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-promotion",
    "post-rollout",
    "event",
    "rollback",
    "confirm-traffic-increase",
];

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryWebhook {
    pub name: String,
    #[serde(rename = "type")]
    #[schemars(extend("enum" = WEBHOOK_TYPES))]
    pub type_: Option<String>,
    #[schemars(extend("format" = "url"))]
    pub url: String,
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
    pub retries: Option<Number>,
    pub mute_alert: Option<bool>,
    #[serde(rename = "disableTLS")]
    pub disable_tls: Option<bool>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// flagger-rs extension: a key of a Secret in the canary's namespace whose value is sent as
    /// `Authorization: Bearer <value>` (for a loadtester started with `-bearer-token`). Absent,
    /// no Authorization header is sent, as in Flagger.
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
}

/// One key of a Secret in the referring object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// When a webhook runs. `""` (and an absent type) means `rollout`, as in Flagger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookType {
    ConfirmRollout,
    PreRollout,
    Rollout,
    ConfirmTrafficIncrease,
    ConfirmPromotion,
    PostRollout,
    Rollback,
    Event,
}

impl HookType {
    pub fn parse(text: Option<&str>) -> Option<Self> {
        Some(match text.unwrap_or("") {
            "" | "rollout" => HookType::Rollout,
            "confirm-rollout" => HookType::ConfirmRollout,
            "pre-rollout" => HookType::PreRollout,
            "confirm-traffic-increase" => HookType::ConfirmTrafficIncrease,
            "confirm-promotion" => HookType::ConfirmPromotion,
            "post-rollout" => HookType::PostRollout,
            "rollback" => HookType::Rollback,
            "event" => HookType::Event,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HookType::ConfirmRollout => "confirm-rollout",
            HookType::PreRollout => "pre-rollout",
            HookType::Rollout => "rollout",
            HookType::ConfirmTrafficIncrease => "confirm-traffic-increase",
            HookType::ConfirmPromotion => "confirm-promotion",
            HookType::PostRollout => "post-rollout",
            HookType::Rollback => "rollback",
            HookType::Event => "event",
        }
    }
}

impl CanaryWebhook {
    /// The hook's type, or `None` for a value outside Flagger's enum.
    pub fn hook_type(&self) -> Option<HookType> {
        HookType::parse(self.type_.as_deref())
    }
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAlert {
    pub name: String,
    #[schemars(extend("enum" = ["", "info", "warn", "error"]))]
    pub severity: Option<String>,
    pub provider_ref: CrossNamespaceRef,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    pub cookie_name: String,
    pub primary_cookie_name: Option<String>,
    #[schemars(extend("default" = 86400))]
    pub max_age: Option<Number>,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub http_only: Option<bool>,
    pub secure: Option<bool>,
    pub partitioned: Option<bool>,
    #[schemars(extend("enum" = ["Strict", "Lax", "None"]))]
    pub same_site: Option<String>,
}

/// Seed extra `analysis.canaryAnalysis` (not Flagger's deprecated `spec.canaryAnalysis`).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAnalysisExtras {
    /// Mirror percentage added per mirror iteration (progressive mirroring).
    #[schemars(range(min = 1, max = 100))]
    pub step_weight_promotion: Option<i64>,
    #[schemars(range(min = 1, max = 100))]
    pub max_mirror_weight: Option<i64>,
    #[schemars(range(min = 1))]
    pub iterations: Option<i64>,
    pub template_variables: Option<PodOverrides>,
}

/// Canary pod overrides (seed extra): applied to the canary's pod template while it is scaled up.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    pub node_selector: Option<BTreeMap<String, String>>,
    pub tolerations: Option<Vec<Toleration>>,
}

/// core/v1 Toleration.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    pub key: Option<String>,
    #[schemars(extend("enum" = ["Equal", "Exists"]))]
    pub operator: Option<String>,
    pub value: Option<String>,
    #[schemars(extend("enum" = ["NoSchedule", "PreferNoSchedule", "NoExecute"]))]
    pub effect: Option<String>,
    pub toleration_seconds: Option<i64>,
}
