//! `flagger-rs controller`: wiring. Watches, leader election, the HTTP server, signals.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use flagger_api::Canary;

use crate::cache;
use crate::context::Context;
use crate::flags::Flags;
use crate::leader::{Elector, LEASE_NAME, Timings};
use crate::metrics::{InfoLabels, Metrics};
use crate::reconcile::{error_policy, reconcile};
use crate::server::{Health, router};
use crate::watches::warn_watch_error;
use crate::webhooks::Caller;

/// Triggers the watches may queue for the runner before they wait: enough to absorb a relist's
/// burst while the runner is busy, few enough to hold no real memory.
const TRIGGERS_IN_FLIGHT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot listen on port {port}: {error}")]
    Listen { port: u16, error: std::io::Error },
    #[error("global notifier flags: {0}")]
    Notifier(String),
    #[error("the Canary CRD is not installed or not readable: {0}")]
    Crd(kube::Error),
    #[error("leader election flags: {0}")]
    LeaderElection(String),
}

pub async fn run(flags: Flags) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new(flags.dry_run));
    let client = crate::client::build(&flags, &metrics).await?;

    // Like Flagger: refuse to start without the CRDs rather than loop on watch errors.
    let canaries: Api<Canary> = namespaced_or_all(&client, &flags.namespace);
    canaries
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(RunError::Crd)?;

    metrics
        .info
        .get_or_create(&InfoLabels {
            version: env!("CARGO_PKG_VERSION").into(),
            mesh_provider: flags.mesh_provider.clone(),
        })
        .set(1);
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", flags.port))
        .await
        .map_err(|error| RunError::Listen {
            port: flags.port,
            error,
        })?;
    tokio::spawn(crate::allocator::release_free_memory_every(
        crate::allocator::RELEASE_PERIOD,
    ));
    let app = router(Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });

    // SIGTERM is how Kubernetes stops a pod: handled like Ctrl-C so a leader releases its Lease.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    let timings = Timings {
        lease_duration: flags.leader_election_lease_duration,
        renew_deadline: flags.leader_election_renew_deadline,
        retry_period: flags.leader_election_retry_period,
    };
    let timings = if flags.enable_leader_election {
        timings.checked().map_err(RunError::LeaderElection)?
    } else {
        timings
    };
    let elector = flags.enable_leader_election.then(|| {
        let namespace = if flags.namespace.is_empty() {
            flags.leader_election_namespace.clone()
        } else {
            flags.namespace.clone()
        };
        // A dry-run controller takes its own lease so it can shadow a real one.
        let name = if flags.dry_run {
            "flagger-rs-dry-run"
        } else {
            LEASE_NAME
        };
        Elector::new(client.clone(), &namespace, name, identity(), timings)
    });
    if let Some(elector) = &elector {
        // A follower watches nothing and writes nothing until it holds the Lease.
        tokio::select! {
            _ = elector.acquire() => {}
            _ = &mut shutdown => {
                tracing::info!("shutting down before being elected");
                return Ok(());
            }
        }
    }

    let global_notifier = crate::alerts::global_notifier(&flags).map_err(RunError::Notifier)?;
    let stores = cache::Stores::default();
    let ctx = Arc::new(Context::new(
        client.clone(),
        flags.clone(),
        metrics,
        Caller::new()?,
        global_notifier,
        Some(stores),
    ));
    let controller = controller(client, &flags, canaries, ctx.clone(), ready);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), mesh_provider = %flags.mesh_provider, dry_run = flags.dry_run, workers = crate::workers::Workers::count(&flags), "starting flagger-rs controller");

    match &elector {
        Some(elector) => {
            tokio::select! {
                _ = controller => {}
                _ = elector.hold() => {
                    // Another replica may be acting already: stop at once, as Flagger does.
                    tracing::error!("leadership lost, exiting");
                    std::process::exit(1);
                }
                _ = &mut shutdown => {}
            }
            // The controller future is dropped by now, so nothing acts after the Lease is given up.
            elector.release().await;
        }
        None => {
            tokio::select! {
                _ = controller => {}
                _ = &mut shutdown => {}
            }
        }
    }
    tracing::info!("flagger-rs controller stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGTERM; only Ctrl-C stops cleanly")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

pub(crate) fn namespaced_or_all<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    }
}

fn identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "flagger-rs".into());
    format!("{host}_{}", std::process::id())
}

