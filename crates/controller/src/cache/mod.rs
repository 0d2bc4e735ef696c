//! Reads of a canary's workloads from the watch caches, and writes only when they would change
//! something (issue 6: an idle tick costs no API request).
//!
//! The controller watches every kind an idle tick reads (Deployments, DaemonSets, Services,
//! ConfigMaps, Secrets, HorizontalPodAutoscalers) to trigger reconciles; the reflectors of those watches keep the objects, so
//! a tick reads them from memory. MetricTemplates and AlertProviders are watched only to be cached:
//! a run's checks and alerts read them without a request. Two rules keep that as safe as a GET:
//!
//! * A store that has not finished its initial list answers nothing: the read is a GET. Otherwise
//!   a primary missing from a half-filled cache would be created again (and rolled).
//! * After our own write of an object, the cache answers for it only once it holds that write (or a
//!   later version); until then the read is a GET. Decisions that move workloads or traffic never
//!   see a state older than what this controller last wrote.
//! * An absence is confirmed with a GET. Each kind has its own watch, so a Deployment and the
//!   ConfigMap it mounts, a Canary and its target, a MetricTemplate created just before a check
//!   arrive in any order; trusting a miss would report objects missing that exist (a failed check,
//!   a dropped alert, a primary created twice). Objects a canary needs exist in the steady state,
//!   so this costs requests only when something is really missing.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use flagger_api::{AlertProvider, Canary, MetricTemplate};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::context::lock;

mod kept;
pub mod reads;
mod references;

pub use kept::KeptStore;
use kept::Stamp;
pub use references::{NamedRef, References};

/// The controller's watch caches, one per kind a reconcile reads; each keeps only what was read.
#[derive(Clone, Default)]
pub struct Stores {
    pub deployments: KeptStore<Deployment>,
    pub daemonsets: KeptStore<DaemonSet>,
    pub services: KeptStore<Service>,
    pub configmaps: KeptStore<ConfigMap>,
    pub secrets: KeptStore<Secret>,
    pub autoscalers: KeptStore<HorizontalPodAutoscaler>,
    pub metric_templates: KeptStore<MetricTemplate>,
    pub alert_providers: KeptStore<AlertProvider>,
}

impl Stores {
    /// Resolves once every store's watch has delivered its initial list.
    pub async fn wait_until_synced(&self) {
        futures::join!(
            self.deployments.wait_until_synced(),
            self.daemonsets.wait_until_synced(),
            self.services.wait_until_synced(),
            self.configmaps.wait_until_synced(),
            self.secrets.wait_until_synced(),
            self.autoscalers.wait_until_synced(),
            self.metric_templates.wait_until_synced(),
            self.alert_providers.wait_until_synced(),
        );
    }
}

/// An object of kind `K` named `name` in namespace `test` at resourceVersion `rv`: what the caches'
/// tests (and those of what reads them) feed the stores.
#[cfg(test)]
pub(crate) fn test_object<K: Resource<DynamicType = ()> + Default>(name: &str, rv: &str) -> K {
    let mut object = K::default();
    let meta = object.meta_mut();
    meta.name = Some(name.into());
    meta.namespace = Some("test".into());
    meta.resource_version = Some(rv.into());
    object
}

/// A namespaced kind the controller keeps a watch cache of.
pub trait Cached:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    fn store(stores: &Stores) -> &KeptStore<Self>;
}

macro_rules! cached {
    ($kind:ty, $field:ident) => {
        impl Cached for $kind {
            fn store(stores: &Stores) -> &KeptStore<Self> {
                &stores.$field
            }
        }
    };
}
cached!(Deployment, deployments);
cached!(DaemonSet, daemonsets);
cached!(Service, services);
cached!(ConfigMap, configmaps);
cached!(Secret, secrets);
cached!(HorizontalPodAutoscaler, autoscalers);
cached!(MetricTemplate, metric_templates);
cached!(AlertProvider, alert_providers);

type Key = (&'static str, String, String);

const CACHED_KINDS: [&str; 8] = [
    "Deployment",
    "DaemonSet",
    "Service",
    "ConfigMap",
    "Secret",
    "HorizontalPodAutoscaler",
    "MetricTemplate",
    "AlertProvider",
];

fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    // Kinds are static strings of k8s-openapi; the Cow is never owned for them.
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(k) => k,
        std::borrow::Cow::Owned(_) => "",
    }
}

