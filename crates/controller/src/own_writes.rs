//! Which cached copies of a Canary predate the controller's own status writes.
//!
//! A tick decides from the Canary in the watch cache and writes its status; the watch event of that
//! write comes back later, and until it does the cache still holds the version the write replaced.
//! A tick that decided from that copy would decide the last tick again: react to a new revision a
//! second time (a second Event, scale-up and alert), or repeat a step. So a tick whose copy is one
//! its canary's own writes have replaced ticks on the API server's answer to the last of those
//! writes instead: the Canary as that write left it, which the watch will bring later.
//!
//! The answer is kept only until the cache moves past the versions our writes replaced, and once
//! the watch brings the write, what is kept is the store's copy of it, not a second one: a canary
//! holds a Canary of its own only for as long as the watch lags behind its write (otherwise every
//! running canary holds a second whole Canary until its next tick). Reading the Canary from the API
//! server instead, as this did first after a 5 s wait, turned a lagging watch into a storm: under
//! the load of a thousand canaries rolling out with checks, the watch lagged past 5 s, every
//! reconcile of a canary read it (25 GETs per canary rollout, each answered in 1.5 s on average),
//! and the reads loaded the API server further.
//!
//! Versions are compared for equality only (a `resourceVersion` is opaque): every version a write
//! replaced, and the version each earlier write produced, is remembered until the cache holds one
//! that is none of them. The watch delivers versions in order, so once the cache has moved past
//! them none of them comes back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flagger_api::Canary;
use kube::runtime::reflector::ObjectRef;

use crate::context::lock;

/// Versions remembered per canary at most; the oldest go first. A tick writes its status at most
/// once (twice when it saves pod overrides first), and the watch catches up within seconds, so a
/// handful covers every write the watch can be behind on.
const REMEMBERED: usize = 16;

/// What the cache's copy of a canary is, against the canary's own writes.
#[derive(Clone, Debug, PartialEq)]
pub enum CachedCopy {
    /// No write of ours replaced it (or none is remembered).
    Current,
    /// A version one of our writes replaced; the Canary as our last write left it.
    Replaced(Arc<Canary>),
}

#[derive(Default)]
pub struct OwnWrites {
    canaries: Mutex<HashMap<ObjectRef<Canary>, Replaced>>,
}

#[derive(Default)]
struct Replaced {
    /// Versions our writes replaced, oldest first.
    versions: Vec<String>,
    /// The API server's answer to our last write, until the cache moves past the versions it
    /// replaced; its version is replaced in turn by the next write.
    latest: Option<Arc<Canary>>,
}

impl OwnWrites {
    /// Records a status write decided on the copy at `base`, which the API server answered with
    /// `written`.
    pub fn wrote(&self, key: &ObjectRef<Canary>, base: Option<&str>, written: Arc<Canary>) {
        let mut canaries = lock(&self.canaries);
        let replaced = canaries.entry(key.clone()).or_default();
        let earlier = replaced
            .latest
            .take()
            .and_then(|latest| latest.metadata.resource_version.clone());
        for version in base.map(str::to_string).into_iter().chain(earlier) {
            if !replaced.versions.contains(&version) {
                replaced.versions.push(version);
            }
        }
        if replaced.versions.len() > REMEMBERED {
            let excess = replaced.versions.len() - REMEMBERED;
            replaced.versions.drain(..excess);
        }
        replaced.latest = Some(written);
    }

    /// Whether the copy at `version` is one our writes replaced. A copy that is not ends the
    /// memory of the versions before it and of our last write's answer: the cache has moved
    /// past them.
    pub fn copy(&self, key: &ObjectRef<Canary>, version: Option<&str>) -> CachedCopy {
        let mut canaries = lock(&self.canaries);
        let (Some(replaced), Some(version)) = (canaries.get_mut(key), version) else {
            return CachedCopy::Current;
        };
        if replaced.versions.iter().any(|v| v == version)
            && let Some(latest) = &replaced.latest
        {
            return CachedCopy::Replaced(latest.clone());
        }
        // Freed, not cleared: thousands of canaries at rest keep an entry each.
        replaced.versions = Vec::new();
        replaced.latest = None;
        CachedCopy::Current
    }

