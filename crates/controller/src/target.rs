//! The canary's workloads as the cluster has them: the target Deployment or DaemonSet, its
//! `-primary` copy, tracked configs and Services. Reads build the observation; writes apply what
//! the pure `workload` module computes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use flagger_api::{Canary, CanaryPhase, CanaryStatus};
use flagger_core::{Observation, Readiness, RolloutSpec};
use flagger_providers::router;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, PodTemplateSpec, Secret, Service};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cache::{Cache, Cached};
use crate::context::Context;
use crate::status::FIELD_MANAGER;
use crate::workload::configs::{self, TrackedConfigs};
use crate::workload::primary::{
    PrimaryInputs, PrimaryWrite, primary_daemonset, primary_deployment,
};
use crate::workload::selector::{self, SelectorLabel};
use crate::workload::services::{
    ServiceRole, desired_service, discovered_ports, is_taken_over, replacement_patch,
};
use crate::workload::{Settings, WorkloadError, adoption, hpa, readiness, revision, scaling};

pub use crate::finalizer::FINALIZER;
pub(crate) const SKIP_ANALYSIS: &str = "flagger.app/skip-analysis";
pub(crate) const RESET: &str = "flagger.app/reset";

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl From<WorkloadError> for TargetError {
    fn from(e: WorkloadError) -> Self {
        TargetError::Invalid(e.to_string())
    }
}

#[derive(Clone)]
enum Workload {
    Deployment(Box<Deployment>),
    DaemonSet(Box<DaemonSet>),
}

impl Workload {
    fn pod_spec(&self) -> Option<&PodSpec> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref()?.template.spec.as_ref(),
            Workload::DaemonSet(d) => d.spec.as_ref()?.template.spec.as_ref(),
        }
    }
}

pub struct Workloads {
    client: Client,
    cache: Arc<Cache>,
    namespace: String,
    settings: Settings,
    target: Workload,
    primary: Option<Workload>,
    selector: SelectorLabel,
    tracked: TrackedConfigs,
    router: router::Settings,
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The server-side apply body of a desired object we generate.
fn apply_body<K>(object: &K) -> Result<Value, kube::Error>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let mut body = serde_json::to_value(object).map_err(kube::Error::SerdeError)?;
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), K::api_version(&()).into());
        map.insert("kind".into(), K::kind(&()).into());
        // Status is the owning controller's business, never part of our intent.
        map.remove("status");
    }
    Ok(body)
}

/// Server-side apply of a desired object we generate.
async fn apply<K>(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    object: &K,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    apply_value::<K>(client, cache, namespace, &apply_body(object)?).await
}

async fn apply_value<K>(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    body: &Value,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    let applied = api
        .patch(name, &apply_params(), &Patch::Apply(body))
        .await?;
    cache.wrote(&applied);
    cache.applied(body);
    Ok(())
}

impl Workloads {
    pub async fn load(ctx: &Context, canary: &Canary) -> Result<Workloads, TargetError> {
        let namespace = canary.namespace().unwrap_or_default();
        let client = ctx.client.clone();
        let cache = ctx.cache.clone();
        let target_ref = &canary.spec.target_ref;
        let labels = &ctx.workloads.selector_labels;
        let missing = || {
            TargetError::NotFound(format!(
                "{} {}.{namespace} not found",
                target_ref.kind, target_ref.name
            ))
        };
        let (target, primary, selector) = match target_ref.kind.as_str() {
            "Deployment" => {
                let target = cache
                    .get::<Deployment>(&client, &namespace, &target_ref.name)
                    .await?
                    .ok_or_else(missing)?;
                let primary = cache
                    .get::<Deployment>(&client, &namespace, &canary.spec.primary_workload_name())
                    .await?;
                let selector = selector::of_deployment(&target, labels)?;
                (
                    Workload::Deployment(Box::new(target)),
                    primary.map(|p| Workload::Deployment(Box::new(p))),
                    selector,
                )
            }
            "DaemonSet" => {
                let target = cache
                    .get::<DaemonSet>(&client, &namespace, &target_ref.name)
                    .await?
                    .ok_or_else(missing)?;
                let primary = cache
                    .get::<DaemonSet>(&client, &namespace, &canary.spec.primary_workload_name())
                    .await?;
                let selector = selector::of_daemonset(&target, labels)?;
                (
                    Workload::DaemonSet(Box::new(target)),
                    primary.map(|p| Workload::DaemonSet(Box::new(p))),
                    selector,
                )
            }
            other => {
                return Err(TargetError::Invalid(format!(
                    "targetRef.kind {other} has no workload support in flagger-rs (Deployment and DaemonSet do; validation refuses the rest)"
                )));
            }
        };
        let tracked = if ctx.flags.enable_config_tracking {
            tracked_configs(&client, &cache, &namespace, canary, target.pod_spec()).await?
        } else {
            TrackedConfigs::default()
        };
        Ok(Workloads {
            client,
            cache,
            namespace,
            settings: ctx.workloads.clone(),
            router: router::Settings {
                ingress_class: ctx.flags.ingress_class.clone(),
                ingress_annotations_prefix: ctx.flags.ingress_annotations_prefix.clone(),
            },
            target,
            primary,
            selector,
            tracked,
        })
    }

