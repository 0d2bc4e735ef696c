//! When each canary is reconciled: on a change of the canary or of anything it concerns (the
//! watches' triggers), at the time its last reconcile asked for, and at every resync; never two
//! reconciles of one canary at once.
//!
//! kube-runtime's `Controller` runner does the same, but it parks a trigger for a canary whose
//! reconcile is still running in a set that it scans whole, testing each entry against the running
//! reconciles, every time it is polled (several times per watch event). Reconciles here wait for
//! a worker inside the reconcile (see `workers`), so during an initialisation or a mass rollout
//! thousands of them run at once, each resync parks a trigger for every one, and the scan took
//! ~80 % of the thread that drives the runner (profiled at 3 000 canaries initialising): the
//! more canaries, the slower each one was served. Here a trigger for a running canary is one flag
//! on its entry and a due time one entry of a timer queue, so no step depends on the count.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::task::JoinSet;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue::Key;
use tracing::Instrument;

/// What a reconcile asks for next: another reconcile after a while, or none until something
/// changes (or the next resync).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requeue {
    after: Option<Duration>,
}

impl Requeue {
    pub fn after(after: Duration) -> Requeue {
        Requeue { after: Some(after) }
    }

    pub fn await_change() -> Requeue {
        Requeue { after: None }
    }

    /// How long until the object is reconciled again, `None` when only a change brings it.
    pub fn delay(&self) -> Option<Duration> {
        self.after
    }
}

/// Where one object stands. An object neither running nor due has no entry.
enum State {
    /// Its reconcile runs; `again` once something asked for another while it did.
    Running { again: bool },
    /// Its next reconcile is due when `key`'s timer fires.
    Due(Key),
}

/// The runner's bookkeeping, apart from the loop that feeds it.
struct Schedule<K: Resource<DynamicType = ()> + 'static, S, F> {
    store: Store<K>,
    states: HashMap<ObjectRef<K>, State>,
    timers: DelayQueue<ObjectRef<K>>,
    running: JoinSet<(ObjectRef<K>, Option<Requeue>)>,
    skip: S,
    reconcile: F,
}

impl<K, S, F> Schedule<K, S, F>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: FnMut(&Arc<K>) -> Option<Requeue>,
    F: FnMut(Arc<K>) -> BoxFuture<'static, Requeue>,
{
    /// Something changed for `object`: reconcile it now, or once its running reconcile is done.
    fn trigger(&mut self, object: ObjectRef<K>) {
        match self.states.get_mut(&object) {
            Some(State::Running { again }) => *again = true,
            Some(State::Due(key)) => {
                let key = *key;
                self.timers.remove(&key);
                self.start(object);
            }
            None => self.start(object),
        }
    }

    /// Starts `object`'s reconcile on a task of its own, with the latest copy the watch cache
    /// holds, unless `skip` answers for it at once. An object gone from the cache was deleted:
    /// it is forgotten, not reconciled.
    fn start(&mut self, object: ObjectRef<K>) {
        let Some(latest) = self.store.get(&object) else {
            self.states.remove(&object);
            return;
        };
        // Most turns of thousands of objects at rest end here: no task, no span, no other
        // thread woken to run it and then this one woken to hear it finished.
        if let Some(requeue) = (self.skip)(&latest) {
            self.states.remove(&object);
            self.requeue(object, Some(requeue));
            return;
        }
        let span = tracing::info_span!("reconciling object", object.ref = %object);
        let reconciled = (self.reconcile)(latest);
        self.states
            .insert(object.clone(), State::Running { again: false });
        self.running.spawn(
            async move {
                // A panic outside the tick proper (which catches its own) is logged here; the
                // canary is reconciled again on its next change or resync.
                match AssertUnwindSafe(reconciled).catch_unwind().await {
                    Ok(requeue) => (object, Some(requeue)),
                    Err(_) => {
                        tracing::error!("reconcile panicked");
                        (object, None)
                    }
                }
            }
            .instrument(span),
        );
    }

    /// `object`'s reconcile is done: it runs again at once if something changed meanwhile, else
    /// when it asked to.
    fn finished(&mut self, object: ObjectRef<K>, requeue: Option<Requeue>) {
        let again = matches!(
            self.states.remove(&object),
            Some(State::Running { again: true })
        );
        if again {
            self.start(object);
        } else {
            self.requeue(object, requeue);
        }
    }

    /// `object`, neither running nor due, waits for the time it asked for (if any).
    fn requeue(&mut self, object: ObjectRef<K>, requeue: Option<Requeue>) {
        if let Some(after) = requeue.and_then(|r| r.after) {
            let key = self.timers.insert(object.clone(), after);
            self.states.insert(object, State::Due(key));
        }
    }

    /// A due time came.
    fn due(&mut self, object: ObjectRef<K>) {
        // Only a due object has a timer: starting removes the timer, and a running one gets its
        // timer when it finishes.
        self.states.remove(&object);
        self.start(object);
    }
}