    /// The Canary watch brought `version` of `key`, and `stored` gives the store's copy of it.
    /// When that is our last write, the answer kept for it becomes the store's copy: the same
    /// Canary, held once instead of twice. Ticks on a replaced copy are answered as before (a
    /// reconcile may have taken its copy from the store just before the event).
    pub fn caught_up(
        &self,
        key: &ObjectRef<Canary>,
        version: Option<&str>,
        stored: impl FnOnce() -> Option<Arc<Canary>>,
    ) {
        let mut canaries = lock(&self.canaries);
        let Some(latest) = canaries.get_mut(key).and_then(|r| r.latest.as_mut()) else {
            return;
        };
        if version.is_none() || latest.metadata.resource_version.as_deref() != version {
            return;
        }
        if let Some(stored) = stored().filter(|s| s.metadata.resource_version.as_deref() == version)
        {
            *latest = stored;
        }
    }

    pub fn forget(&self, key: &ObjectRef<Canary>) {
        lock(&self.canaries).remove(key);
    }

    pub fn canaries(&self) -> Vec<ObjectRef<Canary>> {
        lock(&self.canaries).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ObjectRef<Canary> {
        ObjectRef::new("podinfo").within("test")
    }

    /// The API server's answer to a write: the Canary at `version`.
    fn at(version: &str) -> Arc<Canary> {
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("test".into());
        canary.metadata.resource_version = Some(version.into());
        Arc::new(canary)
    }

    fn replaced_by(copy: CachedCopy) -> Option<String> {
        match copy {
            CachedCopy::Current => None,
            CachedCopy::Replaced(latest) => latest.metadata.resource_version.clone(),
        }
    }

    #[test]
    fn a_copy_a_write_replaced_is_answered_with_the_last_write_until_the_cache_moves_past_it() {
        let writes = OwnWrites::default();
        let key = key();
        assert_eq!(
            writes.copy(&key, Some("1")),
            CachedCopy::Current,
            "nothing written"
        );

        writes.wrote(&key, Some("1"), at("2"));
        // However late the watch is, the replaced copy is never taken for the current one.
        assert_eq!(
            replaced_by(writes.copy(&key, Some("1"))).as_deref(),
            Some("2")
        );

        // Written again on that answer while the cache still lags: both the first base and what
        // the first write produced are now behind, and the newest answer stands for both.
        writes.wrote(&key, Some("2"), at("3"));
        for version in ["1", "2"] {
            assert_eq!(
                replaced_by(writes.copy(&key, Some(version))).as_deref(),
                Some("3"),
                "{version}"
            );
        }
        assert_eq!(writes.copy(&key, Some("3")), CachedCopy::Current);
        // Once the cache has moved past them, a version is no longer remembered.
        assert_eq!(writes.copy(&key, Some("1")), CachedCopy::Current);
        assert!(
            lock(&writes.canaries)[&key].latest.is_none(),
            "the answer is let go"
        );
    }

    #[test]
    fn someone_elses_newer_version_is_current_and_memory_is_bounded() {
        let writes = OwnWrites::default();
        let key = key();
        writes.wrote(&key, Some("1"), at("2"));
        // A person edited the Canary after our write: the cache's copy is theirs.
        assert_eq!(writes.copy(&key, Some("5")), CachedCopy::Current);

        for n in 0..100 {
            writes.wrote(&key, Some(&format!("b{n}")), at(&format!("w{n}")));
        }
        assert_eq!(
            replaced_by(writes.copy(&key, Some("w98"))).as_deref(),
            Some("w99")
        );
        assert_eq!(
            writes.copy(&key, Some("b0")),
            CachedCopy::Current,
            "the oldest dropped"
        );
        writes.forget(&key);
        assert!(writes.canaries().is_empty());
    }

    /// Once the watch brings our write, the answer kept is the store's copy of it, not a second
    /// one; a copy the write replaced is still answered with it.
    #[test]
    fn the_answer_is_the_stores_copy_once_the_watch_brings_the_write() {
        let writes = OwnWrites::default();
        let key = key();
        let answer = at("2");
        writes.wrote(&key, Some("1"), answer.clone());
        let stored = at("2");

        // Another version, or no store copy of this one: the answer stays.
        writes.caught_up(&key, Some("3"), || Some(stored.clone()));
        writes.caught_up(&key, Some("2"), || Some(at("3")));
        writes.caught_up(&key, Some("2"), || None);
        assert_eq!(Arc::strong_count(&answer), 2, "still held");

        writes.caught_up(&key, Some("2"), || Some(stored.clone()));
        assert_eq!(
            Arc::strong_count(&answer),
            1,
            "the write's own copy is let go"
        );
        match writes.copy(&key, Some("1")) {
            CachedCopy::Replaced(latest) => assert!(Arc::ptr_eq(&latest, &stored)),
            CachedCopy::Current => panic!("a replaced copy must be answered"),
        }
        assert_eq!(writes.copy(&key, Some("2")), CachedCopy::Current);
    }
}