    pub async fn observe(
        &self,
        canary: &Canary,
        spec: &RolloutSpec,
    ) -> Result<Observation, kube::Error> {
        let pod_overrides = canary
            .status
            .as_ref()
            .and_then(|s| s.pod_overrides.as_ref());
        let (revision, canary_ready) = match &self.target {
            Workload::Deployment(d) => (
                revision::of_deployment(d, pod_overrides),
                readiness::canary_deployment(d, canary),
            ),
            Workload::DaemonSet(d) => (
                revision::of_daemonset(d, pod_overrides),
                readiness::canary_daemonset(d, canary),
            ),
        };
        let primary_ready = match &self.primary {
            Some(Workload::Deployment(d)) => readiness::primary_deployment(d, canary),
            Some(Workload::DaemonSet(d)) => readiness::primary_daemonset(d, canary),
            None => Readiness::Waiting {
                message: format!(
                    "{}.{} not ready: primary not created yet",
                    canary.spec.primary_workload_name(),
                    self.namespace
                ),
                since: None,
            },
        };
        let annotations = canary.annotations();
        let reset_token = annotations.get(RESET).cloned();
        let configs = self.tracked.checksums();
        let routes = if idle_and_unchanged(canary, &revision, &configs, reset_token.as_ref()) {
            // The core ends such a tick before it looks at routes; reading the routing object
            // (a GET for every provider but kubernetes) would be a request per idle tick. An
            // error, not a guess, in case it ever did look.
            Err("routes not read: idle canary with nothing new".to_string())
        } else {
            match router::for_provider(&spec.provider, self.client.clone(), &self.router) {
                Ok(r) => r.get_routes(canary).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        Ok(Observation {
            revision,
            configs,
            primary: primary_ready,
            canary: canary_ready,
            routes,
            skip_analysis_annotation: annotations.get(SKIP_ANALYSIS).is_some_and(|v| v == "true"),
            reset_token,
            deleting: canary.metadata.deletion_timestamp.is_some(),
            has_finalizer: canary.finalizers().iter().any(|f| f == FINALIZER),
            webhooks: Vec::new(),
            metrics: Vec::new(),
            fresh_cookies: crate::cookies::fresh(),
        })
    }

    /// `<apex>-canary` and `<apex>-primary`.
    pub async fn ensure_services(&self, canary: &Canary) -> Result<(), kube::Error> {
        for role in [ServiceRole::Canary, ServiceRole::Primary] {
            self.ensure_service(canary, role).await?;
        }
        Ok(())
    }

    pub async fn ensure_apex(&self, canary: &Canary) -> Result<(), kube::Error> {
        self.ensure_service(canary, ServiceRole::Apex).await
    }

    /// Applies the Service only when that would change it, so an idle tick writes nothing.
    async fn ensure_service(&self, canary: &Canary, role: ServiceRole) -> Result<(), kube::Error> {
        let live: Option<Service> = self
            .cache
            .get(&self.client, &self.namespace, &role.name(canary))
            .await?;
        let containers = self
            .target
            .pod_spec()
            .map(|p| p.containers.as_slice())
            .unwrap_or_default();
        let discovered = discovered_ports(canary, containers);
        let desired = desired_service(canary, role, &self.selector, &discovered, live.as_ref())
            .map_err(invalid)?;
        let taken_over = is_taken_over(canary, live.as_ref());
        if let Some(live) = &live
            && let Some(patch) = replacement_patch(&desired, live, taken_over)
        {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
            let patched = api
                .patch(
                    &role.name(canary),
                    &PatchParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..PatchParams::default()
                    },
                    &Patch::Merge(patch),
                )
                .await?;
            self.cache.wrote(&patched);
        }
        if taken_over {
            // Nothing else of the user's Service is ours to apply.
            return Ok(());
        }
        let body = apply_body(&desired)?;
        if let Some(live) = &live {
            let live = serde_json::to_value(live).map_err(kube::Error::SerdeError)?;
            if self.cache.unchanged(&body, &live) {
                return Ok(());
            }
        }
        apply_value::<Service>(&self.client, &self.cache, &self.namespace, &body).await
    }

    /// The primary workload and its `-primary` configs; created once, left alone afterwards
    /// (promotion rewrites it).
    pub async fn ensure_primary(&self, canary: &Canary) -> Result<(), kube::Error> {
        self.apply_configs(canary).await?;
        if self.primary.is_none() {
            self.write_primary(canary, PrimaryWrite::Create).await?;
        }
        self.reconcile_primary_scaler(canary).await
    }

    /// A primary deleted after initialisation is created again from the target, as Flagger does on
    /// every sync: without it the primary Service selects no pod and production is down. Returns the
    /// Warning to record; it says when the target runs a revision that was never promoted, because
    /// then the recreated primary runs code the analysis has not passed.
    pub async fn recreate_missing_primary(
        &self,
        canary: &Canary,
        revision: &str,
    ) -> Result<Option<String>, kube::Error> {
        let initialised = canary
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| !matches!(p, CanaryPhase::New | CanaryPhase::Initializing));
        if self.primary.is_some() || !initialised {
            return Ok(None);
        }
        self.ensure_primary(canary).await?;
        let promoted = canary.status.as_ref().and_then(|s| {
            s.last_promoted_spec
                .as_deref()
                .or(s.last_applied_spec.as_deref())
        });
        let unanalysed = promoted.is_some_and(|p| p != revision);
        let primary = canary.spec.primary_workload_name();
        let target = format!(
            "{}/{}",
            canary.spec.target_ref.kind, canary.spec.target_ref.name
        );
        Ok(Some(if unanalysed {
            format!(
                "{primary}.{} was missing; recreated from {target}, whose current revision has not passed analysis",
                self.namespace
            )
        } else {
            format!(
                "{primary}.{} was missing; recreated from {target}",
                self.namespace
            )
        }))
    }

