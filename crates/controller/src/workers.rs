//! The reconcile workers (`-threadiness`): how many canaries may decide and write at once, and
//! the order in which due canaries get a worker.
//!
//! kube-runtime's runner can bound concurrency itself, but when every slot is busy it parks the
//! canaries that fall due in a hash set and, once a slot frees, takes whichever the set's
//! iteration finds first: not the one that has waited longest. A canary whose key iterates late
//! is passed over for as long as others keep falling due, which is what made some canaries wait
//! minutes for a tick at a thousand canaries while others ticked on time (the
//! `a_bounded_kube_runner_serves_due_canaries_out_of_order` test shows it).
//!
//! So the controller's runner (see `runner`) has no bound and starts each reconcile the moment
//! its canary is due, and the reconcile first waits for a worker here, first come, first served
//! within its turn. A reconcile gives its worker back while it
//! waits for webhooks or metric checks (see `outbound`), so a slow hook holds up only its own
//! canary.
//!
//! Three turns. A tick that gave its worker back for its webhooks or metric checks asks again
//! when they answer, and is served first: it already waited for its turn once, and at the back of
//! the line it would wait again behind every tick that fell due while its checks ran (with a
//! hook and a check per tick, three waits instead of one). Resumed ticks are finite (at most one
//! per outside call a tick makes), so nothing else waits for good.
//!
//! And not every tick is equally late when it waits: a canary reacting to a
//! change (a new revision, a deletion, a person's request, an initialisation under way) is served
//! before the scheduled ticks of runs already under way. When a thousand targets change at once,
//! their reactions then follow one another in the order the revisions changed, as fast as the
//! client's write budget and the API server allow, instead of interleaving with the analysis ticks of the canaries that
//! reacted first (which would stretch the last reaction well past what the budget needs and let
//! reactions overtake one another). A run's ticks lose nothing they would not lose anyway: the
//! writes are the same and the budget is shared. Reactions are finite (each change is reacted to
//! once), so scheduled ticks are never held back for good.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::context::lock;
use crate::ratelimit::ClientRate;

/// Which line a reconcile waits in for a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// A tick coming back from its webhooks or metric checks, which it ran without a worker;
    /// served first.
    Resume,
    /// A reaction to something that changed; served before scheduled ticks.
    Reaction,
    /// A tick the schedule made due, or the first tick of a new canary.
    Scheduled,
}

impl Turn {
    pub fn label(self) -> &'static str {
        match self {
            Turn::Resume => "resume",
            Turn::Reaction => "reaction",
            Turn::Scheduled => "scheduled",
        }
    }
}

/// A worker held by one reconcile; dropping it gives the worker to the next canary in line.
#[derive(Debug)]
pub struct Worker {
    pool: Option<Arc<Mutex<Pool>>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            Pool::release(&pool);
        }
    }
}

#[derive(Debug)]
struct Pool {
    free: usize,
    resumes: VecDeque<oneshot::Sender<Worker>>,
    reactions: VecDeque<oneshot::Sender<Worker>>,
    scheduled: VecDeque<oneshot::Sender<Worker>>,
}

impl Pool {
    /// Hands a freed worker to the first reconcile still waiting (resumed ticks first, then
    /// reactions); one whose wait was given up (its future dropped) is passed over.
    fn release(pool: &Arc<Mutex<Pool>>) {
        let mut worker = Worker {
            pool: Some(pool.clone()),
        };
        let mut inner = lock(pool);
        while let Some(next) = inner
            .resumes
            .pop_front()
            .or_else(|| inner.reactions.pop_front())
            .or_else(|| inner.scheduled.pop_front())
        {
            match next.send(worker) {
                Ok(()) => return,
                Err(back) => worker = back,
            }
        }
        inner.free += 1;
        // Counted as free: this handle must not release again.
        worker.pool = None;
    }
}

