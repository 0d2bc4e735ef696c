//! Harness for the controller scenarios (`tests/controller.rs`): a `flagger-rs controller` and a
//! `flagger-rs loadtester` per test, both children of the test process that are killed when their guard drops,
//! Canaries as dynamic objects, and waits on the Canary status that fail with the status and the controller's log.
//!
//! The binary comes from `FLAGGER_RS_BIN` (set by `hack/e2e`), else `target/debug/flagger-rs`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use serde_json::{Value, json};

use crate::{Result, TestNamespace, poll_until};

/// Lines of a child's log quoted in a failure message.
const LOG_TAIL: usize = 40;

/// The `flagger-rs` binary under test.
pub fn binary() -> Result<PathBuf> {
    let path = match std::env::var_os("FLAGGER_RS_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate::repo_path("target/debug/flagger-rs"),
    };
    if !path.is_file() {
        bail!(
            "flagger-rs binary not found at {} (build it with `cargo build -p flagger-rs` or set FLAGGER_RS_BIN)",
            path.display()
        );
    }
    Ok(path)
}

/// The kubeconfig the controller runs with: the `flagger-rs` identity bound to deploy/rbac/clusterrole.yaml,
/// so the tests also prove the shipped RBAC is enough.
pub fn controller_kubeconfig() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FLAGGER_RS_KUBECONFIG_FLAGGER").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let path = cluster_dir().join("flagger-rs.kubeconfig");
    if !path.is_file() {
        bail!(
            "no flagger-rs kubeconfig at {} (run inside `hack/cluster/exec`)",
            path.display()
        );
    }
    Ok(path)
}

/// The state directory of the cluster (`FLAGGER_RS_CLUSTER_DIR`, set by `hack/cluster/exec`).
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("FLAGGER_RS_CLUSTER_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/flagger-rs-cluster"))
}

/// A child process with its output in a log file; SIGKILLed when dropped.
pub struct Proc {
    what: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(what: &str, log_name: &str, args: &[String]) -> Result<Proc> {
        Proc::spawn_with_env(what, log_name, args, &[])
    }

    pub fn spawn_with_env(
        what: &str,
        log_name: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<Proc> {
        Proc::spawn_program(what, log_name, &binary()?, args, env)
    }

    /// Runs `bin` (e.g. a symlink to the binary under another name, as an image would ship it).
    pub fn spawn_program(
        what: &str,
        log_name: &str,
        bin: &std::path::Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<Proc> {
        let log = std::env::temp_dir().join(format!(
            "flagger-rs-e2e-{log_name}-{}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        let err = out.try_clone()?;
        let child = tokio::process::Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", bin.display(), args.join(" ")))?;
        eprintln!(
            "{what}: pid {:?}, log {}",
            child.id(),
            log.as_path().display()
        );
        Ok(Proc {
            what: what.to_string(),
            child,
            log,
        })
    }

    /// The last lines of the child's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL);
        lines[from..].join("\n")
    }

    /// Whole log (for assertions on what a dry-run controller logged).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails if the child has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); log tail:\n{}",
                self.what,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The child's process id (`None` once reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM (how Kubernetes stops a pod) and the exit status, waiting at most `timeout`.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let pid = self.pid().context("the process is already reaped")?;
        // tokio's Child sends only SIGKILL; kill(1) is everywhere the cluster runs.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {pid}: {status}");
        }
        self.wait_exit(timeout).await
    }

    /// Awaits the child's exit, failing with its log tail after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!(
                "{} still running after {timeout:?}; log tail:\n{}",
                self.what,
                self.log_tail()
            ),
        }
    }

    /// SIGKILL and reap.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.start_kill().ok();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .with_context(|| format!("{} not reaped 10s after SIGKILL", self.what))??;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // kill_on_drop also does this; being explicit keeps a leaked child impossible.
        self.child.start_kill().ok();
    }
}

/// `flagger-rs controller` restricted to one namespace.
pub fn start_controller(ns: &str, extra: &[&str]) -> Result<Proc> {
    start_controller_named(ns, "controller", extra)
}

