//! `flagger-rs validate --cluster` against the local cluster: each Canary's MetricTemplates and Secrets are read,
//! every query rendered with the canary's real variables and run once against the cluster's Prometheus, and the
//! exit code says whether every check would pass now. It runs as a ServiceAccount allowed to read only, and the
//! API server's audit log shows it asked for nothing else. Run with `hack/e2e validate_cluster` (skipped, passing,
//! when FLAGGER_E2E is unset).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::audit::{self, service_account_kubeconfig};
use e2e::controller::{binary, blue_green_canary, install_crds};
use e2e::monitoring::query;
use e2e::{PROMETHEUS, Result, TestNamespace, apply, poll_until, skip_unless_e2e, with_namespace};
use flagger_api::{AlertProvider, MetricTemplate};
use k8s_openapi::api::core::v1::{Event, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::ListParams;
use serde_json::{Value, json};

const ACCOUNT: &str = "validator";
/// The rendered query of the template without data, for the canary `quiet` of namespace `ns`.
fn quiet_query(ns: &str) -> String {
    format!(
        r#"sum(rate(http_requests_total{{namespace="{ns}",pod=~"quiet-[0-9a-z]+-[0-9a-z]+"}}[2m]))"#
    )
}

/// A ServiceAccount that may only read what `validate --cluster` reads, in the test namespace.
async fn read_only_account(ns: &TestNamespace) -> Result<PathBuf> {
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": ACCOUNT}}))?;
    apply(&ns.api(), &account).await?;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": ACCOUNT},
        "rules": [
            {"apiGroups": ["flagger.app"], "resources": ["metrictemplates", "alertproviders"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        ],
    }))?;
    apply(&ns.api(), &role).await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": ACCOUNT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": ns.name}],
    }))?;
    apply(&ns.api(), &binding).await?;
    service_account_kubeconfig(ns, ACCOUNT).await
}

async fn template(ns: &TestNamespace, name: &str, query: &str, secret: Option<&str>) -> Result<()> {
    let mut provider = json!({"type": "prometheus", "address": PROMETHEUS});
    if let Some(secret) = secret {
        provider["secretRef"] = json!({"name": secret});
    }
    let template: MetricTemplate = serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": name},
        "spec": {"provider": provider, "query": query},
    }))?;
    apply(&ns.api(), &template).await?;
    Ok(())
}

/// A blue/green canary `name` with `metrics` and `extra` analysis fields, written to `<dir>/<name>.json`.
fn canary_file(dir: &Path, name: &str, metrics: Value, extra: Value) -> Result<PathBuf> {
    let mut canary = blue_green_canary(name, "1m", 2, json!([]));
    canary["spec"]["analysis"]["metrics"] = metrics;
    for (key, value) in extra.as_object().into_iter().flatten() {
        canary["spec"]["analysis"][key] = value.clone();
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&canary)?)?;
    Ok(path)
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn validate(
    ns: &TestNamespace,
    kubeconfig: &Path,
    args: &[&str],
    files: &[&PathBuf],
) -> Result<Run> {
    let out = tokio::process::Command::new(binary()?)
        .arg("validate")
        .arg("--cluster")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", &ns.name])
        .args(args)
        .args(files)
        .output()
        .await
        .context("running flagger-rs validate --cluster")?;
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout)?,
        stderr: String::from_utf8(out.stderr)?,
    };
    eprintln!(
        "validate --cluster {args:?} {files:?}: exit {:?}\n{}\n{}",
        run.code, run.stdout, run.stderr
    );
    Ok(run)
}