/// The Canary watch: its reflector feeds the controller, and a canary that leaves it (deleted,
/// or gone from the watch after a relist) is forgotten at once: its series, schedule and caches.
fn canary_watch(
    canaries: Api<Canary>,
    writer: kube::runtime::reflector::store::Writer<Canary>,
    reader: kube::runtime::reflector::Store<Canary>,
    ctx: Arc<Context>,
) -> impl futures::Stream<Item = Result<Canary, watcher::Error>> + Send + 'static {
    watcher(canaries, watcher::Config::default())
        .inspect_err(warn_watch_error::<Canary>)
        .default_backoff()
        // Nothing reads them (status is written by server-side apply), and with every status
        // write they grow into a large share of each cached Canary.
        .modify(|canary| canary.metadata.managed_fields = None)
        .reflect(writer)
        .inspect_ok(move |event| match event {
            watcher::Event::Apply(canary) | watcher::Event::InitApply(canary) => {
                ctx.cache.track_targets(canary);
                let key = ObjectRef::from_obj(canary);
                let version = canary.metadata.resource_version.as_deref();
                ctx.own_writes.caught_up(&key, version, || reader.get(&key));
            }
            // One canary gone: forgotten by name. Comparing everything remembered with the
            // store at each delete would cost N² when a namespace of N canaries goes.
            watcher::Event::Delete(canary) => ctx.forget(&ObjectRef::from_obj(canary)),
            // The reflector has applied the relist: the store is what is watched now.
            watcher::Event::InitDone => forget_unwatched(&ctx, &reader),
            watcher::Event::Init => {}
        })
        .touched_objects()
}

fn forget_unwatched(ctx: &Context, store: &kube::runtime::reflector::Store<Canary>) {
    let present = store
        .state()
        .iter()
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect();
    ctx.forget_absent(&present);
}

/// Canaries are reconciled on their own changes and on changes of what they own or target; a
/// target or config change maps back to the canaries that reference it.
async fn controller(
    client: Client,
    flags: &Flags,
    canaries: Api<Canary>,
    ctx: Arc<Context>,
    ready: Arc<AtomicBool>,
) {
    let (store, canary_writer) = kube::runtime::reflector::store();
    let canary_events = canary_watch(canaries, canary_writer, store.clone(), ctx.clone());
    if let Some(stores) = ctx.cache.stores() {
        tokio::spawn(crate::watches::ready_when_synced(
            stores.clone(),
            store.clone(),
            ready,
        ));
    }
    let totals_store = store.clone();
    let totals_metrics = ctx.metrics.clone();
    let totals_ctx = ctx.clone();
    // flagger_canary_total is a count over the cache; refreshing it on a timer keeps reconciles
    // free of cluster-wide work.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            let mut totals = std::collections::BTreeMap::new();
            for canary in totals_store.state() {
                *totals
                    .entry(canary.namespace().unwrap_or_default())
                    .or_insert(0) += 1;
            }
            totals_metrics.set_canary_totals(&totals);
            // A reconcile that was running when its canary was deleted may have recorded
            // series after the deletion was handled.
            forget_unwatched(&totals_ctx, &totals_store);
            totals_ctx.recorder.sweep();
        }
    });
    // Each watch is driven by a task of its own, so decoding what the API server sends runs on
    // every thread of the runtime while the runner only schedules; dropping `watches` (on
    // shutdown or a lost lease) stops them all.
    let (sender, triggered) = futures::channel::mpsc::channel(TRIGGERS_IN_FLIGHT);
    let canary_triggers = crate::watches::mapped(canary_events, |canary: Canary| {
        vec![ObjectRef::from_obj(&canary)]
    });
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(canary_triggers.map(Ok).forward(sender.clone()));
    let listed_store = store.clone();
    // One wait shared by every watch: kube-runtime wakes only the last of a store's waiters.
    let canaries_listed = async move {
        // A writer gone before its list means the controller is stopping: the watches need not wait.
        let _ = crate::runner::wait_listed(&listed_store).await;
    }
    .boxed()
    .shared();
    for triggers in crate::watches::triggers(&client, &flags.namespace, &ctx) {
        let triggers = crate::watches::after_canaries_listed(canaries_listed.clone(), triggers);
        watches.spawn(triggers.map(Ok).forward(sender.clone()));
    }
    drop(sender);
    let reconcile_ctx = ctx.clone();
    let skip_ctx = ctx.clone();
    let runner = crate::runner::run(
        store,
        triggered,
        crate::resync::every(flags.control_loop_interval),
        move |canary: &Arc<Canary>| crate::reconcile::skipped(&skip_ctx, canary),
        move |canary| {
            let ctx = reconcile_ctx.clone();
            async move {
                match reconcile(canary.clone(), ctx.clone()).await {
                    Ok(requeue) => requeue,
                    Err(e) => error_policy(canary, &e, ctx),
                }
            }
            .boxed()
        },
    );
    tokio::select! {
        () = runner => {}
        // A watch runs as long as the controller (it retries its own errors); one that ends
        // panicked, and the controller would be blind to its kind: it stops, to be restarted.
        Some(ended) = watches.join_next() => {
            tracing::error!(error = ?ended.err(), "a watch stopped; stopping the controller");
        }
    }
}
