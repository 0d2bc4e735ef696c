//! Harness for the end-to-end tests against the local cluster of `hack/cluster` (see `hack/e2e`).
//!
//! Tests run inside the cluster's network namespace (`hack/cluster/exec cargo test -p e2e`), with KUBECONFIG set.
//! Outside it, with FLAGGER_E2E unset, every test prints why it is skipped and passes, so `cargo test --workspace`
//! stays green on machines without the cluster.
//!
//! Rules the helpers enforce: every wait is bounded and is either a watch (`await_condition`) or a bounded poll of
//! an endpoint that has no watch (Traefik routes, Prometheus, the receiver); traffic only goes to loopback or to
//! the netns' own pod and Service ranges.

pub mod analysis;
pub mod audit;
pub mod bench;
pub mod chaos;
pub mod controller;
pub mod external_metrics;
pub mod gateway;
pub mod hooks;
pub mod knative;
pub mod messages;
pub mod monitoring;
pub mod nginx;
pub mod objects;
pub mod shapes;
pub mod skipper;
pub mod tick_timings;
pub mod traffic;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Api, Client, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use anyhow::Result;

pub const FIELD_MANAGER: &str = "flagger-rs-e2e";
/// Where the in-netns services of hack/cluster/up listen.
pub const TRAEFIK_WEB: &str = "http://127.0.0.1:8000";
pub const PROMETHEUS: &str = "http://127.0.0.1:9090";
pub const ALERTMANAGER: &str = "http://127.0.0.1:9093";
pub const RECEIVER: &str = "http://127.0.0.1:9096";

/// True when the e2e tier should run (set by `hack/e2e`).
pub fn enabled() -> bool {
    std::env::var_os("FLAGGER_E2E").is_some_and(|v| !v.is_empty())
}

/// Returns early from a test (passing) with a message when the e2e tier is off.
#[macro_export]
macro_rules! skip_unless_e2e {
    () => {
        if !$crate::enabled() {
            eprintln!(
                "skipped: FLAGGER_E2E is unset (run `hack/e2e` or `make test-e2e` to run this against a real cluster)"
            );
            return Ok(());
        }
    };
}

/// A client from KUBECONFIG (admin identity from `hack/cluster/up`).
pub async fn client() -> Result<Client> {
    // kube/reqwest are built without a default rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_default()
        .await
        .context("building a Kubernetes client from KUBECONFIG (run inside `hack/cluster/exec`)")
}

/// A client for the `flagger-rs` identity, bound only to deploy/rbac/clusterrole.yaml.
pub async fn flagger_client() -> Result<Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = std::env::var("FLAGGER_RS_KUBECONFIG_FLAGGER")
        .context("FLAGGER_RS_KUBECONFIG_FLAGGER is unset (run inside `hack/cluster/exec`)")?;
    let kc =
        kube::config::Kubeconfig::read_from(&path).with_context(|| format!("reading {path}"))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// Awaits `cond` on the named object through a watch, failing after `timeout` with the object's last state.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: impl Condition<K>,
) -> Result<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(obj))) => Ok(obj),
        Ok(Ok(None)) => bail!("waiting for {name} to be {what}: it was deleted"),
        Ok(Err(e)) => Err(e).with_context(|| format!("watching {name} for {what}")),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            bail!("{name} not {what} after {timeout:?}; last state: {last:#?}")
        }
    }
}

/// Polls `probe` until it yields `Some`, at most `timeout`. Only for endpoints with no watch API
/// (Traefik's routing table, Prometheus, the receiver): each attempt is a real check, not a timed guess.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_err = None;
    loop {
        tick.tick().await;
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_err {
                Some(e) => return Err(e.context(format!("{what}: not reached after {timeout:?}"))),
                None => bail!("{what}: not reached after {timeout:?}"),
            }
        }
    }
}

/// Server-side apply of a typed object.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = obj.meta().name.clone().context("object has no name")?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &pp, &Patch::Apply(obj))
        .await
        .with_context(|| format!("applying {name}"))
}

