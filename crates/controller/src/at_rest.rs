//! Ticks of a canary at rest that would read what they read last time are skipped.
//!
//! A canary at rest (Initialized, Succeeded or Failed, nothing new in its target) is reconciled at
//! each of its intervals and at every `-control-loop-interval` resync. Each such tick reads its
//! target, primary, Services, autoscaler and configs from the watch caches, decodes them (kept as
//! JSON, see `cache::kept`), and ends with nothing to do: measured at 10 000 canaries, half a core
//! spent finding that nothing changed.
//!
//! Such a tick decides from the Canary and what it reads, nothing else: the core ends a tick at
//! rest before any rule that depends on the time, and the only thing a tick at rest leaves in
//! memory is when the next one is due. So once a tick at rest has found nothing to do (no effect,
//! no event, no status write), a later one that would read the same Canary and the same objects
//! would find nothing to do either. It is skipped, keeping the canary's cadence and its tick
//! metrics as the tick would have.
//!
//! "The same" is judged without reading anything: the Canary's resourceVersion is the one that
//! tick saw, and every object it read from the caches is stamped as it was then (`cache::reads`:
//! the version kept and the newest version its watch announced, a hash lookup each). Each canary
//! is judged by its own reads: while some canaries run, the thousands at rest beside them are not
//! read again (a first version judged every canary by one count of changes to any kept object; at
//! 10 000 canaries, every write of one running canary made all the others read and decode again).
//! A tick with a read the caches cannot stamp (a kind or namespace no watch covers, a store still
//! listing) is never skipped, nor are canaries whose ticks read with a request the caches do not
//! see (a Knative Service's latest Revision, a KEDA ScaledObject).
//!
//! The reads are those of the tick's own task: everything a tick at rest decides from is read
//! there, none of it by a task it spawns.

use std::time::Duration;

use flagger_api::Canary;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use crate::cache::Stores;
use crate::cache::reads::Reads;
use crate::cadence;
use crate::context::Context;
use crate::runner::Requeue;

/// What a tick at rest that found nothing to do saw.
#[derive(Clone, Debug)]
pub struct Memo {
    /// The Canary's resourceVersion (an etcd revision).
    canary: u64,
    /// What it read from the caches, stamped.
    reads: Reads,
    /// The interval its successor was scheduled after.
    interval: Duration,
}

impl Memo {
    /// `None` for a canary whose ticks read what the caches do not see, or whose version is not
    /// a number (it can then never be told unchanged).
    pub fn of(canary: &Canary, reads: Reads, interval: Duration) -> Option<Memo> {
        if !reads_only_the_cache(canary) {
            return None;
        }
        Some(Memo {
            canary: version(canary)?,
            reads,
            interval,
        })
    }

    /// The interval of the tick it stands for, when a tick of `canary` now would read what it read.
    pub fn holds_for(&self, canary: &Canary, stores: &Stores) -> Option<Duration> {
        (version(canary) == Some(self.canary) && self.reads.hold(stores)).then_some(self.interval)
    }
}

fn version(canary: &Canary) -> Option<u64> {
    canary.metadata.resource_version.as_deref()?.parse().ok()
}

/// Whether every read of a tick at rest of `canary` is answered by the watch caches.
fn reads_only_the_cache(canary: &Canary) -> bool {
    let spec = &canary.spec;
    !spec.target_ref.is_knative_service()
        && spec
            .autoscaler_ref
            .as_ref()
            .is_none_or(|scaler| scaler.kind != "ScaledObject")
}

