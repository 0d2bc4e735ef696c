//! The Canary's own finalizer: held while the canary's routing must be reverted on deletion.

use flagger_api::Canary;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::{TargetError, Workloads};

pub const FINALIZER: &str = "finalizer.flagger.app";

impl Workloads {
    pub async fn add_finalizer(&self, canary: &Canary) -> Result<(), TargetError> {
        let mut finalizers = canary.finalizers().to_vec();
        if finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        finalizers.push(FINALIZER.into());
        self.set_finalizers(canary, finalizers).await
    }

    pub async fn remove_finalizer(&self, canary: &Canary) -> Result<(), TargetError> {
        let finalizers: Vec<String> = canary
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        if finalizers.len() == canary.finalizers().len() {
            return Ok(());
        }
        self.set_finalizers(canary, finalizers).await
    }

    async fn set_finalizers(
        &self,
        canary: &Canary,
        finalizers: Vec<String>,
    ) -> Result<(), TargetError> {
        let api: Api<Canary> = Api::namespaced(self.client.clone(), &self.namespace);
        // The resourceVersion makes this a compare-and-swap against other finalizer owners.
        let patch = serde_json::json!({
            "metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version()}
        });
        api.patch(
            &canary.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
        Ok(())
    }
}