/// Canary `healthy`'s template query returns a value in range: exit 0, and its webhook is resolved, never called.
/// With `quiet` (a query with no data) and `guarded` (its template's Secret is missing) the exit is 1, and each
/// says why, with the rendered query; the run wrote nothing.
#[tokio::test]
async fn validate_cluster_runs_each_query_once_and_writes_nothing() -> Result<()> {
    skip_unless_e2e!();
    with_namespace("validate-cluster", |ns| async move {
        install_crds(&ns.client).await?;
        let kubeconfig = read_only_account(&ns).await?;
        template(&ns, "up", r#"max(up{job="{{ variables.job }}"})"#, None).await?;
        template(
            &ns,
            "requests",
            r#"sum(rate(http_requests_total{namespace="{{ namespace }}",pod=~"{{ target }}-[0-9a-z]+-[0-9a-z]+"}[{{ interval }}]))"#,
            None,
        )
        .await?;
        template(&ns, "guarded", "vector(1)", Some("prom-auth")).await?;
        let slack: AlertProvider = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
            "metadata": {"name": "on-call"},
            "spec": {"type": "slack", "channel": "deploys", "secretRef": {"name": "slack-url"}},
        }))?;
        apply(&ns.api(), &slack).await?;
        // The healthy canary's series: Prometheus scrapes Traefik every second from cluster start.
        poll_until("Prometheus has up{job=\"traefik\"}", Duration::from_secs(60), || async {
            Ok((!query(PROMETHEUS, r#"up{job="traefik"} == 1"#).await?.is_empty()).then_some(()))
        })
        .await?;

        // A webhook receiver that must never be called: whatever connects stays in its backlog.
        let hook = TcpListener::bind("127.0.0.1:0")?;
        hook.set_nonblocking(true)?;
        let hook_url = format!("http://{}/gate", hook.local_addr()?);
        let dir = std::env::temp_dir().join(format!("flagger-rs-e2e-{}", ns.name));
        std::fs::create_dir_all(&dir)?;
        let healthy = canary_file(
            &dir,
            "healthy",
            json!([{"name": "traefik-up", "interval": "1m", "thresholdRange": {"min": 1},
                    "templateRef": {"name": "up"}, "templateVariables": {"job": "traefik"}}]),
            json!({"webhooks": [{"name": "gate", "type": "confirm-promotion", "url": hook_url}]}),
        )?;
        let quiet = canary_file(
            &dir,
            "quiet",
            json!([{"name": "requests", "interval": "2m", "thresholdRange": {"min": 1},
                    "templateRef": {"name": "requests"}}]),
            json!({}),
        )?;
        let guarded = canary_file(
            &dir,
            "guarded",
            json!([{"name": "guarded", "thresholdRange": {"max": 5}, "templateRef": {"name": "guarded"}}]),
            json!({"alerts": [{"name": "on-call", "severity": "error", "providerRef": {"name": "on-call"}}]}),
        )?;

        let run = validate(&ns, &kubeconfig, &[], &[&healthy]).await?;
        ensure!(run.code == Some(0), "healthy alone must pass: {:?}\n{}", run.code, run.stderr);
        let healthy_line = format!("Canary healthy.{} (", ns.name);
        ensure!(
            run.stdout.contains(&healthy_line) && run.stdout.contains("every check would pass"),
            "{}",
            run.stdout
        );
        ensure!(run.stdout.contains("metric traefik-up: pass: value 1"), "{}", run.stdout);
        ensure!(run.stdout.contains(r#"query: max(up{job="traefik"})"#), "{}", run.stdout);
        ensure!(run.stdout.contains("host 127.0.0.1 resolves; not called"), "{}", run.stdout);

        let run = validate(&ns, &kubeconfig, &[], &[&healthy, &quiet, &guarded]).await?;
        ensure!(run.code == Some(1), "quiet and guarded must fail the run: {:?}", run.code);
        let no_values = "no values found for custom metric: requests";
        ensure!(run.stdout.contains(no_values), "{}", run.stdout);
        ensure!(
            run.stdout.contains(&format!("query: {}", quiet_query(&ns.name))),
            "the rendered query with the canary's namespace, target and interval: {}",
            run.stdout
        );
        let missing = format!("Secret prom-auth.{} not found", ns.name);
        ensure!(run.stdout.contains(&missing), "{}", run.stdout);

        let run = validate(&ns, &kubeconfig, &["--output", "json"], &[&healthy, &quiet, &guarded]).await?;
        ensure!(run.code == Some(1), "json: exit {:?}", run.code);
        let report: Value = serde_json::from_str(&run.stdout).context("the JSON report")?;
        ensure!(report["pass"] == false, "{report:#}");
        let canary = |name: &str| {
            report["canaries"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == name)
                .cloned()
                .with_context(|| format!("canary {name} in {report:#}"))
        };
        let h = canary("healthy")?;
        ensure!(h["pass"] == true && h["namespace"] == ns.name.as_str(), "{h:#}");
        ensure!(h["metrics"][0]["value"] == 1.0 && h["metrics"][0]["verdict"] == "pass", "{h:#}");
        ensure!(h["webhooks"][0]["host"]["resolves"] == true, "{h:#}");
        let q = canary("quiet")?;
        let m = &q["metrics"][0];
        ensure!(q["pass"] == false && m["outcome"] == "noValues" && m["verdict"] == "fail", "{q:#}");
        ensure!(m["query"] == quiet_query(&ns.name).as_str(), "{q:#}");
        ensure!(m["error"].as_str().is_some_and(|e| e.contains("no values")), "{q:#}");
        let g = canary("guarded")?;
        let m = &g["metrics"][0];
        ensure!(g["pass"] == false && m["outcome"] == "error" && m["error"] == missing.as_str(), "{g:#}");
        ensure!(m.get("query").is_none(), "nothing is rendered without the provider: {g:#}");
        ensure!(
            g["alerts"][0]["provider"] == format!("on-call.{}", ns.name).as_str()
                && g["alerts"][0]["error"].is_string(),
            "the AlertProvider's Secret is missing: {g:#}"
        );

        // Read-only: every request of the ServiceAccount was a read, no event was recorded, no hook called.
        let user = format!("system:serviceaccount:{}:{ACCOUNT}", ns.name);
        let requests = audit::requests_of(&user)?;
        ensure!(!requests.resources.is_empty(), "no request of {user} in the audit log");
        let writes: Vec<_> = requests
            .resources
            .iter()
            .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
            .map(ToString::to_string)
            .collect();
        ensure!(writes.is_empty(), "validate --cluster wrote: {writes:?}");
        eprintln!(
            "audit: {user}: {} requests, all reads: {:?}",
            requests.resources.len(),
            requests.resources.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        let events = ns.api::<Event>().list(&ListParams::default()).await?;
        let about_canaries: Vec<_> = events
            .items
            .iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("Canary"))
            .map(|e| e.message.clone().unwrap_or_default())
            .collect();
        ensure!(about_canaries.is_empty(), "events recorded: {about_canaries:?}");
        match hook.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, from)) => anyhow::bail!("the webhook was called (from {from})"),
            Err(e) => return Err(e.into()),
        }
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    })
    .await
}