    /// Copies the target's template (and configs) to the primary.
    pub async fn promote(&self, canary: &Canary) -> Result<(), kube::Error> {
        self.apply_configs(canary).await?;
        self.write_primary(canary, PrimaryWrite::Promote).await?;
        self.reconcile_primary_scaler(canary).await
    }

    /// The status with revision hashes Flagger wrote replaced by ours, decided from whether the
    /// live primary runs what promoting the current target would give it (see `adoption`);
    /// `None` when the status is ours already or there is nothing to adopt.
    pub fn adopt_flagger_status(
        &self,
        canary: &Canary,
        status: &CanaryStatus,
        revision: &str,
    ) -> Result<Option<CanaryStatus>, kube::Error> {
        if !adoption::written_by_flagger(status) {
            return Ok(None);
        }
        let tracked_keys: BTreeSet<String> = self.tracked.keys();
        let inputs = PrimaryInputs {
            canary,
            settings: &self.settings,
            tracked_configs: &tracked_keys,
            flagger_id: "",
            write: PrimaryWrite::Promote,
        };
        let primary_runs_target = match (&self.target, &self.primary) {
            (Workload::Deployment(t), Some(Workload::Deployment(p))) => {
                let computed = primary_deployment(t, &inputs).map_err(invalid)?;
                same_template(
                    computed.spec.map(|s| s.template),
                    p.spec.as_ref().map(|s| &s.template),
                )
            }
            (Workload::DaemonSet(t), Some(Workload::DaemonSet(p))) => {
                let computed = primary_daemonset(t, &inputs).map_err(invalid)?;
                same_template(
                    computed.spec.map(|s| s.template),
                    p.spec.as_ref().map(|s| &s.template),
                )
            }
            _ => false,
        };
        Ok(adoption::adopt(status, revision, primary_runs_target))
    }

