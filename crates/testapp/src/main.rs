//! testapp: the "container runtime" of the local cluster. kwok makes pods Running with IPs from 10.244.0.0/16, which
//! the cluster's netns routes as local (AnyIP); this process listens on 0.0.0.0 on every TCP containerPort any pod
//! declares, so a connection to <podIP>:<port> lands here, and the connection's local address says which pod it is
//! for. One listener per port (not per IP) means no race with kwok: the port is open before the pod turns Ready.
//!
//! It also serves the local notification receiver (Alertmanager's webhook target) on --receiver-addr, and on
//! --mesh-metrics-addr the series each service mesh's proxies would export for the requests served (mesh_series).

mod mesh_series;
mod pods;
mod receiver;
mod serve;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Api, Client};
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(about = "Answers HTTP for every pod IP of the local cluster like podinfo")]
struct Args {
    /// Address pods' ports are bound on; the netns makes every pod IP local to it.
    #[arg(long, default_value = "0.0.0.0")]
    bind_ip: IpAddr,
    /// Where the notification receiver listens (Alertmanager webhook: POST /alerts).
    #[arg(long, default_value = "127.0.0.1:9096")]
    receiver_addr: SocketAddr,
    /// Where every pod's service-mesh series are served for Prometheus (GET /metrics).
    #[arg(long, default_value = "127.0.0.1:9097")]
    mesh_metrics_addr: SocketAddr,
    /// Ports never bound even if a pod declares them (served by other processes in the netns).
    #[arg(long, value_delimiter = ',')]
    exclude_ports: Vec<u16>,
    /// Prometheus file_sd JSON to keep up to date with the pods that ask to be scraped.
    #[arg(long)]
    file_sd: Option<std::path::PathBuf>,
    /// Upper bound on distinct listening ports.
    #[arg(long, default_value_t = 256)]
    max_ports: usize,
}

/// A port that failed to bind is retried no more often than this.
const BIND_RETRY: Duration = Duration::from_secs(5);

struct Ports {
    bound: BTreeSet<u16>,
    failed: HashMap<u16, Instant>,
}

impl Ports {
    async fn reconcile(&mut self, wanted: &BTreeSet<u16>, args: &Args, state: &serve::AppState) {
        for &port in wanted {
            if self.bound.contains(&port) || args.exclude_ports.contains(&port) {
                continue;
            }
            if self
                .failed
                .get(&port)
                .is_some_and(|t| t.elapsed() < BIND_RETRY)
            {
                continue;
            }
            if self.bound.len() >= args.max_ports {
                tracing::warn!(port, max = args.max_ports, "not listening: too many ports");
                continue;
            }
            match TcpListener::bind((args.bind_ip, port)).await {
                Ok(listener) => {
                    tracing::info!(port, "listening for pods");
                    self.bound.insert(port);
                    self.failed.remove(&port);
                    let app = serve::router(state.clone())
                        .into_make_service_with_connect_info::<serve::Conn>();
                    tokio::spawn(async move {
                        if let Err(e) = axum::serve(listener, app).await {
                            tracing::error!(port, error = %e, "pod listener stopped");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(port, error = %e, "cannot listen for pods (port used by another process?)");
                    self.failed.insert(port, Instant::now());
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest/kube are built without a default crypto provider; pick ring once for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .init();
    let args = Args::parse();

    let client = Client::try_default()
        .await
        .context("building a Kubernetes client (is KUBECONFIG set?)")?;
    let state = serve::AppState::new();
    let recv = receiver::Receiver::default();

    let listener = TcpListener::bind(args.receiver_addr)
        .await
        .with_context(|| format!("binding receiver on {}", args.receiver_addr))?;
    let recv_app = receiver::router(recv.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, recv_app).await {
            tracing::error!(error = %e, "receiver stopped");
        }
    });

    let listener = TcpListener::bind(args.mesh_metrics_addr)
        .await
        .with_context(|| format!("binding mesh metrics on {}", args.mesh_metrics_addr))?;
    let mesh_app = serve::mesh_router(state.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, mesh_app).await {
            tracing::error!(error = %e, "mesh metrics stopped");
        }
    });

    let (store, writer) = reflector::store::<Pod>();
    let events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let mut events = std::pin::pin!(events);
    // Services only name a pod's traffic for the mesh series; the pod index follows their changes too.
    let (services, writer) = reflector::store::<Service>();
    let service_events = watcher(Api::<Service>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let mut service_events = std::pin::pin!(service_events);
    let mut ports = Ports {
        bound: BTreeSet::new(),
        failed: HashMap::new(),
    };
    // Retries ports that failed to bind even when no pod event arrives.
    let mut retry = tokio::time::interval(BIND_RETRY);
    let mut synced = false;
    let mut last_sd = String::new();
    loop {
        tokio::select! {
            ev = events.next() => {
                match ev {
                    None => anyhow::bail!("pod watch ended"),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "pod watch error; retrying with backoff");
                        continue;
                    }
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                    Some(Ok(watcher::Event::InitDone)) => synced = true,
                    Some(Ok(_)) => {}
                }
                if !synced {
                    continue;
                }
            }
            ev = service_events.next() => {
                match ev {
                    None => anyhow::bail!("service watch ended"),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "service watch error; retrying with backoff");
                        continue;
                    }
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                    Some(Ok(_)) => {}
                }
                if !synced {
                    continue;
                }
            }
            _ = retry.tick() => {
                if !synced {
                    continue;
                }
            }
        }
        let index = {
            let previous = state
                .index
                .read()
                .map(|i| Arc::clone(&i))
                .unwrap_or_default();
            Arc::new(pods::Index::build(
                &store.state(),
                &services.state(),
                &previous,
            ))
        };
        let wanted = index.ports.clone();
        if let Some(path) = &args.file_sd {
            write_file_sd(path, &index.scrape_targets, &mut last_sd);
        }
        if let Ok(mut slot) = state.index.write() {
            *slot = index;
        }
        ports.reconcile(&wanted, &args, &state).await;
        recv.synced.store(true, Ordering::Relaxed);
    }
}

/// Writes the targets atomically (Prometheus watches the file) and only when they changed.
fn write_file_sd(path: &std::path::Path, targets: &[serde_json::Value], last: &mut String) {
    let body = serde_json::Value::Array(targets.to_vec()).to_string();
    if *last == body {
        return;
    }
    let tmp = path.with_extension("tmp");
    match std::fs::write(&tmp, &body).and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => *last = body,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write file_sd targets")
        }
    }
}
