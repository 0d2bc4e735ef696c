//! One tick of one canary: validate, observe, let the core decide, carry out what it decided.

use std::sync::Arc;
use std::time::Duration;

use flagger_api::validate::{Severity, reason};
use flagger_api::{Canary, CanaryPhase, CanaryStatus};
use flagger_core::{Action, EventType, Need, Observation, RolloutSpec};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tokio::time::Instant;
use tracing::Instrument;

use crate::cadence;
use crate::context::Context;
use crate::execute::Executor;
use crate::fulfil;
use crate::own_writes::CachedCopy;
use crate::runner::Requeue;
use crate::status::{self, Written};
use crate::target::{TargetError, records_revision};
use crate::targets::Target;
use crate::workers::{Turn, Worker};
use crate::workload::revision;

/// How often `advance` may ask for more results within one tick before the tick is abandoned: a
/// core that keeps asking is a bug, and must not pin a worker.
const MAX_ROUNDS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {}", flagger_providers::wording::Plain(.0))]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("the core kept asking for results; tick abandoned")]
    Runaway,
    /// A bug: the tick panicked. Only this canary's tick is lost; it is retried with backoff.
    #[error("tick panicked: {0}")]
    Panicked(String),
}

/// The `kind` of `flagger_reconcile_errors_total` for an effect of the tick that failed (a route,
/// a scale, a promotion); the status stays as it was and the tick is retried.
const EFFECT: &str = "effect";

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Target(_) => "target",
            Error::Runaway => "runaway",
            Error::Panicked(_) => "panic",
        }
    }
}

/// Reconciles `canary`, the copy the runner took, once the runner's [`skipped`] declined it: the
/// skip of a canary at rest is judged there on this same copy and not again here, except for a
/// copy read afresh below.
pub async fn reconcile(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    // At start-up, before any read: a read of a store still listing is a GET (see `cache`).
    Box::pin(ctx.cache.wait_for_lists()).await;
    let key = ObjectRef::from_obj(canary.as_ref());
    // Judged when the runner took this copy of the canary, before the wait for a worker: after
    // a long wait the staleness window may have passed while the copy still predates our write.
    let canary = match ctx
        .own_writes
        .copy(&key, canary.metadata.resource_version.as_deref())
    {
        CachedCopy::Current => canary,
        // The watch has not brought our own last write yet: its answer is the Canary as that
        // write left it, and no copy the watch can hold now is newer than it (a later change by
        // someone else comes after it, and its event triggers the next reconcile).
        CachedCopy::Replaced(written) => {
            tracing::debug!(cached = ?canary.metadata.resource_version, written = ?written.metadata.resource_version, "the Canary watch lags behind our own write; tick on the write's answer");
            // The runner judged the cached copy; a canary at rest whose written copy and reads
            // are as its last tick found them has nothing to do either.
            if let Some(requeue) = crate::at_rest::skip(&ctx, &key, &written) {
                return Ok(requeue);
            }
            written
        }
    };
    // Deciding and writing take a worker, handed out in the order canaries became due. A tick
    // that will act takes it before reading anything, so it acts on what is true when its turn
    // comes; one that probably has nothing to do reads first and takes a worker only if it must.
    let early = turn_before_reading(&ctx, &key, &canary).await;
    let worker = match early {
        Some(turn) => Some(ctx.workers.acquire(turn).await),
        None => None,
    };
    // The tick proper runs as its own task: a panic in it becomes this canary's error, counted and
    // retried with backoff like any other. A reconcile waiting for its worker also holds only the
    // few bytes above, not the whole tick's state (thousands wait at once when thousands react
    // at once).
    tokio::spawn(crate::cache::reads::recording(tick(canary, ctx, key, worker)).in_current_span())
        .await
        .unwrap_or_else(|failed| Err(Error::Panicked(failed.to_string())))
}

/// What [`reconcile`] would answer at once for `canary`, without reading or writing anything: a
/// canary at rest whose copy is current and whose last tick's reads still hold (see `at_rest`).
/// The runner asks before starting a reconcile, so such a turn costs no task, and the reconcile
/// does not ask again. `None`: reconcile.
pub fn skipped(ctx: &Context, canary: &Canary) -> Option<Requeue> {
    let key = ObjectRef::from_obj(canary);
    let version = canary.metadata.resource_version.as_deref();
    if !matches!(ctx.own_writes.copy(&key, version), CachedCopy::Current) {
        return None;
    }
    crate::at_rest::skip(ctx, &key, canary)
}

