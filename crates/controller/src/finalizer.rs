//! The Canary's own finalizer, whatever its target: it keeps the Canary until the deletion has
//! reverted what `revertOnDeletion` asks for.

use flagger_api::Canary;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

pub const FINALIZER: &str = "finalizer.flagger.app";

pub async fn add(client: &Client, canary: &Canary) -> Result<(), kube::Error> {
    let mut finalizers = canary.finalizers().to_vec();
    if finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    finalizers.push(FINALIZER.into());
    set(client, canary, finalizers).await
}

pub async fn remove(client: &Client, canary: &Canary) -> Result<(), kube::Error> {
    let finalizers: Vec<String> = canary
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if finalizers.len() == canary.finalizers().len() {
        return Ok(());
    }
    set(client, canary, finalizers).await
}

async fn set(client: &Client, canary: &Canary, finalizers: Vec<String>) -> Result<(), kube::Error> {
    let api: Api<Canary> = Api::namespaced(client.clone(), &canary.namespace().unwrap_or_default());
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
