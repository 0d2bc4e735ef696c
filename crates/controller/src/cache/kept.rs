//! A watch cache that keeps only the objects canaries read.
//!
//! A reflector of every Deployment, Service or Secret of the cluster makes the controller's
//! memory follow the cluster's size, and holds the values of Secrets no canary references. This
//! store keeps an object only once a reconcile has asked for it by name (a target, what a canary
//! owns, a config its pod template references); the watch then keeps that object fresh and passes
//! over every other one. Memory follows the canaries.
//!
//! Two ways of keeping an object fresh, by kind:
//! * a full watch replaces the kept object with each version the watch delivers (workloads,
//!   Services, autoscalers, templates: they change often while a canary runs, and a GET per change
//!   would cost more than decoding the others and dropping them);
//! * a metadata-only watch drops the kept object when a newer version is announced, and the next
//!   read GETs it (ConfigMaps and Secrets: clusters hold many, large ones, and tracked configs
//!   rarely change; the values of unrelated Secrets never leave the API server).
//!
//! A kept object is held as its JSON, decoded on each read. k8s-openapi's structs hold every
//! optional field of a Deployment or Service inline whether set or not: measured at 1 000 canaries
//! (heaptrack), the five objects a canary owns or targets took ~24 KB as structs, several times
//! their JSON, and dominated the controller's memory. Each read already made a deep copy of the
//! object; it now decodes a few KB of JSON instead, which costs more CPU per read.
//!
//! The JSON is kept LZ4-compressed against a [`Dictionary`]: the first object the store kept.
//! Objects of one kind share most of their text (field names, defaults, label keys, the same
//! image and ports across a fleet), which a few-KB object compressed alone cannot use: the five
//! objects of one canary of `hack/bench scale` are 6.4 KB of JSON, 4.6 KB compressed alone and
//! 0.9 KB against the first canary's. Those ~7 KB a canary were the largest share of a controller
//! at rest (heaptrack, 1 000 canaries). A read decompresses them first, a microsecond beside the
//! decoding.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::context::lock;

type Key = (String, String);

