//! What one tick read from the watch caches, recorded as it reads, so that a later tick can be told
//! without reading or decoding anything that it would read the same (see `at_rest`).
//!
//! A read is recorded with its [`Stamp`]: the version of the object the store kept and the newest
//! version its watch announced, taken with the read itself. The same stamps later mean the same
//! answers. A read the stores cannot stamp (a kind or namespace no watch covers, a store still
//! listing) makes the whole record unusable: such a tick can never be told unchanged.

use std::cell::RefCell;

use super::kept::Stamp;
use super::{Cached, Stores};

tokio::task_local! {
    static READS: RefCell<Reads>;
}

/// How to stamp one key again: the store of its kind, looked up in [`Stores`].
type Restamp = fn(&Stores, &str, &str) -> Option<Stamp>;

fn restamp<K: Cached>(stores: &Stores, namespace: &str, name: &str) -> Option<Stamp> {
    K::store(stores).stamp(namespace, name)
}

#[derive(Clone, Debug)]
struct Read {
    /// The kind, which tells two reads of one name apart.
    kind: &'static str,
    restamp: Restamp,
    namespace: Box<str>,
    name: Box<str>,
    stamp: Stamp,
}

/// The reads of one tick, in the order made (an object read twice counts with its first stamp: a
/// change between the two makes the record stale, never wrongly current).
#[derive(Clone, Debug, Default)]
pub struct Reads {
    reads: Vec<Read>,
    /// A read that could not be stamped was made.
    unstamped: bool,
}

impl Reads {
    /// Whether every read would answer now as it did.
    pub fn hold(&self, stores: &Stores) -> bool {
        !self.unstamped
            && self
                .reads
                .iter()
                .all(|r| (r.restamp)(stores, &r.namespace, &r.name) == Some(r.stamp))
    }
}

/// Runs `tick` recording the cache reads it makes on its own task (see [`taken`]).
pub async fn recording<F: Future>(tick: F) -> F::Output {
    READS.scope(RefCell::new(Reads::default()), tick).await
}

/// Records a read of `K` `namespace/name` answered as `stamp` says (`None`: it cannot be stamped).
/// Outside [`recording`] nothing is recorded.
pub(super) fn note<K: Cached>(namespace: &str, name: &str, stamp: Option<Stamp>) {
    let _ = READS.try_with(|reads| {
        let mut reads = reads.borrow_mut();
        let Some(stamp) = stamp else {
            reads.unstamped = true;
            return;
        };
        let kind = super::kind_of::<K>();
        let known = reads
            .reads
            .iter()
            .any(|r| r.kind == kind && *r.namespace == *namespace && *r.name == *name);
        if !known {
            reads.reads.push(Read {
                kind,
                restamp: restamp::<K>,
                namespace: namespace.into(),
                name: name.into(),
                stamp,
            });
        }
    });
}

/// The reads recorded so far by this task's [`recording`], taken out of it (a tick takes them once,
/// as it ends); `None` outside one, or when a read could not be stamped.
pub fn taken() -> Option<Reads> {
    READS
        .try_with(|reads| {
            let reads = std::mem::take(&mut *reads.borrow_mut());
            (!reads.unstamped).then_some(reads)
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::cache::test_object;

    fn service(name: &str, rv: &str) -> Service {
        test_object(name, rv)
    }

    fn read(stores: &Stores, name: &str) {
        note::<Service>("test", name, stores.services.stamp("test", name));
    }

    #[tokio::test]
    async fn reads_hold_until_what_was_read_changes() {
        let stores = Stores::default();
        stores.services.want("test", "podinfo-primary");
        stores.services.fill(&service("podinfo-primary", "5"));
        // Read and found absent: wanted, nothing kept.
        stores.services.want("test", "podinfo-canary");
        let reads = recording(async {
            read(&stores, "podinfo-primary");
            read(&stores, "podinfo-canary");
            read(&stores, "podinfo-primary");
            taken()
        })
        .await
        .unwrap();
        assert_eq!(reads.reads.len(), 2, "an object read twice counts once");
        assert!(reads.hold(&stores));
        stores
            .services
            .apply(&Event::Apply(service("unrelated", "6")));
        assert!(reads.hold(&stores), "an object not read");
        stores
            .services
            .apply(&Event::Apply(service("podinfo-canary", "7")));
        assert!(!reads.hold(&stores), "an object read as absent, created");
    }

    #[tokio::test]
    async fn a_read_that_cannot_be_stamped_leaves_nothing_to_judge_by() {
        let reads = recording(async {
            note::<Service>("test", "podinfo-primary", None);
            taken()
        })
        .await;
        assert!(reads.is_none());
        assert!(taken().is_none(), "outside a recording");
    }
}
