//! From the Canary as written to the spec the machine runs: durations parsed, defaults applied,
//! strategy resolved, controller settings folded in.

use std::time::Duration;

use flagger_api::analysis::{CanaryMetric, HookType};
use flagger_api::canary::Canary;
use flagger_api::duration;
use flagger_api::number::Number;
use thiserror::Error;

use crate::session_affinity::CookieNames;

/// Controller-wide settings that change decisions.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `-mesh-provider`, used when `spec.provider` is empty.
    pub mesh_provider: String,
    /// `--min-analysis-interval`.
    pub min_interval: Duration,
    /// `--dry-run`.
    pub dry_run: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mesh_provider: "istio".into(),
            min_interval: Duration::from_secs(10),
            dry_run: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RolloutSpec {
    pub name: String,
    pub namespace: String,
    /// `{name}.{ns}`, built once: it is in most event texts.
    pub key: String,
    /// `{target}.{ns}`.
    pub target_key: String,
    pub target_kind: String,
    pub target_name: String,
    pub provider: String,
    pub interval: Duration,
    /// Effective threshold, at least 1.
    pub threshold: u32,
    pub strategy: Strategy,
    /// `None` when mirroring is off or the router/strategy cannot mirror.
    pub mirror: Option<Mirror>,
    pub step_weight_promotion: u32,
    pub delay: Duration,
    pub progress_deadline: Duration,
    pub skip_analysis: bool,
    pub suspend: bool,
    pub revert_on_deletion: bool,
    /// False for the `kubernetes` provider: its routes never move.
    pub routes_traffic: bool,
    pub metrics: Vec<MetricCheck>,
    /// `analysis.judge`: the statistical judge, when on.
    pub judge: Option<crate::judging::JudgeSpec>,
    pub hooks: Vec<Hook>,
    pub dry_run: bool,
    /// Cookie names of `analysis.sessionAffinity`, when the provider's router renders cookie rules.
    pub session_affinity: Option<CookieNames>,
    /// Coercions and ignored settings, reported once per run (at run start).
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    Canary(Ladder),
    AbTesting { iterations: u32 },
    BlueGreen { iterations: u32 },
}

impl Strategy {
    /// The `deployment_strategy` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Strategy::Canary(_) => "canary",
            Strategy::AbTesting { .. } => "ab-testing",
            Strategy::BlueGreen { .. } => "blue-green",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ladder {
    pub step_weight: u32,
    pub step_weights: Vec<u32>,
    pub max_weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// `mirrorWeight`; 0 means 100 %.
    pub weight: u32,
    pub ramp: Option<Ramp>,
}

/// Seed extra: progressive mirroring (`analysis.canaryAnalysis`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ramp {
    pub step: u32,
    pub max: u32,
    pub iterations: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricCheck {
    pub name: String,
    pub kind: MetricKind,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The bounds as check records show them (`min 99`, `max 500`).
    pub threshold: Option<String>,
    /// Evaluated and reported, never a failed check nor a hold (issue 7).
    pub dry_run: bool,
    pub no_data: NoDataPolicy,
    /// `judge`: also compared with the baseline by the statistical judge.
    pub judge: Option<crate::judging::MetricJudging>,
}

/// `analysis.metrics[].noData` (issue 7): what a tick does when the metric has no value
/// because the backend had no data or the query failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoDataPolicy {
    /// Flagger: a failed check.
    #[default]
    Fail,
    /// The tick neither advances nor counts a failure, for at most `progressDeadlineSeconds`.
    Hold,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    SuccessRate,
    Duration,
    Custom,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub name: String,
    pub kind: HookType,
    pub mute_alert: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.to_string(),
        message: message.into(),
    }
}

fn int(field: &str, value: Option<&Number>) -> Result<Option<i64>, SpecError> {
    match value {
        None => Ok(None),
        Some(n) => n
            .integer()
            .map(Some)
            .ok_or_else(|| invalid(field, format!("must be an integer, got {n}"))),
    }
}

fn count(field: &str, value: Option<&Number>) -> Result<u32, SpecError> {
    match int(field, value)? {
        None => Ok(0),
        Some(v) => u32::try_from(v).map_err(|_| {
            invalid(
                field,
                format!("must be between 0 and {}, got {v}", u32::MAX),
            )
        }),
    }
}

fn percent(field: &str, value: Option<&Number>) -> Result<u32, SpecError> {
    let v = count(field, value)?;
    if v > 100 {
        return Err(invalid(
            field,
            format!("must be between 0 and 100, got {v}"),
        ));
    }
    Ok(v)
}

/// Routers able to mirror, per strategy.
fn can_mirror(provider: &str, blue_green: bool) -> bool {
    let base = provider.split(':').next().unwrap_or(provider);
    match base {
        "istio" | "traefik" => true,
        "gatewayapi" => blue_green && matches!(provider, "gatewayapi:v1" | "gatewayapi:v1beta1"),
        _ => false,
    }
}