    async fn write_primary(&self, canary: &Canary, write: PrimaryWrite) -> Result<(), kube::Error> {
        let tracked_keys: BTreeSet<String> = self.tracked.keys();
        let flagger_id = uuid::Uuid::new_v4().to_string();
        let inputs = PrimaryInputs {
            canary,
            settings: &self.settings,
            tracked_configs: &tracked_keys,
            flagger_id: &flagger_id,
            write,
        };
        match &self.target {
            Workload::Deployment(d) => {
                let primary = primary_deployment(d, &inputs).map_err(invalid)?;
                apply(&self.client, &self.cache, &self.namespace, &primary).await
            }
            Workload::DaemonSet(d) => {
                let primary = primary_daemonset(d, &inputs).map_err(invalid)?;
                apply(&self.client, &self.cache, &self.namespace, &primary).await
            }
        }
    }

    async fn apply_configs(&self, canary: &Canary) -> Result<(), kube::Error> {
        if self.tracked.is_empty() {
            return Ok(());
        }
        fn copies<'a>(names: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
            names.map(|n| format!("{n}-primary")).collect()
        }
        let live_cms: BTreeMap<String, ConfigMap> = get_named(
            &self.client,
            &self.cache,
            &self.namespace,
            copies(self.tracked.configmaps.keys()),
        )
        .await?;
        let live_secrets: BTreeMap<String, Secret> = get_named(
            &self.client,
            &self.cache,
            &self.namespace,
            copies(self.tracked.secrets.keys()),
        )
        .await?;
        let (cms, secs) = self
            .tracked
            .primary_copies(
                canary,
                &self.settings,
                |n| live_cms.get(n),
                |n| live_secrets.get(n),
            )
            .map_err(invalid)?;
        for cm in &cms {
            apply(&self.client, &self.cache, &self.namespace, cm).await?;
        }
        for s in &secs {
            apply(&self.client, &self.cache, &self.namespace, s).await?;
        }
        Ok(())
    }

    /// The target's HPA named by `autoscalerRef`, from the watch cache; `None` without an HPA ref.
    async fn source_scaler(
        &self,
        canary: &Canary,
    ) -> Result<Option<(String, Option<HorizontalPodAutoscaler>)>, kube::Error> {
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
    pub async fn reconcile_primary_scaler(&self, canary: &Canary) -> Result<(), kube::Error> {
        let Some((name, source)) = self.source_scaler(canary).await? else {
            return Ok(());
        };
        let Some(source) = source else {
            return Err(invalid(format!(
                "HorizontalPodAutoscaler {name}.{} not found",
                self.namespace
            )));
        };
        let primary = hpa::primary_hpa(&source, canary, &self.settings).map_err(invalid)?;
        apply(&self.client, &self.cache, &self.namespace, &primary).await
    }

    /// Recreates a missing `<hpa>-primary` once the primary exists, as Flagger does on every sync;
    /// edits of the target's HPA still reach the primary's only at promotion. A missing target HPA
    /// is left to initialisation and promotion, which report it.
    pub async fn ensure_primary_scaler(&self, canary: &Canary) -> Result<(), kube::Error> {
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

    /// The change that scales the target up (with canary pod overrides), not yet written: the
    /// caller must persist `pod_overrides` first (see `patch_target`).
    pub async fn scale_up(&self, canary: &Canary) -> Result<scaling::TargetWrite, kube::Error> {
        Ok(match &self.target {
            Workload::Deployment(d) => {
                let primary = match &self.primary {
                    Some(Workload::Deployment(p)) => Some(p.as_ref()),
                    _ => None,
                };
                scaling::deployment_scale_up(d, canary, primary, self.autoscaler_min(canary).await?)
            }
            Workload::DaemonSet(d) => scaling::daemonset_scale_up(d, canary),
        })
    }

    /// The change that scales the target to zero (and removes canary pod overrides).
    pub fn scale_to_zero(&self, canary: &Canary) -> scaling::TargetWrite {
        match &self.target {
            Workload::Deployment(d) => scaling::deployment_to_zero(d, canary),
            Workload::DaemonSet(d) => scaling::daemonset_to_zero(d, canary),
        }
    }

    /// Deletion with `revertOnDeletion`: the apex Service selects the target's pods again.
    pub async fn revert_apex(&self, canary: &Canary) -> Result<(), kube::Error> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = canary.spec.apex_name();
        let live: Option<Service> = self.cache.get(&self.client, &self.namespace, name).await?;
        if live.is_none() {
            return Ok(());
        }
        let patch = serde_json::json!({"spec": {"selector": {self.selector.key.clone(): self.selector.value.clone()}}});
        let patched = api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        self.cache.wrote(&patched);
        Ok(())
    }

    async fn autoscaler_min(&self, canary: &Canary) -> Result<Option<i32>, kube::Error> {
        Ok(self
            .source_scaler(canary)
            .await?
            .and_then(|(_, source)| source?.spec?.min_replicas))
    }

    /// The target is the user's object: a merge patch changes only the fields we mean to change.
    /// When the write changes `status.podOverrides`, the caller must have stored it before: the
    /// target's own values would otherwise be lost if this patch lands and the status write fails.
    pub async fn patch_target(&self, write: &scaling::TargetWrite) -> Result<(), kube::Error> {
        if write.is_noop() {
            return Ok(());
        }
        let name = match &self.target {
            Workload::Deployment(d) => d.name_any(),
            Workload::DaemonSet(d) => d.name_any(),
        };
        let params = PatchParams::default();
        match &self.target {
            Workload::Deployment(_) => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
                let patched = api
                    .patch(&name, &params, &Patch::Merge(&write.patch))
                    .await?;
                self.cache.wrote(&patched);
            }
            Workload::DaemonSet(_) => {
                let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &self.namespace);
                let patched = api
                    .patch(&name, &params, &Patch::Merge(&write.patch))
                    .await?;
                self.cache.wrote(&patched);
            }
        }
        Ok(())
    }
}

