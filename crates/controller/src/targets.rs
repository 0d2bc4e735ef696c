//! What a Canary's `targetRef` names, behind one interface for the reconcile loop and the
//! executor: a Deployment or DaemonSet with its primary copy and Services ([`Workloads`]), or a
//! Knative Service whose revisions take those roles ([`KnativeTarget`]), where the workload
//! actions with no Knative counterpart (Services, scaling, autoscalers) do nothing.

use flagger_api::{Canary, CanaryStatus};
use flagger_core::{Observation, RolloutSpec};
use flagger_providers::router;

use crate::context::Context;
use crate::knative_target::KnativeTarget;
use crate::target::{TargetError, Workloads};
use crate::workload::scaling::TargetWrite;

pub enum Target {
    Workloads(Box<Workloads>),
    Knative(KnativeTarget),
}

impl Target {
    pub async fn load(ctx: &Context, canary: &Canary) -> Result<Target, TargetError> {
        if canary.spec.target_ref.is_knative_service() {
            let settings = router::Settings {
                ingress_class: ctx.flags.ingress_class.clone(),
                ingress_annotations_prefix: ctx.flags.ingress_annotations_prefix.clone(),
            };
            return Ok(Target::Knative(
                KnativeTarget::load(ctx.client.clone(), canary, settings).await?,
            ));
        }
        Ok(Target::Workloads(Box::new(
            Workloads::load(ctx, canary).await?,
        )))
    }

    pub async fn observe(
        &self,
        canary: &Canary,
        spec: &RolloutSpec,
    ) -> Result<Observation, TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.observe(canary, spec).await?),
            Target::Knative(k) => Ok(k.observe(canary, spec).await?),
        }
    }

    pub fn adopt_flagger_status(
        &self,
        canary: &Canary,
        status: &CanaryStatus,
        revision: &str,
    ) -> Result<Option<CanaryStatus>, TargetError> {
        match self {
            Target::Workloads(w) => w.adopt_flagger_status(canary, status, revision),
            Target::Knative(_) => Ok(None),
        }
    }

    pub async fn ensure_services(&self, canary: &Canary) -> Result<(), TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.ensure_services(canary).await?),
            Target::Knative(_) => Ok(()),
        }
    }

    pub async fn ensure_apex(&self, canary: &Canary) -> Result<(), TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.ensure_apex(canary).await?),
            Target::Knative(_) => Ok(()),
        }
    }

    pub async fn ensure_primary_scaler(&self, canary: &Canary) -> Result<(), TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.ensure_primary_scaler(canary).await?),
            Target::Knative(_) => Ok(()),
        }
    }

    pub async fn reconcile_primary_scaler(&self, canary: &Canary) -> Result<(), TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.reconcile_primary_scaler(canary).await?),
            Target::Knative(_) => Ok(()),
        }
    }

    pub async fn pause_target_scaler(&self, canary: &Canary) -> Result<(), TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.pause_target_scaler(canary).await?),
            Target::Knative(_) => Ok(()),
        }
    }

    pub async fn resume_target_scaler(&self, canary: &Canary) -> Result<(), TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.resume_target_scaler(canary).await?),
            Target::Knative(_) => Ok(()),
        }
    }

    pub async fn recreate_missing_primary(
        &self,
        canary: &Canary,
        revision: &str,
    ) -> Result<Option<String>, TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.recreate_missing_primary(canary, revision).await?),
            Target::Knative(_) => Ok(None),
        }
    }

    pub async fn ensure_primary(&self, canary: &Canary) -> Result<(), TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.ensure_primary(canary).await?),
            Target::Knative(k) => Ok(k.ensure_primary(canary).await?),
        }
    }

    pub async fn promote(&self, canary: &Canary) -> Result<(), TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.promote(canary).await?),
            Target::Knative(k) => Ok(k.promote(canary).await?),
        }
    }

    pub async fn scale_up(&self, canary: &Canary) -> Result<TargetWrite, TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.scale_up(canary).await?),
            Target::Knative(_) => Ok(TargetWrite::none()),
        }
    }

    pub fn scale_to_zero(&self, canary: &Canary) -> TargetWrite {
        match self {
            Target::Workloads(w) => w.scale_to_zero(canary),
            Target::Knative(_) => TargetWrite::none(),
        }
    }

    pub async fn patch_target(&self, write: &TargetWrite) -> Result<(), TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.patch_target(write).await?),
            Target::Knative(_) => Ok(()),
        }
    }

    pub async fn revert_apex(&self, canary: &Canary) -> Result<(), TargetError> {
        match self {
            Target::Workloads(w) => Ok(w.revert_apex(canary).await?),
            Target::Knative(_) => Ok(()),
        }
    }
}
