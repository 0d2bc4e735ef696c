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
    match set(client, canary, finalizers).await {
        // Gone already: a reconcile of an older copy (one that still had the finalizer) came
        // after the one that removed it; nothing is left to remove.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose API server answers every request with 404 Not Found.
    fn gone() -> Client {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            let status = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                "message": "canaries.flagger.app \"podinfo\" not found", "code": 404,
            });
            http::Response::builder()
                .status(404)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(status.to_string().into_bytes()))
        });
        Client::new(service, "test")
    }

    fn canary(finalizers: &[&str]) -> Canary {
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("test".into());
        canary.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        canary
    }

    #[tokio::test]
    async fn removing_the_finalizer_of_a_canary_already_gone_is_done() {
        assert!(remove(&gone(), &canary(&[FINALIZER])).await.is_ok());
        // Adding it to a canary that is gone is still an error: there is nothing to protect.
        assert!(add(&gone(), &canary(&[])).await.is_err());
    }
}
