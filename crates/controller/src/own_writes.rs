//! Which cached copies of a Canary predate the controller's own status writes.
//!
//! A tick decides from the Canary in the watch cache and writes its status; the watch event of that
//! write comes back later, and until it does the cache still holds the version the write replaced.
//! A tick that decided from that copy would decide the last tick again: react to a new revision a
//! second time (a second Event, scale-up and alert), or repeat a step. So a tick whose copy is one
//! its canary's own writes have replaced waits for the watch, briefly, and past that reads the Canary
//! from the API server instead (under load the watch was measured lagging more than 5 s behind a
//! thousand canaries' writes).
//!
//! Versions are compared for equality only (a `resourceVersion` is opaque): every version a write
//! replaced, and the version each earlier write produced, is remembered until the cache holds one
//! that is none of them. The watch delivers versions in order, so once the cache has moved past
//! them none of them comes back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use flagger_api::Canary;
use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use crate::context::lock;

/// Versions remembered per canary at most; the oldest go first. A tick writes its status at most
/// once (twice when it saves pod overrides first), and the watch catches up within seconds, so a
/// handful covers every write the watch can be behind on.
const REMEMBERED: usize = 16;

/// What the cache's copy of a canary is, against the canary's own writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CachedCopy {
    /// No write of ours replaced it (or none is remembered).
    Current,
    /// A version one of our writes replaced; the last write was `since` ago.
    Replaced { since: Duration },
}

#[derive(Default)]
pub struct OwnWrites {
    canaries: Mutex<HashMap<ObjectRef<Canary>, Replaced>>,
}

struct Replaced {
    /// Versions our writes replaced, oldest first.
    versions: Vec<String>,
    /// The version our last write produced: replaced in turn by the next write.
    latest: Option<String>,
    at: Instant,
}

impl OwnWrites {
    /// Records a status write decided on the copy at `base`, which the API server answered with
    /// the object at `written`.
    pub fn wrote(&self, key: &ObjectRef<Canary>, base: Option<&str>, written: Option<String>) {
        let mut canaries = lock(&self.canaries);
        let replaced = canaries.entry(key.clone()).or_insert_with(|| Replaced {
            versions: Vec::new(),
            latest: None,
            at: Instant::now(),
        });
        let earlier = replaced.latest.take();
        for version in base.map(str::to_string).into_iter().chain(earlier) {
            if !replaced.versions.contains(&version) {
                replaced.versions.push(version);
            }
        }
        if replaced.versions.len() > REMEMBERED {
            let excess = replaced.versions.len() - REMEMBERED;
            replaced.versions.drain(..excess);
        }
        replaced.latest = written;
        replaced.at = Instant::now();
    }

    /// Whether the copy at `version` is one our writes replaced. A copy that is not ends the
    /// memory of the versions before it: the cache has moved past them.
    pub fn copy(&self, key: &ObjectRef<Canary>, version: Option<&str>) -> CachedCopy {
        let mut canaries = lock(&self.canaries);
        let (Some(replaced), Some(version)) = (canaries.get_mut(key), version) else {
            return CachedCopy::Current;
        };
        if replaced.versions.iter().any(|v| v == version) {
            return CachedCopy::Replaced {
                since: replaced.at.elapsed(),
            };
        }
        // Freed, not cleared: thousands of canaries at rest keep an entry each.
        replaced.versions = Vec::new();
        CachedCopy::Current
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

    #[tokio::test(start_paused = true)]
    async fn a_copy_a_write_replaced_stays_replaced_until_the_cache_moves_past_it() {
        let writes = OwnWrites::default();
        let key = key();
        assert_eq!(
            writes.copy(&key, Some("1")),
            CachedCopy::Current,
            "nothing written"
        );

        writes.wrote(&key, Some("1"), Some("2".into()));
        tokio::time::advance(Duration::from_secs(7)).await;
        // However late the watch is, the replaced copy is never taken for the current one.
        assert_eq!(
            writes.copy(&key, Some("1")),
            CachedCopy::Replaced {
                since: Duration::from_secs(7)
            }
        );

        // Written again on a copy read from the API server while the cache still lags: both the
        // first base and what the first write produced are now behind.
        writes.wrote(&key, Some("2"), Some("3".into()));
        for version in ["1", "2"] {
            assert!(
                matches!(
                    writes.copy(&key, Some(version)),
                    CachedCopy::Replaced { .. }
                ),
                "{version}"
            );
        }
        assert_eq!(writes.copy(&key, Some("3")), CachedCopy::Current);
        // Once the cache has moved past them, a version is no longer remembered.
        assert_eq!(writes.copy(&key, Some("1")), CachedCopy::Current);
    }

    #[tokio::test(start_paused = true)]
    async fn someone_elses_newer_version_is_current_and_memory_is_bounded() {
        let writes = OwnWrites::default();
        let key = key();
        writes.wrote(&key, Some("1"), Some("2".into()));
        // A person edited the Canary after our write: the cache's copy is theirs.
        assert_eq!(writes.copy(&key, Some("5")), CachedCopy::Current);

        for n in 0..100 {
            writes.wrote(&key, Some(&format!("b{n}")), Some(format!("w{n}")));
        }
        assert!(matches!(
            writes.copy(&key, Some("w98")),
            CachedCopy::Replaced { .. }
        ));
        assert_eq!(
            writes.copy(&key, Some("b0")),
            CachedCopy::Current,
            "the oldest dropped"
        );
        writes.forget(&key);
        assert!(writes.canaries().is_empty());
    }
}
