//! The KEDA side of `autoscalerRef`: `<so>-primary` written from the target's ScaledObject, and
//! the target's ScaledObject paused while the canary is at zero. ScaledObjects are not watched
//! (the KEDA CRD may not be installed): they are read with a GET when an action needs them.

use flagger_api::Canary;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::apply::apply_body;
use super::{TargetError, Workloads};
use crate::status::FIELD_MANAGER;
use crate::workload::scaled_object::{
    self, KIND, ScaledObject, pause_patch, primary_scaled_object,
};

impl Workloads {
    fn scaled_objects(&self) -> Api<ScaledObject> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The target's ScaledObject named by `autoscalerRef`; `None` when it does not exist.
    pub(super) async fn source_scaled_object(
        &self,
        name: &str,
    ) -> Result<Option<ScaledObject>, TargetError> {
        Ok(self.scaled_objects().get_opt(name).await?)
    }

    fn scaled_object_missing(&self, name: &str) -> TargetError {
        TargetError::AutoscalerNotFound {
            kind: KIND.to_string(),
            name: name.to_string(),
            namespace: self.namespace.clone(),
        }
    }

    /// Server-side applies `<so>-primary` from the target's ScaledObject as it is now.
    pub(super) async fn apply_primary_scaled_object(
        &self,
        canary: &Canary,
        name: &str,
    ) -> Result<(), TargetError> {
        let source = self
            .source_scaled_object(name)
            .await?
            .ok_or_else(|| self.scaled_object_missing(name))?;
        let primary = primary_scaled_object(&source, canary, &self.settings)?;
        let body = apply_body(&primary)?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.scaled_objects()
            .patch(
                &scaled_object::primary_name(name),
                &params,
                &Patch::Apply(&body),
            )
            .await?;
        Ok(())
    }

    /// Recreates a missing `<so>-primary`; an existing one changes only at promotion. A missing
    /// target ScaledObject is left to initialisation and promotion, which report it.
    pub(super) async fn ensure_primary_scaled_object(
        &self,
        canary: &Canary,
        name: &str,
    ) -> Result<(), TargetError> {
        let existing = self
            .scaled_objects()
            .get_opt(&scaled_object::primary_name(name))
            .await?;
        if existing.is_some() || self.source_scaled_object(name).await?.is_none() {
            return Ok(());
        }
        self.apply_primary_scaled_object(canary, name).await
    }

    /// Pauses (`true`) or resumes the target's ScaledObject; no write when it is so already. A
    /// ScaledObject gone by the time it would be resumed needs nothing.
    pub(super) async fn pause_scaled_object(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<(), TargetError> {
        let Some(source) = self.source_scaled_object(name).await? else {
            return if paused {
                Err(self.scaled_object_missing(name))
            } else {
                Ok(())
            };
        };
        let Some(patch) = pause_patch(&source, paused) else {
            return Ok(());
        };
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        self.scaled_objects()
            .patch(name, &params, &Patch::Merge(patch))
            .await?;
        Ok(())
    }
}