fn key<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> Key {
    (kind_of::<K>(), namespace.to_string(), name.to_string())
}

/// How long after the controller starts its reads wait for the watches' initial lists before
/// asking the API server instead. Until a store has listed, a read of it is a GET; when thousands of
/// canaries are reconciled at start-up those GETs queue in the client's budget ahead of the
/// lists' own pages, so the lists, and with them the GETs, do not end: measured restarting at
/// 10 000 canaries, 65 000 GETs of Deployments in 7 minutes, the Deployment and Service lists still
/// unfinished, and the controller's memory at 1.1 GiB with the waiting ticks. A watch that cannot list (a kind the
/// API server does not serve, a permission missing) still leaves the canaries running, on GETs,
/// once this has passed.
const LIST_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Remembered desired objects kept at most; past it the memory starts over, which costs one
/// apply per object, nothing else.
const APPLIED_MAX: usize = 65_536;

#[derive(Default)]
pub struct Cache {
    /// `None` without watches (a controller under test): every read is a GET.
    stores: Option<Stores>,
    /// The namespace the watches cover (`-namespace`), empty for all: a MetricTemplate or
    /// AlertProvider of another namespace is not in the stores and is read with a GET.
    scope: String,
    /// The resourceVersion our last write of an object returned, until the cache has caught up.
    written: Mutex<HashMap<Key, u64>>,
    /// A hash of the last desired object applied, per object.
    applied: Mutex<HashMap<Key, u64>>,
    /// Until when reads wait for the stores' initial lists (see [`LIST_PATIENCE`]); `None` for a
    /// cache without watches.
    lists_due: Option<tokio::time::Instant>,
    /// The wait for the initial lists is over: every store listed, or the patience ran out.
    listed: AtomicBool,
    /// The configs each canary's pod template references.
    pub references: References,
    /// The workload and HPA each watched canary targets (see `track_targets`).
    pub targets: References,
}

impl Cache {
    pub fn new(stores: Option<Stores>, scope: &str) -> Cache {
        Cache {
            lists_due: stores
                .is_some()
                .then(|| tokio::time::Instant::now() + LIST_PATIENCE),
            stores,
            scope: scope.to_string(),
            ..Cache::default()
        }
    }

    /// Resolves once every store has its initial list, or once [`LIST_PATIENCE`] has passed since
    /// the controller started: a reconcile waits here before its first read.
    pub async fn wait_for_lists(&self) {
        let (Some(stores), Some(due)) = (&self.stores, self.lists_due) else {
            return;
        };
        // Every reconcile passes here: once listed (or given up on), without subscribing to
        // eight channels each time.
        if self.listed.load(Ordering::Acquire) {
            return;
        }
        // Elapsed: the reads go on as GETs, as they would without the wait.
        let _ = tokio::time::timeout_at(due, stores.wait_until_synced()).await;
        self.listed.store(true, Ordering::Release);
    }

    /// The watch caches' readers, when the controller runs watches.
    pub fn stores(&self) -> Option<&Stores> {
        self.stores.as_ref()
    }

