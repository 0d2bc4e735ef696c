//! Scaling the user's target: up for analysis (with canary pod overrides), to zero after it.

use flagger_api::Canary;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::ResourceExt;

use super::apply::merge_patch;
use super::{TargetError, Workload, Workloads};
use crate::workload::scaling;

impl Workloads {
    /// The change that scales the target up (with canary pod overrides), not yet written: the
    /// caller must persist `pod_overrides` first (see `patch_target`).
    pub async fn scale_up(&self, canary: &Canary) -> Result<scaling::TargetWrite, TargetError> {
        Ok(match &self.target {
            Workload::Deployment(d) => {
                let primary = match &self.primary {
                    Some(Workload::Deployment(p)) => Some(p.as_ref()),
                    _ => None,
                };
                scaling::deployment_scale_up(d, canary, primary, self.autoscaler_min(canary).await?)
            }
            Workload::DaemonSet(d) => scaling::daemonset_scale_up(d, canary),
            Workload::Service(_) => scaling::TargetWrite::none(),
        })
    }

    /// The change that scales the target to zero (and removes canary pod overrides).
    pub fn scale_to_zero(&self, canary: &Canary) -> scaling::TargetWrite {
        match &self.target {
            Workload::Deployment(d) => scaling::deployment_to_zero(d, canary),
            Workload::DaemonSet(d) => scaling::daemonset_to_zero(d, canary),
            Workload::Service(_) => scaling::TargetWrite::none(),
        }
    }

    /// The target is the user's object: a merge patch changes only the fields we mean to change.
    /// When the write changes `status.podOverrides`, the caller must have stored it before: the
    /// target's own values would otherwise be lost if this patch lands and the status write fails.
    pub async fn patch_target(&self, write: &scaling::TargetWrite) -> Result<(), TargetError> {
        if write.is_noop() {
            return Ok(());
        }
        let (client, cache, namespace) = (&self.client, &self.cache, &self.namespace);
        let patch = &write.patch;
        match &self.target {
            Workload::Deployment(d) => {
                merge_patch::<Deployment>(client, cache, namespace, &d.name_any(), None, patch)
                    .await?
            }
            Workload::DaemonSet(d) => {
                merge_patch::<DaemonSet>(client, cache, namespace, &d.name_any(), None, patch)
                    .await?
            }
            // Never scaled: its writes are all no-ops, returned above.
            Workload::Service(_) => {}
        }
        Ok(())
    }
}