async fn tick(
    canary: Arc<Canary>,
    ctx: Arc<Context>,
    key: ObjectRef<Canary>,
    mut worker: Option<Worker>,
) -> Result<Requeue, Error> {
    let tick_start = Instant::now();
    let namespace = canary.namespace().unwrap_or_default();
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = Timestamp::now();
    let live = canary.status.clone().unwrap_or_default();
    let mut status = if ctx.flags.dry_run {
        ctx.simulated(&key).unwrap_or(live)
    } else {
        live
    };

    // A canary the controller cannot run gets Valid=False and an event, never a crash.
    let spec = match validate(&canary, &ctx) {
        Ok((spec, warnings)) => {
            mark_valid(&ctx, &key, &canary, &mut status, &warnings, now).await;
            spec
        }
        Err((reason, message)) => {
            return invalid(&ctx, &api, &key, &canary, status, reason, &message, now).await;
        }
    };

    let workloads = match Target::load(&ctx, &canary).await {
        Ok(w) => w,
        Err(TargetError::Kube(e)) => return Err(Error::Kube(e)),
        Err(e) => {
            let reason = e.reason().unwrap_or(reason::INVALID_SPEC);
            return invalid(
                &ctx,
                &api,
                &key,
                &canary,
                status,
                reason,
                &e.to_string(),
                now,
            )
            .await;
        }
    };

    let mut observation = workloads.observe(&canary, &spec).await?;
    if let Some(adopted) =
        workloads.adopt_flagger_status(&canary, &status, &observation.revision)?
    {
        // Taken over from Flagger: its revision hashes become ours before anything compares them,
        // so a canary Flagger left up to date is not a new revision. Stored at once; the watch
        // event of the write starts the next tick.
        tracing::info!(canary = %canary.name_any(), namespace, applied = adopted.last_applied_spec.as_deref().unwrap_or_default(), "revision hashes written by Flagger adopted");
        if spec.dry_run {
            ctx.simulated_status(&key, Some(adopted));
        } else if let Written::Wrote(written) = status::write(&api, &canary, &adopted).await? {
            ctx.wrote_status(&canary, written);
        }
        return Ok(Requeue::after(Duration::ZERO));
    }
    if !spec.dry_run && !observation.deleting {
        // The canary and primary Services (and the primary HPA) exist whatever the phase.
        // Before the tick gate, so the watch event of a deleted or edited object repairs it at
        // once; when nothing changed this costs no request (see `cache`). A tick without a
        // worker writes here only to repair such an edit: rare, and under the client's budget.
        workloads.ensure_services(&canary).await?;
        workloads.ensure_primary_scaler(&canary).await?;
        if let Some(warning) = workloads
            .recreate_missing_primary(&canary, &observation.revision)
            .await?
        {
            ctx.recorder
                .record(&canary, EventType::Warning, &warning)
                .await;
            // This tick saw no primary; the next one (its watch event) sees the new one.
            return Ok(Requeue::after(Duration::ZERO));
        }
    }
    let turn = match gate(&ctx, &key, &canary, &spec, &observation) {
        Gate::NotYet(wait) => return Ok(Requeue::after(wait)),
        Gate::AtRest => None,
        Gate::Run(turn) => Some(turn),
    };
    let at_rest = turn.is_none();
    if worker.is_none()
        && let Some(turn) = turn
    {
        worker = Some(ctx.workers.acquire(turn).await);
        if target_changed(&ctx, &canary, &observation.revision).await {
            // Read before the wait: start again from what is there now.
            return Ok(Requeue::after(Duration::ZERO));
        }
    }
    if matches!(
        status.phase.unwrap_or_default(),
        CanaryPhase::New | CanaryPhase::Initializing
    ) && !spec.skip_analysis
    {
        // Asking the providers waits on the outside world: not on a worker.
        drop(worker.take());
        report_availability(&ctx, &canary).await;
        worker = Some(ctx.workers.acquire(Turn::Resume).await);
    }

    let started = std::time::Instant::now();
    let mut executor = Executor::new(&ctx, &canary, &spec, &workloads);
    for _ in 0..MAX_ROUNDS {
        let (mut next, actions) = flagger_core::advance(&spec, &status, &observation, now);
        if let Some(Action::Need(need)) = actions.first() {
            // Hooks and checks wait on the outside world (up to a hook's timeout times its
            // retries): without a worker, so other canaries' ticks go on meanwhile.
            drop(worker.take());
            match need {
                Need::Webhooks { kind, phase, hooks } => {
                    fulfil::webhooks(
                        &ctx,
                        &canary,
                        &status,
                        *kind,
                        *phase,
                        hooks,
                        &mut observation,
                    )
                    .await;
                }
                Need::Metrics { names } => {
                    fulfil::metrics(&ctx, &canary, &spec, names, &mut observation).await;
                }
                Need::Judge => {
                    crate::judge::fulfil(&ctx, &canary, &spec, &status, &mut observation).await;
                }
            }
            worker = Some(ctx.workers.acquire(Turn::Resume).await);
            if target_changed(&ctx, &canary, &observation.revision).await {
                // The target changed while the results were on their way: they judge a revision
                // that is no longer the one to promote. Dropped; the next tick starts from the
                // new revision (nothing of this tick was announced, so nothing is repeated).
                tracing::info!(canary = %canary.name_any(), namespace, "target changed while its checks ran; results discarded");
                return Ok(Requeue::after(Duration::ZERO));
            }
            continue;
        }
        let nothing_decided = actions
            .iter()
            .all(|action| matches!(action, Action::RequeueAfter(_)));
        let outcome = executor.run(actions, &mut next).await;
        record_tick_metrics(&ctx, &canary, &spec, &next, started.elapsed());
        let interval = outcome.requeue.unwrap_or(spec.interval);
        let due = schedule(&ctx, &key, tick_start, interval);
        if let Some(workload) = outcome.requeue_when_ready {
            ctx.tick_when_ready(&key, workload);
        }
        if let Err(failure) = outcome.result {
            // The status stays as it was before the failed effect; the next tick retries it.
            ctx.recorder
                .record(&canary, EventType::Warning, &failure)
                .await;
            ctx.metrics.reconcile_error(EFFECT);
            return Ok(Requeue::after(ctx.failed(&key)));
        }
        let mut wrote = false;
        if spec.dry_run {
            ctx.simulated_status(&key, Some(next.clone()));
        } else if !outcome.deleted
            && let Written::Wrote(written) = status::write(&api, &canary, &next).await?
        {
            ctx.wrote_status(&canary, written);
            wrote = true;
        }
        // Dry-run ticks decide from a simulated status the Canary's version does not follow.
        if at_rest
            && nothing_decided
            && !wrote
            && !spec.dry_run
            && outcome.notices.is_empty()
            && let Some(reads) = crate::cache::reads::taken()
            && let Some(memo) = crate::at_rest::Memo::of(&canary, reads, interval)
        {
            ctx.rest(&key, memo);
        }
        // Alerts, event webhooks and post-rollout hooks leave the cluster: not on a worker. The
        // canary's next tick still waits for them (one reconcile per canary at a time), so each
        // is sent once.
        drop(worker.take());
        executor.notify(outcome.notices, &next).await;
        ctx.succeeded(&key);
        return Ok(Requeue::after(
            due.saturating_duration_since(Instant::now()),
        ));
    }
    Err(Error::Runaway)
}