fn same_template(computed: Option<PodTemplateSpec>, live: Option<&PodTemplateSpec>) -> bool {
    match (computed, live) {
        (Some(c), Some(l)) => revision::same_primary_template(&c, l),
        _ => false,
    }
}

/// An Initialized, Succeeded or Failed canary whose revision, configs and reset token are the
/// ones its status already records: a conservative reading of the core's "nothing new" test
/// under which a tick ends before routes are consulted.
fn idle_and_unchanged(
    canary: &Canary,
    revision: &str,
    configs: &BTreeMap<String, String>,
    reset_token: Option<&String>,
) -> bool {
    let Some(status) = canary.status.as_ref() else {
        return false;
    };
    let idle = matches!(
        status.phase.unwrap_or_default(),
        CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed
    );
    idle && canary.metadata.deletion_timestamp.is_none()
        && !revision.is_empty()
        && records_revision(status, revision, configs)
        && (reset_token.is_none() || reset_token == status.last_handled_reset.as_ref())
}

/// Whether the status already records this revision of the target and these tracked configs: no
/// new revision to run (an absent `trackedConfigs` records none).
pub fn records_revision(
    status: &CanaryStatus,
    revision: &str,
    configs: &BTreeMap<String, String>,
) -> bool {
    status.last_applied_spec.as_deref() == Some(revision)
        && status
            .tracked_configs
            .as_ref()
            .map_or(configs.is_empty(), |t| t == configs)
}