/// How often a wait for a store's initial list asks again (see [`wait_listed`]).
const LISTED_POLL: Duration = Duration::from_secs(1);

/// Resolves once `store` has its initial list; an error when its writer is gone before that.
///
/// kube-runtime's `Store::wait_until_ready` is a oneshot channel that wakes only the task that
/// polled it last: with two waiters (this runner, the readiness of `/readyz`), the one that polled
/// first is never woken, and a runner never woken holds every trigger until something else wakes
/// it (at 10 000 canaries, the readiness task waited forever). Asked again every second, a wait
/// finds the store ready whoever was woken.
pub async fn wait_listed<K>(
    store: &Store<K>,
) -> Result<(), kube::runtime::reflector::store::WriterDropped>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    loop {
        if let Ok(listed) = tokio::time::timeout(LISTED_POLL, store.wait_until_ready()).await {
            return listed;
        }
    }
}

/// Runs until `triggers` ends: reconciles each object `triggers` names, each one at the time its
/// last reconcile asked for, and every object in `store` on each item of `resync`. Nothing runs
/// before `store` has its initial list; what was triggered meanwhile runs then, in trigger order.
/// `skip` is asked first, on the runner's own task: what it answers for an object is taken as
/// that reconcile's result without running it (a canary at rest with nothing to do); `None`
/// starts the reconcile.
pub async fn run<K, S, F>(
    store: Store<K>,
    triggers: impl Stream<Item = ObjectRef<K>>,
    resync: impl Stream<Item = ()>,
    skip: S,
    reconcile: F,
) where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    ObjectRef<K>: Hash + Eq,
    S: FnMut(&Arc<K>) -> Option<Requeue>,
    F: FnMut(Arc<K>) -> BoxFuture<'static, Requeue>,
{
    let mut schedule = Schedule {
        store: store.clone(),
        states: HashMap::new(),
        timers: DelayQueue::new(),
        running: JoinSet::new(),
        skip,
        reconcile,
    };
    let mut triggers = std::pin::pin!(triggers.fuse());
    let mut resync = std::pin::pin!(resync.fuse());
    let ready = wait_listed(&store);
    tokio::pin!(ready);
    // Triggered before the store was ready, in order, each once.
    let mut held: Vec<ObjectRef<K>> = Vec::new();
    let mut held_set = HashSet::new();
    let mut is_ready = false;
    loop {
        tokio::select! {
            result = &mut ready, if !is_ready => {
                // A store whose writer is gone never fills: nothing could be reconciled.
                if result.is_err() {
                    return;
                }
                is_ready = true;
                for object in held.drain(..) {
                    schedule.trigger(object);
                }
                held_set = HashSet::new();
            }
            next = triggers.next() => match next {
                Some(object) if is_ready => schedule.trigger(object),
                Some(object) => {
                    if held_set.insert(object.clone()) {
                        held.push(object);
                    }
                }
                None => return,
            },
            Some(()) = resync.next(), if is_ready => {
                for object in store.state() {
                    schedule.trigger(ObjectRef::from_obj(object.as_ref()));
                }
            }
            Some(expired) = schedule.timers.next(), if !schedule.timers.is_empty() => {
                schedule.due(expired.into_inner());
            }
            Some(done) = schedule.running.join_next(), if !schedule.running.is_empty() => {
                // Only an abort fails a join, and nothing aborts these tasks while the runner runs.
                if let Ok((object, requeue)) = done {
                    schedule.finished(object, requeue);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::reflector::{self, store::Writer};
    use kube::runtime::watcher::Event;
    use tokio::sync::{Notify, mpsc};
    use tokio::time::Instant;

    use super::*;

    fn object(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("test".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn named(name: &str) -> ObjectRef<ConfigMap> {
        ObjectRef::new(name).within("test")
    }

    /// A store listing `names`, and its writer (kept, so the store stays usable).
    fn listed(names: &[&str]) -> (Store<ConfigMap>, Writer<ConfigMap>) {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&Event::Init);
        for name in names {
            writer.apply_watcher_event(&Event::InitApply(object(name)));
        }
        writer.apply_watcher_event(&Event::InitDone);
        (store, writer)
    }

    /// What the reconciles saw: (name, started at, finished at), and how many ran at once at most.
    #[derive(Default)]
    struct Log {
        runs: Vec<(String, Instant)>,
        running: usize,
        most_at_once: usize,
    }

    /// A reconcile that records itself, holds until `release` is notified when given, and asks
    /// for `next`.
    fn recording(
        log: Arc<Mutex<Log>>,
        release: Option<Arc<Notify>>,
        next: Requeue,
    ) -> impl FnMut(Arc<ConfigMap>) -> BoxFuture<'static, Requeue> {
        move |object| {
            let (log, release) = (log.clone(), release.clone());
            async move {
                {
                    let mut log = log.lock().unwrap();
                    let name = object.metadata.name.clone().unwrap_or_default();
                    log.runs.push((name, Instant::now()));
                    log.running += 1;
                    log.most_at_once = log.most_at_once.max(log.running);
                }
                if let Some(release) = release {
                    release.notified().await;
                }
                log.lock().unwrap().running -= 1;
                next
            }
            .boxed()
        }
    }

    fn names(log: &Mutex<Log>) -> Vec<String> {
        log.lock()
            .unwrap()
            .runs
            .iter()
            .map(|r| r.0.clone())
            .collect()
    }

    /// Lets the runner and the reconciles it started run until all wait (on the paused clock).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn never_skip(_: &Arc<ConfigMap>) -> Option<Requeue> {
        None
    }

    /// A sender, and the stream of what is sent on it.
    fn channel<T: Send + 'static>() -> (mpsc::UnboundedSender<T>, impl Stream<Item = T>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let received =
            futures::stream::unfold(receiver, |mut r| async { r.recv().await.map(|x| (x, r)) });
        (sender, received)
    }

    /// The runner over `store` with `reconcile`, triggered through the returned sender and never
    /// resynced.
    fn started(
        store: Store<ConfigMap>,
        reconcile: impl FnMut(Arc<ConfigMap>) -> BoxFuture<'static, Requeue> + Send + 'static,
    ) -> (
        mpsc::UnboundedSender<ObjectRef<ConfigMap>>,
        tokio::task::JoinHandle<()>,
    ) {
        let (trigger, triggers) = channel();
        let runner = tokio::spawn(run(
            store,
            triggers,
            futures::stream::pending(),
            never_skip,
            reconcile,
        ));
        (trigger, runner)
    }

    #[tokio::test(start_paused = true)]
    async fn a_canary_triggered_while_it_runs_runs_once_more_after_never_twice_at_once() {
        let (store, _writer) = listed(&["a"]);
        let log = Arc::new(Mutex::new(Log::default()));
        let release = Arc::new(Notify::new());
        let reconcile = recording(log.clone(), Some(release.clone()), Requeue::await_change());
        let (trigger, runner) = started(store, reconcile);
        trigger.send(named("a")).unwrap();
        settle().await;
        for _ in 0..3 {
            trigger.send(named("a")).unwrap();
        }
        settle().await;
        assert_eq!(
            names(&log),
            ["a"],
            "the three triggers wait for the running one"
        );
        release.notify_one();
        settle().await;
        assert_eq!(names(&log), ["a", "a"], "one more run for the three");
        release.notify_one();
        settle().await;
        assert_eq!(names(&log), ["a", "a"]);
        assert_eq!(log.lock().unwrap().most_at_once, 1);
        runner.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_skip_answers_for_keeps_its_cadence_without_a_reconcile() {
        let (store, _writer) = listed(&["rests", "runs"]);
        let log = Arc::new(Mutex::new(Log::default()));
        let interval = Duration::from_secs(10);
        let reconcile = recording(log.clone(), None, Requeue::after(interval));
        let skipped = Arc::new(Mutex::new(Vec::new()));
        let asked = skipped.clone();
        let start = Instant::now();
        let skip = move |object: &Arc<ConfigMap>| {
            let name = object.metadata.name.clone().unwrap_or_default();
            asked
                .lock()
                .unwrap()
                .push((name.clone(), start.elapsed().as_secs()));
            (name == "rests").then_some(Requeue::after(interval))
        };
        let (trigger, triggers) = channel();
        let runner = tokio::spawn(run(
            store,
            triggers,
            futures::stream::pending(),
            skip,
            reconcile,
        ));
        trigger.send(named("rests")).unwrap();
        trigger.send(named("runs")).unwrap();
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(
            names(&log),
            ["runs", "runs", "runs"],
            "only what skip declines is reconciled"
        );
        let asked: Vec<_> = skipped
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| name == "rests")
            .map(|(_, at)| *at)
            .collect();
        assert_eq!(asked, [0, 10, 20], "the skipped turns keep their cadence");
        runner.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_runs_when_asked_and_a_trigger_before_it_takes_its_place() {
        let (store, _writer) = listed(&["a"]);
        let log = Arc::new(Mutex::new(Log::default()));
        let interval = Duration::from_secs(10);
        let reconcile = recording(log.clone(), None, Requeue::after(interval));
        let start = Instant::now();
        let (trigger, runner) = started(store, reconcile);
        trigger.send(named("a")).unwrap();
        // On the paused clock: the requeues come at 10 s and 20 s.
        tokio::time::sleep(Duration::from_secs(25)).await;
        // A change 3 s before the next requeue: it runs now, and the requeue moves to 10 s after it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        trigger.send(named("a")).unwrap();
        tokio::time::sleep(Duration::from_secs(12)).await;
        let at: Vec<u64> = log
            .lock()
            .unwrap()
            .runs
            .iter()
            .map(|r| (r.1 - start).as_secs())
            .collect();
        assert_eq!(at, [0, 10, 20, 27, 37]);
        runner.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_runs_before_the_store_is_ready_then_what_was_triggered_runs_in_order_once() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let log = Arc::new(Mutex::new(Log::default()));
        let reconcile = recording(log.clone(), None, Requeue::await_change());
        let (trigger, runner) = started(store, reconcile);
        writer.apply_watcher_event(&Event::Init);
        for name in ["c", "a", "b"] {
            writer.apply_watcher_event(&Event::InitApply(object(name)));
        }
        for name in ["c", "a", "c", "b", "a"] {
            trigger.send(named(name)).unwrap();
        }
        settle().await;
        assert!(
            names(&log).is_empty(),
            "the store has not listed everything"
        );
        writer.apply_watcher_event(&Event::InitDone);
        settle().await;
        assert_eq!(names(&log), ["c", "a", "b"]);
        runner.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn held_triggers_run_when_another_task_waited_for_the_store_after_the_runner() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let log = Arc::new(Mutex::new(Log::default()));
        let reconcile = recording(log.clone(), None, Requeue::await_change());
        let (trigger, runner) = started(store.clone(), reconcile);
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(object("a")));
        trigger.send(named("a")).unwrap();
        settle().await;
        // Polled after the runner's wait: kube-runtime wakes this one only.
        let other = tokio::spawn(async move { store.wait_until_ready().await.is_ok() });
        settle().await;
        writer.apply_watcher_event(&Event::InitDone);
        assert!(other.await.unwrap());
        tokio::time::advance(LISTED_POLL).await;
        settle().await;
        assert_eq!(names(&log), ["a"], "the runner asked again");
        runner.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_canary_gone_from_the_store_is_not_reconciled_and_a_resync_runs_every_one_left() {
        let (store, mut writer) = listed(&["a", "b", "c"]);
        let log = Arc::new(Mutex::new(Log::default()));
        let (trigger, triggers) = channel();
        let (resync, resyncs) = channel();
        let reconcile = recording(log.clone(), None, Requeue::await_change());
        let runner = tokio::spawn(run(store, triggers, resyncs, never_skip, reconcile));
        writer.apply_watcher_event(&Event::Delete(object("b")));
        trigger.send(named("b")).unwrap();
        settle().await;
        assert!(names(&log).is_empty(), "b was deleted");
        resync.send(()).unwrap();
        settle().await;
        let mut ran = names(&log);
        ran.sort();
        assert_eq!(ran, ["a", "c"]);
        runner.abort();
    }

    /// Ten thousand canaries whose reconciles all wait (for a worker, say) while each is
    /// triggered again and again (its own writes, resyncs): every trigger is one flag, so each
    /// canary runs exactly once more after its first run, and the runner's own time is printed.
    #[tokio::test]
    async fn ten_thousand_waiting_canaries_each_run_once_more_however_often_triggered() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        const N: usize = 10_000;
        const TRIGGERS: usize = 5;
        let names: Vec<String> = (0..N).map(|n| format!("canary-{n:05}")).collect();
        let (store, _writer) = listed(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let log = Arc::new(Mutex::new(Log::default()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (gate_in, log_in) = (gate.clone(), log.clone());
        let reconcile = move |object: Arc<ConfigMap>| {
            let (gate, log) = (gate_in.clone(), log_in.clone());
            async move {
                let name = object.metadata.name.clone().unwrap_or_default();
                log.lock().unwrap().runs.push((name, Instant::now()));
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                Requeue::await_change()
            }
            .boxed()
        };
        // Counted as the runner takes them, so the first runs are released only after the last.
        let taken = Arc::new(AtomicUsize::new(0));
        let (taken_t, taken_r) = (taken.clone(), taken.clone());
        let every_name = names.clone();
        let triggers = futures::stream::iter((0..TRIGGERS).flat_map(move |_| every_name.clone()))
            .map(|name| named(&name))
            .inspect(move |_| {
                taken_t.fetch_add(1, Ordering::Relaxed);
            })
            .chain(futures::stream::pending());
        let resyncs = futures::stream::iter(vec![(); TRIGGERS])
            .inspect(move |_| {
                taken_r.fetch_add(1, Ordering::Relaxed);
            })
            .chain(futures::stream::pending());
        let started = std::time::Instant::now();
        let runner = tokio::spawn(run(store, triggers, resyncs, never_skip, reconcile));
        while taken.load(Ordering::Relaxed) < TRIGGERS * N + TRIGGERS
            || log.lock().unwrap().runs.len() < N
        {
            tokio::task::yield_now().await;
        }
        gate.add_permits(2 * N);
        while log.lock().unwrap().runs.len() < 2 * N {
            tokio::task::yield_now().await;
        }
        println!(
            "runner: {} triggers and {TRIGGERS} resyncs of {N} running canaries, then {} runs, in {:?}",
            TRIGGERS * N,
            2 * N,
            started.elapsed()
        );
        settle().await;
        let mut per_canary: HashMap<String, usize> = HashMap::new();
        for (name, _) in &log.lock().unwrap().runs {
            *per_canary.entry(name.clone()).or_default() += 1;
        }
        assert_eq!(per_canary.len(), N);
        assert!(per_canary.values().all(|n| *n == 2), "each ran twice");
        runner.abort();
    }
}
