//! The watches that trigger reconciles and fill the caches reconciles read from (see `cache`), and
//! how a changed object maps back to the canaries it concerns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use flagger_api::{AlertProvider, Canary, MetricTemplate};

use crate::cache::{Stores, Writers};
use crate::run::namespaced_or_all;

/// Adds to `controller` a watch per kind a canary reads: its change reconciles the canaries it
/// concerns.
pub fn triggers(
    controller: Controller<Canary>,
    client: &Client,
    namespace: &str,
    writers: Writers,
    store: &Store<Canary>,
) -> Controller<Canary> {
    let ns = namespace;
    let deployments = cached_watch::<Deployment>(client, ns, writers.deployments);
    let daemonsets = cached_watch::<DaemonSet>(client, ns, writers.daemonsets);
    let services = cached_watch::<Service>(client, ns, writers.services);
    let configmaps = cached_watch::<ConfigMap>(client, ns, writers.configmaps);
    let secrets = cached_watch::<Secret>(client, ns, writers.secrets);
    let autoscalers = cached_watch::<HorizontalPodAutoscaler>(client, ns, writers.autoscalers);
    let templates = cached_watch::<MetricTemplate>(client, ns, writers.metric_templates);
    let providers = cached_watch::<AlertProvider>(client, ns, writers.alert_providers);
    let by_target = |store: kube::runtime::reflector::Store<Canary>| {
        move |kind: &'static str, name: String, namespace: Option<String>| {
            store
                .state()
                .into_iter()
                .filter(|c| {
                    c.namespace() == namespace
                        && c.spec.target_ref.kind == kind
                        && c.spec.target_ref.name == name
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let deployment_map = by_target(store.clone());
    let daemonset_map = by_target(store.clone());
    let config_store = store.clone();
    let config_map = move |namespace: Option<String>| {
        // Any ConfigMap/Secret change in a namespace may be a tracked config of its canaries; the
        // reconcile compares checksums, so a spurious evaluation changes nothing.
        config_store
            .state()
            .into_iter()
            .filter(|c| c.namespace() == namespace)
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect::<Vec<_>>()
    };
    let secret_map = config_map.clone();
    let scaler_store = store.clone();
    // The target's HPA (`autoscalerRef`) maps to the canaries naming it; `<hpa>-primary` to its owner.
    let autoscaler_map = move |h: HorizontalPodAutoscaler| {
        let mut refs = owner_canaries(&h);
        refs.extend(
            scaler_store
                .state()
                .into_iter()
                .filter(|c| {
                    c.namespace() == h.namespace()
                        && c.spec.autoscaler_ref.as_ref().is_some_and(|r| {
                            r.kind == "HorizontalPodAutoscaler" && r.name == h.name_any()
                        })
                })
                .map(|c| ObjectRef::from_obj(c.as_ref())),
        );
        refs
    };
    // A primary workload or Service edited or deleted by someone else maps back to its Canary
    // through the owner reference; the reconcile repairs it.
    controller
        .watches_stream(deployments, move |d| {
            let mut refs = owner_canaries(&d);
            refs.extend(deployment_map("Deployment", d.name_any(), d.namespace()));
            refs
        })
        .watches_stream(daemonsets, move |d| {
            let mut refs = owner_canaries(&d);
            refs.extend(daemonset_map("DaemonSet", d.name_any(), d.namespace()));
            refs
        })
        .watches_stream(services, |s| owner_canaries(&s))
        .watches_stream(configmaps, move |c| config_map(c.namespace()))
        .watches_stream(secrets, move |s| secret_map(s.namespace()))
        .watches_stream(autoscalers, autoscaler_map)
        // Read when a check or an alert needs them; a change waits for that moment.
        .watches_stream(templates, |_| Vec::<ObjectRef<Canary>>::new())
        .watches_stream(providers, |_| Vec::<ObjectRef<Canary>>::new())
}

/// The Canaries an object's owner references name (the primary workload, the Services).
fn owner_canaries<K: Resource>(object: &K) -> Vec<ObjectRef<Canary>> {
    let namespace = object.meta().namespace.clone();
    object
        .owner_references()
        .iter()
        .filter(|o| o.kind == "Canary" && o.api_version.starts_with("flagger.app/"))
        .map(|o| {
            let r = ObjectRef::new(&o.name);
            match &namespace {
                Some(ns) => r.within(ns),
                None => r,
            }
        })
        .collect()
}

/// One watch per kind both triggers reconciles and fills the cache reconciles read from (see
/// `cache`). Managed fields are dropped: nothing reads them and they are most of an object's size.
fn cached_watch<K>(
    client: &Client,
    namespace: &str,
    writer: kube::runtime::reflector::store::Writer<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = namespaced_or_all(client, namespace);
    watcher(api, watcher::Config::default())
        .inspect_err(|e| warn_watch_error::<K>(e))
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .touched_objects()
}

/// A failing watch (RBAC refusing a list, a CRD missing) leaves the controller blind to a kind:
/// said at warn, naming the kind, on every failed attempt (the watcher backs off between them).
pub(crate) fn warn_watch_error<K: Resource<DynamicType = ()>>(error: &watcher::Error) {
    tracing::warn!(resource = %K::plural(&()), kind = %K::kind(&()), error = %error, "watch failed; retrying with backoff");
}

/// Sets `ready` once every watch cache has its initial list: before that a tick would read from
/// half-filled caches (through GETs) and `/readyz` would promise what the controller cannot do.
pub async fn ready_when_synced(
    stores: Stores,
    canaries: kube::runtime::reflector::Store<Canary>,
    ready: Arc<AtomicBool>,
) {
    let synced = futures::future::join_all([
        stores.deployments.wait_until_ready().boxed(),
        stores.daemonsets.wait_until_ready().boxed(),
        stores.services.wait_until_ready().boxed(),
        stores.configmaps.wait_until_ready().boxed(),
        stores.secrets.wait_until_ready().boxed(),
        stores.autoscalers.wait_until_ready().boxed(),
        stores.metric_templates.wait_until_ready().boxed(),
        stores.alert_providers.wait_until_ready().boxed(),
        canaries.wait_until_ready().boxed(),
    ])
    .await;
    if synced.iter().all(Result::is_ok) {
        ready.store(true, Ordering::Relaxed);
        tracing::info!("watch caches synced; ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache;
    use kube::runtime::watcher::Event;

    #[tokio::test]
    async fn ready_only_once_every_cache_has_its_initial_list() {
        let (stores, mut writers) = cache::stores();
        let (canaries, mut canary_writer) = kube::runtime::reflector::store::<Canary>();
        let ready = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(ready_when_synced(stores, canaries, ready.clone()));
        macro_rules! sync {
            ($($w:expr),*) => {$(
                $w.apply_watcher_event(&Event::Init);
                $w.apply_watcher_event(&Event::InitDone);
            )*};
        }
        sync!(
            writers.deployments,
            writers.daemonsets,
            writers.services,
            writers.configmaps,
            writers.secrets,
            writers.autoscalers,
            writers.metric_templates,
            canary_writer
        );
        tokio::task::yield_now().await;
        assert!(
            !ready.load(Ordering::Relaxed),
            "the AlertProvider cache has not listed yet"
        );
        sync!(writers.alert_providers);
        task.await.unwrap();
        assert!(ready.load(Ordering::Relaxed));
    }
}
