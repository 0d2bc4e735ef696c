//! The watches that trigger reconciles and fill the caches reconciles read from (see `cache`), and
//! how a changed object maps back to the canaries it concerns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};

use flagger_api::{AlertProvider, Canary, MetricTemplate};

use crate::cache::{Cached, KeptStore, References, Stores};
use crate::context::Context;
use crate::metrics::Metrics;
use crate::run::namespaced_or_all;

/// A watch per kind a canary reads, each as a stream of the canaries its changes concern: a
/// change reconciles those canaries, and only those (counted in
/// `flagger_watch_triggers_total{kind}`). Every stream must be driven, even those that name no
/// canary: driving them keeps the caches fresh.
///
/// Objects a canary owns map back through their owner reference; its target and its target's
/// HPA by the name the canary gives; ConfigMaps and Secrets through the references of the
/// target's pod template the last reconcile recorded. Any other object maps to no canary.
pub fn triggers(client: &Client, namespace: &str, ctx: &Arc<Context>) -> Vec<Triggers> {
    let ns = namespace;
    let Some(stores) = ctx.cache.stores() else {
        return Vec::new();
    };
    let deployments = kept_watch::<Deployment>(client, ns, stores.deployments.clone());
    let daemonsets = kept_watch::<DaemonSet>(client, ns, stores.daemonsets.clone());
    let services = kept_watch::<Service>(client, ns, stores.services.clone());
    let configmaps = kept_metadata_watch::<ConfigMap>(client, ns, stores.configmaps.clone());
    let secrets = kept_metadata_watch::<Secret>(client, ns, stores.secrets.clone());
    let autoscalers = kept_watch::<HorizontalPodAutoscaler>(client, ns, stores.autoscalers.clone());
    let templates = kept_watch::<MetricTemplate>(client, ns, stores.metric_templates.clone());
    let providers = kept_watch::<AlertProvider>(client, ns, stores.alert_providers.clone());
    // A target, and the target's HPA (`autoscalerRef`), map to the canaries naming them (see
    // `Cache::track_targets`); a primary or `<hpa>-primary` to its owner.
    let targets_ctx = ctx.clone();
    let by_target = move |kind: &str, meta: &ObjectMeta| {
        referencing_canaries(&targets_ctx.cache.targets, kind, meta)
    };
    let deployment_map = by_target.clone();
    let daemonset_map = by_target.clone();
    let autoscaler_map = by_target;
    let cm_ctx = ctx.clone();
    let secret_ctx = ctx.clone();
    let metrics = &ctx.metrics;
    // A primary workload or Service edited or deleted by someone else maps back to its Canary
    // through the owner reference; the reconcile repairs it.
    vec![
        mapped(
            deployments,
            counted(metrics, "Deployment", move |d: Deployment| {
                deployment_map("Deployment", d.meta())
            }),
        ),
        mapped(
            daemonsets,
            counted(metrics, "DaemonSet", move |d: DaemonSet| {
                daemonset_map("DaemonSet", d.meta())
            }),
        ),
        mapped(
            services,
            counted(metrics, "Service", |s: Service| owner_canaries(s.meta())),
        ),
        mapped(
            configmaps,
            counted(
                metrics,
                "ConfigMap",
                move |c: PartialObjectMeta<ConfigMap>| {
                    referencing_canaries(&cm_ctx.cache.references, "ConfigMap", c.meta())
                },
            ),
        ),
        mapped(
            secrets,
            counted(metrics, "Secret", move |s: PartialObjectMeta<Secret>| {
                referencing_canaries(&secret_ctx.cache.references, "Secret", s.meta())
            }),
        ),
        mapped(
            autoscalers,
            counted(
                metrics,
                "HorizontalPodAutoscaler",
                move |h: HorizontalPodAutoscaler| {
                    autoscaler_map("HorizontalPodAutoscaler", h.meta())
                },
            ),
        ),
        // Read when a check or an alert needs them; a change waits for that moment.
        mapped(templates, |_| Vec::new()),
        mapped(providers, |_| Vec::new()),
    ]
}

/// The canaries one watch's changes concern, in the order the changes came.
pub type Triggers = BoxStream<'static, ObjectRef<Canary>>;

