//! The canary Ingress `<ingressRef>-canary` that the Ingress-annotation routers (nginx, skipper) derive
//! from the user's Ingress: where it lives, how it is read and written, which of the user's
//! annotations it inherits.

use std::collections::BTreeMap;

use flagger_api::Canary;
use k8s_openapi::api::networking::v1::{Ingress, IngressSpec};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::{
    FIELD_MANAGER, FLUX_ANNOTATIONS, RouterError, api_error, namespace, owner_reference,
    without_flux,
};

const KUBECTL_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `spec.ingressRef.name`, required by every Ingress router.
pub(super) fn ingress_ref<'a>(canary: &'a Canary, provider: &str) -> Result<&'a str, RouterError> {
    canary
        .spec
        .ingress_ref
        .as_ref()
        .map(|r| r.name.as_str())
        .ok_or_else(|| RouterError::Invalid(format!("spec.ingressRef is required for {provider}")))
}

pub(super) fn name(canary: &Canary, provider: &str) -> Result<String, RouterError> {
    Ok(format!("{}-canary", ingress_ref(canary, provider)?))
}

/// The user's annotations the canary Ingress keeps (neither Flux keys, nor kubectl's copy of the
/// user's object, nor those `routing_key` says the router owns), then the router's own and the
/// Flux annotations.
pub(super) fn annotations(
    source: &Ingress,
    routing_key: impl Fn(&str) -> bool,
    routing: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = without_flux(source.metadata.annotations.as_ref())
        .into_iter()
        .filter(|(k, _)| !routing_key(k) && k != KUBECTL_LAST_APPLIED)
        .collect();
    out.extend(routing.clone());
    for (k, v) in FLUX_ANNOTATIONS {
        out.insert(k.to_string(), v.to_string());
    }
    out
}

/// The canary Ingress: the user's labels, the given annotations and spec, owned by the Canary.
pub(super) fn object(
    canary: &Canary,
    provider: &str,
    source: &Ingress,
    annotations: BTreeMap<String, String>,
    spec: &IngressSpec,
) -> Result<Value, RouterError> {
    Ok(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name(canary, provider)?,
            "namespace": namespace(canary),
            "labels": without_flux(source.metadata.labels.as_ref()),
            "annotations": annotations,
            "ownerReferences": [owner_reference(canary)?],
        },
        "spec": spec,
    }))
}

/// Reads and writes the user's Ingress and its canary copy in the canary's namespace.
pub(super) struct Ingresses<'a> {
    api: Api<Ingress>,
    canary: &'a Canary,
    provider: &'static str,
}

impl<'a> Ingresses<'a> {
    pub(super) fn new(client: &Client, canary: &'a Canary, provider: &'static str) -> Self {
        Ingresses {
            api: Api::namespaced(client.clone(), &namespace(canary)),
            canary,
            provider,
        }
    }

    pub(super) async fn source(&self) -> Result<Ingress, RouterError> {
        let name = ingress_ref(self.canary, self.provider)?;
        self.api
            .get(name)
            .await
            .map_err(|e| api_error(&format!("reading ingress {name}"), e))
    }

    pub(super) async fn live(&self) -> Result<Option<Ingress>, RouterError> {
        let name = name(self.canary, self.provider)?;
        self.api
            .get_opt(&name)
            .await
            .map_err(|e| api_error(&format!("reading ingress {name}"), e))
    }

    /// The canary Ingress, or an error naming it when it does not exist.
    pub(super) async fn require_live(&self) -> Result<Ingress, RouterError> {
        let name = name(self.canary, self.provider)?;
        self.live()
            .await?
            .ok_or_else(|| RouterError::Api(format!("ingress {name} not found")))
    }

    pub(super) async fn apply(&self, body: &Value) -> Result<(), RouterError> {
        let name = name(self.canary, self.provider)?;
        self.api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map(|_| ())
            .map_err(|e| api_error(&format!("applying ingress {name}"), e))
    }

    /// Deletes the canary Ingress; one already gone is fine.
    pub(super) async fn delete(&self) -> Result<(), RouterError> {
        let name = name(self.canary, self.provider)?;
        match self.api.delete(&name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(api_error(&format!("deleting ingress {name}"), e)),
        }
    }
}
