//! The target's autoscaler (`autoscalerRef`) copied to scale the primary: `<hpa>-primary` for a
//! HorizontalPodAutoscaler, `<so>-primary` for a KEDA ScaledObject (see `scaled_object`), and the
//! target's ScaledObject paused while the canary is at zero.

use flagger_api::Canary;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

use super::apply::apply;
use super::{TargetError, Workloads};
use crate::workload::{hpa, scaled_object};

/// What `autoscalerRef` names; `None` without one (validation refuses other kinds).
enum Scaler<'a> {
    Hpa(&'a str),
    ScaledObject(&'a str),
}

fn scaler(canary: &Canary) -> Option<Scaler<'_>> {
    let r = canary.spec.autoscaler_ref.as_ref()?;
    match r.kind.as_str() {
        "HorizontalPodAutoscaler" => Some(Scaler::Hpa(&r.name)),
        scaled_object::KIND => Some(Scaler::ScaledObject(&r.name)),
        _ => None,
    }
}

impl Workloads {
    /// The target's HPA from the watch cache.
    async fn source_hpa(&self, name: &str) -> Result<Option<HorizontalPodAutoscaler>, TargetError> {
        Ok(self.cache.get(&self.client, &self.namespace, name).await?)
    }

    /// The `-primary` autoscaler targeting the primary, written from the target's as it is now.
    pub async fn reconcile_primary_scaler(&self, canary: &Canary) -> Result<(), TargetError> {
        match scaler(canary) {
            None => Ok(()),
            Some(Scaler::ScaledObject(name)) => {
                self.apply_primary_scaled_object(canary, name).await
            }
            Some(Scaler::Hpa(name)) => {
                let source = self.source_hpa(name).await?.ok_or_else(|| {
                    TargetError::AutoscalerNotFound {
                        kind: "HorizontalPodAutoscaler".into(),
                        name: name.to_string(),
                        namespace: self.namespace.clone(),
                    }
                })?;
                let primary = hpa::primary_hpa(&source, canary, &self.settings)?;
                Ok(apply(&self.client, &self.cache, &self.namespace, &primary).await?)
            }
        }
    }

    /// Recreates a missing `-primary` autoscaler once the primary exists, as Flagger does on every
    /// sync; edits of the target's autoscaler still reach the primary's only at promotion. A
    /// missing target autoscaler is left to initialisation and promotion, which report it.
    pub async fn ensure_primary_scaler(&self, canary: &Canary) -> Result<(), TargetError> {
        if self.primary.is_none() {
            return Ok(());
        }
        match scaler(canary) {
            None => Ok(()),
            Some(Scaler::ScaledObject(name)) => {
                self.ensure_primary_scaled_object(canary, name).await
            }
            Some(Scaler::Hpa(name)) => {
                let Some(source) = self.source_hpa(name).await? else {
                    return Ok(());
                };
                let existing: Option<HorizontalPodAutoscaler> = self
                    .cache
                    .get(&self.client, &self.namespace, &hpa::primary_name(&source))
                    .await?;
                if existing.is_some() {
                    return Ok(());
                }
                self.reconcile_primary_scaler(canary).await
            }
        }
    }

    /// KEDA would scale a canary at zero straight back up: its ScaledObject is paused while the
    /// canary is down. An HPA leaves a Deployment at zero replicas alone, so needs nothing.
    pub async fn pause_target_scaler(&self, canary: &Canary) -> Result<(), TargetError> {
        match scaler(canary) {
            Some(Scaler::ScaledObject(name)) => self.pause_scaled_object(name, true).await,
            _ => Ok(()),
        }
    }

    /// Hands the canary back to KEDA for the analysis (and on deletion).
    pub async fn resume_target_scaler(&self, canary: &Canary) -> Result<(), TargetError> {
        match scaler(canary) {
            Some(Scaler::ScaledObject(name)) => self.pause_scaled_object(name, false).await,
            _ => Ok(()),
        }
    }

    /// The autoscaler's minimum: HPA `minReplicas`, ScaledObject `minReplicaCount`.
    pub(super) async fn autoscaler_min(&self, canary: &Canary) -> Result<Option<i32>, TargetError> {
        Ok(match scaler(canary) {
            None => None,
            Some(Scaler::Hpa(name)) => self
                .source_hpa(name)
                .await?
                .and_then(|h| h.spec?.min_replicas),
            Some(Scaler::ScaledObject(name)) => self
                .source_scaled_object(name)
                .await?
                .and_then(|so| so.spec.min_replica_count),
        })
    }
}