/// Flagger's event of each initialising tick: all metric providers answer, or which do not. The
/// recorder aggregates the repeats into one Event with a count.
async fn report_availability(ctx: &Context, canary: &Canary) {
    if canary
        .spec
        .analysis
        .metrics
        .as_ref()
        .is_none_or(Vec::is_empty)
    {
        return;
    }
    let (kind, message) = match crate::availability::providers_online(ctx, canary).await {
        Ok(()) => (
            EventType::Normal,
            "all the metrics providers are available!".to_string(),
        ),
        Err(why) => (
            EventType::Warning,
            format!("Error checking metric providers: {why}"),
        ),
    };
    ctx.recorder.record(canary, kind, &message).await;
}

/// Whether the target's revision as the watch cache has it now (no request in steady state)
/// differs from `observed`; a target that is gone has changed. Compared by revision, not by
/// generation: an autoscaler changing the target's replicas bumps the generation but is no new
/// revision.
async fn target_changed(ctx: &Context, canary: &Canary, observed: &str) -> bool {
    let namespace = canary.namespace().unwrap_or_default();
    let name = &canary.spec.target_ref.name;
    let overrides = canary
        .status
        .as_ref()
        .and_then(|s| s.pod_overrides.as_ref());
    let now = match canary.spec.target_ref.kind.as_str() {
        // A Knative Service's revision under analysis is its latest created Revision, read with a
        // GET at each tick rather than cached: the next tick sees a newer one and starts over.
        "Service" if canary.spec.target_ref.is_knative_service() => return false,
        "Service" => ctx
            .cache
            .get::<Service>(&ctx.client, &namespace, name)
            .await
            .ok()
            .flatten()
            .map(|s| crate::workload::service_target::revision_of(&s)),
        "DaemonSet" => ctx
            .cache
            .get::<DaemonSet>(&ctx.client, &namespace, name)
            .await
            .ok()
            .flatten()
            .map(|d| revision::of_daemonset(&d, overrides)),
        _ => ctx
            .cache
            .get::<Deployment>(&ctx.client, &namespace, name)
            .await
            .ok()
            .flatten()
            .map(|d| revision::of_deployment(&d, overrides)),
    };
    now.as_deref() != Some(observed)
}