pub fn start_controller_named(ns: &str, tag: &str, extra: &[&str]) -> Result<Proc> {
    start_controller_with_env(ns, tag, extra, &[])
}

/// Like [`start_controller_named`] with extra environment variables, e.g. `HOSTNAME`, from which a replica's
/// leader-election identity `<HOSTNAME>_<pid>` is made.
pub fn start_controller_with_env(
    ns: &str,
    tag: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Proc> {
    let mut args = vec!["controller".to_string()];
    // The flagger-rs identity unless the test passes its own `-kubeconfig=` (e.g. through a proxy).
    if !extra.iter().any(|a| a.starts_with("-kubeconfig=")) {
        args.push(format!(
            "-kubeconfig={}",
            controller_kubeconfig()?.display()
        ));
    }
    args.extend([
        format!("-namespace={ns}"),
        "-min-analysis-interval=1s".to_string(),
        "-include-label-prefix=app.kubernetes.io".to_string(),
        "-log-level=debug".to_string(),
        "-zap-encoding=console".to_string(),
    ]);
    // Any free port, unless the test passes its own `-port=` (a known address Prometheus can scrape).
    if !extra.iter().any(|a| a.starts_with("-port=")) {
        args.push("-port=0".to_string());
    }
    // The kubernetes provider unless the test names one (the flag may be given once).
    if !extra.iter().any(|a| a.starts_with("-mesh-provider=")) {
        args.push("-mesh-provider=kubernetes".to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Proc::spawn_with_env(&format!("{tag} ({ns})"), &format!("{ns}-{tag}"), &args, env)
}

/// A loadtester on a free loopback port.
pub struct Loadtester {
    pub proc: Proc,
    pub url: String,
    http: reqwest::Client,
}

impl Loadtester {
    pub async fn start(ns: &str) -> Result<Loadtester> {
        Loadtester::start_with(ns, &[]).await
    }

    /// A loadtester with extra flags (e.g. `-bearer-token=...`).
    pub async fn start_with(ns: &str, extra: &[&str]) -> Result<Loadtester> {
        // The kernel picks a free port; it is released just before the loadtester binds it.
        let port = crate::bench::free_port()?;
        let mut args = vec![
            "loadtester".to_string(),
            format!("-port={port}"),
            "-timeout=30s".to_string(),
            "-log-level=debug".to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let proc = Proc::spawn("loadtester", &format!("{ns}-loadtester"), &args)?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let lt = Loadtester { proc, url, http };
        // No watch API for a process's listen socket: a bounded poll of its health endpoint.
        let health = format!("{}/healthz", lt.url);
        let client = lt.http.clone();
        poll_until("loadtester /healthz", Duration::from_secs(20), || {
            let client = client.clone();
            let health = health.clone();
            async move {
                Ok(match client.get(&health).send().await {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                })
            }
        })
        .await
        .with_context(|| format!("loadtester log:\n{}", lt.proc.log_tail()))?;
        Ok(lt)
    }

    /// URL of a loadtester path, for webhook specs.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// POSTs `{name, namespace}` to a gate path (`/gate/open`, `/rollback/open`, …).
    pub async fn gate(&self, path: &str, name: &str, namespace: &str) -> Result<()> {
        let resp = self
            .http
            .post(self.at(path))
            .json(&json!({"name": name, "namespace": namespace}))
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("POST {path}: HTTP {status}: {body}");
        }
        Ok(())
    }
}

pub fn canary_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("flagger.app", "v1beta1", "Canary"),
        "canaries",
    )
}

pub fn canaries(ns: &TestNamespace) -> Api<DynamicObject> {
    Api::namespaced_with(ns.client.clone(), &ns.name, &canary_resource())
}

/// Creates a Canary from its JSON form.
pub async fn create_canary(ns: &TestNamespace, canary: Value) -> Result<DynamicObject> {
    let obj: DynamicObject = serde_json::from_value(canary)?;
    canaries(ns)
        .create(&PostParams::default(), &obj)
        .await
        .context("creating the Canary")
}

/// A Canary for a Deployment `name` with the kubernetes provider (blue/green), `iterations` ticks of `interval`.
pub fn blue_green_canary(name: &str, interval: &str, iterations: u32, webhooks: Value) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 60,
            "service": {"port": crate::objects::APP_PORT, "portDiscovery": true},
            "analysis": {
                "interval": interval,
                "threshold": 2,
                "iterations": iterations,
                "webhooks": webhooks,
            },
        },
    })
}