/// Builds the spec the machine runs. Errors are runtime validation failures (`Valid=False`,
/// reason `InvalidSpec`).
pub fn normalize(canary: &Canary, settings: &Settings) -> Result<RolloutSpec, SpecError> {
    let spec = &canary.spec;
    let a = &spec.analysis;
    let mut warnings = Vec::new();

    let provider = match spec.provider.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => p.to_string(),
        None if settings.mesh_provider == "gatewayapi" => "gatewayapi:v1".to_string(),
        None => settings.mesh_provider.clone(),
    };
    let kubernetes = provider == "kubernetes";

    // Flagger falls back to the default instead of refusing the canary.
    let interval = a
        .interval
        .as_deref()
        .and_then(|s| duration::parse(s).ok())
        .unwrap_or(Duration::from_secs(60))
        .max(settings.min_interval);
    let threshold = match int("spec.analysis.threshold", a.threshold.as_ref())? {
        Some(t) if t > 0 => u32::try_from(t).unwrap_or(u32::MAX),
        _ => 1,
    };
    let delay = match a.delay.as_deref() {
        None | Some("") => Duration::ZERO,
        Some(s) => duration::parse(s).map_err(|e| invalid("spec.analysis.delay", e.to_string()))?,
    };
    let progress_deadline = match int(
        "spec.progressDeadlineSeconds",
        spec.progress_deadline_seconds.as_ref(),
    )? {
        None => Duration::from_secs(600),
        Some(s) => Duration::from_secs(
            u64::try_from(s)
                .map_err(|_| invalid("spec.progressDeadlineSeconds", "must not be negative"))?,
        ),
    };

    let iterations = count("spec.analysis.iterations", a.iterations.as_ref())?;
    let has_match = !a.matches().is_empty();
    let step_weight = percent("spec.analysis.stepWeight", a.step_weight.as_ref())?;
    let step_weights = a
        .step_weights
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, n)| count(&format!("spec.analysis.stepWeights[{i}]"), Some(n)))
        .collect::<Result<Vec<_>, _>>()?;
    let max_weight = match percent("spec.analysis.maxWeight", a.max_weight.as_ref())? {
        0 => 100,
        m => m,
    };

    let strategy = if kubernetes {
        if has_match {
            warnings.push(
                "A/B testing is not supported when using the kubernetes provider".to_string(),
            );
        }
        if iterations < 1 {
            warnings.push(
                "Progressive traffic is not supported when using the kubernetes provider"
                    .to_string(),
            );
            warnings.push("Setting canaryAnalysis.iterations: 10".to_string());
        }
        Strategy::BlueGreen {
            iterations: if iterations < 1 { 10 } else { iterations },
        }
    } else if iterations > 0 && has_match {
        Strategy::AbTesting { iterations }
    } else if iterations > 0 {
        Strategy::BlueGreen { iterations }
    } else {
        if step_weight == 0 && step_weights.is_empty() {
            return Err(invalid(
                "spec.analysis.stepWeight",
                "must be greater than 0 when neither iterations nor stepWeights are set",
            ));
        }
        if step_weights.first() == Some(&0) || step_weights.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid(
                "spec.analysis.stepWeights",
                "must be strictly increasing and greater than 0",
            ));
        }
        Strategy::Canary(Ladder {
            step_weight,
            step_weights,
            max_weight,
        })
    };

    let mirror = if a.mirror.unwrap_or(false) {
        let blue_green = matches!(strategy, Strategy::BlueGreen { .. });
        if matches!(strategy, Strategy::AbTesting { .. }) || !can_mirror(&provider, blue_green) {
            warnings.push(format!(
                "MirrorUnsupported: mirroring is not supported by {provider} with this strategy"
            ));
            None
        } else {
            let weight = percent("spec.analysis.mirrorWeight", a.mirror_weight.as_ref())?;
            Some(Mirror {
                weight,
                ramp: ramp(a.canary_analysis.as_ref(), weight)?,
            })
        }
    } else {
        None
    };

    let metrics = a
        .metrics
        .iter()
        .flatten()
        .map(metric_check)
        .collect::<Result<Vec<_>, _>>()?;
    let hooks = a
        .webhooks
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, w)| {
            let kind = w.hook_type().ok_or_else(|| {
                invalid(
                    &format!("spec.analysis.webhooks[{i}].type"),
                    format!(
                        "unknown webhook type {:?}",
                        w.type_.as_deref().unwrap_or_default()
                    ),
                )
            })?;
            Ok(Hook {
                name: w.name.clone(),
                kind,
                mute_alert: w.mute_alert.unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>, SpecError>>()?;

    let session_affinity = a
        .session_affinity
        .as_ref()
        .filter(|_| flagger_api::validate::session_affinity(&provider))
        .map(|sa| CookieNames {
            cookie: sa.cookie_name.clone(),
            primary: sa.primary_cookie_name.clone().filter(|p| !p.is_empty()),
        });

    let name = canary.metadata.name.clone().unwrap_or_default();
    let namespace = canary.metadata.namespace.clone().unwrap_or_default();
    Ok(RolloutSpec {
        key: format!("{name}.{namespace}"),
        target_key: format!("{}.{namespace}", spec.target_ref.name),
        name,
        namespace,
        target_kind: spec.target_ref.kind.clone(),
        target_name: spec.target_ref.name.clone(),
        routes_traffic: !kubernetes,
        provider,
        interval,
        threshold,
        strategy,
        mirror,
        step_weight_promotion: percent(
            "spec.analysis.stepWeightPromotion",
            a.step_weight_promotion.as_ref(),
        )?,
        delay,
        progress_deadline,
        skip_analysis: spec.skip_analysis.unwrap_or(false),
        suspend: spec.suspend.unwrap_or(false),
        revert_on_deletion: spec.revert_on_deletion.unwrap_or(false),
        metrics,
        judge: crate::judging::judge_spec(a, &spec.target_ref.name)?,
        hooks,
        dry_run: settings.dry_run,
        session_affinity,
        warnings,
    })
}

fn ramp(
    extras: Option<&flagger_api::analysis::CanaryAnalysisExtras>,
    weight: u32,
) -> Result<Option<Ramp>, SpecError> {
    let Some(extras) = extras else {
        return Ok(None);
    };
    let field = "spec.analysis.canaryAnalysis";
    let in_range = |name: &str, v: i64| {
        u32::try_from(v)
            .ok()
            .filter(|v| (1..=100).contains(v))
            .ok_or_else(|| {
                invalid(
                    &format!("{field}.{name}"),
                    format!("must be between 1 and 100, got {v}"),
                )
            })
    };
    let step = match extras.step_weight_promotion {
        None | Some(0) => return Ok(None),
        Some(s) => in_range("stepWeightPromotion", s)?,
    };
    let max = match extras.max_mirror_weight {
        None => 100,
        Some(m) => in_range("maxMirrorWeight", m)?,
    };
    let base = if weight > 0 { weight } else { step };
    if max < base {
        return Err(invalid(
            &format!("{field}.maxMirrorWeight"),
            format!("must be at least the starting mirror weight {base}"),
        ));
    }
    let iterations = match extras.iterations {
        None => 1 + (max - base).div_ceil(step),
        Some(n) => u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
            invalid(
                &format!("{field}.iterations"),
                format!("must be at least 1, got {n}"),
            )
        })?,
    };
    Ok(Some(Ramp {
        step,
        max,
        iterations,
    }))
}

