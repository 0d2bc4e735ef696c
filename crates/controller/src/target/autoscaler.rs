//! `<hpa>-primary`: the target's HorizontalPodAutoscaler (`autoscalerRef`) copied to target the
//! primary.

use flagger_api::Canary;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

use super::apply::apply;
use super::{TargetError, Workloads};
use crate::workload::hpa;

impl Workloads {
    /// The target's HPA named by `autoscalerRef`, from the watch cache; `None` without an HPA ref.
    async fn source_scaler(
        &self,
        canary: &Canary,
    ) -> Result<Option<(String, Option<HorizontalPodAutoscaler>)>, TargetError> {
        let Some(scaler) = canary
            .spec
            .autoscaler_ref
            .as_ref()
            .filter(|r| r.kind == "HorizontalPodAutoscaler")
        else {
            return Ok(None);
        };
        let source = self
            .cache
            .get(&self.client, &self.namespace, &scaler.name)
            .await?;
        Ok(Some((scaler.name.clone(), source)))
    }

    /// `<hpa>-primary` targeting the primary, when the canary has an HPA `autoscalerRef`.
    pub async fn reconcile_primary_scaler(&self, canary: &Canary) -> Result<(), TargetError> {
        let Some((name, source)) = self.source_scaler(canary).await? else {
            return Ok(());
        };
        let Some(source) = source else {
            return Err(TargetError::AutoscalerNotFound {
                name,
                namespace: self.namespace.clone(),
            });
        };
        let primary = hpa::primary_hpa(&source, canary, &self.settings)?;
        Ok(apply(&self.client, &self.cache, &self.namespace, &primary).await?)
    }

    /// Recreates a missing `<hpa>-primary` once the primary exists, as Flagger does on every sync;
    /// edits of the target's HPA still reach the primary's only at promotion. A missing target HPA
    /// is left to initialisation and promotion, which report it.
    pub async fn ensure_primary_scaler(&self, canary: &Canary) -> Result<(), TargetError> {
        if self.primary.is_none() {
            return Ok(());
        }
        let Some((_, Some(source))) = self.source_scaler(canary).await? else {
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

    pub(super) async fn autoscaler_min(&self, canary: &Canary) -> Result<Option<i32>, TargetError> {
        Ok(self
            .source_scaler(canary)
            .await?
            .and_then(|(_, source)| source?.spec?.min_replicas))
    }
}