/// A failed reconcile is counted and retried with a per-canary backoff (see `backoff`).
pub fn error_policy(canary: Arc<Canary>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let retry = ctx.failed(&ObjectRef::from_obj(canary.as_ref()));
    tracing::warn!(canary = %canary.name_any(), namespace = ?canary.namespace(), kind = error.metric_label(), retry_in = ?retry, "{error}");
    ctx.metrics.reconcile_error(error.metric_label());
    Requeue::after(retry)
}

type Invalid = (&'static str, String);

/// Runtime validation and normalisation; warnings come back for the condition.
fn validate(canary: &Canary, ctx: &Context) -> Result<(RolloutSpec, Vec<String>), Invalid> {
    let problems = flagger_api::validate::canary(canary, &ctx.validation);
    if let Some(error) = problems.iter().find(|p| p.severity == Severity::Error) {
        let reason = match error.reason {
            Some(reason::STRATEGY_UNSUPPORTED) => reason::STRATEGY_UNSUPPORTED,
            Some(reason::SESSION_AFFINITY_COOKIE) => reason::SESSION_AFFINITY_COOKIE,
            Some(reason::CROSS_NAMESPACE_REF) => reason::CROSS_NAMESPACE_REF,
            Some(reason::KNATIVE_MISMATCH) => reason::KNATIVE_MISMATCH,
            Some(reason::NOT_IMPLEMENTED) => reason::NOT_IMPLEMENTED,
            _ => reason::INVALID_SPEC,
        };
        return Err((reason, error.to_string()));
    }
    let mut spec = flagger_core::normalize(canary, &ctx.core)
        .map_err(|e| (reason::INVALID_SPEC, e.to_string()))?;
    if ctx.flags.dry_run {
        spec.dry_run = true;
    }
    let warnings = problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .map(|p| p.to_string())
        .collect();
    Ok((spec, warnings))
}

async fn mark_valid(
    ctx: &Context,
    key: &ObjectRef<Canary>,
    canary: &Canary,
    status: &mut CanaryStatus,
    warnings: &[String],
    now: Timestamp,
) {
    let (reason, message) = if warnings.is_empty() {
        ("Valid", "Canary spec is valid".to_string())
    } else {
        ("Warnings", warnings.join("; "))
    };
    status::set_condition(status, "Valid", "True", reason, &message, now);
    if ctx.first_report(key, &message) && !warnings.is_empty() {
        for warning in warnings {
            ctx.recorder
                .record(canary, EventType::Warning, warning)
                .await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn invalid(
    ctx: &Context,
    api: &Api<Canary>,
    key: &ObjectRef<Canary>,
    canary: &Canary,
    mut status: CanaryStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Result<Requeue, Error> {
    status::set_condition(&mut status, "Valid", "False", reason, message, now);
    if ctx.first_report(key, message) {
        ctx.recorder
            .record(canary, EventType::Warning, message)
            .await;
    }
    if !ctx.flags.dry_run
        && let Written::Wrote(written) = status::write(api, canary, &status).await?
    {
        ctx.wrote_status(canary, written);
    }
    ctx.succeeded(key);
    // Fixing the spec is a watch event; the periodic retry covers a target that appears later.
    Ok(Requeue::after(Duration::from_secs(30)))
}

/// What a tick does after its reads: wait for its scheduled time, run without a worker (a
/// canary at rest: the core ends such a tick at once, writing at most what follows an edit of the
/// Canary itself, its finalizer or a suspend event), or run on a worker.
#[derive(Debug, PartialEq)]
enum Gate {
    NotYet(Duration),
    AtRest,
    Run(Turn),
}

/// Watch events only start work that is safe to do at once (initialisation, run start on a
/// new revision, deletion, a person's request: reactions); weight steps, checks and promotions
/// wait for the scheduled tick, or for the end of a rollout the last tick waited for: that tick
/// took no step, so the step before it has lasted an interval already.
fn gate(
    ctx: &Context,
    key: &ObjectRef<Canary>,
    canary: &Canary,
    spec: &RolloutSpec,
    obs: &Observation,
) -> Gate {
    let default = CanaryStatus::default();
    let status = canary.status.as_ref().unwrap_or(&default);
    let phase = status.phase.unwrap_or_default();
    let changed = !records_revision(status, &obs.revision, &obs.configs);
    let at_rest = matches!(
        phase,
        CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed
    );
    // A person waits for the answer to a manual request.
    let reactive = obs.deleting
        || crate::target::request_pending(canary)
        || matches!(phase, CanaryPhase::New | CanaryPhase::Initializing)
        || (at_rest && changed);
    if reactive {
        return Gate::Run(Turn::Reaction);
    }
    // A run waiting for a workload goes on when its rollout ends, not up to an interval later;
    // its ticks are due an interval apart from there. Any other change of the workload waits for
    // the scheduled tick.
    if !at_rest
        && ctx
            .waits_for_ready(key)
            .is_some_and(|workload| obs.done_waiting_for(workload))
    {
        return Gate::Run(Turn::Reaction);
    }
    let wait = due_in(ctx, key, canary, spec);
    if !wait.is_zero() {
        Gate::NotYet(wait)
    } else if at_rest {
        Gate::AtRest
    } else {
        Gate::Run(Turn::Scheduled)
    }
}

/// Whether a reconcile takes a worker before it reads (and in which turn), judged from the
/// Canary and the cached target alone: a tick that will act waits for its worker first, so its
/// reads are fresh when its turn comes. `None` for a canary at rest whose target has not changed
/// (after its first tick since the start) and for a run between its ticks: such a reconcile must
/// not queue for a worker (a canary at rest whose target changes while its idle tick waits in line
/// would otherwise react only at that tick's turn, behind reactions to later changes); `gate`
/// takes a worker after the reads if they show something to do after all (a changed config).
async fn turn_before_reading(
    ctx: &Context,
    key: &ObjectRef<Canary>,
    canary: &Canary,
) -> Option<Turn> {
    let status = canary.status.as_ref();
    let phase = status.and_then(|s| s.phase).unwrap_or_default();
    if canary.metadata.deletion_timestamp.is_some()
        || crate::target::request_pending(canary)
        || phase == CanaryPhase::Initializing
    {
        return Some(Turn::Reaction);
    }
    match phase {
        // A new canary's first tick waits behind the reactions, which include the next steps of
        // the canaries already initialising: a flood of new canaries then finishes initialising
        // about in the order it arrived, instead of every canary advancing one step per round.
        CanaryPhase::New => Some(Turn::Scheduled),
        CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed => {
            let applied = status
                .and_then(|s| s.last_applied_spec.as_deref())
                .unwrap_or_default();
            // Boxed: the cache read is most of a waiting reconcile's size otherwise.
            if Box::pin(target_changed(ctx, canary, applied)).await {
                Some(Turn::Reaction)
            } else if ctx.due(key).is_none() {
                // Its first tick since the controller started: it applies the canary's Services
                // once (what was applied last is not remembered across a restart). Thousands of
                // canaries at rest start at once then; on a worker, only as many hold their
                // reads and wait on the client's budget as there are workers (the ticks waiting
                // with their reads were, with the GETs of `cache::LIST_PATIENCE`, the GiB measured
                // restarting at 10 000 without either).
                Some(Turn::Scheduled)
            } else {
                None
            }
        }
        CanaryPhase::Terminating | CanaryPhase::Terminated => None,
        _ => match ctx.due(key) {
            Some(due) if due > Instant::now() => None,
            _ => Some(Turn::Scheduled),
        },
    }
}

fn due_in(ctx: &Context, key: &ObjectRef<Canary>, canary: &Canary, spec: &RolloutSpec) -> Duration {
    let now = Instant::now();
    let due = ctx
        .due(key)
        .unwrap_or_else(|| restart_due(canary, spec, now));
    due.saturating_duration_since(now)
}

/// After a restart, an active run keeps its cadence: next tick at lastTransitionTime + interval.
fn restart_due(canary: &Canary, spec: &RolloutSpec, now: Instant) -> Instant {
    let Some(status) = canary.status.as_ref() else {
        return now;
    };
    let active = matches!(
        status.phase.unwrap_or_default(),
        CanaryPhase::Progressing
            | CanaryPhase::WaitingPromotion
            | CanaryPhase::Promoting
            | CanaryPhase::Finalising
            | CanaryPhase::Waiting
    );
    let Some(last) = status.last_transition_time.filter(|_| active) else {
        return now;
    };
    let since = Timestamp::now().duration_since(last).unsigned_abs();
    now + spec.interval.saturating_sub(since)
}

/// Sets and returns the next tick's due time, on the cadence of the tick that started at `started`.
fn schedule(ctx: &Context, key: &ObjectRef<Canary>, started: Instant, after: Duration) -> Instant {
    let due = cadence::next_due(ctx.due(key), started, Instant::now(), after);
    ctx.set_due(key, due);
    due
}

fn record_tick_metrics(
    ctx: &Context,
    canary: &Canary,
    spec: &RolloutSpec,
    status: &CanaryStatus,
    took: Duration,
) {
    let namespace = canary.namespace().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    ctx.metrics.record_tick(
        &canary.name_any(),
        &namespace,
        &spec.target_name,
        phase,
        Timestamp::now(),
        took.as_secs_f64(),
    );
}

#[cfg(test)]
mod tests {
    use flagger_core::{Readiness, Workload};

    use super::*;
    use crate::metrics::Metrics;

    /// A context whose client answers nothing: enough to build a reconcile future.
    fn context() -> Arc<Context> {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, _>(std::io::Error::other("no API server"))
        });
        let client = kube::Client::new(service, "default");
        let flags = crate::flags::parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(Context::new(
            client,
            flags,
            Arc::new(Metrics::new(false)),
            crate::webhooks::Caller::new().unwrap_or_else(|e| panic!("{e}")),
            None,
            None,
        ))
    }

    /// Thousands of reconciles wait for a worker at once when thousands of targets change: each
    /// holds only what it needs to wait, the tick's state comes when its turn does.
    #[tokio::test]
    async fn a_reconcile_waiting_for_a_worker_is_small() {
        let canary = Arc::new(Canary::new("podinfo", Default::default()));
        let waiting = reconcile(canary.clone(), context());
        let whole = tick(canary, context(), ObjectRef::new("podinfo"), None);
        println!(
            "reconcile future: {} bytes; the tick it boxes: {} bytes",
            std::mem::size_of_val(&waiting),
            std::mem::size_of_val(&whole)
        );
        assert!(std::mem::size_of_val(&waiting) <= 512);
    }

    fn in_phase(phase: CanaryPhase) -> Canary {
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("test".into());
        canary.spec.target_ref.kind = "Deployment".into();
        canary.spec.target_ref.name = "podinfo".into();
        canary.spec.analysis =
            serde_json::from_value(serde_json::json!({"interval": "10s", "iterations": 3}))
                .unwrap_or_else(|e| panic!("{e}"));
        canary.status = Some(CanaryStatus {
            phase: Some(phase),
            last_applied_spec: Some("r2".into()),
            ..Default::default()
        });
        canary
    }

    fn observed(canary: Readiness, primary: Readiness) -> Observation {
        Observation {
            canary,
            primary,
            ..Observation::ready("r2", flagger_core::RouteState::PRIMARY)
        }
    }

    fn rolling_out() -> Readiness {
        Readiness::Waiting {
            message: "waiting for rollout to finish".into(),
            since: None,
        }
    }

    fn gate_of(ctx: &Context, canary: &Canary, obs: &Observation) -> Gate {
        let key = ObjectRef::from_obj(canary);
        let spec = flagger_core::normalize(canary, &ctx.core).unwrap_or_else(|e| panic!("{e}"));
        gate(ctx, &key, canary, &spec, obs)
    }

    /// A run whose tick found its canary Deployment still rolling out goes on when the rollout
    /// ends, not at the next interval; nothing else about the Deployment brings a tick forward.
    #[tokio::test]
    async fn the_end_of_a_rollout_the_last_tick_waited_for_runs_the_next_tick_at_once() {
        let ctx = context();
        let canary = in_phase(CanaryPhase::Progressing);
        let key = ObjectRef::from_obj(&canary);
        ctx.set_due(&key, Instant::now() + Duration::from_secs(10));
        let ready = observed(Readiness::Ready, Readiness::Ready);
        let still = observed(rolling_out(), Readiness::Ready);

        // Not waited for: a ready canary waits for the scheduled tick.
        assert!(matches!(gate_of(&ctx, &canary, &ready), Gate::NotYet(_)));
        ctx.tick_when_ready(&key, Workload::Canary);
        assert!(matches!(gate_of(&ctx, &canary, &still), Gate::NotYet(_)));
        // The primary rolling out is not what the run waits for.
        let other = observed(rolling_out(), rolling_out());
        assert!(matches!(gate_of(&ctx, &canary, &other), Gate::NotYet(_)));
        assert_eq!(gate_of(&ctx, &canary, &ready), Gate::Run(Turn::Reaction));
        let failed = observed(
            Readiness::Failed {
                message: "exceeded its progress deadline".into(),
            },
            Readiness::Ready,
        );
        assert_eq!(gate_of(&ctx, &canary, &failed), Gate::Run(Turn::Reaction));
        // The tick that ran scheduled the next: the wait it ended is over.
        ctx.set_due(&key, Instant::now() + Duration::from_secs(10));
        assert!(matches!(gate_of(&ctx, &canary, &ready), Gate::NotYet(_)));
    }

    /// A canary in `phase` whose last tick waited for `workload`, its next tick due in 10 s.
    fn waiting_for(phase: CanaryPhase, workload: Workload) -> (Arc<Context>, Canary) {
        let ctx = context();
        let canary = in_phase(phase);
        let key = ObjectRef::from_obj(&canary);
        ctx.set_due(&key, Instant::now() + Duration::from_secs(10));
        ctx.tick_when_ready(&key, workload);
        (ctx, canary)
    }

    #[tokio::test]
    async fn a_promotion_waiting_for_its_primary_goes_on_when_the_primary_is_ready() {
        let (ctx, canary) = waiting_for(CanaryPhase::Promoting, Workload::Primary);
        let rolling = observed(Readiness::Ready, rolling_out());
        assert!(matches!(gate_of(&ctx, &canary, &rolling), Gate::NotYet(_)));
        let ready = observed(Readiness::Ready, Readiness::Ready);
        assert_eq!(gate_of(&ctx, &canary, &ready), Gate::Run(Turn::Reaction));
    }

    /// A canary at rest has no run to bring forward: its primary's readiness waits for its tick.
    #[tokio::test]
    async fn a_canary_at_rest_is_not_ticked_by_a_readiness_it_did_not_wait_for() {
        let (ctx, canary) = waiting_for(CanaryPhase::Succeeded, Workload::Primary);
        let ready = observed(Readiness::Ready, Readiness::Ready);
        assert!(matches!(gate_of(&ctx, &canary, &ready), Gate::NotYet(_)));
    }
}