/// Never NaN: serde_json (no `arbitrary_precision` in this workspace) parses only finite numbers.
fn float(n: Option<&Number>) -> Option<f64> {
    n.map(Number::as_f64)
}

fn metric_check(m: &CanaryMetric) -> Result<MetricCheck, SpecError> {
    // A template or query makes the builtin name a mere label: only the template or query runs.
    let builtin = m.query.is_none() && m.template_ref.is_none();
    let kind = match m.name.as_str() {
        "request-success-rate" if builtin => MetricKind::SuccessRate,
        "request-duration" if builtin => MetricKind::Duration,
        _ => MetricKind::Custom,
    };
    let field = format!("spec.analysis.metrics[{}]", m.name);
    let judge = crate::judging::metric_judging(m)?;
    let (min, max) = if let Some(range) = &m.threshold_range {
        (float(range.min.as_ref()), float(range.max.as_ref()))
    } else if judge.is_some() && m.threshold.is_none() {
        // Compared with the baseline, not with a fixed bound.
        (None, None)
    } else {
        let t = float(m.threshold.as_ref());
        match kind {
            MetricKind::SuccessRate => (t, None),
            MetricKind::Duration => (None, t),
            MetricKind::Custom => (None, Some(t.unwrap_or(0.0))),
        }
    };
    let parts: Vec<String> = [("min", min), ("max", max)]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| format!("{name} {v}")))
        .collect();
    let threshold = (!parts.is_empty()).then(|| parts.join(" "));
    let no_data = match m.no_data.as_deref() {
        None | Some("fail") => NoDataPolicy::Fail,
        Some("hold") => NoDataPolicy::Hold,
        Some(other) => {
            return Err(invalid(
                &format!("{field}.noData"),
                format!("unsupported value {other:?} (fail or hold)"),
            ));
        }
    };
    Ok(MetricCheck {
        name: m.name.clone(),
        kind,
        min,
        max,
        threshold,
        dry_run: m.dry_run.unwrap_or(false),
        no_data,
        judge,
    })
}

impl RolloutSpec {
    pub fn hooks_of(&self, kind: HookType) -> impl Iterator<Item = &Hook> {
        self.hooks.iter().filter(move |h| h.kind == kind)
    }

    /// `{name}.{ns}` of the Canary.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `{target}.{ns}`.
    pub fn target_key(&self) -> &str {
        &self.target_key
    }
}
