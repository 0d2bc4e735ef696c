//! The local cluster itself: CRDs, workloads, Services, Traefik, Prometheus, Alertmanager, RBAC.
//! Run with `hack/e2e` (skipped, passing, when FLAGGER_E2E is unset).

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use e2e::objects::{self, APP_PORT, App};
use e2e::traffic::{self, Run};
use e2e::{TestNamespace, apply, poll_until, skip_unless_e2e, wait_for, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::wait::conditions;
use kube::{Api, ResourceExt as _};

const ROLLOUT: Duration = Duration::from_secs(60);

async fn deploy(ns: &TestNamespace, app: &App<'_>) -> e2e::Result<Deployment> {
    let deployments: Api<Deployment> = ns.api();
    apply(&deployments, &app.deployment()?).await?;
    apply(&ns.api::<Service>(), &app.service()?).await?;
    let d = wait_for(
        &deployments,
        app.name,
        "Available",
        ROLLOUT,
        objects::deployment_available(),
    )
    .await?;
    // Available precedes the EndpointSlice update; routing tests need every pod behind the Service.
    let replicas = usize::try_from(app.replicas).unwrap_or(0);
    e2e::wait_endpoints(&ns.client, &ns.name, app.name, replicas, ROLLOUT).await?;
    Ok(d)
}

async fn pods_of(ns: &TestNamespace, app: &str) -> e2e::Result<Vec<Pod>> {
    let pods: Api<Pod> = ns.api();
    Ok(pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items)
}

fn pod_ip(p: &Pod) -> e2e::Result<String> {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .with_context(|| format!("pod {} has no IP", p.name_any()))
}

/// The CRDs deploy/crds must hold, sorted.
const FLAGGER_CRDS: [&str; 3] = [
    "alertproviders.flagger.app",
    "canaries.flagger.app",
    "metrictemplates.flagger.app",
];

#[tokio::test]
async fn generated_crds_are_accepted_by_the_api_server() -> e2e::Result<()> {
    skip_unless_e2e!();
    let dir = e2e::repo_path("deploy/crds");
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    ensure!(!files.is_empty(), "no CRD YAML in {}", dir.display());
    let client = e2e::client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let mut names = Vec::new();
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .with_context(|| format!("parsing {}", f.display()))?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            if doc.get("kind").and_then(|k| k.as_str()) != Some("CustomResourceDefinition") {
                continue;
            }
            let crd: CustomResourceDefinition = serde_json::from_value(doc)
                .with_context(|| format!("decoding a CRD in {}", f.display()))?;
            let applied = apply(&crds, &crd)
                .await
                .with_context(|| format!("API server rejected a CRD from {}", f.display()))?;
            names.push(applied.name_any());
        }
    }
    // The kinds flagger-rs serves, each exactly once: an empty or partial deploy/crds must fail here.
    let mut found = names.clone();
    found.sort();
    ensure!(
        found == FLAGGER_CRDS,
        "CustomResourceDefinitions in {}: {found:?}, want {FLAGGER_CRDS:?}",
        dir.display()
    );
    for name in &names {
        wait_for(
            &crds,
            name,
            "Established",
            Duration::from_secs(30),
            conditions::is_crd_established(),
        )
        .await?;
        eprintln!("CRD {name} established");
    }
    Ok(())
}