pub fn status(obj: &DynamicObject) -> &Value {
    obj.data.get("status").unwrap_or(&Value::Null)
}

pub fn phase(obj: &DynamicObject) -> &str {
    status(obj)
        .get("phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn int(obj: &DynamicObject, field: &str) -> i64 {
    status(obj).get(field).and_then(Value::as_i64).unwrap_or(0)
}

/// Status condition `type` as `(status, reason, message)`.
pub fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let conds = status(obj).get("conditions")?.as_array()?;
    let c = conds
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?;
    let s = |k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some((s("status"), s("reason"), s("message")))
}

/// One observed `(phase, canaryWeight, failedChecks, iterations)` tuple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub phase: String,
    pub weight: i64,
    pub failed_checks: i64,
    pub iterations: i64,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}[w{} i{} f{}]",
            self.phase, self.weight, self.iterations, self.failed_checks
        )
    }
}

pub fn step(obj: &DynamicObject) -> Step {
    Step {
        phase: phase(obj).to_string(),
        weight: int(obj, "canaryWeight"),
        failed_checks: int(obj, "failedChecks"),
        iterations: int(obj, "iterations"),
    }
}

/// Records every distinct status tuple of one Canary from a watch, until dropped.
pub struct Recorder {
    steps: Arc<Mutex<Vec<Step>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub fn start(api: &Api<DynamicObject>, name: &str) -> Recorder {
        let steps = Arc::new(Mutex::new(Vec::<Step>::new()));
        let sink = steps.clone();
        // With backoff, past errors: the record survives an API server restart (a relist after it).
        let stream = watcher(
            api.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .default_backoff()
        .applied_objects();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let Ok(obj) = item else { continue };
                let s = step(&obj);
                if let Ok(mut v) = sink.lock()
                    && v.last() != Some(&s)
                {
                    v.push(s);
                }
            }
        });
        Recorder { steps, task }
    }

    pub fn steps(&self) -> Vec<Step> {
        self.steps.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The run entered `Promoting` exactly once: no double promotion across restarts and reruns.
    pub fn ensure_promoted_once(&self) -> Result<()> {
        let promotions = self
            .steps()
            .iter()
            .filter(|s| s.phase == "Promoting")
            .count();
        anyhow::ensure!(
            promotions == 1,
            "Promoting entered more than once: {}",
            self.render()
        );
        Ok(())
    }

    pub fn render(&self) -> String {
        self.steps()
            .iter()
            .map(Step::to_string)
            .collect::<Vec<_>>()
            .join(" → ")
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Awaits `cond` on the Canary through a watch; on timeout fails with its status and the controller's log tail.
pub async fn wait_canary(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    timeout: Duration,
    controller: &Proc,
    cond: impl Fn(&DynamicObject) -> bool,
) -> Result<DynamicObject> {
    let watch = await_condition(api.clone(), name, |o: Option<&DynamicObject>| {
        o.is_some_and(&cond)
    });
    match tokio::time::timeout(timeout, watch).await {
        Ok(Ok(Some(obj))) => Ok(obj),
        Ok(Ok(None)) => bail!("Canary {name} deleted while waiting for {what}"),
        Ok(Err(e)) => Err(e).with_context(|| format!("watching Canary {name} for {what}")),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            let status = last
                .as_ref()
                .map(|o| serde_json::to_string_pretty(status(o)).unwrap_or_default())
                .unwrap_or_else(|| "<Canary not found>".into());
            bail!(
                "Canary {name} not {what} after {timeout:?}\nstatus: {status}\n{} log tail:\n{}",
                controller.what,
                controller.log_tail()
            )
        }
    }
}

/// Awaits the Canary phase `want`, failing early if it reaches `Failed` (unless that is wanted).
pub async fn wait_phase(
    api: &Api<DynamicObject>,
    name: &str,
    want: &str,
    timeout: Duration,
    controller: &Proc,
) -> Result<DynamicObject> {
    let obj = wait_canary(
        api,
        name,
        &format!("phase {want}"),
        timeout,
        controller,
        |o| {
            let p = phase(o);
            p == want || (p == "Failed" && want != "Failed")
        },
    )
    .await?;
    if phase(&obj) != want {
        bail!(
            "Canary {name} reached {} while waiting for {want}\nstatus: {}\n{} log tail:\n{}",
            phase(&obj),
            serde_json::to_string_pretty(status(&obj)).unwrap_or_default(),
            controller.what,
            controller.log_tail()
        );
    }
    Ok(obj)
}

/// Sets the image of container `podinfod` in a Deployment or DaemonSet, like `kubectl set image`.
/// Returns the resourceVersion the patch was written at: the API server's order of writes.
pub async fn set_image<K>(api: &Api<K>, name: &str, version: &str) -> Result<Option<String>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"spec": {"template": {
        "metadata": {"labels": {"app.kubernetes.io/version": version}},
        "spec": {"containers": [{
            "name": "podinfod",
            "image": format!("ghcr.io/stefanprodan/podinfo:{version}"),
        }]},
    }}});
    let patched = api
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .with_context(|| format!("setting the image of {name} to {version}"))?;
    Ok(patched.meta().resource_version.clone())
}