fn key_of(meta: &kube::core::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The etcd revision behind a resourceVersion (see `cache::resource_version`); unreadable counts as 0.
fn version(meta: &kube::core::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn owned_by_a_canary(meta: &kube::core::ObjectMeta) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Canary" && o.api_version.starts_with("flagger.app/"))
}

/// LZ4 looks back at most 64 KiB: a longer dictionary's start is never used.
const DICTIONARY_MAX: usize = 64 * 1024;

/// What a store's objects are compressed against: the JSON of the first object it kept, for as
/// long as the store lives (a compressed object needs the very dictionary it was compressed
/// with). Empty for Secrets: their values must not outlive the canary that read them, and
/// compressed alone they still shrink a little.
#[derive(Clone, Default)]
struct Dictionary(Arc<[u8]>);

impl Dictionary {
    /// The dictionary, taken from `json` if there is none yet and `kind` may give one.
    fn get_or_take(&mut self, kind: &str, json: &[u8]) -> &[u8] {
        if self.0.is_empty() && kind != "Secret" {
            self.0 = json[json.len().saturating_sub(DICTIONARY_MAX)..].into();
        }
        &self.0
    }
}

/// An object as kept: its JSON (without managedFields: nothing reads them and they are most of
/// an object's size), compressed against the store's [`Dictionary`], and the version it is at.
struct Kept {
    /// Shared, so a read copies a pointer under the lock and decodes after releasing it.
    packed: Arc<[u8]>,
    version: u64,
}

impl Kept {
    /// `None` for an object that does not encode (never for API types): it is then not kept,
    /// and the next read GETs it.
    fn of<K: Resource<DynamicType = ()> + Clone + Serialize>(
        object: &K,
        dictionary: &mut Dictionary,
    ) -> Option<Kept> {
        let mut bare = object.clone();
        bare.meta_mut().managed_fields = None;
        let json = serde_json::to_vec(&bare).ok()?;
        let dictionary = dictionary.get_or_take(&K::kind(&()), &json);
        let packed = lz4_flex::block::compress_prepend_size_with_dict(&json, dictionary).into();
        Some(Kept {
            packed,
            version: version(object.meta()),
        })
    }

    /// The object back; `None` only if what was kept no longer decodes into `K`.
    fn unpack<K: DeserializeOwned>(packed: &[u8], dictionary: &Dictionary) -> Option<K> {
        let json =
            lz4_flex::block::decompress_size_prepended_with_dict(packed, &dictionary.0).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// What a read of a wanted key answered, told again without decoding: the version of the object
/// kept, or (nothing kept: 0) the newest version the watch announced for the key. Equal stamps at
/// two moments mean a read then and a read now answer the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    kept: u64,
    seen: u64,
}

impl Stamp {
    /// The version of the object kept, 0 when none.
    pub fn kept(&self) -> u64 {
        self.kept
    }

    fn of(entry: &Entry) -> Stamp {
        match &entry.object {
            // A kept object is never older than what the watch announced (a newer version replaces
            // or drops it): its version says it all, and a relist of it changes nothing.
            Some(kept) => Stamp {
                kept: kept.version,
                seen: 0,
            },
            None => Stamp {
                kept: 0,
                seen: entry.seen,
            },
        }
    }
}

#[derive(Default)]
struct Entry {
    object: Option<Kept>,
    /// The newest version the watch has announced: a GET answer older than it is already stale.
    seen: u64,
}

struct Inner {
    entries: HashMap<Key, Entry>,
    dictionary: Dictionary,
    /// The keys a relist has delivered so far; a kept key it misses was deleted during the gap.
    relisted: Option<HashSet<Key>>,
}

/// Objects of one kind kept because a reconcile read them, fed by that kind's watch.
pub struct KeptStore<K> {
    inner: Arc<Mutex<Inner>>,
    synced: watch::Sender<bool>,
    /// Objects are kept encoded; the kind says what a read decodes them into.
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for KeptStore<K> {
    fn clone(&self) -> Self {
        KeptStore {
            inner: self.inner.clone(),
            synced: self.synced.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> Default for KeptStore<K> {
    fn default() -> Self {
        KeptStore {
            inner: Arc::new(Mutex::new(Inner {
                entries: HashMap::new(),
                dictionary: Dictionary::default(),
                relisted: None,
            })),
            synced: watch::Sender::new(false),
            kind: PhantomData,
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned> KeptStore<K> {
    /// Whether the watch has delivered its initial list: before that, nothing kept is trusted.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    pub async fn wait_until_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as the store, so this only ends when synced.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// The kept object, `None` when it is not kept (never read, or dropped as stale).
    #[cfg(test)]
    pub fn get(&self, namespace: &str, name: &str) -> Option<K> {
        self.get_stamped(namespace, name).0
    }

    /// The kept object and what the read answered (see [`Stamp`]), taken together under the lock;
    /// no stamp when the key is not wanted.
    pub fn get_stamped(&self, namespace: &str, name: &str) -> (Option<K>, Option<Stamp>) {
        let (packed, stamp) = {
            let inner = lock(&self.inner);
            let Some(entry) = inner
                .entries
                .get(&(namespace.to_string(), name.to_string()))
            else {
                return (None, None);
            };
            (
                entry
                    .object
                    .as_ref()
                    .map(|kept| (kept.packed.clone(), inner.dictionary.clone())),
                Stamp::of(entry),
            )
        };
        let object = packed.and_then(|(packed, dictionary)| Kept::unpack(&packed, &dictionary));
        (object, Some(stamp))
    }

    /// What a read of the key would answer now, as a [`Stamp`]; `None` when it is not wanted.
    pub fn stamp(&self, namespace: &str, name: &str) -> Option<Stamp> {
        let inner = lock(&self.inner);
        let entry = inner
            .entries
            .get(&(namespace.to_string(), name.to_string()))?;
        Some(Stamp::of(entry))
    }

    /// Marks an object as read by a canary, before the GET that fetches it: a watch event that
    /// arrives while the GET is in flight is then not lost.
    pub fn want(&self, namespace: &str, name: &str) {
        lock(&self.inner)
            .entries
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
    }

    /// Keeps `object` (a GET answer or our own write) if it is wanted and not older than what the
    /// watch has announced.
    pub fn fill(&self, object: &K) {
        let meta = object.meta();
        let rv = version(meta);
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let Some(entry) = inner.entries.get_mut(&key_of(meta)) else {
            return;
        };
        let newer = entry.object.as_ref().is_none_or(|kept| kept.version <= rv);
        if rv >= entry.seen && newer {
            entry.object = Kept::of(object, &mut inner.dictionary);
        }
    }

    /// Stops keeping the objects of `namespace` that `drop` selects (a canary that is gone).
    pub fn forget(&self, namespace: &str, drop: impl Fn(&str) -> bool) {
        lock(&self.inner)
            .entries
            .retain(|(ns, name), _| ns != namespace || !drop(name));
    }

    /// How many objects are kept (wanted keys, with or without an object).
    pub fn len(&self) -> usize {
        lock(&self.inner).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A full watch's event: a kept object is replaced by the version delivered. An object a
    /// Canary owns (a primary, its Services, its HPA) is kept from its first event: every such
    /// object is read by its canary's next tick, and keeping it at once spares that tick a GET
    /// (thousands of them when the controller starts at scale).
    pub fn apply(&self, event: &Event<K>) {
        if let Event::InitApply(o) | Event::Apply(o) = event
            && owned_by_a_canary(o.meta())
        {
            let meta = o.meta();
            self.want(
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
            );
        }
        self.on_event(event, |entry, object, dictionary| {
            entry.object = Kept::of(object, dictionary)
        });
    }

    /// A metadata-only watch's event: a kept object older than the version announced is dropped,
    /// so the next read fetches it.
    pub fn apply_meta(&self, event: &Event<PartialObjectMeta<K>>) {
        self.on_event(event, |entry, meta, _| {
            let rv = version(meta.meta());
            if entry.object.as_ref().is_some_and(|kept| kept.version < rv) {
                entry.object = None;
            }
        });
    }

    fn on_event<O: Resource>(
        &self,
        event: &Event<O>,
        update: impl Fn(&mut Entry, &O, &mut Dictionary),
    ) {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        match event {
            Event::Init => inner.relisted = Some(HashSet::new()),
            Event::InitApply(o) | Event::Apply(o) => {
                let key = key_of(o.meta());
                if let Some(relisted) = inner.relisted.as_mut()
                    && matches!(event, Event::InitApply(_))
                {
                    relisted.insert(key.clone());
                }
                if let Some(entry) = inner.entries.get_mut(&key) {
                    entry.seen = entry.seen.max(version(o.meta()));
                    update(entry, o, &mut inner.dictionary);
                }
            }
            Event::Delete(o) => {
                // Gone: nothing is kept of it; a canary that still reads it asks again.
                inner.entries.remove(&key_of(o.meta()));
            }
            Event::InitDone => {
                if let Some(relisted) = inner.relisted.take() {
                    inner.entries.retain(|key, _| relisted.contains(key));
                }
                drop(guard);
                self.synced.send_replace(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use kube::core::ObjectMeta;

    fn secret(name: &str, rv: &str, value: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("test".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            string_data: Some([("token".to_string(), value.to_string())].into()),
            ..Default::default()
        }
    }

    fn meta(name: &str, rv: &str) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("test".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn value(store: &KeptStore<Secret>, name: &str) -> Option<String> {
        store
            .get("test", name)
            .and_then(|s| s.string_data.as_ref()?.get("token").cloned())
    }

    #[test]
    fn only_objects_a_canary_read_are_kept() {
        let store = KeptStore::<ConfigMap>::default();
        let cm = |name: &str| ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("test".into()),
                resource_version: Some("5".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        store.apply(&Event::Init);
        for i in 0..100 {
            store.apply(&Event::InitApply(cm(&format!("unrelated-{i}"))));
        }
        store.apply(&Event::InitDone);
        assert!(store.is_synced());
        assert!(store.is_empty(), "nothing read, nothing kept");

        store.want("test", "app-config");
        store.fill(&cm("app-config"));
        store.apply(&Event::Apply(cm("unrelated-0")));
        assert_eq!(store.len(), 1);
        assert!(store.get("test", "app-config").is_some());
        assert!(store.get("test", "unrelated-0").is_none());
    }

    #[test]
    fn a_kept_object_reads_back_whole_but_for_its_managed_fields() {
        let store = KeptStore::<Secret>::default();
        let mut written = secret("db", "7", "one");
        written.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        written.metadata.managed_fields = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                ..Default::default()
            },
        ]);
        store.want("test", "db");
        store.fill(&written);
        let mut expected = written.clone();
        expected.metadata.managed_fields = None;
        assert_eq!(store.get("test", "db"), Some(expected.clone()));
        store.apply(&Event::Apply(written));
        assert_eq!(
            store.get("test", "db"),
            Some(expected),
            "from the watch too"
        );
    }

    /// The bytes `name` is kept in, 0 when nothing is kept.
    fn packed_len<K>(store: &KeptStore<K>, name: &str) -> usize {
        let inner = lock(&store.inner);
        let key = ("test".to_string(), name.to_string());
        inner
            .entries
            .get(&key)
            .and_then(|entry| entry.object.as_ref())
            .map_or(0, |kept| kept.packed.len())
    }

    #[test]
    fn objects_of_one_kind_are_kept_compressed_against_the_first_and_read_back_whole() {
        use k8s_openapi::api::apps::v1::Deployment;
        let deployment = |name: &str| -> Deployment {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "test", "resourceVersion": "9",
                    "labels": {"app": name}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "podinfod",
                            "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                            "ports": [{"name": "http", "containerPort": 9898, "protocol": "TCP"}],
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                            "schedulerName": "default-scheduler"}},
                    "strategy": {"type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}},
                "status": {"observedGeneration": 3, "replicas": 1, "readyReplicas": 1,
                    "conditions": [{"type": "Available", "status": "True",
                        "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability."}]}
            }))
            .unwrap()
        };
        let store = KeptStore::<Deployment>::default();
        let names = ["c-00001", "c-00002", "c-09999"];
        for name in names {
            store.want("test", name);
            store.fill(&deployment(name));
        }
        for name in names {
            assert_eq!(store.get("test", name), Some(deployment(name)), "{name}");
        }
        let json = serde_json::to_vec(&deployment("c-09999")).unwrap().len();
        let packed = packed_len(&store, "c-09999");
        assert!(
            packed * 4 < json,
            "a fleet's objects share most of their text: {packed} bytes kept of {json}"
        );
    }

    #[test]
    fn a_secret_never_becomes_the_dictionary_of_the_secrets_after_it() {
        let store = KeptStore::<Secret>::default();
        for (name, value) in [("db", "s3cr3t"), ("api", "t0k3n")] {
            store.want("test", name);
            store.fill(&secret(name, "4", value));
        }
        assert!(lock(&store.inner).dictionary.0.is_empty());
        assert_eq!(value(&store, "db").as_deref(), Some("s3cr3t"));
        assert_eq!(value(&store, "api").as_deref(), Some("t0k3n"));
        store.forget("test", |_| true);
        assert!(store.is_empty(), "nothing of either is left");
    }

    #[test]
    fn an_unwanted_fill_is_not_kept() {
        let store = KeptStore::<Secret>::default();
        store.fill(&secret("other", "3", "s3cr3t"));
        assert!(store.is_empty(), "a write of an object no canary read");
    }

    #[test]
    fn a_metadata_event_drops_what_it_makes_stale() {
        let store = KeptStore::<Secret>::default();
        store.want("test", "db");
        store.fill(&secret("db", "10", "one"));
        store.apply_meta(&Event::Apply(meta("db", "10")));
        assert_eq!(value(&store, "db").as_deref(), Some("one"), "same version");
        store.apply_meta(&Event::Apply(meta("db", "11")));
        assert_eq!(value(&store, "db"), None, "a newer version was announced");
        store.fill(&secret("db", "10", "one"));
        assert_eq!(
            value(&store, "db"),
            None,
            "a GET answer older than the announced version is stale"
        );
        store.fill(&secret("db", "11", "two"));
        assert_eq!(value(&store, "db").as_deref(), Some("two"));
    }

    #[test]
    fn stamps_change_when_a_read_would_answer_differently() {
        let store = KeptStore::<Secret>::default();
        assert_eq!(store.stamp("test", "db"), None, "not wanted");
        store.want("test", "db");
        store.fill(&secret("db", "10", "one"));
        let kept = store.stamp("test", "db");
        assert_eq!(kept.map(|s| s.kept()), Some(10));
        let (object, stamp) = store.get_stamped("test", "db");
        assert!(object.is_some());
        assert_eq!(stamp, kept, "the stamp of the object read");
        store.fill(&secret("db", "10", "one"));
        store.apply_meta(&Event::Apply(meta("db", "10")));
        store.apply_meta(&Event::Apply(meta("unrelated", "12")));
        assert_eq!(
            store.stamp("test", "db"),
            kept,
            "the same version again, an object not read"
        );
        store.apply_meta(&Event::Apply(meta("db", "11")));
        let dropped = store.stamp("test", "db");
        assert_ne!(dropped, kept, "dropped as stale");
        assert_eq!(dropped.map(|s| s.kept()), Some(0));
        store.apply_meta(&Event::Apply(meta("db", "12")));
        assert_ne!(
            store.stamp("test", "db"),
            dropped,
            "announced while not kept: the next read fetches it"
        );
        store.apply_meta(&Event::Delete(meta("db", "13")));
        assert_eq!(store.stamp("test", "db"), None, "deleted");
    }

    #[test]
    fn a_full_event_replaces_and_a_delete_forgets() {
        let store = KeptStore::<Secret>::default();
        store.want("test", "db");
        store.fill(&secret("db", "10", "one"));
        store.apply(&Event::Apply(secret("db", "12", "two")));
        assert_eq!(value(&store, "db").as_deref(), Some("two"));
        store.fill(&secret("db", "11", "stale"));
        assert_eq!(value(&store, "db").as_deref(), Some("two"), "older write");
        store.apply(&Event::Delete(secret("db", "13", "two")));
        assert!(store.is_empty());
    }

    #[test]
    fn what_a_canary_owns_is_kept_from_its_first_event() {
        let store = KeptStore::<Secret>::default();
        let mut owned = secret("podinfo-token-primary", "4", "copy");
        owned.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "flagger.app/v1beta1".into(),
                kind: "Canary".into(),
                name: "podinfo".into(),
                uid: "u".into(),
                ..Default::default()
            },
        ]);
        store.apply(&Event::Apply(owned));
        store.apply(&Event::Apply(secret("unrelated", "5", "x")));
        assert_eq!(
            value(&store, "podinfo-token-primary").as_deref(),
            Some("copy")
        );
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_relist_forgets_what_was_deleted_during_the_gap() {
        let store = KeptStore::<Secret>::default();
        for name in ["kept", "deleted"] {
            store.want("test", name);
            store.fill(&secret(name, "10", name));
        }
        store.apply_meta(&Event::Init);
        store.apply_meta(&Event::InitApply(meta("kept", "10")));
        store.apply_meta(&Event::InitDone);
        assert_eq!(value(&store, "kept").as_deref(), Some("kept"));
        assert!(store.get("test", "deleted").is_none());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn forget_drops_a_canarys_objects_in_its_namespace() {
        let store = KeptStore::<Secret>::default();
        for name in ["podinfo", "podinfo-primary", "other"] {
            store.want("test", name);
        }
        store.forget("test", |n| n == "podinfo" || n.starts_with("podinfo-"));
        assert_eq!(store.len(), 1);
        assert!(store.get("test", "other").is_none());
    }
}