/// The round trip to the API server the default worker count is sized for: the API server's while
/// thousands of writes arrive at once, not its idle one. On the local cluster with a thousand
/// targets changed together (docs/benchmarks.md) a reaction's writes took ~300 ms each, against
/// 6 ms at rest: sized for 100 ms, 30 workers reacted ~30 canaries a second where a 300 QPS
/// budget allows ~90, and the last reaction came 6–8 s after what the budget makes necessary.
const ROUND_TRIP_MS: u32 = 300;
/// How many times a tick takes a worker: once to decide, and once more when it resumes after its
/// webhooks and metric checks to write what they decided. Sized for one, a thousand checked
/// canaries rolling out at once at 300 QPS (90 workers) had their scheduled ticks wait 1.2 s on
/// average and up to 8 s at p99 for a worker; sized for two (180), 0.04 s (docs/benchmarks.md).
const HOLDS_PER_TICK: u32 = 2;
/// Flagger's `-threadiness` default, the fewest workers the default gives.
const FEWEST: u16 = 2;

#[derive(Clone, Debug)]
pub struct Workers {
    pool: Arc<Mutex<Pool>>,
    /// Where each wait for a worker is recorded, when anywhere.
    timings: Option<crate::timings::Timings>,
}

impl Workers {
    /// `threadiness` workers; 0 is taken as 1, as the flag always meant at least one.
    pub fn new(threadiness: u16) -> Workers {
        Workers {
            pool: Arc::new(Mutex::new(Pool {
                free: usize::from(threadiness.max(1)),
                resumes: VecDeque::new(),
                reactions: VecDeque::new(),
                scheduled: VecDeque::new(),
            })),
            timings: None,
        }
    }

    /// Records how long each reconcile waits for its worker in `timings`.
    pub fn timed(self, timings: crate::timings::Timings) -> Workers {
        Workers {
            timings: Some(timings),
            ..self
        }
    }

    /// How many workers: `-threadiness` when given, else as many as keep the client's QPS budget
    /// busy. A worker holds its tick through the tick's writes, one round trip to the API server
    /// each, so workers × round trip bounds the write rate whatever the budget: two workers at a
    /// 70 ms round trip send at most ~30 writes a second, a third of the default 100 QPS: a thousand
    /// canaries reacted at ~10 a second where the budget allows ~33 (measured, docs/benchmarks.md).
    /// Flagger's `-threadiness` (default 2) never bounded its ticks, which run in a goroutine per
    /// canary; so the default here does not either, below the budget. More workers than the budget
    /// needs cost little: a tick holding a worker while it waits for a token keeps a few KB.
    pub fn count(flags: &crate::flags::Flags) -> u16 {
        if let Some(n) = flags.threadiness {
            return n;
        }
        match ClientRate::from_flags(flags.kubeconfig_qps, flags.kubeconfig_burst) {
            Ok(ClientRate::Limited { qps, .. }) => {
                let busy = (u64::from(qps.get()) * u64::from(ROUND_TRIP_MS * HOLDS_PER_TICK))
                    .div_ceil(1000);
                u16::try_from(busy).unwrap_or(u16::MAX).max(FEWEST)
            }
            // No budget to keep busy (or none the client would start with).
            Ok(ClientRate::Unlimited) | Err(_) => FEWEST,
        }
    }

    /// Waits for a free worker, behind every reconcile of the same turn that asked before and
    /// every reconcile of an earlier turn ([`Turn::Resume`], then [`Turn::Reaction`]).
    pub async fn acquire(&self, turn: Turn) -> Worker {
        let asked = tokio::time::Instant::now();
        let worker = self.wait_for_worker(turn).await;
        if let Some(timings) = &self.timings {
            timings.worker_waited(turn.label(), asked.elapsed());
        }
        worker
    }