/// `watch`, not started (watches list on their first poll) until `canaries_listed` resolves.
///
/// The stores keep only what canaries read, and a canary's target is wanted from the Canary's
/// watch event (`Cache::track_targets`): a target listed before its Canary is dropped from the
/// list and fetched by the canary's first read instead. At a restart every list runs at once, so
/// which came first was chance: measured at 10 000 canaries, 9 540 GETs of target Deployments in
/// one restart and 40 in the next. With the Canaries listed first, a restart at 1 000 made 4.
pub(crate) fn after_canaries_listed<S: Stream>(
    canaries_listed: impl Future<Output = ()>,
    watch: S,
) -> impl Stream<Item = S::Item> {
    futures::stream::once(async move {
        canaries_listed.await;
        watch
    })
    .flatten()
}

/// A watch's changed objects as the canaries `map` says they concern. Its errors were logged where
/// the watch failed (see `warn_watch_error`), and the watch backs off on its own.
pub(crate) fn mapped<K: Send + 'static>(
    watch: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    map: impl Fn(K) -> Vec<ObjectRef<Canary>> + Send + Sync + 'static,
) -> Triggers {
    watch
        .filter_map(|changed| futures::future::ready(changed.ok()))
        .flat_map(move |changed| futures::stream::iter(map(changed)))
        .boxed()
}

/// A mapping that also counts the canaries it asks to reconcile, by the changed object's kind.
fn counted<K>(
    metrics: &Arc<Metrics>,
    kind: &'static str,
    map: impl Fn(K) -> Vec<ObjectRef<Canary>> + Send + Sync + 'static,
) -> impl Fn(K) -> Vec<ObjectRef<Canary>> + Send + Sync + 'static {
    let metrics = metrics.clone();
    move |object| {
        let canaries = map(object);
        if !canaries.is_empty() {
            metrics.watch_triggered(kind, canaries.len());
        }
        canaries
    }
}

/// The canaries a changed object concerns: those `references` records as naming it (a pod
/// template's ConfigMap or Secret, a target, a target's HPA), and the one that owns it (a
/// `-primary` copy). Any other object concerns none.
fn referencing_canaries(
    references: &References,
    kind: &str,
    meta: &ObjectMeta,
) -> Vec<ObjectRef<Canary>> {
    let mut refs = owner_canaries(meta);
    refs.extend(references.canaries(
        kind,
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    ));
    refs
}

