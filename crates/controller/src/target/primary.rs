//! The `-primary` workload: created from the target once, rewritten at promotion, recreated when
//! deleted, and compared with the target when taking a canary over from Flagger.

use std::collections::BTreeSet;

use flagger_api::{Canary, CanaryPhase, CanaryStatus};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::apply::apply;
use super::{TargetError, Workload, Workloads};
use crate::workload::primary::{
    PrimaryInputs, PrimaryWrite, primary_daemonset, primary_deployment,
};
use crate::workload::service_target::{self, Copy as ServiceCopy};
use crate::workload::{adoption, revision};

impl Workloads {
    /// The primary workload and its `-primary` configs; created once, left alone afterwards
    /// (promotion rewrites it).
    pub async fn ensure_primary(&self, canary: &Canary) -> Result<(), TargetError> {
        self.apply_configs(canary).await?;
        if self.primary.is_none() {
            self.write_primary(canary, PrimaryWrite::Create).await?;
        }
        self.reconcile_primary_scaler(canary).await
    }

    /// A primary deleted after initialisation is created again from the target, as Flagger does on
    /// every sync: without it the primary Service selects no pod and production is down. Returns the
    /// Warning to record; it says when the target runs a revision that was never promoted, because
    /// then the recreated primary runs code the analysis has not passed.
    pub async fn recreate_missing_primary(
        &self,
        canary: &Canary,
        revision: &str,
    ) -> Result<Option<String>, TargetError> {
        let initialised = canary
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| !matches!(p, CanaryPhase::New | CanaryPhase::Initializing));
        if self.primary.is_some() || !initialised {
            return Ok(None);
        }
        self.ensure_primary(canary).await?;
        let promoted = canary.status.as_ref().and_then(|s| {
            s.last_promoted_spec
                .as_deref()
                .or(s.last_applied_spec.as_deref())
        });
        let unanalysed = promoted.is_some_and(|p| p != revision);
        let primary = canary.spec.primary_workload_name();
        let target = format!(
            "{}/{}",
            canary.spec.target_ref.kind, canary.spec.target_ref.name
        );
        Ok(Some(if unanalysed {
            format!(
                "{primary}.{} was missing; recreated from {target}, whose current revision has not passed analysis",
                self.namespace
            )
        } else {
            format!(
                "{primary}.{} was missing; recreated from {target}",
                self.namespace
            )
        }))
    }

    /// Copies the target's template (and configs) to the primary.
    pub async fn promote(&self, canary: &Canary) -> Result<(), TargetError> {
        self.apply_configs(canary).await?;
        self.write_primary(canary, PrimaryWrite::Promote).await?;
        self.reconcile_primary_scaler(canary).await
    }

    /// The status with revision hashes Flagger wrote replaced by ours, decided from whether the
    /// live primary runs what promoting the current target would give it (see `adoption`);
    /// `None` when the status is ours already or there is nothing to adopt.
    pub fn adopt_flagger_status(
        &self,
        canary: &Canary,
        status: &CanaryStatus,
        revision: &str,
    ) -> Result<Option<CanaryStatus>, TargetError> {
        if !adoption::written_by_flagger(status) {
            return Ok(None);
        }
        let tracked_keys: BTreeSet<String> = self.tracked.keys();
        let inputs = PrimaryInputs {
            canary,
            settings: &self.settings,
            tracked_configs: &tracked_keys,
            flagger_id: "",
            write: PrimaryWrite::Promote,
        };
        let primary_runs_target = match (&self.target, &self.primary) {
            (Workload::Deployment(t), Some(Workload::Deployment(p))) => {
                let computed = primary_deployment(t, &inputs)?;
                same_template(
                    computed.spec.map(|s| s.template),
                    p.spec.as_ref().map(|s| &s.template),
                )
            }
            (Workload::DaemonSet(t), Some(Workload::DaemonSet(p))) => {
                let computed = primary_daemonset(t, &inputs)?;
                same_template(
                    computed.spec.map(|s| s.template),
                    p.spec.as_ref().map(|s| &s.template),
                )
            }
            (Workload::Service(t), Some(Workload::Service(p))) => {
                service_target::primary_matches(t, p)
            }
            _ => false,
        };
        Ok(adoption::adopt(status, revision, primary_runs_target))
    }

    async fn write_primary(&self, canary: &Canary, write: PrimaryWrite) -> Result<(), TargetError> {
        let tracked_keys: BTreeSet<String> = self.tracked.keys();
        let flagger_id = uuid::Uuid::new_v4().to_string();
        let inputs = PrimaryInputs {
            canary,
            settings: &self.settings,
            tracked_configs: &tracked_keys,
            flagger_id: &flagger_id,
            write,
        };
        match &self.target {
            Workload::Deployment(d) => {
                let primary = primary_deployment(d, &inputs)?;
                Ok(apply(&self.client, &self.cache, &self.namespace, &primary).await?)
            }
            Workload::DaemonSet(d) => {
                let primary = primary_daemonset(d, &inputs)?;
                Ok(apply(&self.client, &self.cache, &self.namespace, &primary).await?)
            }
            Workload::Service(s) => {
                let primary = service_target::copy_of(canary, s, ServiceCopy::Primary)?;
                Ok(apply(&self.client, &self.cache, &self.namespace, &primary).await?)
            }
        }
    }
}

fn same_template(computed: Option<PodTemplateSpec>, live: Option<&PodTemplateSpec>) -> bool {
    match (computed, live) {
        (Some(c), Some(l)) => revision::same_primary_template(&c, l),
        _ => false,
    }
}
