//! `flagger-rs controller`: wiring. Watches, leader election, the HTTP server, signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use flagger_api::{AlertProvider, Canary, MetricTemplate};

use crate::cache::{self, Stores, Writers};
use crate::context::Context;
use crate::flags::Flags;
use crate::leader::{Elector, LEASE_NAME, Timings};
use crate::metrics::{InfoLabels, Metrics};
use crate::reconcile::{error_policy, reconcile};
use crate::server::{Health, router};
use crate::webhooks::Caller;

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
    let client = crate::client::build(&flags).await?;

    // Like Flagger: refuse to start without the CRDs rather than loop on watch errors.
    let canaries: Api<Canary> = namespaced_or_all(&client, &flags.namespace);
    canaries
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(RunError::Crd)?;

    let metrics = Arc::new(Metrics::new(flags.dry_run));
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
    let (stores, writers) = cache::stores();
    let ctx = Arc::new(Context::new(
        client.clone(),
        flags.clone(),
        metrics,
        Caller::new()?,
        global_notifier,
        Some(stores),
    ));
    let controller = controller(client, &flags, canaries, writers, ctx.clone(), ready);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), mesh_provider = %flags.mesh_provider, dry_run = flags.dry_run, "starting flagger-rs controller");

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

fn namespaced_or_all<K>(client: &Client, namespace: &str) -> Api<K>
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

/// The Canaries an object's owner references name (the primary workload, the Services).
fn owner_canaries<K: Resource>(object: &K) -> Vec<ObjectRef<Canary>> {
    let namespace = object.meta().namespace.clone();
    object
        .owner_references()
        .iter()
        .filter(|o| o.kind == "Canary" && o.api_version.starts_with("flagger.app/"))
        .map(|o| {
            let r = ObjectRef::new(&o.name);
            match &namespace {
                Some(ns) => r.within(ns),
                None => r,
            }
        })
        .collect()
}

/// One watch per kind both triggers reconciles and fills the cache reconciles read from (see
/// `cache`). Managed fields are dropped: nothing reads them and they are most of an object's size.
fn cached_watch<K>(
    client: &Client,
    namespace: &str,
    writer: kube::runtime::reflector::store::Writer<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = namespaced_or_all(client, namespace);
    watcher(api, watcher::Config::default())
        .inspect_err(|e| warn_watch_error::<K>(e))
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .touched_objects()
        .filter(watch_ok)
}

/// Each watch backs off on its own errors (logged at warn above); passed on, an error would also
/// pause the controller's merged trigger stream under its own backoff (up to 30 s per error),
/// leaving every other watch, the relists and the resync unread meanwhile.
fn watch_ok<T>(item: &Result<T, watcher::Error>) -> futures::future::Ready<bool> {
    futures::future::ready(item.is_ok())
}

/// A failing watch (RBAC refusing a list, a CRD missing) leaves the controller blind to a kind:
/// said at warn, naming the kind, on every failed attempt (the watcher backs off between them).
fn warn_watch_error<K: Resource<DynamicType = ()>>(error: &watcher::Error) {
    tracing::warn!(resource = %K::plural(&()), kind = %K::kind(&()), error = %error, "watch failed; retrying with backoff");
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
        .reflect(writer)
        .inspect_ok(move |event| {
            // The reflector has applied the event: the store is what is watched now.
            if matches!(event, watcher::Event::Delete(_) | watcher::Event::InitDone) {
                forget_unwatched(&ctx, &reader);
            }
        })
        .touched_objects()
        .filter(watch_ok)
}

fn forget_unwatched(ctx: &Context, store: &kube::runtime::reflector::Store<Canary>) {
    let present = store
        .state()
        .iter()
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect();
    ctx.forget_absent(&present);
}

/// Sets `ready` once every watch cache has its initial list: before that a tick would read from
/// half-filled caches (through GETs) and `/readyz` would promise what the controller cannot do.
pub async fn ready_when_synced(
    stores: Stores,
    canaries: kube::runtime::reflector::Store<Canary>,
    ready: Arc<AtomicBool>,
) {
    let synced = futures::future::join_all([
        stores.deployments.wait_until_ready().boxed(),
        stores.daemonsets.wait_until_ready().boxed(),
        stores.services.wait_until_ready().boxed(),
        stores.configmaps.wait_until_ready().boxed(),
        stores.secrets.wait_until_ready().boxed(),
        stores.autoscalers.wait_until_ready().boxed(),
        stores.metric_templates.wait_until_ready().boxed(),
        stores.alert_providers.wait_until_ready().boxed(),
        canaries.wait_until_ready().boxed(),
    ])
    .await;
    if synced.iter().all(Result::is_ok) {
        ready.store(true, Ordering::Relaxed);
        tracing::info!("watch caches synced; ready");
    }
}

