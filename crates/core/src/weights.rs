//! Weight arithmetic of the strategies and of mirroring.

use flagger_api::status::{CanaryPhase, CanaryStatus};

use crate::normalize::{Ladder, Mirror, RolloutSpec, Strategy};
use crate::observation::RouteState;
use crate::status::StatusExt;

impl Ladder {
    /// `M`: the weight at which promotion starts.
    pub fn max(&self) -> u32 {
        match self.step_weights.last() {
            Some(last) => (*last).min(100),
            None => self.max_weight,
        }
    }

    /// `s = nextStep(w)`.
    pub fn next_step(&self, w: u32) -> u32 {
        if self.step_weight > 0 || self.step_weights.is_empty() {
            return self.step_weight;
        }
        let room = 100u32.saturating_sub(w);
        if room == 0 {
            return 1;
        }
        if w == 0 {
            return room.min(self.step_weights[0]);
        }
        let last = self.step_weights.len() - 1;
        match self.step_weights[..last].iter().position(|s| *s == w) {
            Some(k) => room.min(self.step_weights[k + 1] - w),
            None => room,
        }
    }
}

impl Mirror {
    /// Mirror percentage at mirror iteration `k` (1-based).
    pub fn percent(&self, k: u32) -> u32 {
        let Some(ramp) = &self.ramp else {
            return if self.weight == 0 { 100 } else { self.weight };
        };
        let base = if self.weight > 0 {
            self.weight
        } else {
            ramp.step
        };
        let raised = base.saturating_add(k.saturating_sub(1).saturating_mul(ramp.step));
        raised.min(ramp.max)
    }

    /// `K`: mirror iterations before the canary strategy's first weight step (1 without a ramp).
    pub fn iterations(&self) -> u32 {
        self.ramp.as_ref().map_or(1, |r| r.iterations)
    }
}

/// The routes the router holds, reconstructed from the status: what dry-run trusts instead of the
/// real router, which a dry-run controller never writes.
pub fn routes_from_status(spec: &RolloutSpec, status: &CanaryStatus) -> RouteState {
    let mirrored = status.mirror() > 0;
    // A failed promotion or a gradual promotion records the routed weight for every strategy.
    let weight = status.weight();
    let canary = match &spec.strategy {
        _ if weight > 0 => weight,
        Strategy::Canary(_) => 0,
        Strategy::AbTesting { .. } => {
            let routed = matches!(
                status.phase_or_new(),
                CanaryPhase::Progressing | CanaryPhase::WaitingPromotion | CanaryPhase::Promoting
            );
            if routed && status.iter() > 0 { 100 } else { 0 }
        }
        Strategy::BlueGreen { iterations } => {
            if spec.routes_traffic && blue_green_on_canary(status.iter(), *iterations) {
                100
            } else {
                0
            }
        }
    }
    .min(100);
    RouteState {
        primary: 100 - canary,
        canary,
        mirrored,
    }
}

/// Blue/Green sends all traffic to the canary on the tick after iteration `n` and counts that tick
/// as iteration `n + 1` (`strategy::blue_green`).
fn blue_green_on_canary(iter: u32, n: u32) -> bool {
    iter > n
}
