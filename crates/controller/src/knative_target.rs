//! A Knative Service target (`serving.knative.dev/v1` Service with the knative provider): no
//! primary workload and no Services of ours. Knative keeps every revision; initialisation records
//! the latest created one as primary, promotion moves that record to the new one, and the router
//! splits the Service's traffic between the two.

use flagger_api::Canary;
use flagger_core::{Observation, Readiness, RolloutSpec};
use flagger_providers::router::{self, knative::services};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use crate::status::FIELD_MANAGER;
use crate::target::TargetError;
use crate::workload::knative as pure;

pub struct KnativeTarget {
    client: Client,
    namespace: String,
    service: Value,
    router: router::Settings,
}

fn decode(obj: DynamicObject) -> Result<Value, kube::Error> {
    serde_json::to_value(obj).map_err(kube::Error::SerdeError)
}

impl KnativeTarget {
    pub async fn load(
        client: Client,
        canary: &Canary,
        router: router::Settings,
    ) -> Result<KnativeTarget, TargetError> {
        let namespace = canary.namespace().unwrap_or_default();
        let name = &canary.spec.target_ref.name;
        let service = services(&client, canary)
            .get_opt(name)
            .await?
            .ok_or_else(|| TargetError::TargetNotFound {
                kind: "Knative Service".into(),
                name: name.clone(),
                namespace: namespace.clone(),
            })?;
        Ok(KnativeTarget {
            client,
            namespace,
            service: decode(service)?,
            router,
        })
    }

    async fn revision(&self, name: &str) -> Result<Option<Value>, kube::Error> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("serving.knative.dev", "v1", "Revision"),
            "revisions",
        );
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar);
        api.get_opt(name).await?.map(decode).transpose()
    }

    async fn readiness(&self, name: Option<&str>, what: &str) -> Result<Readiness, kube::Error> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Ok(Readiness::Waiting {
                message: format!("Knative Service {} has no {what} yet", self.name()),
                since: None,
            });
        };
        let live = self.revision(name).await?;
        Ok(pure::revision_readiness(
            name,
            &self.namespace,
            live.as_ref(),
        ))
    }

    fn name(&self) -> &str {
        self.service["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
    }

    /// The revision to analyse is the latest one Knative created; its name is its hash.
    pub async fn observe(
        &self,
        canary: &Canary,
        spec: &RolloutSpec,
    ) -> Result<Observation, kube::Error> {
        let latest = pure::latest_created(&self.service);
        let routes = match router::for_provider(&spec.provider, self.client.clone(), &self.router) {
            Ok(r) => r.get_routes(canary).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let primary = self
            .readiness(pure::primary_revision(&self.service), "primary revision")
            .await?;
        let canary_ready = self.readiness(Some(latest), "revision").await?;
        Ok(crate::target::observation(
            canary,
            latest.to_string(),
            Default::default(),
            (primary, canary_ready),
            routes,
        ))
    }

    async fn apply(&self, canary: &Canary, body: &Value) -> Result<(), kube::Error> {
        services(&self.client, canary)
            .patch(
                self.name(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map(|_| ())
    }

    /// Records the latest created revision as primary with all the traffic, once.
    pub async fn ensure_primary(&self, canary: &Canary) -> Result<(), kube::Error> {
        if pure::primary_revision(&self.service).is_some() {
            return Ok(());
        }
        let latest = pure::latest_created(&self.service);
        if latest.is_empty() {
            // Knative has not created a revision yet; the primary stays not ready until it has.
            return Ok(());
        }
        self.apply(canary, &pure::initialise(canary, latest)).await
    }

    pub async fn promote(&self, canary: &Canary) -> Result<(), kube::Error> {
        let latest = pure::latest_created(&self.service);
        let live_traffic = &self.service["spec"]["traffic"];
        self.apply(canary, &pure::promote(canary, latest, live_traffic))
            .await
    }
}
