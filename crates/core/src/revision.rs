//! When a revision counts as new.

use flagger_api::status::CanaryStatus;

use crate::observation::Observation;

fn configs_changed(status: &CanaryStatus, obs: &Observation) -> bool {
    match &status.tracked_configs {
        Some(tracked) => *tracked != obs.configs,
        None => !obs.configs.is_empty(),
    }
}

/// `targetChanged` or dependencies changed.
pub(crate) fn revision_changed(status: &CanaryStatus, obs: &Observation) -> bool {
    let h = obs.revision.as_str();
    let target_changed = match status.last_applied_spec.as_deref() {
        None | Some("") => true,
        Some(a) => h != a && status.last_promoted_spec.as_deref() != Some(h),
    };
    target_changed || configs_changed(status, obs)
}

/// Seed extra: a `flagger.app/reset` token not acted on yet counts as a new revision.
pub(crate) fn new_reset(status: &CanaryStatus, obs: &Observation) -> bool {
    obs.reset_token.is_some() && obs.reset_token != status.last_handled_reset
}

/// During a run the target went back to what the primary runs: a manual rollback.
pub(crate) fn reverted(status: &CanaryStatus, obs: &Observation) -> bool {
    let promoted = status.last_promoted_spec.as_deref();
    promoted == Some(obs.revision.as_str()) && status.last_applied_spec.as_deref() != promoted
}