    /// The object as the cache has it when the cache can be trusted for it, else as a GET returns it.
    /// What a GET finds is kept from then on (see `kept`): the next read costs no request.
    pub async fn get<K: Cached>(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<K>, kube::Error> {
        if let Some((cached, stamp)) = self.cached::<K>(namespace, name) {
            reads::note::<K>(namespace, name, Some(stamp));
            return Ok(Some(cached));
        }
        let store = self.store::<K>(namespace);
        if let Some(store) = store {
            store.want(namespace, name);
        }
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let live = api.get_opt(name).await?;
        match &live {
            Some(object) => {
                if let Some(store) = store {
                    store.fill(object);
                }
            }
            // Deleted since our write: the watch's delete event brings the next reconcile.
            None => {
                lock(&self.written).remove(&key::<K>(namespace, name));
            }
        }
        let stamp = Self::stamp_after_get(store, namespace, name, live.as_ref());
        reads::note::<K>(namespace, name, stamp);
        Ok(live)
    }

    /// The store of `K` when a watch covers `namespace`.
    fn store<K: Cached>(&self, namespace: &str) -> Option<&KeptStore<K>> {
        if !self.scope.is_empty() && self.scope != namespace {
            return None;
        }
        Some(K::store(self.stores.as_ref()?))
    }

    /// The kept object when the cache can answer: its watch has listed, it holds the object, and
    /// at least our last write of it. An object not kept is not known to be absent: `None`.
    fn cached<K: Cached>(&self, namespace: &str, name: &str) -> Option<(K, Stamp)> {
        let store = self.store::<K>(namespace)?;
        if !store.is_synced() {
            return None;
        }
        let (object, stamp) = store.get_stamped(namespace, name);
        let (object, stamp) = (object?, stamp?);
        let key = key::<K>(namespace, name);
        let mut written = lock(&self.written);
        if let Some(&wrote) = written.get(&key) {
            if resource_version(&object).is_none_or(|rv| rv < wrote) {
                return None;
            }
            written.remove(&key);
        }
        Some((object, stamp))
    }

    /// What the store of `K` answers for the key after a GET found `live`, when that is what the
    /// GET found (the object kept, or nothing kept for a name that does not exist): a later read
    /// with the same stamp reads the same. `None` otherwise (not kept, or changed since).
    fn stamp_after_get<K: Cached>(
        store: Option<&KeptStore<K>>,
        namespace: &str,
        name: &str,
        live: Option<&K>,
    ) -> Option<Stamp> {
        let store = store.filter(|s| s.is_synced())?;
        let stamp = store.stamp(namespace, name)?;
        let version = live.map_or(Some(0), resource_version)?;
        (stamp.kept() == version).then_some(stamp)
    }

    /// Records the workload and HPA `canary` targets, as the Canary watch delivers it: a change
    /// of either maps back to the canary by lookup, not by a scan of every canary.
    pub fn track_targets(&self, canary: &Canary) {
        let namespace = canary.metadata.namespace.clone().unwrap_or_default();
        let spec = &canary.spec;
        let mut keys = BTreeSet::new();
        if let Some(kind) = references::kind_of(&spec.target_ref.kind) {
            keys.insert((kind, namespace.clone(), spec.target_ref.name.clone()));
        }
        if let Some(scaler) = &spec.autoscaler_ref
            && scaler.kind == "HorizontalPodAutoscaler"
        {
            keys.insert(("HorizontalPodAutoscaler", namespace, scaler.name.clone()));
        }
        for (kind, namespace, name) in &keys {
            self.want_target(kind, namespace, name);
        }
        self.targets.set(&ObjectRef::from_obj(canary), keys);
    }

    /// Keeps a target from the next event its watch delivers, the initial list's included: the
    /// other kinds list only after the Canaries (`watches::after_canaries_listed`), so after a
    /// restart a canary's first read of its target costs no GET. A Canary created later finds its
    /// target already listed and dropped, and fetches it with that first read.
    fn want_target(&self, kind: &str, namespace: &str, name: &str) {
        match kind {
            "Deployment" => self.want::<Deployment>(namespace, name),
            "DaemonSet" => self.want::<DaemonSet>(namespace, name),
            "HorizontalPodAutoscaler" => self.want::<HorizontalPodAutoscaler>(namespace, name),
            _ => {}
        }
    }

    fn want<K: Cached>(&self, namespace: &str, name: &str) {
        if let Some(store) = self.store::<K>(namespace) {
            store.want(namespace, name);
        }
    }

    /// Records which configs `canary` references; the cached copies of configs no canary
    /// references any more (and of their `-primary` copies) go.
    pub fn track_configs(&self, canary: &ObjectRef<Canary>, configs: BTreeSet<NamedRef>) {
        for (kind, namespace, name) in self.references.set(canary, configs) {
            let copy = format!("{name}-primary");
            let ours = |n: &str| n == name || n == copy;
            if let Some(stores) = &self.stores {
                match kind {
                    "Secret" => stores.secrets.forget(&namespace, ours),
                    _ => stores.configmaps.forget(&namespace, ours),
                }
            }
        }
    }

    /// Records an object as our write returned it: reads of it skip the cache until it has caught up.
    pub fn wrote<K: Cached>(&self, object: &K) {
        let meta = object.meta();
        if let Some(store) = self.store::<K>(meta.namespace.as_deref().unwrap_or_default()) {
            store.fill(object);
        }
        let key = key::<K>(
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        if !CACHED_KINDS.contains(&key.0) {
            // Never read through a store: nothing to wait for.
            return;
        }
        // An unreadable version can never be matched by the cache: reads of it stay GETs.
        let rv = resource_version(object).unwrap_or(u64::MAX);
        let mut written = lock(&self.written);
        let entry = written.entry(key).or_insert(rv);
        *entry = (*entry).max(rv);
    }

    /// Whether applying `desired` (the server-side apply body) would leave `live` as it is.
    ///
    /// Server-side apply defaults and normalises fields, so the live object never equals the body;
    /// two checks together tell a no-op apply instead:
    /// * `live` has every field of the body with the same value ([`covers`]): nobody changed what
    ///   we set (a user's edit of a selector, a deleted label are seen here);
    /// * the body is the one this process applied last (by hash): our intent did not change, so no
    ///   field we owned before has to be removed, which `covers` cannot see.
    ///
    /// A hash in an annotation would survive restarts, but would miss others' edits of the fields
    /// we set and add an annotation Flagger's objects do not have; kept in memory, a restart costs
    /// one apply per object.
    pub fn unchanged(&self, desired: &Value, live: &Value) -> bool {
        let Some(key) = key_of(desired) else {
            return false;
        };
        lock(&self.applied).get(&key) == Some(&hash(desired)) && covers(desired, live)
    }

    /// Drops what is remembered of the objects of a target that is no longer a canary's: the
    /// target itself and everything named after it (`<target>-primary`, `<target>-canary`, …).
    /// Another target sharing the prefix loses its memory too, which costs it one apply.
    pub fn forget_target(&self, namespace: &str, target: &str) {
        let prefix = format!("{target}-");
        let ours =
            |key: &Key| key.1 == namespace && (key.2 == target || key.2.starts_with(&prefix));
        lock(&self.applied).retain(|key, _| !ours(key));
        lock(&self.written).retain(|key, _| !ours(key));
        if let Some(stores) = &self.stores {
            let named = |name: &str| name == target || name.starts_with(&prefix);
            stores.deployments.forget(namespace, named);
            stores.daemonsets.forget(namespace, named);
            stores.services.forget(namespace, named);
            stores.autoscalers.forget(namespace, named);
        }
    }

    /// Remembers the body just applied, for [`Cache::unchanged`].
    pub fn applied(&self, desired: &Value) {
        let Some(key) = key_of(desired) else {
            return;
        };
        let mut applied = lock(&self.applied);
        if applied.len() >= APPLIED_MAX {
            applied.clear();
        }
        applied.insert(key, hash(desired));
    }
}

fn key_of(body: &Value) -> Option<Key> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let kind = body.get("kind")?.as_str()?;
    let kind = *CACHED_KINDS.iter().find(|k| **k == kind)?;
    let meta = body.get("metadata")?;
    Some((
        kind,
        text(meta.get("namespace")?)?,
        text(meta.get("name")?)?,
    ))
}

fn hash(body: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    body.to_string().hash(&mut h);
    h.finish()
}

/// The etcd revision behind a resourceVersion. Kubernetes documents resourceVersions as opaque,
/// but every API server backed by etcd (all of them, and since 1.35 by contract) serves decimal
/// revisions that only grow; one that does not parse is never taken as caught up.
fn resource_version<K: Resource>(object: &K) -> Option<u64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}

