//! Results the core asks for in the middle of a tick (`Action::Need`): webhook calls and metric
//! checks, appended to the observation.

use std::fmt::Write;

use flagger_api::analysis::HookType;
use flagger_api::{Canary, CanaryPhase, CanaryStatus};
use flagger_core::{EventType, HookResult, MetricOutcome, Observation, RolloutSpec};
use flagger_providers::metrics::MetricKind;
use flagger_providers::metrics::builtin::BuiltinMetric;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::webhooks::{Payload, Placeholders, substitute};

/// Identifies the revision under test for webhook receivers: only equality is meaningful.
pub fn checksum(status: &CanaryStatus) -> String {
    let mut hasher = Sha256::new();
    hasher.update(status.last_applied_spec.as_deref().unwrap_or_default());
    for (key, value) in status.tracked_configs.iter().flatten() {
        hasher.update([0]);
        hasher.update(key);
        hasher.update([0]);
        hasher.update(value);
    }
    let mut out = String::with_capacity(16);
    for byte in &hasher.finalize()[..8] {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

pub fn payload(
    canary: &Canary,
    status: &CanaryStatus,
    phase: CanaryPhase,
    metadata: Option<&std::collections::BTreeMap<String, String>>,
) -> Payload {
    let mut payload = Payload {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        phase: phase.as_str().to_string(),
        checksum: checksum(status),
        metadata: None,
    };
    if let Some(metadata) = metadata {
        let values = Placeholders {
            canary_weight: status
                .canary_weight
                .and_then(|w| u32::try_from(w).ok())
                .unwrap_or(0),
            iteration: status.iterations.unwrap_or(0),
            failed_checks: status.failed_checks.unwrap_or(0),
            target: canary.spec.target_ref.name.clone(),
        };
        let substituted = metadata
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v, &payload, &values)))
            .collect();
        payload.metadata = Some(substituted);
    }
    payload
}

/// Calls the hooks in order and stops at the first failure: the core asks again for the rest
/// when it still needs them.
pub async fn webhooks(
    ctx: &Context,
    canary: &Canary,
    status: &CanaryStatus,
    kind: HookType,
    phase: CanaryPhase,
    names: &[String],
    observation: &mut Observation,
) {
    let hooks = canary.spec.analysis.webhooks.iter().flatten();
    for name in names {
        let Some(hook) = hooks
            .clone()
            .find(|h| &h.name == name && h.hook_type() == Some(kind))
        else {
            observation.webhooks.push(HookResult {
                kind,
                name: name.clone(),
                outcome: Err(format!("webhook {name} not found in the spec")),
            });
            break;
        };
        let body = payload(canary, status, phase, hook.metadata.as_ref());
        let outcome = crate::webhooks::call(ctx, canary, hook, &body).await;
        let failed = outcome.is_err();
        observation.webhooks.push(HookResult {
            kind,
            name: name.clone(),
            outcome,
        });
        if failed {
            break;
        }
    }
}

/// Runs the named metric checks in order; judging the values is the core's job.
pub async fn metrics(
    ctx: &Context,
    canary: &Canary,
    spec: &RolloutSpec,
    names: &[String],
    observation: &mut Observation,
) {
    let knative_revision = canary
        .spec
        .target_ref
        .is_knative_service()
        .then(|| observation.revision.clone());
    for name in names {
        let checked = crate::checks::run(ctx, canary, name, knative_revision.as_deref()).await;
        for warning in &checked.warnings {
            let message = format!("Metric {name}: {warning}");
            ctx.recorder
                .record(canary, EventType::Warning, &message)
                .await;
        }
        if let MetricOutcome::Value(value) = checked.result.outcome {
            // Flagger exports builtin durations in seconds; the check compares milliseconds.
            let exported = if matches!(
                checked.kind,
                Some(MetricKind::Builtin {
                    metric: BuiltinMetric::RequestDuration,
                    ..
                })
            ) {
                value / 1000.0
            } else {
                value
            };
            let namespace = canary.namespace().unwrap_or_default();
            ctx.metrics.set_metric_value(
                &canary.name_any(),
                &spec.target_name,
                &namespace,
                name,
                exported,
            );
        }
        observation.metrics.push(checked.result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_identifies_the_revision_and_its_configs() {
        let status = |spec: &str, config: &str| CanaryStatus {
            last_applied_spec: Some(spec.into()),
            tracked_configs: Some([("configmap/app".to_string(), config.to_string())].into()),
            ..Default::default()
        };
        assert_eq!(checksum(&status("a", "1")), checksum(&status("a", "1")));
        assert_ne!(checksum(&status("a", "1")), checksum(&status("b", "1")));
        assert_ne!(checksum(&status("a", "1")), checksum(&status("a", "2")));
        assert_eq!(checksum(&status("a", "1")).len(), 16);
    }
}