/// The Canaries an object's owner references name (the primary workload, the Services).
fn owner_canaries(meta: &ObjectMeta) -> Vec<ObjectRef<Canary>> {
    let namespace = meta.namespace.clone();
    meta.owner_references
        .iter()
        .flatten()
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

/// A full watch whose events trigger reconciles and keep fresh the objects canaries read (see
/// `cache::kept`); every other object passes through and is dropped.
fn kept_watch<K>(
    client: &Client,
    namespace: &str,
    store: KeptStore<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Cached,
{
    let api: Api<K> = namespaced_or_all(client, namespace);
    watcher(api, watcher::Config::default())
        .inspect_err(|e| warn_watch_error::<K>(e))
        .default_backoff()
        .inspect_ok(move |event| store.apply(event))
        .touched_objects()
}

/// A metadata-only watch: names and versions, never data or Secret values. A newer version of a
/// kept object drops it, so the reconcile it triggers reads the new one.
fn kept_metadata_watch<K>(
    client: &Client,
    namespace: &str,
    store: KeptStore<K>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Cached,
{
    // An `Api` of `PartialObjectMeta` makes metadata-only requests.
    let api: Api<PartialObjectMeta<K>> = namespaced_or_all(client, namespace);
    watcher(api, watcher::Config::default())
        .inspect_err(|e| warn_watch_error::<K>(e))
        .default_backoff()
        .inspect_ok(move |event| store.apply_meta(event))
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
    stores.wait_until_synced().await;
    // The runner waits for the Canary store's list too (see `runner::wait_listed`).
    if crate::runner::wait_listed(&canaries).await.is_ok() {
        ready.store(true, Ordering::Relaxed);
        tracing::info!("watch caches synced; ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache;
    use kube::runtime::watcher::Event;

    /// Each store's watch delivers its (empty) initial list.
    macro_rules! sync {
        ($($w:expr),*) => {$(
            $w.apply(&Event::Init);
            $w.apply(&Event::InitDone);
        )*};
    }

    #[tokio::test]
    async fn ready_only_once_every_cache_has_its_initial_list() {
        let stores = cache::Stores::default();
        let (canaries, mut canary_writer) = kube::runtime::reflector::store::<Canary>();
        let ready = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(ready_when_synced(stores.clone(), canaries, ready.clone()));
        sync!(
            stores.deployments,
            stores.daemonsets,
            stores.services,
            stores.configmaps,
            stores.secrets,
            stores.autoscalers,
            stores.metric_templates
        );
        canary_writer.apply_watcher_event(&Event::Init);
        canary_writer.apply_watcher_event(&Event::InitDone);
        tokio::task::yield_now().await;
        assert!(
            !ready.load(Ordering::Relaxed),
            "the AlertProvider cache has not listed yet"
        );
        sync!(stores.alert_providers);
        task.await.unwrap();
        assert!(ready.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_lists_only_once_the_canaries_are_listed() {
        let (canaries, mut canary_writer) = kube::runtime::reflector::store::<Canary>();
        let started = Arc::new(AtomicBool::new(false));
        let polled = started.clone();
        // A watcher sends its list request when first polled; this one says when that is.
        let watch = futures::stream::poll_fn(move |_| {
            polled.store(true, Ordering::Relaxed);
            std::task::Poll::Ready(Some("listed"))
        });
        let listed = async move {
            let _ = crate::runner::wait_listed(&canaries).await;
        };
        let mut held = Box::pin(after_canaries_listed(listed, watch));
        assert!(futures::poll!(held.next()).is_pending());
        assert!(
            !started.load(Ordering::Relaxed),
            "the Canaries are still listing"
        );
        canary_writer.apply_watcher_event(&Event::Init);
        canary_writer.apply_watcher_event(&Event::InitDone);
        assert_eq!(held.next().await, Some("listed"));
        assert!(started.load(Ordering::Relaxed));
    }

    /// The runner waits for the Canary store's list too, and kube-runtime wakes only the waiter
    /// that polled last.
    #[tokio::test(start_paused = true)]
    async fn ready_when_the_canaries_list_last_while_another_task_waits_for_it() {
        let stores = cache::Stores::default();
        sync!(
            stores.deployments,
            stores.services,
            stores.daemonsets,
            stores.configmaps,
            stores.secrets,
            stores.autoscalers,
            stores.metric_templates,
            stores.alert_providers
        );
        let (canaries, mut canary_writer) = kube::runtime::reflector::store::<Canary>();
        let ready = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(ready_when_synced(stores, canaries.clone(), ready.clone()));
        tokio::task::yield_now().await;
        let runner = tokio::spawn(async move { canaries.wait_until_ready().await.is_ok() });
        tokio::task::yield_now().await;
        canary_writer.apply_watcher_event(&Event::Init);
        canary_writer.apply_watcher_event(&Event::InitDone);
        assert!(runner.await.unwrap(), "the waiter that polled last");
        tokio::time::timeout(std::time::Duration::from_secs(3), task)
            .await
            .expect("the readiness task ends too")
            .unwrap();
        assert!(ready.load(Ordering::Relaxed));
    }

    #[test]
    fn a_changed_config_maps_only_to_the_canaries_that_reference_or_own_it() {
        use std::collections::BTreeSet;
        let references = References::default();
        let podinfo = ObjectRef::<Canary>::new("podinfo").within("test");
        let other = ObjectRef::<Canary>::new("other").within("test");
        let configs: BTreeSet<_> = [
            (
                "ConfigMap",
                "test".to_string(),
                "podinfo-config".to_string(),
            ),
            ("Secret", "test".to_string(), "podinfo-token".to_string()),
        ]
        .into();
        references.set(&podinfo, configs);
        references.set(&other, BTreeSet::new());
        let meta = |name: &str| ObjectMeta {
            name: Some(name.into()),
            namespace: Some("test".into()),
            ..Default::default()
        };
        assert_eq!(
            referencing_canaries(&references, "ConfigMap", &meta("podinfo-config")),
            vec![podinfo.clone()]
        );
        assert_eq!(
            referencing_canaries(&references, "Secret", &meta("podinfo-token")),
            vec![podinfo.clone()]
        );
        for unrelated in ["unrelated", "kube-root-ca.crt", "podinfo-token"] {
            assert!(
                referencing_canaries(&references, "ConfigMap", &meta(unrelated)).is_empty(),
                "{unrelated} is referenced by no canary"
            );
        }
        let mut copy = meta("podinfo-config-primary");
        copy.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "flagger.app/v1beta1".into(),
                kind: "Canary".into(),
                name: "podinfo".into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        ]);
        assert_eq!(
            referencing_canaries(&references, "ConfigMap", &copy),
            vec![podinfo],
            "the -primary copy maps to its owner"
        );
    }
}