/// The image of the first container of a pod template.
pub fn template_image(template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> String {
    template
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Events about an object, oldest first, as `(type, reason, message, count)`.
pub async fn events_for(
    ns: &TestNamespace,
    kind: &str,
    name: &str,
) -> Result<Vec<(String, String, String, i32)>> {
    let api: Api<k8s_openapi::api::core::v1::Event> = ns.api();
    let list = api
        .list(&kube::api::ListParams::default().fields(&format!(
            "involvedObject.kind={kind},involvedObject.name={name}"
        )))
        .await
        .context("listing events")?;
    let mut items = list.items;
    items.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
    Ok(items
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
                e.count.unwrap_or(1),
            )
        })
        .collect())
}

/// Awaits an Event about the Canary `name` matching `pred` (a watch on Events), failing with the log tail.
pub async fn wait_event(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    timeout: Duration,
    controller: &Proc,
    pred: impl Fn(&k8s_openapi::api::core::v1::Event) -> bool,
) -> Result<k8s_openapi::api::core::v1::Event> {
    let api: Api<k8s_openapi::api::core::v1::Event> = ns.api();
    let cfg = watcher::Config::default().fields(&format!(
        "involvedObject.kind=Canary,involvedObject.name={name}"
    ));
    let stream = watcher(api, cfg).applied_objects();
    let found = async {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let ev = ev.context("watching events")?;
            if pred(&ev) {
                return Ok::<_, anyhow::Error>(Some(ev));
            }
        }
        Ok(None)
    };
    match tokio::time::timeout(timeout, found).await {
        Ok(Ok(Some(ev))) => Ok(ev),
        Ok(Ok(None)) => bail!("event watch for Canary {name} ended before {what}"),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            let seen = events_for(ns, "Canary", name).await.unwrap_or_default();
            bail!(
                "no event {what} for Canary {name} after {timeout:?}; events: {seen:#?}\n{} log tail:\n{}",
                controller.what,
                controller.log_tail()
            )
        }
    }
}

/// Name of an object, for messages.
pub fn name_of(obj: &DynamicObject) -> String {
    obj.name_any()
}

/// Installs flagger-rs's CRDs (deploy/crds, server-side apply, idempotent) and waits until they are Established.
/// The cluster brings up only third-party CRDs; every controller test calls this before starting a controller.
pub async fn install_crds(client: &kube::Client) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let path = crate::repo_path("deploy/crds/flagger.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .with_context(|| format!("parsing {}", path.display()))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let crd: CustomResourceDefinition = serde_json::from_value(doc)?;
        let name = crd.name_any();
        crate::apply(&crds, &crd).await?;
        crate::wait_for(
            &crds,
            &name,
            "Established",
            Duration::from_secs(30),
            kube::runtime::wait::conditions::is_crd_established(),
        )
        .await?;
    }
    Ok(())
}