#[tokio::test]
async fn deployment_of_three_becomes_available_and_pods_answer() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("deploy", |ns| async move {
        let app = App::new("podinfo", "6.0.0", 3);
        deploy(&ns, &app).await?;
        let pods = pods_of(&ns, "podinfo").await?;
        ensure!(pods.len() == 3, "expected 3 pods, found {}", pods.len());
        // Each pod IP is answered as that pod: the testapp resolves the pod from the connection's local address.
        for p in &pods {
            let ip = pod_ip(p)?;
            let (status, body) = traffic::get(&format!("http://{ip}:{APP_PORT}/"), None).await?;
            ensure!(
                status == 200,
                "pod {} at {ip}: HTTP {status}: {body}",
                p.name_any()
            );
            let reply: traffic::PodinfoReply = serde_json::from_str(&body)?;
            ensure!(
                reply.hostname == p.name_any(),
                "{ip} answered as {}",
                reply.hostname
            );
            ensure!(
                reply.version == "6.0.0",
                "{ip} answered version {}",
                reply.version
            );
        }
        // ClusterIP through the real kube-proxy, name through CoreDNS: traffic spreads over all three pods.
        let url = format!("http://podinfo.{}.svc.cluster.local:{APP_PORT}/", ns.name);
        // kube-proxy programs its rules a moment after the EndpointSlice is complete, and nothing
        // to watch says when: bursts are repeated (bounded) until every pod has answered.
        poll_until(
            "kube-proxy reaching all 3 pods",
            Duration::from_secs(30),
            || {
                let url = url.clone();
                async move {
                    let report = Run::new(&url, 300).drive().await?;
                    ensure!(report.ok() == 300, "Service traffic: {report:?}");
                    ensure!(
                        report.by_pod.len() == 3,
                        "kube-proxy reached {} of 3 pods: {report:?}",
                        report.by_pod.len()
                    );
                    Ok(Some(()))
                }
            },
        )
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn testapp_injects_errors_and_latency_per_pod() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("inject", |ns| async move {
        let app = App::new("faulty", "2.0.0", 1)
            .annotate("testapp.flagger-rs.dev/error-rate", "0.25")
            .annotate("testapp.flagger-rs.dev/latency-ms", "20");
        deploy(&ns, &app).await?;
        let pods = pods_of(&ns, "faulty").await?;
        let ip = pod_ip(pods.first().context("no pod")?)?;
        let url = format!("http://{ip}:{APP_PORT}/");
        let report = Run::new(&url, 200).drive().await?;
        ensure!(report.complete, "run incomplete: {report:?}");
        // Errors are spread deterministically, so exactly a quarter fail.
        ensure!(
            report.by_status.get(&500) == Some(&50),
            "expected 50 injected 500s: {report:?}"
        );
        // 200 requests, 8 at a time, 20 ms each: at least 25 sequential rounds.
        ensure!(
            report.elapsed >= Duration::from_millis(25 * 20),
            "latency not injected: {report:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn traefik_splits_by_traefikservice_weights_and_prometheus_counts_it() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("split", |ns| async move {
        let primary = App::new("podinfo-primary", "1.0.0", 2);
        let canary = App::new("podinfo-canary", "2.0.0", 1);
        deploy(&ns, &primary).await?;
        deploy(&ns, &canary).await?;
        let ts_api: Api<DynamicObject> =
            Api::namespaced_with(ns.client.clone(), &ns.name, &objects::traefik_resource("TraefikService", "traefikservices"));
        let ir_api: Api<DynamicObject> =
            Api::namespaced_with(ns.client.clone(), &ns.name, &objects::traefik_resource("IngressRoute", "ingressroutes"));
        let ts = objects::weighted_traefik_service("podinfo", &[("podinfo-primary", 80), ("podinfo-canary", 20)])?;
        let pp = PatchParams::apply(e2e::FIELD_MANAGER).force();
        ts_api.patch("podinfo", &pp, &Patch::Apply(&ts)).await.context("applying TraefikService")?;
        let host = format!("podinfo.{}.test", ns.name);
        let ir = objects::ingress_route("podinfo", &host, "podinfo")?;
        ir_api.patch("podinfo", &pp, &Patch::Apply(&ir)).await.context("applying IngressRoute")?;

        // Traefik has no watch of its own routing table: probe the route until it serves both versions' backends.
        poll_until("Traefik route for the TraefikService", Duration::from_secs(30), || async {
            let (status, _) = traffic::get(&format!("{}/", e2e::TRAEFIK_WEB), Some(&host)).await?;
            Ok((status == 200).then_some(()))
        })
        .await?;

        let report = Run::new(&format!("{}/", e2e::TRAEFIK_WEB), 2000).host(&host).drive().await?;
        eprintln!("traffic through Traefik: {report:?}");
        ensure!(report.complete && report.ok() == 2000, "not all 2000 requests succeeded: {report:?}");
        let canary_share = report.version_share("2.0.0");
        ensure!(
            (canary_share - 20.0).abs() <= 5.0,
            "canary share {canary_share:.1}% is not within 20±5%: {:?}",
            report.by_version
        );
        ensure!(report.by_pod.len() == 3, "expected all 3 pods to serve: {:?}", report.by_pod);

        // Prometheus scrapes Traefik every second; wait until it has seen the canary's share of this run.
        let canary_seen = *report.by_version.get("2.0.0").unwrap_or(&0) as f64;
        let query = format!(
            "sum by (service) (traefik_service_requests_total{{service=~\"{}-podinfo-(primary|canary)-{APP_PORT}@kubernetescrd\"}})",
            ns.name
        );
        let series = poll_until("Traefik counters in Prometheus", Duration::from_secs(30), || async {
            let series = traffic::prom_query(&query).await?;
            let canary = series
                .iter()
                .find(|(m, _)| m.get("service").is_some_and(|s| s.contains("-podinfo-canary-")))
                .map(|(_, v)| *v);
            Ok(canary.filter(|v| *v >= canary_seen).map(|_| series))
        })
        .await?;
        eprintln!("Prometheus: {series:?}");
        let total: f64 = series.iter().map(|(_, v)| v).sum();
        ensure!(total >= 2000.0, "Prometheus counted {total} requests, expected at least 2000");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn alertmanager_alert_reaches_the_local_receiver() -> e2e::Result<()> {
    skip_unless_e2e!();
    let marker = format!("e2e-{}", std::process::id());
    let alert = serde_json::json!([{
        "labels": {"alertname": "FlaggerRsE2E", "marker": marker, "severity": "warning"},
        "annotations": {"summary": "e2e check of the Alertmanager → receiver path"},
    }]);
    let url = format!("{}/api/v2/alerts", e2e::ALERTMANAGER);
    let resp = traffic::http_client()?
        .post(reqwest::Url::parse(&url)?)
        .json(&alert)
        .send()
        .await
        .context("posting an alert to Alertmanager")?;
    ensure!(
        resp.status().is_success(),
        "Alertmanager refused the alert: {}",
        resp.status()
    );

    let url = format!("{}/alerts", e2e::RECEIVER);
    let got = poll_until("alert at the receiver", Duration::from_secs(30), || async {
        let (status, body) = traffic::get(&url, None).await?;
        if status != 200 {
            bail!("receiver: HTTP {status}");
        }
        let received: Vec<serde_json::Value> = serde_json::from_str(&body)?;
        Ok(received.into_iter().find(|n| {
            n["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["labels"]["marker"] == marker.as_str()))
        }))
    })
    .await?;
    ensure!(got["receiver"] == "local", "unexpected notification: {got}");
    ensure!(got["status"] == "firing", "unexpected notification: {got}");
    Ok(())
}

#[tokio::test]
async fn flagger_rs_identity_is_limited_to_its_cluster_role() -> e2e::Result<()> {
    skip_unless_e2e!();
    let client = e2e::flagger_client().await?;
    // Allowed by deploy/rbac/clusterrole.yaml.
    Api::<Deployment>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .context("flagger-rs should be able to list Deployments")?;
    // Not granted: Flagger never reads Nodes.
    match Api::<k8s_openapi::api::core::v1::Node>::all(client)
        .list(&ListParams::default().limit(1))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(()),
        Ok(_) => bail!("flagger-rs could list Nodes: RBAC is not enforced"),
        Err(e) => Err(e).context("listing nodes as flagger-rs"),
    }
}

#[tokio::test]
async fn pods_with_a_broken_image_never_become_ready() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("broken", |ns| async move {
        let deployments: Api<Deployment> = ns.api();
        // Created first, so kwok has seen its pod by the time the healthy one below is Ready.
        apply(&deployments, &App::new("bad", "broken", 1).deployment()?).await?;
        let pods: Api<Pod> = ns.api();
        wait_for_any_pod(&pods, "app=bad").await?;
        deploy(&ns, &App::new("good", "1.0.0", 1)).await?;
        let bad = pods_of(&ns, "bad").await?;
        ensure!(!bad.is_empty(), "the broken Deployment has no pod");
        for p in &bad {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            ensure!(
                !ready,
                "pod {} with image tag :broken became Ready",
                p.name_any()
            );
        }
        Ok(())
    })
    .await
}

/// Waits (watch) until a pod matching `selector` is scheduled.
async fn wait_for_any_pod(pods: &Api<Pod>, selector: &str) -> e2e::Result<()> {
    use futures::TryStreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};
    let cfg = watcher::Config::default().labels(selector);
    let stream = watcher(pods.clone(), cfg).applied_objects();
    let mut stream = std::pin::pin!(stream);
    let found = tokio::time::timeout(ROLLOUT, async {
        while let Some(p) = stream.try_next().await? {
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                return Ok::<_, anyhow::Error>(());
            }
        }
        bail!("pod watch ended")
    })
    .await;
    match found {
        Ok(r) => r,
        Err(_) => bail!("no pod for {selector} was scheduled within {ROLLOUT:?}"),
    }
}