/// Whether `live` holds every field of `desired` with the same value. Lists must match element by
/// element (an extra element somebody added counts as a difference: one more apply, never a missed
/// one); an empty map or list in `desired` matches an absent field, as the API server drops them.
pub fn covers(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, v)| match l.get(k) {
            Some(lv) => covers(v, lv),
            None => is_empty(v),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| covers(a, b))
        }
        (d, Value::Null) => is_empty(d),
        (d, l) => d == l,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    fn service_body() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "podinfo-primary", "namespace": "test", "labels": {"app": "podinfo-primary"}},
            "spec": {"type": "ClusterIP", "selector": {"app": "podinfo-primary"},
                     "ports": [{"name": "http", "port": 9898, "protocol": "TCP", "targetPort": 9898}]},
        })
    }

    fn synced<K: Cached>(store: &KeptStore<K>) {
        store.apply(&kube::runtime::watcher::Event::Init);
        store.apply(&kube::runtime::watcher::Event::InitDone);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_wait_for_every_initial_list_then_go_on() {
        let stores = Stores::default();
        let cache = Cache::new(Some(stores.clone()), "");
        let mut waiting = Box::pin(cache.wait_for_lists());
        synced(&stores.deployments);
        synced(&stores.daemonsets);
        synced(&stores.services);
        synced(&stores.configmaps);
        synced(&stores.secrets);
        synced(&stores.autoscalers);
        synced(&stores.metric_templates);
        assert!(
            futures::poll!(&mut waiting).is_pending(),
            "one store still listing"
        );
        synced(&stores.alert_providers);
        assert!(futures::poll!(&mut waiting).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_that_never_ends_holds_reads_up_for_a_while_only() {
        let stores = Stores::default();
        let cache = Cache::new(Some(stores.clone()), "");
        let started = tokio::time::Instant::now();
        cache.wait_for_lists().await;
        assert_eq!(started.elapsed(), LIST_PATIENCE, "on tokio's paused clock");
        Cache::default().wait_for_lists().await;
        assert_eq!(started.elapsed(), LIST_PATIENCE, "without watches, no wait");
    }

    fn canary(target: &str, hpa: Option<&str>) -> Canary {
        let mut body = json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "service": {"port": 9898},
                "analysis": {"interval": "10s", "threshold": 2}
            }
        });
        if let Some(hpa) = hpa {
            body["spec"]["autoscalerRef"] = json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": hpa
            });
        }
        serde_json::from_value(body).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_target_and_its_hpa_map_back_to_the_canary_by_name_and_only_while_it_names_them() {
        let cache = Cache::default();
        let me = ObjectRef::new("podinfo").within("test");
        cache.track_targets(&canary("podinfo", Some("podinfo-hpa")));
        assert_eq!(
            cache.targets.canaries("Deployment", "test", "podinfo"),
            vec![me.clone()]
        );
        assert_eq!(
            cache
                .targets
                .canaries("HorizontalPodAutoscaler", "test", "podinfo-hpa"),
            vec![me.clone()]
        );
        assert!(
            cache
                .targets
                .canaries("DaemonSet", "test", "podinfo")
                .is_empty()
        );
        assert!(
            cache
                .targets
                .canaries("Deployment", "other", "podinfo")
                .is_empty()
        );

        cache.track_targets(&canary("podinfo-v2", None));
        assert!(
            cache
                .targets
                .canaries("Deployment", "test", "podinfo")
                .is_empty(),
            "the old target no longer maps to it"
        );
        assert!(
            cache
                .targets
                .canaries("HorizontalPodAutoscaler", "test", "podinfo-hpa")
                .is_empty()
        );
        assert_eq!(
            cache.targets.canaries("Deployment", "test", "podinfo-v2"),
            vec![me.clone()]
        );
        cache.targets.set(&me, BTreeSet::new());
        assert!(cache.targets.referencing().is_empty());
    }

    #[test]
    fn a_target_listed_after_its_canary_is_kept_from_the_list() {
        use kube::runtime::watcher::Event;
        let stores = Stores::default();
        let cache = Cache::new(Some(stores.clone()), "");
        cache.track_targets(&canary("podinfo", None));
        stores.deployments.apply(&Event::Init);
        stores
            .deployments
            .apply(&Event::InitApply(test_object("podinfo", "7")));
        stores
            .deployments
            .apply(&Event::InitApply(test_object("unrelated", "8")));
        stores.deployments.apply(&Event::InitDone);
        let kept = cache
            .cached::<Deployment>("test", "podinfo")
            .map(|(d, _)| d);
        assert_eq!(
            kept.and_then(|d| d.metadata.resource_version).as_deref(),
            Some("7"),
            "read without a GET"
        );
        assert!(cache.cached::<Deployment>("test", "unrelated").is_none());
        assert_eq!(stores.deployments.len(), 1, "only the target is kept");
    }

    fn defaulted(body: &Value) -> Value {
        let mut live = body.clone();
        live["metadata"]["resourceVersion"] = json!("41");
        live["metadata"]["uid"] = json!("u");
        live["spec"]["clusterIP"] = json!("10.96.0.12");
        live["spec"]["sessionAffinity"] = json!("None");
        live["spec"]["ipFamilies"] = json!(["IPv4"]);
        live["status"] = json!({"loadBalancer": {}});
        live
    }

    #[test]
    fn server_defaults_are_not_a_difference_but_edits_of_our_fields_are() {
        let body = service_body();
        let live = defaulted(&body);
        assert!(covers(&body, &live));

        let mut edited = live.clone();
        edited["spec"]["selector"]["app"] = json!("podinfo");
        assert!(!covers(&body, &edited), "selector edited");

        let mut unlabelled = live.clone();
        unlabelled["metadata"]["labels"] = json!({});
        assert!(!covers(&body, &unlabelled), "label removed");

        let mut extra_port = live.clone();
        extra_port["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "grpc", "port": 9999}));
        assert!(
            !covers(&body, &extra_port),
            "lists match element by element"
        );

        let mut empty = body.clone();
        empty["metadata"]["annotations"] = json!({});
        assert!(covers(&empty, &live), "an empty map is an absent field");
        assert!(!covers(&body, &Value::Null));
    }

    #[test]
    fn unchanged_needs_the_same_intent_and_an_untouched_live_object() {
        let cache = Cache::default();
        let body = service_body();
        let live = defaulted(&body);
        assert!(
            !cache.unchanged(&body, &live),
            "nothing applied by this process yet (after a restart): apply once"
        );
        cache.applied(&body);
        assert!(cache.unchanged(&body, &live));

        // A label we no longer want: the live object still covers the new body, but it must go.
        let mut fewer = body.clone();
        fewer["metadata"]["labels"] = json!({});
        assert!(covers(&fewer, &live));
        assert!(!cache.unchanged(&fewer, &live));

        let mut edited = live.clone();
        edited["spec"]["ports"][0]["port"] = json!(80);
        assert!(!cache.unchanged(&body, &edited));
    }

    #[test]
    fn forgetting_a_target_drops_its_objects_only() {
        let cache = Cache::default();
        let mut body = service_body();
        cache.applied(&body);
        body["metadata"]["name"] = json!("other-primary");
        cache.applied(&body);
        cache.wrote(&service("7"));
        cache.forget_target("test", "podinfo");
        let applied = lock(&cache.applied);
        assert_eq!(applied.len(), 1);
        assert!(applied.keys().all(|k| k.2 == "other-primary"));
        assert!(lock(&cache.written).is_empty());
    }

    fn service(rv: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("podinfo-primary".into()),
                namespace: Some("test".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..Service::default()
        }
    }

    #[test]
    fn the_cache_answers_only_when_listed_kept_and_not_older_than_our_write() {
        use kube::runtime::watcher::Event;
        let stores = Stores::default();
        let services = stores.services.clone();
        let cache = Cache::new(Some(stores), "test");
        services.want("test", "podinfo-primary");
        services.fill(&service("10"));
        assert!(
            cache.cached::<Service>("test", "podinfo-primary").is_none(),
            "initial list not done"
        );
        services.apply(&Event::Init);
        services.apply(&Event::InitApply(service("10")));
        services.apply(&Event::InitDone);
        let seen = cache.cached::<Service>("test", "podinfo-primary");
        assert_eq!(
            seen.and_then(|(s, _)| s.metadata.resource_version),
            Some("10".into())
        );
        assert!(
            cache.cached::<Service>("test", "absent").is_none(),
            "an object never read is not known, so it is read with a GET"
        );

        cache.wrote(&service("12"));
        assert_eq!(
            cache
                .cached::<Service>("test", "podinfo-primary")
                .and_then(|(s, _)| s.metadata.resource_version),
            Some("12".into()),
            "our own write is kept"
        );
        services.apply(&Event::Apply(service("13")));
        assert_eq!(
            cache
                .cached::<Service>("test", "podinfo-primary")
                .and_then(|(s, _)| s.metadata.resource_version),
            Some("13".into()),
            "a later version than our write"
        );

        assert!(
            cache
                .cached::<Service>("other", "podinfo-primary")
                .is_none(),
            "a namespace the watches do not cover"
        );

        cache.wrote(&service("not-a-number"));
        assert!(
            cache.cached::<Service>("test", "podinfo-primary").is_none(),
            "an unreadable version is never caught up"
        );
    }
}