/// A namespace that exists for one test. Use [`with_namespace`] so it is deleted whatever the test's outcome.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

/// Runs `test` in a fresh namespace `<prefix>-<random>` and deletes the namespace afterwards (bounded wait).
/// Every test that runs this fails if an event or a Canary condition message in its namespace reads like a Rust
/// debug dump ([`messages::MessageAudit`]). The test's own error wins over the audit's and a cleanup error.
pub async fn with_namespace<F, Fut>(prefix: &str, test: F) -> Result<()>
where
    F: FnOnce(TestNamespace) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let client = client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": format!("{prefix}-"), "labels": {"flagger-rs.dev/e2e": "true"}}
    }))?;
    ns = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .context("creating the test namespace")?;
    let name = ns.name_any();
    eprintln!("test namespace: {name}");
    let audit = messages::MessageAudit::start(&client, &name);
    let result = test(TestNamespace {
        client: client.clone(),
        name: name.clone(),
    })
    .await;
    let audited = audit.finish().await;
    let cleanup = delete_namespace(&namespaces, &name).await;
    match (result, audited, cleanup) {
        (Err(e), audited, _) => {
            if let Err(a) = audited {
                eprintln!("{a:#}");
            }
            Err(e.context(format!("in namespace {name}")))
        }
        (Ok(()), Err(e), _) => Err(e),
        (Ok(()), Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(()), Ok(())) => Ok(()),
    }
}

async fn delete_namespace(api: &Api<Namespace>, name: &str) -> Result<()> {
    let Some(ns) = api.get_opt(name).await? else {
        return Ok(());
    };
    let uid = ns.uid().unwrap_or_default();
    api.delete(name, &DeleteParams::background()).await?;
    let gone = await_condition(api.clone(), name, conditions::is_deleted(&uid));
    match tokio::time::timeout(Duration::from_secs(120), gone).await {
        Ok(Ok(_)) => {}
        // A namespace that finalizes slowly must not fail an otherwise green test; `down` removes it anyway.
        Ok(Err(e)) => eprintln!("warning: watching namespace {name} deletion: {e}"),
        Err(_) => eprintln!("warning: namespace {name} not deleted within 120s"),
    }
    Ok(())
}

/// Runs a command to completion; its stdout, or an error with its stderr.
pub fn run(cmd: &mut std::process::Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The strings of a JSON array (none when it is not one).
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// Path of a file in the repository (tests run with cwd = this crate).
///
/// The crate's directory as cargo gives it when it runs the tests, before the one compiled in: a
/// build cache shared between checkouts (CI clones into another path) can hand this checkout a
/// test binary built in another, and its compiled-in directory may be gone.
pub fn repo_path(rel: &str) -> std::path::PathBuf {
    let crate_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    std::path::Path::new(&crate_dir).join("../..").join(rel)
}

/// Waits (watch) until the EndpointSlices of Service `service` list exactly `ready` ready endpoints: the point
/// from which kube-proxy and Traefik can route to every pod, a moment after the Deployment is Available.
pub async fn wait_endpoints(
    client: &Client,
    namespace: &str,
    service: &str,
    ready: usize,
    timeout: Duration,
) -> Result<()> {
    use futures::TryStreamExt as _;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::runtime::{WatchStreamExt as _, reflector, watcher};
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let cfg = watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
    let (store, writer) = reflector::store();
    // Every event, not just applied objects: the store only shows the initial list at InitDone.
    let stream = watcher(api, cfg).reflect(writer);
    let mut stream = std::pin::pin!(stream);
    let count = |slices: &[std::sync::Arc<EndpointSlice>]| {
        slices
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .count()
    };
    let done = tokio::time::timeout(timeout, async {
        while stream.try_next().await?.is_some() {
            if count(&store.state()) == ready {
                return Ok::<_, anyhow::Error>(());
            }
        }
        bail!("EndpointSlice watch ended")
    })
    .await;
    match done {
        Ok(r) => r,
        Err(_) => bail!(
            "Service {namespace}/{service}: {} ready endpoints after {timeout:?}, want {ready}",
            count(&store.state())
        ),
    }
}