/// Canaries are reconciled on their own changes and on changes of what they own or target; a
/// target or config change maps back to the canaries that reference it.
async fn controller(
    client: Client,
    flags: &Flags,
    canaries: Api<Canary>,
    writers: Writers,
    ctx: Arc<Context>,
    ready: Arc<AtomicBool>,
) {
    let ns = flags.namespace.as_str();
    let deployments = cached_watch::<Deployment>(&client, ns, writers.deployments);
    let daemonsets = cached_watch::<DaemonSet>(&client, ns, writers.daemonsets);
    let services = cached_watch::<Service>(&client, ns, writers.services);
    let configmaps = cached_watch::<ConfigMap>(&client, ns, writers.configmaps);
    let secrets = cached_watch::<Secret>(&client, ns, writers.secrets);
    let autoscalers = cached_watch::<HorizontalPodAutoscaler>(&client, ns, writers.autoscalers);
    let templates = cached_watch::<MetricTemplate>(&client, ns, writers.metric_templates);
    let providers = cached_watch::<AlertProvider>(&client, ns, writers.alert_providers);
    let (store, canary_writer) = kube::runtime::reflector::store();
    let canary_events = canary_watch(canaries, canary_writer, store.clone(), ctx.clone());
    if let Some(stores) = ctx.cache.stores() {
        tokio::spawn(ready_when_synced(stores.clone(), store.clone(), ready));
    }
    let controller = Controller::for_stream(canary_events, store.clone());
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
        }
    });
    let by_target = |store: kube::runtime::reflector::Store<Canary>| {
        move |kind: &'static str, name: String, namespace: Option<String>| {
            store
                .state()
                .into_iter()
                .filter(|c| {
                    c.namespace() == namespace
                        && c.spec.target_ref.kind == kind
                        && c.spec.target_ref.name == name
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let deployment_map = by_target(store.clone());
    let daemonset_map = by_target(store.clone());
    let config_store = store.clone();
    let config_map = move |namespace: Option<String>| {
        // Any ConfigMap/Secret change in a namespace may be a tracked config of its canaries; the
        // reconcile compares checksums, so a spurious evaluation changes nothing.
        config_store
            .state()
            .into_iter()
            .filter(|c| c.namespace() == namespace)
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect::<Vec<_>>()
    };
    let secret_map = config_map.clone();
    let scaler_store = store.clone();
    // The target's HPA (`autoscalerRef`) maps to the canaries naming it; `<hpa>-primary` to its owner.
    let autoscaler_map = move |h: HorizontalPodAutoscaler| {
        let mut refs = owner_canaries(&h);
        refs.extend(
            scaler_store
                .state()
                .into_iter()
                .filter(|c| {
                    c.namespace() == h.namespace()
                        && c.spec.autoscaler_ref.as_ref().is_some_and(|r| {
                            r.kind == "HorizontalPodAutoscaler" && r.name == h.name_any()
                        })
                })
                .map(|c| ObjectRef::from_obj(c.as_ref())),
        );
        refs
    };
    // A primary workload or Service edited or deleted by someone else maps back to its Canary
    // through the owner reference; the reconcile repairs it.
    controller
        .watches_stream(deployments, move |d| {
            let mut refs = owner_canaries(&d);
            refs.extend(deployment_map("Deployment", d.name_any(), d.namespace()));
            refs
        })
        .watches_stream(daemonsets, move |d| {
            let mut refs = owner_canaries(&d);
            refs.extend(daemonset_map("DaemonSet", d.name_any(), d.namespace()));
            refs
        })
        .watches_stream(services, |s| owner_canaries(&s))
        .watches_stream(configmaps, move |c| config_map(c.namespace()))
        .watches_stream(secrets, move |s| secret_map(s.namespace()))
        .watches_stream(autoscalers, autoscaler_map)
        // Read when a check or an alert needs them; a change waits for that moment.
        .watches_stream(templates, |_| Vec::<ObjectRef<Canary>>::new())
        .watches_stream(providers, |_| Vec::<ObjectRef<Canary>>::new())
        .reconcile_all_on(crate::resync::every(flags.control_loop_interval))
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(u16::max(flags.threadiness, 1)),
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                // error_policy has logged it, with the canary.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                // Logged at warn where the watch failed, naming the resource.
                Err(e @ kube::runtime::controller::Error::QueueError(_)) => {
                    tracing::debug!(error = %e, "controller trigger")
                }
                Err(e) => tracing::warn!(error = %e, "controller"),
                Ok(_) => {}
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    #[tokio::test]
    async fn ready_only_once_every_cache_has_its_initial_list() {
        let (stores, mut writers) = cache::stores();
        let (canaries, mut canary_writer) = kube::runtime::reflector::store::<Canary>();
        let ready = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(ready_when_synced(stores, canaries, ready.clone()));
        macro_rules! sync {
            ($($w:expr),*) => {$(
                $w.apply_watcher_event(&Event::Init);
                $w.apply_watcher_event(&Event::InitDone);
            )*};
        }
        sync!(
            writers.deployments,
            writers.daemonsets,
            writers.services,
            writers.configmaps,
            writers.secrets,
            writers.autoscalers,
            writers.metric_templates,
            canary_writer
        );
        tokio::task::yield_now().await;
        assert!(
            !ready.load(Ordering::Relaxed),
            "the AlertProvider cache has not listed yet"
        );
        sync!(writers.alert_providers);
        task.await.unwrap();
        assert!(ready.load(Ordering::Relaxed));
    }
}
