//! The apex, `-canary` and `-primary` Services: created and kept as Flagger has them, written only
//! when that would change them; the apex selects the target again when routing is reverted.

use flagger_api::Canary;
use k8s_openapi::api::core::v1::Service;

use super::apply::{apply_body, apply_value, merge_patch};
use super::{TargetError, Workload, Workloads};
use crate::status::FIELD_MANAGER;
use crate::workload::service_target::{self, Copy as ServiceCopy};
use crate::workload::services::{
    ServiceRole, desired_service, discovered_ports, is_taken_over, replacement_patch,
};

impl Workloads {
    /// `<apex>-canary` and `<apex>-primary`.
    pub async fn ensure_services(&self, canary: &Canary) -> Result<(), TargetError> {
        if let Workload::Service(target) = &self.target {
            // The canary copy follows the target; the primary copy changes only at promotion.
            self.apply_service_copy(canary, target, ServiceCopy::Canary)
                .await?;
            if self.primary.is_none() {
                self.apply_service_copy(canary, target, ServiceCopy::Primary)
                    .await?;
            }
            return Ok(());
        }
        for role in [ServiceRole::Canary, ServiceRole::Primary] {
            self.ensure_service(canary, role).await?;
        }
        Ok(())
    }

    pub async fn ensure_apex(&self, canary: &Canary) -> Result<(), TargetError> {
        if let Workload::Service(_) = &self.target {
            // The target Service is the apex: nothing to point at the primary.
            return Ok(());
        }
        self.ensure_service(canary, ServiceRole::Apex).await
    }

    /// A copy of a Service target, applied only when that would change it.
    async fn apply_service_copy(
        &self,
        canary: &Canary,
        target: &Service,
        copy: ServiceCopy,
    ) -> Result<(), TargetError> {
        let desired = service_target::copy_of(canary, target, copy)?;
        let body = apply_body(&desired)?;
        let live: Option<Service> = self
            .cache
            .get(&self.client, &self.namespace, &copy.name(canary))
            .await?;
        if let Some(live) = &live
            && self.cache.unchanged(&body, &serde_json::to_value(live)?)
        {
            return Ok(());
        }
        Ok(apply_value::<Service>(&self.client, &self.cache, &self.namespace, &body).await?)
    }

    /// Applies the Service only when that would change it, so an idle tick writes nothing.
    async fn ensure_service(&self, canary: &Canary, role: ServiceRole) -> Result<(), TargetError> {
        let name = role.name(canary);
        let live: Option<Service> = self.cache.get(&self.client, &self.namespace, &name).await?;
        let containers = self
            .target
            .pod_spec()
            .map(|p| p.containers.as_slice())
            .unwrap_or_default();
        let discovered = discovered_ports(canary, containers);
        let desired = desired_service(canary, role, &self.selector, &discovered, live.as_ref())?;
        let taken_over = is_taken_over(canary, live.as_ref());
        if let Some(live) = &live
            && let Some(patch) = replacement_patch(&desired, live, taken_over)
        {
            merge_patch::<Service>(
                &self.client,
                &self.cache,
                &self.namespace,
                &name,
                Some(FIELD_MANAGER),
                &patch,
            )
            .await?;
        }
        if taken_over {
            // Nothing else of the user's Service is ours to apply.
            return Ok(());
        }
        let body = apply_body(&desired)?;
        if let Some(live) = &live
            && self.cache.unchanged(&body, &serde_json::to_value(live)?)
        {
            return Ok(());
        }
        Ok(apply_value::<Service>(&self.client, &self.cache, &self.namespace, &body).await?)
    }

    /// Deletion with `revertOnDeletion`: the apex Service selects the target's pods again.
    pub async fn revert_apex(&self, canary: &Canary) -> Result<(), TargetError> {
        if let Workload::Service(_) = &self.target {
            return Ok(());
        }
        let name = canary.spec.apex_name();
        let live: Option<Service> = self.cache.get(&self.client, &self.namespace, name).await?;
        if live.is_none() {
            return Ok(());
        }
        let patch = serde_json::json!({"spec": {"selector": {self.selector.key.clone(): self.selector.value.clone()}}});
        Ok(merge_patch::<Service>(
            &self.client,
            &self.cache,
            &self.namespace,
            name,
            None,
            &patch,
        )
        .await?)
    }
}