/// The ConfigMaps and Secrets the pod template references, with tracking opt-outs applied.
async fn tracked_configs(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    canary: &Canary,
    pod: Option<&PodSpec>,
) -> Result<TrackedConfigs, TargetError> {
    let Some(pod) = pod else {
        return Ok(TrackedConfigs::default());
    };
    let refs = configs::referenced(pod);
    if refs.is_empty() {
        return Ok(TrackedConfigs::default());
    }
    let wanted = |kind| {
        refs.iter()
            .filter(move |r| r.kind == kind)
            .map(|r| r.name.clone())
            .collect::<BTreeSet<_>>()
    };
    let configmaps: BTreeMap<String, ConfigMap> = get_named(
        client,
        cache,
        namespace,
        wanted(configs::ConfigKind::ConfigMap),
    )
    .await?;
    let secrets: BTreeMap<String, Secret> = get_named(
        client,
        cache,
        namespace,
        wanted(configs::ConfigKind::Secret),
    )
    .await?;
    Ok(TrackedConfigs::resolve(
        canary,
        &refs,
        &configmaps,
        &secrets,
    )?)
}

/// The named objects that exist, by name: from the watch cache, or a GET per name (only the few
/// configs a pod template references, never a LIST of every Secret of the namespace).
async fn get_named<K: Cached>(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    names: BTreeSet<String>,
) -> Result<BTreeMap<String, K>, kube::Error> {
    let mut found = BTreeMap::new();
    for name in names {
        if let Some(object) = cache.get(client, namespace, &name).await? {
            found.insert(name, object);
        }
    }
    Ok(found)
}

/// A workload rule broken by the user's objects: reported like an API validation error so the tick
/// ends with a Warning event naming it.
fn invalid(e: impl ToString) -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure(&e.to_string(), "Invalid")
            .with_code(422)
            .boxed(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;

    fn canary(phase: CanaryPhase) -> Canary {
        let mut canary = fixtures::canary();
        canary.status = Some(CanaryStatus {
            phase: Some(phase),
            last_applied_spec: Some("rev-1".into()),
            tracked_configs: Some([("configmap/app".to_string(), "c1".to_string())].into()),
            last_handled_reset: Some("t1".into()),
            ..Default::default()
        });
        canary
    }

    #[test]
    fn routes_are_skipped_only_for_an_idle_canary_with_nothing_new() {
        let configs: BTreeMap<String, String> =
            [("configmap/app".to_string(), "c1".to_string())].into();
        let t1 = "t1".to_string();
        for phase in [
            CanaryPhase::Initialized,
            CanaryPhase::Succeeded,
            CanaryPhase::Failed,
        ] {
            let c = canary(phase);
            assert!(idle_and_unchanged(&c, "rev-1", &configs, None), "{phase:?}");
            assert!(
                idle_and_unchanged(&c, "rev-1", &configs, Some(&t1)),
                "handled reset"
            );
            assert!(
                !idle_and_unchanged(&c, "rev-2", &configs, None),
                "new revision"
            );
            assert!(
                !idle_and_unchanged(&c, "rev-1", &BTreeMap::new(), None),
                "configs changed"
            );
            assert!(
                !idle_and_unchanged(&c, "rev-1", &configs, Some(&"t2".to_string())),
                "new reset token"
            );
        }
        for phase in [
            CanaryPhase::New,
            CanaryPhase::Initializing,
            CanaryPhase::Progressing,
            CanaryPhase::Waiting,
            CanaryPhase::WaitingPromotion,
            CanaryPhase::Promoting,
            CanaryPhase::Finalising,
        ] {
            assert!(
                !idle_and_unchanged(&canary(phase), "rev-1", &configs, None),
                "{phase:?}"
            );
        }
        let mut deleting = canary(CanaryPhase::Succeeded);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        assert!(!idle_and_unchanged(&deleting, "rev-1", &configs, None));

        let mut untracked = canary(CanaryPhase::Succeeded);
        if let Some(s) = untracked.status.as_mut() {
            s.tracked_configs = None;
        }
        assert!(idle_and_unchanged(
            &untracked,
            "rev-1",
            &BTreeMap::new(),
            None
        ));
        assert!(!idle_and_unchanged(&untracked, "rev-1", &configs, None));
        assert!(
            !idle_and_unchanged(&fixtures::canary(), "rev-1", &configs, None),
            "no status"
        );
    }
}