/// Applies `app`'s Deployment after `edit` on its JSON form (e.g. to add `envFrom`).
pub async fn deploy(
    ns: &TestNamespace,
    app: &crate::objects::App<'_>,
    edit: impl FnOnce(&mut Value),
) -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    let mut value = serde_json::to_value(app.deployment()?)?;
    edit(&mut value);
    let deployment: Deployment = serde_json::from_value(value)?;
    crate::apply(&ns.api::<Deployment>(), &deployment).await?;
    Ok(())
}

/// Waits (watch) until Deployment `name` has `spec.replicas == want`; fails with the controller's log tail.
pub async fn wait_replicas(
    deployments: &Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
    want: i32,
    controller: &Proc,
) -> Result<k8s_openapi::api::apps::v1::Deployment> {
    crate::wait_for(
        deployments,
        name,
        &format!("scaled to {want}"),
        Duration::from_secs(30),
        move |d: Option<&k8s_openapi::api::apps::v1::Deployment>| {
            d.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas) == Some(want)
        },
    )
    .await
    .with_context(|| format!("{} log tail:\n{}", controller.what, controller.log_tail()))
}

/// The image of a Deployment's first container.
pub fn image_of(d: &k8s_openapi::api::apps::v1::Deployment) -> String {
    template_image(d.spec.as_ref().map(|s| &s.template))
}

/// The generation of the primary of Deployment `target`: one more after each write of it (a promotion).
pub async fn primary_generation(
    deployments: &Api<k8s_openapi::api::apps::v1::Deployment>,
    target: &str,
) -> Result<Option<i64>> {
    Ok(deployments
        .get(&format!("{target}-primary"))
        .await?
        .metadata
        .generation)
}

/// The primary of target `name` runs `version` and was written once since it was at `generation`: one promotion.
pub async fn ensure_primary_promoted_once(
    deployments: &Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
    version: &str,
    generation: Option<i64>,
) -> Result<()> {
    let primary = deployments.get(&format!("{name}-primary")).await?;
    anyhow::ensure!(
        image_of(&primary).ends_with(&format!(":{version}")),
        "primary image {}",
        image_of(&primary)
    );
    anyhow::ensure!(
        primary.metadata.generation == generation.map(|g| g + 1),
        "primary generation {:?}, want one promotion after {generation:?}",
        primary.metadata.generation
    );
    Ok(())
}

/// How many events about Canary `name` start with `prefix` (repeats of one event counted by its `count`).
pub async fn count_events(ns: &TestNamespace, name: &str, prefix: &str) -> Result<i32> {
    Ok(events_for(ns, "Canary", name)
        .await?
        .iter()
        .filter(|(_, _, m, _)| m.starts_with(prefix))
        .map(|(_, _, _, n)| n)
        .sum())
}

/// `name`, a symlink to the binary under test in a directory of this test process, as an image ships
/// `flagger` and `loadtester`: the binary acts on the name it is run under.
pub fn program_symlink(name: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("flagger-rs-e2e-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(binary()?, &link)
        .with_context(|| format!("linking {}", link.display()))?;
    Ok(link)
}

/// A slack AlertProvider `name` posting every alert to `address` (a receiver of the test), with
/// `username` when given.
pub async fn create_slack_provider(
    ns: &TestNamespace,
    name: &str,
    address: &str,
    username: Option<&str>,
) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("flagger.app", "v1beta1", "AlertProvider"),
            "alertproviders",
        ),
    );
    let mut spec = json!({"type": "slack", "channel": "deployments", "address": address});
    if let Some(username) = username {
        spec["username"] = json!(username);
    }
    let provider: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
        "metadata": {"name": name},
        "spec": spec,
    }))?;
    api.create(&PostParams::default(), &provider)
        .await
        .context("creating the AlertProvider")?;
    Ok(())
}