/// The requeue of a tick of `canary` that can be skipped, as the tick would have returned it:
/// the wait until its due time, or, when it is due, the wait until the next one (its place in the
/// cadence taken and its tick counted as the tick would have). `None`: the tick must run.
pub fn skip(ctx: &Context, key: &ObjectRef<Canary>, canary: &Canary) -> Option<Requeue> {
    let started = std::time::Instant::now();
    let stores = ctx.cache.stores()?;
    let (due, interval) = ctx.at_rest(key, |memo| memo.holds_for(canary, stores))?;
    let now = Instant::now();
    if due > now {
        return Some(Requeue::after(due - now));
    }
    let next = cadence::next_due(Some(due), now, now, interval);
    ctx.keep_resting(key, next);
    ctx.metrics.record_tick(
        &canary.name_any(),
        &canary.namespace().unwrap_or_default(),
        &canary.spec.target_ref.name,
        canary
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default(),
        Timestamp::now(),
        started.elapsed().as_secs_f64(),
    );
    Some(Requeue::after(next.saturating_duration_since(now)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flagger_api::{CanaryPhase, CanaryStatus};
    use k8s_openapi::api::core::v1::Service;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::cache::Stores;
    use crate::metrics::Metrics;

    const INTERVAL: Duration = Duration::from_secs(10);

    fn context(stores: &Stores) -> Context {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let flags = crate::flags::parse(&[]).unwrap();
        Context::new(
            client,
            flags,
            Arc::new(Metrics::new(false)),
            crate::webhooks::Caller::new().unwrap(),
            None,
            Some(stores.clone()),
        )
    }

    fn canary(rv: &str) -> Canary {
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("test".into());
        canary.metadata.resource_version = Some(rv.into());
        canary.spec.target_ref.kind = "Deployment".into();
        canary.spec.target_ref.name = "podinfo".into();
        canary.status = Some(CanaryStatus {
            phase: Some(CanaryPhase::Succeeded),
            ..Default::default()
        });
        canary
    }

    fn service(name: &str, rv: &str) -> Service {
        crate::cache::test_object(name, rv)
    }

    /// A context whose last tick of `canary` read `podinfo-primary` and found nothing to do, its
    /// next tick due at `due`.
    async fn rested(stores: &Stores, canary: &Canary, due: Instant) -> Context {
        stores.services.apply(&Event::Init);
        stores.services.apply(&Event::InitDone);
        for name in ["podinfo-primary", "other-primary"] {
            stores.services.want("test", name);
            stores.services.fill(&service(name, "5"));
        }
        let ctx = context(stores);
        let reads = crate::cache::reads::recording(async {
            ctx.cache
                .get::<Service>(&ctx.client, "test", "podinfo-primary")
                .await
                .unwrap();
            crate::cache::reads::taken()
        })
        .await
        .unwrap();
        let key = ObjectRef::from_obj(canary);
        ctx.set_due(&key, due);
        ctx.rest(&key, Memo::of(canary, reads, INTERVAL).unwrap());
        ctx
    }

    fn wait(requeue: Option<Requeue>) -> Option<Duration> {
        requeue.map(|r| r.delay().unwrap_or_default())
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_before_its_time_waits_for_it_without_reading() {
        let stores = Stores::default();
        let canary = canary("40");
        let ctx = rested(&stores, &canary, Instant::now() + Duration::from_secs(4)).await;
        let key = ObjectRef::from_obj(&canary);
        assert_eq!(
            wait(skip(&ctx, &key, &canary)),
            Some(Duration::from_secs(4))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_tick_keeps_its_cadence_and_is_counted() {
        let stores = Stores::default();
        let canary = canary("40");
        let due = Instant::now();
        let ctx = rested(&stores, &canary, due).await;
        let key = ObjectRef::from_obj(&canary);
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(
            wait(skip(&ctx, &key, &canary)),
            Some(INTERVAL - Duration::from_millis(300)),
            "due one interval after the due time it stood for, not after it ran"
        );
        assert_eq!(ctx.due(&key), Some(due + INTERVAL));
        let text = ctx.metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"flagger_canary_duration_seconds_count{name="podinfo",namespace="test"} 1"#
            ),
            "{text}"
        );
        tokio::time::advance(INTERVAL).await;
        assert!(
            skip(&ctx, &key, &canary).is_some(),
            "still at rest, the next one too"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_edited_canary_runs_its_tick() {
        let stores = Stores::default();
        let ctx = rested(&stores, &canary("40"), Instant::now()).await;
        let edited = canary("41");
        assert!(skip(&ctx, &ObjectRef::from_obj(&edited), &edited).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn any_change_to_what_its_last_tick_read_runs_the_tick() {
        type Change = fn(&Stores);
        let changes: [(&str, Change); 3] = [
            ("a kept object replaced", |s| {
                s.services
                    .apply(&Event::Apply(service("podinfo-primary", "6")))
            }),
            ("a kept object deleted", |s| {
                s.services
                    .apply(&Event::Delete(service("podinfo-primary", "6")))
            }),
            ("a kept object dropped", |s| {
                s.services.forget("test", |name| name == "podinfo-primary")
            }),
        ];
        for (what, change) in changes {
            let stores = Stores::default();
            let canary = canary("40");
            let ctx = rested(&stores, &canary, Instant::now()).await;
            change(&stores);
            assert!(
                skip(&ctx, &ObjectRef::from_obj(&canary), &canary).is_none(),
                "{what}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn what_its_last_tick_did_not_read_changes_nothing() {
        let stores = Stores::default();
        let canary = canary("40");
        let ctx = rested(&stores, &canary, Instant::now()).await;
        stores
            .services
            .apply(&Event::Apply(service("unrelated", "7")));
        stores
            .services
            .apply(&Event::InitApply(service("podinfo-primary", "5")));
        // Kept for another canary, which is running.
        stores
            .services
            .apply(&Event::Apply(service("other-primary", "8")));
        stores.services.want("test", "other-canary");
        stores
            .services
            .apply(&Event::Apply(service("other-canary", "9")));
        assert!(
            skip(&ctx, &ObjectRef::from_obj(&canary), &canary).is_some(),
            "an unrelated object, a relist of the version kept, another canary's objects"
        );
    }

    #[test]
    fn targets_read_with_a_request_at_every_tick_are_never_skipped() {
        let mut knative = canary("40");
        knative.spec.target_ref.api_version = "serving.knative.dev/v1".into();
        knative.spec.target_ref.kind = "Service".into();
        assert!(Memo::of(&knative, Reads::default(), INTERVAL).is_none());
        let mut keda = canary("40");
        keda.spec.autoscaler_ref = Some(flagger_api::canary::AutoscalerRef {
            kind: "ScaledObject".into(),
            name: "podinfo".into(),
            ..Default::default()
        });
        assert!(Memo::of(&keda, Reads::default(), INTERVAL).is_none());
        assert!(Memo::of(&canary("40"), Reads::default(), INTERVAL).is_some());
        assert!(Memo::of(&canary("not a number"), Reads::default(), INTERVAL).is_none());
    }
}