    async fn wait_for_worker(&self, turn: Turn) -> Worker {
        let waiting = {
            let mut pool = lock(&self.pool);
            if pool.free > 0 {
                pool.free -= 1;
                return Worker {
                    pool: Some(self.pool.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            match turn {
                Turn::Resume => pool.resumes.push_back(tx),
                Turn::Reaction => pool.reactions.push_back(tx),
                Turn::Scheduled => pool.scheduled.push_back(tx),
            }
            rx
        };
        // The pool outlives every waiter (each holds a `Workers`), so the sender is only
        // dropped after sending; should that ever change, running unbounded beats stalling.
        waiting.await.unwrap_or(Worker { pool: None })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use futures::{FutureExt, StreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::controller::{Action, Config, applier};
    use kube::runtime::reflector::{self, ObjectRef};
    use kube::runtime::watcher::Event;
    use tokio::time::Instant;

    use super::*;
    use crate::runner::Requeue;

    /// Canaries, all due at once (a thousand patched together, scaled down).
    const CANARIES: usize = 30;
    const WORKERS: u16 = 2;
    /// What one tick keeps a worker busy for (API requests under the client's rate limit).
    const WORK: Duration = Duration::from_secs(1);
    /// Each canary asks for its next tick one interval after its last: 30 ticks of 1 s every
    /// 10 s on 2 workers is 1.5 times what the workers can do, so canaries queue.
    const INTERVAL: Duration = Duration::from_secs(10);
    /// Virtual time the scenario runs for.
    const RUN: Duration = Duration::from_secs(600);

    /// One tick: when it was due, when it got its worker and when it was done.
    #[derive(Clone, Copy, Debug)]
    struct Tick {
        canary: usize,
        due: Instant,
        started: Instant,
        finished: Instant,
    }

    /// What the simulated controller faces: how many canaries, how far apart they first fall due,
    /// what a tick does while it holds its worker, and when it asks for the next one.
    struct Scenario<W> {
        canaries: usize,
        spacing: Duration,
        work: W,
        requeue: Option<Duration>,
        /// The turn of each canary's first tick (its reaction); later ticks are scheduled.
        first_turn: Turn,
        /// Virtual time the scenario runs for.
        until: Duration,
    }

    /// Thirty canaries due at once, ticking every `INTERVAL`, each tick holding a worker `WORK`.
    fn overloaded() -> Scenario<impl Fn() -> futures::future::BoxFuture<'static, ()> + Clone> {
        Scenario {
            canaries: CANARIES,
            spacing: Duration::ZERO,
            // Simulated work on the paused clock, not synchronisation.
            work: || tokio::time::sleep(WORK).boxed(),
            requeue: Some(INTERVAL),
            first_turn: Turn::Scheduled,
            until: RUN,
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    /// Which loop starts the reconciles.
    enum Runner {
        /// The controller's (see `runner`): no bound of its own.
        Ours,
        /// kube-runtime's applier, bounded to that many reconciles at once.
        KubeBounded(u16),
    }

    /// Runs `runner` over the scenario's objects for `until` of tokio's paused clock; each
    /// reconcile first takes a worker from `workers` when given.
    async fn run<W>(runner: Runner, workers: Option<Workers>, scenario: Scenario<W>) -> Vec<Tick>
    where
        W: Fn() -> futures::future::BoxFuture<'static, ()> + Clone + Send + 'static,
    {
        let Scenario {
            canaries,
            spacing,
            work,
            requeue,
            first_turn,
            until,
        } = scenario;
        let (store, mut writer) = reflector::store::<ConfigMap>();
        writer.apply_watcher_event(&Event::Init);
        for n in 0..canaries {
            writer.apply_watcher_event(&Event::InitApply(ConfigMap {
                metadata: ObjectMeta {
                    name: Some(format!("canary-{n:04}")),
                    namespace: Some("test".into()),
                    ..Default::default()
                },
                ..Default::default()
            }));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let start = Instant::now();
        let due: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let ticks: Arc<Mutex<Vec<Tick>>> = Arc::default();
        let refs: Vec<_> = (0..canaries)
            .map(|n| ObjectRef::<ConfigMap>::new(&format!("canary-{n:04}")).within("test"))
            .collect();
        // Canaries whose revision changed `spacing` apart (pacing the simulated watch events).
        let queue = futures::stream::iter(refs)
            .then(move |r| async move {
                tokio::time::sleep(spacing).await;
                r
            })
            .chain(futures::stream::pending());
        let (due_at, seen) = (due.clone(), ticks.clone());
        // One tick; what it asks for next.
        let tick = move |object: Arc<ConfigMap>| {
            let (due_at, seen, workers, work) =
                (due_at.clone(), seen.clone(), workers.clone(), work.clone());
            async move {
                let name = object.metadata.name.clone().unwrap_or_default();
                let turn = if due_at.lock().unwrap().contains_key(&name) {
                    Turn::Scheduled
                } else {
                    first_turn
                };
                let _worker = match &workers {
                    Some(w) => Some(w.acquire(turn).await),
                    None => None,
                };
                let canary = name.trim_start_matches("canary-").parse().unwrap_or(0);
                let due = due_at.lock().unwrap().get(&name).copied().unwrap_or(start);
                let started = Instant::now();
                work().await;
                seen.lock().unwrap().push(Tick {
                    canary,
                    due,
                    started,
                    finished: Instant::now(),
                });
                let requeue = requeue?;
                due_at
                    .lock()
                    .unwrap()
                    .insert(name, Instant::now() + requeue);
                Some(requeue)
            }
        };
        match runner {
            Runner::Ours => {
                let reconcile = move |object| {
                    tick(object)
                        .map(|next| next.map_or_else(Requeue::await_change, Requeue::after))
                        .boxed()
                };
                let never = futures::stream::pending();
                let ours = crate::runner::run(store, queue, never, |_: &Arc<_>| None, reconcile);
                let _ = tokio::time::timeout(until, ours).await;
            }
            Runner::KubeBounded(bound) => {
                let reconciler = move |object, _: Arc<()>| {
                    tick(object)
                        .map(|next| {
                            Ok::<_, Never>(next.map_or_else(Action::await_change, Action::requeue))
                        })
                        .boxed()
                };
                let applier = applier(
                    reconciler,
                    |_, _: &Never, _| Action::await_change(),
                    Arc::new(()),
                    store,
                    queue.map(Ok::<_, Never>),
                    Config::default().concurrency(bound),
                );
                let _ = tokio::time::timeout(until, applier.for_each(|_| async {})).await;
            }
        }
        let mut ticks = ticks.lock().unwrap().clone();
        ticks.sort_by_key(|t| t.started);
        ticks
    }

    /// The longest any canary went without a tick, and how often a tick started before one that
    /// had been due earlier and was still waiting.
    fn judge(ticks: &[Tick]) -> (Duration, usize) {
        let end = ticks.iter().map(|t| t.started).max().unwrap();
        let longest_wait = (0..CANARIES)
            .map(|c| {
                let mut last = ticks[0].due;
                let mut longest = Duration::ZERO;
                for t in ticks.iter().filter(|t| t.canary == c) {
                    longest = longest.max(t.started - last);
                    last = t.started;
                }
                longest.max(end - last)
            })
            .max()
            .unwrap();
        let overtaken = ticks
            .windows(2)
            .filter(|pair| pair[1].due < pair[0].due)
            .count();
        (longest_wait, overtaken)
    }

    #[tokio::test(start_paused = true)]
    async fn every_due_canary_gets_a_worker_in_the_order_it_became_due() {
        let ticks = run(Runner::Ours, Some(Workers::new(WORKERS)), overloaded()).await;
        let (longest_wait, overtaken) = judge(&ticks);
        assert_eq!(overtaken, 0, "ticks started out of due order: {ticks:?}");
        // Round robin at the workers' pace: a canary waits for everyone else's tick once.
        let round = WORK * (CANARIES as u32) / u32::from(WORKERS);
        assert!(
            longest_wait <= round + INTERVAL,
            "a canary waited {longest_wait:?} for a tick (a round is {round:?})"
        );
        let per_canary = ticks.len() / CANARIES;
        println!(
            "workers: {} ticks, mean {per_canary} per canary, longest wait {longest_wait:?}",
            ticks.len()
        );
        assert!(
            ticks.len() >= (RUN.as_secs() as usize) * usize::from(WORKERS) * 9 / 10,
            "the workers stay busy"
        );
        for c in 0..CANARIES {
            let n = ticks.iter().filter(|t| t.canary == c).count();
            assert!(
                n + 1 >= per_canary,
                "canary {c} got {n} ticks, the mean is {per_canary}"
            );
        }
    }

    /// Polls `waiting` once: its worker, once it has one.
    fn served<F: Future<Output = Worker> + ?Sized>(
        waiting: &mut std::pin::Pin<Box<F>>,
    ) -> Option<Worker> {
        let waker = futures::task::noop_waker();
        match waiting
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker))
        {
            std::task::Poll::Ready(worker) => Some(worker),
            std::task::Poll::Pending => None,
        }
    }

    type Waiting<'a> = std::pin::Pin<Box<dyn Future<Output = Worker> + 'a>>;

    #[tokio::test]
    async fn resumed_ticks_then_reactions_then_scheduled_ticks_each_line_first_come_first_served() {
        let workers = Workers::new(1);
        let busy = workers.acquire(Turn::Scheduled).await;
        let mut tick_1 = Box::pin(workers.acquire(Turn::Scheduled));
        let mut reaction_1 = Box::pin(workers.acquire(Turn::Reaction));
        let mut tick_2 = Box::pin(workers.acquire(Turn::Scheduled));
        let mut reaction_2 = Box::pin(workers.acquire(Turn::Reaction));
        // Back from its checks after all of the above fell due.
        let mut resume_1 = Box::pin(workers.acquire(Turn::Resume));
        let mut resume_2 = Box::pin(workers.acquire(Turn::Resume));
        for waiting in [&mut tick_1, &mut reaction_1, &mut tick_2, &mut reaction_2] {
            assert!(served(waiting).is_none(), "the only worker is busy");
        }
        for waiting in [&mut resume_1, &mut resume_2] {
            assert!(served(waiting).is_none(), "the only worker is busy");
        }
        drop(busy);
        let mut order = Vec::new();
        let mut lines: [(&str, Waiting<'_>); 6] = [
            ("tick 1", tick_1),
            ("reaction 1", reaction_1),
            ("tick 2", tick_2),
            ("reaction 2", reaction_2),
            ("resume 1", resume_1),
            ("resume 2", resume_2),
        ];
        for _ in 0..lines.len() {
            let ready: Vec<_> = lines
                .iter_mut()
                .filter_map(|(name, waiting)| {
                    (!order.contains(name)).then_some(())?;
                    served(waiting).map(|worker| (*name, worker))
                })
                .collect();
            assert_eq!(ready.len(), 1, "one worker, one served: {order:?}");
            let (name, worker) = ready.into_iter().next().unwrap();
            order.push(name);
            drop(worker);
        }
        assert_eq!(
            order,
            [
                "resume 1",
                "resume 2",
                "reaction 1",
                "reaction 2",
                "tick 1",
                "tick 2"
            ]
        );
    }

    /// Twenty ticks due at once on two workers, each holding its worker `HOLD` to decide, giving
    /// it back for a one-second check, and holding it `HOLD` again to write: the longest any tick
    /// waited for its worker after its check, with that wait in `resume_turn`.
    async fn longest_wait_after_the_check(resume_turn: Turn) -> Duration {
        const HOLD: Duration = Duration::from_millis(500);
        let workers = Workers::new(2);
        let ticks = (0..20).map(|_| {
            let workers = workers.clone();
            async move {
                let worker = workers.acquire(Turn::Scheduled).await;
                tokio::time::sleep(HOLD).await;
                drop(worker);
                // The check, on the paused clock.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let back = Instant::now();
                let worker = workers.acquire(resume_turn).await;
                let waited = back.elapsed();
                tokio::time::sleep(HOLD).await;
                drop(worker);
                waited
            }
        });
        futures::future::join_all(ticks)
            .await
            .into_iter()
            .max()
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_back_from_its_checks_waits_for_a_worker_once_not_behind_every_tick_due_since() {
        // Served first, a tick back from its check waits at most for one tick's hold of a worker.
        let resumed = longest_wait_after_the_check(Turn::Resume).await;
        assert!(resumed <= Duration::from_millis(500), "{resumed:?}");
        // At the back of the line it waited behind the first halves of the ticks still due.
        let queued = longest_wait_after_the_check(Turn::Scheduled).await;
        assert!(queued >= Duration::from_secs(3), "{queued:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_for_a_worker_is_recorded_by_turn() {
        let metrics = crate::metrics::Metrics::new(false);
        let workers = Workers::new(1).timed(metrics.timings.clone());
        let busy = workers.acquire(Turn::Scheduled).await;
        let release = async {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            drop(busy);
        };
        let (_, reaction) = futures::future::join(release, workers.acquire(Turn::Reaction)).await;
        drop(reaction);
        let exposition = metrics.encode().unwrap();
        for line in [
            r#"flagger_worker_wait_seconds_sum{turn="scheduled"} 0.0"#,
            r#"flagger_worker_wait_seconds_sum{turn="reaction"} 2.0"#,
        ] {
            assert!(exposition.contains(line), "{line} in\n{exposition}");
        }
    }

    #[test]
    fn the_default_worker_count_keeps_the_client_budget_busy() {
        let count = |args: &[&str]| Workers::count(&crate::flags::parse(args).unwrap());
        assert_eq!(
            count(&[]),
            60,
            "Flagger's default 100 QPS, two 300 ms round trips a tick"
        );
        assert_eq!(count(&["--kubeconfig-qps=500"]), 300);
        assert_eq!(
            count(&["--kubeconfig-qps=1"]),
            2,
            "never fewer than Flagger's default"
        );
        assert_eq!(count(&["--kubeconfig-qps=-1"]), 2, "no budget to keep busy");
        assert_eq!(count(&["--threadiness=1"]), 1, "given: exactly that");
        assert_eq!(count(&["--threadiness=16", "--kubeconfig-qps=500"]), 16);
    }

    #[tokio::test]
    async fn a_wait_given_up_loses_no_worker() {
        let workers = Workers::new(1);
        let busy = workers.acquire(Turn::Scheduled).await;
        // Given up before the worker was handed over, and after (the worker sits unclaimed).
        let mut gone_early = Box::pin(workers.acquire(Turn::Reaction));
        let mut gone_late = Box::pin(workers.acquire(Turn::Reaction));
        let mut tick = Box::pin(workers.acquire(Turn::Scheduled));
        assert!(served(&mut gone_early).is_none());
        assert!(served(&mut gone_late).is_none());
        assert!(served(&mut tick).is_none());
        drop(gone_early);
        drop(busy);
        assert!(
            served(&mut tick).is_none(),
            "the waiting reaction comes first"
        );
        drop(gone_late);
        let worker = served(&mut tick).expect("the unclaimed worker went on to the tick");
        drop(worker);
        drop(workers.acquire(Turn::Scheduled).await);
        assert_eq!(lock(&workers.pool).free, 1, "the worker is free again");
    }

    /// Why the runner gets no bound of its own: kube-runtime's bounded runner serves the canaries
    /// waiting for a slot in hash order, so some are passed over again and again. Should this
    /// fail after an upgrade, the runner has become fair and `Workers` may give way to it.
    #[tokio::test(start_paused = true)]
    async fn a_bounded_kube_runner_serves_due_canaries_out_of_order() {
        let ticks = run(Runner::KubeBounded(WORKERS), None, overloaded()).await;
        let (longest_wait, _) = judge(&ticks);
        let fewest = (0..CANARIES)
            .map(|c| ticks.iter().filter(|t| t.canary == c).count())
            .min()
            .unwrap();
        println!(
            "kube runner: {} ticks, mean {} per canary, fewest {fewest}, longest wait {longest_wait:?}",
            ticks.len(),
            ticks.len() / CANARIES
        );
        // Fair service gives every canary about 40 ticks in this run (as `Workers` does); here
        // some canary gets at most one: it waits behind others for the whole run.
        assert!(fewest <= 1, "fewest ticks of a canary: {fewest}");
        assert!(longest_wait >= RUN - WORK * (CANARIES as u32));
    }

    /// A thousand canaries whose revisions changed a millisecond apart, each reaction two API
    /// writes through the client's token bucket (100 QPS, burst 10), on two workers: each canary
    /// reacts in the order its revision changed, and the last within what the budget makes
    /// necessary (1 000 × 2 ÷ 100 = 20 s) plus a second.
    #[tokio::test(start_paused = true)]
    async fn thousands_due_at_once_react_in_order_within_the_client_budget() {
        use crate::ratelimit::{ClientRate, Limiter};
        const N: usize = 1000;
        const WRITES: u32 = 2;
        let rate = ClientRate::from_flags(100, 10).unwrap();
        let limiter = Limiter::new(rate).unwrap();
        let start = Instant::now();
        let scenario = Scenario {
            canaries: N,
            spacing: Duration::from_millis(1),
            work: move || {
                let limiter = limiter.clone();
                async move {
                    for _ in 0..WRITES {
                        // The bucket's wait, as the client's rate limit layer waits.
                        while let Err(wait) = limiter.try_acquire() {
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
                .boxed()
            },
            requeue: None,
            first_turn: Turn::Reaction,
            until: RUN,
        };
        let ticks = run(Runner::Ours, Some(Workers::new(2)), scenario).await;
        assert_eq!(ticks.len(), N);
        let mut by_canary = ticks.clone();
        by_canary.sort_by_key(|t| t.canary);
        assert!(
            by_canary.windows(2).all(|w| w[0].started <= w[1].started),
            "a canary got its worker before one whose revision changed earlier"
        );
        let last = ticks.iter().map(|t| t.finished - start).max().unwrap();
        let budget =
            Duration::from_secs(u64::from(WRITES) * N as u64 / 100) + Duration::from_secs(1);
        println!("{N} canaries: the last reacted after {last:?} (budget {budget:?})");
        assert!(last <= budget, "last reaction after {last:?}");
    }

    /// The same thousand reactions while the canaries that reacted first are already analysing:
    /// each reacted canary ticks every 10 s with two writes of its own, more than the budget
    /// leaves. Reactions go first, so each canary still reacts in the order its revision changed
    /// and the last within the budget; in one line with the analysis ticks (what the workers did
    /// before reactions had their own turn) the last reaction comes well after it.
    #[tokio::test(start_paused = true)]
    async fn reactions_keep_their_order_and_budget_while_earlier_runs_tick() {
        use crate::ratelimit::{ClientRate, Limiter};
        const N: usize = 1000;
        const WRITES: u32 = 2;
        let budget =
            Duration::from_secs(u64::from(WRITES) * N as u64 / 100) + Duration::from_secs(1);
        let mut last_reactions = Vec::new();
        for first_turn in [Turn::Reaction, Turn::Scheduled] {
            let limiter = Limiter::new(ClientRate::from_flags(100, 10).unwrap()).unwrap();
            // Requests take their tokens in the order they were made, as in the client (its
            // buffer polls the rate limit layer for one request at a time); two ticks retrying
            // the bucket on their own could leave one waiting for good.
            let in_order = Arc::new(tokio::sync::Mutex::new(()));
            let start = Instant::now();
            let scenario = Scenario {
                canaries: N,
                // Patched over 15 s: the first canaries' analysis ticks fall due while later
                // reactions still wait.
                spacing: Duration::from_millis(15),
                work: move || {
                    let (limiter, in_order) = (limiter.clone(), in_order.clone());
                    async move {
                        for _ in 0..WRITES {
                            let _next = in_order.lock().await;
                            while let Err(wait) = limiter.try_acquire() {
                                tokio::time::sleep(wait).await;
                            }
                        }
                    }
                    .boxed()
                },
                requeue: Some(INTERVAL),
                first_turn,
                // Long enough for every reaction, in either line.
                until: Duration::from_secs(60),
            };
            let ticks = run(Runner::Ours, Some(Workers::new(2)), scenario).await;
            let mut reactions: Vec<Tick> = (0..N)
                .filter_map(|c| ticks.iter().find(|t| t.canary == c).copied())
                .collect();
            assert_eq!(
                reactions.len(),
                N,
                "{first_turn:?}: every canary reacted; missing {:?}",
                (0..N).find(|c| !reactions.iter().any(|t| t.canary == *c))
            );
            reactions.sort_by_key(|t| t.canary);
            let in_order = reactions.windows(2).all(|w| w[0].started <= w[1].started);
            let last = reactions.iter().map(|t| t.finished - start).max().unwrap();
            println!(
                "{first_turn:?} turn: the last reaction after {last:?} (budget {budget:?}), in order: {in_order}"
            );
            if first_turn == Turn::Reaction {
                assert!(
                    in_order,
                    "a canary reacted before one whose revision changed earlier"
                );
            }
            last_reactions.push(last);
        }
        assert!(
            last_reactions[0] <= budget,
            "with their own turn: {:?}",
            last_reactions[0]
        );
        assert!(
            last_reactions[1] > budget,
            "in one line with the analysis ticks: {:?}",
            last_reactions[1]
        );
    }
}
