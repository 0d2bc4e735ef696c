//! Tracked ConfigMaps and Secrets: the ones the target's pod template references, read by name,
//! and their `-primary` copies.

use std::collections::{BTreeMap, BTreeSet};

use flagger_api::Canary;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
use kube::Client;
use kube::runtime::reflector::ObjectRef;

use super::apply::{apply, get_named};
use super::{TargetError, Workloads};
use crate::cache::Cache;
use crate::workload::configs::{self, ConfigKind, TrackedConfigs};

/// The ConfigMaps and Secrets the pod template references, with tracking opt-outs applied.
pub(super) async fn tracked(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    canary: &Canary,
    pod: Option<&PodSpec>,
) -> Result<TrackedConfigs, TargetError> {
    let refs = pod.map(configs::referenced).unwrap_or_default();
    // Recorded before the reads, so a change that lands while they run still reconciles.
    let keys = refs
        .iter()
        .map(|r| {
            let kind = match r.kind {
                ConfigKind::ConfigMap => "ConfigMap",
                ConfigKind::Secret => "Secret",
            };
            (kind, namespace.to_string(), r.name.clone())
        })
        .collect();
    cache.track_configs(&ObjectRef::from_obj(canary), keys);
    if refs.is_empty() {
        return Ok(TrackedConfigs::default());
    }
    let wanted = |kind| {
        refs.iter()
            .filter(move |r| r.kind == kind)
            .map(|r| r.name.clone())
            .collect::<BTreeSet<_>>()
    };
    let configmaps: BTreeMap<String, ConfigMap> =
        get_named(client, cache, namespace, wanted(ConfigKind::ConfigMap)).await?;
    let secrets: BTreeMap<String, Secret> =
        get_named(client, cache, namespace, wanted(ConfigKind::Secret)).await?;
    Ok(TrackedConfigs::resolve(
        canary,
        &refs,
        &configmaps,
        &secrets,
    )?)
}

impl Workloads {
    /// The `-primary` copies of the tracked configs, as the target's currently are.
    pub(super) async fn apply_configs(&self, canary: &Canary) -> Result<(), TargetError> {
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
        let (cms, secs) = self.tracked.primary_copies(
            canary,
            &self.settings,
            |n| live_cms.get(n),
            |n| live_secrets.get(n),
        )?;
        for cm in &cms {
            apply(&self.client, &self.cache, &self.namespace, cm).await?;
        }
        for s in &secs {
            apply(&self.client, &self.cache, &self.namespace, s).await?;
        }
        Ok(())
    }
}
