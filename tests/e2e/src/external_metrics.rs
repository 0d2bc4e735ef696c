//! A small `external.metrics.k8s.io/v1beta1` server registered with the cluster's kube-apiserver through the
//! aggregation layer, as KEDA's or a metrics adapter's would be: HTTPS with a self-signed certificate (the
//! APIService says `insecureSkipTLSVerify`), reached by the API server at an address of the netns' pod range
//! through a selector-less Service whose EndpointSlice names it (`--enable-aggregator-routing`).
//!
//! The values it serves are set by the test; every request is recorded with the identity the aggregator
//! forwarded (`X-Remote-User`), which proves a query went through the API server and not around it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{FIELD_MANAGER, Result, TestNamespace};

pub const GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";
const APISERVICE: &str = "v1beta1.external.metrics.k8s.io";
const SERVICE: &str = "external-metrics";

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub namespace: String,
    pub metric: String,
    pub label_selector: Option<String>,
    /// The user the aggregator vouched for.
    pub remote_user: Option<String>,
}

#[derive(Clone, Default)]
struct Shared {
    /// Metric name → the quantities served for it, in order.
    values: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// The running server and its registration; [`ExternalMetrics::unregister`] removes the cluster-scoped APIService.
pub struct ExternalMetrics {
    shared: Shared,
    client: kube::Client,
    task: tokio::task::JoinHandle<()>,
}

impl ExternalMetrics {
    /// Serves on `ip` (an address of the netns' pod range, which is local here) and registers the APIService
    /// backed by a Service in `ns`; returns once the API server reports the APIService Available.
    pub async fn start(ns: &TestNamespace, ip: Ipv4Addr) -> Result<ExternalMetrics> {
        let shared = Shared::default();
        let acceptor = tls_acceptor(&ns.name)?;
        let tcp = TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .await
            .with_context(|| format!("binding {ip}:0"))?;
        let port = tcp.local_addr()?.port();
        let app = Router::new()
            .route(
                "/apis/external.metrics.k8s.io/v1beta1",
                axum::routing::get(discovery),
            )
            .route(
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}",
                axum::routing::get(values),
            )
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(TlsListener { tcp, acceptor }, app).await;
        });
        let server = ExternalMetrics {
            shared,
            client: ns.client.clone(),
            task,
        };
        register(ns, ip, port).await?;
        Ok(server)
    }

    /// Serves `quantities` for `metric` from now on (empty: an empty list, i.e. no data).
    pub fn set(&self, metric: &str, quantities: &[&str]) {
        let mut values = self.shared.values.lock().unwrap_or_else(|e| e.into_inner());
        values.insert(
            metric.to_string(),
            quantities.iter().map(|q| q.to_string()).collect(),
        );
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Deletes the APIService (cluster-scoped, so the test namespace's deletion would leave it).
    pub async fn unregister(self) -> Result<()> {
        self.task.abort();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &apiservice_resource());
        api.delete(APISERVICE, &DeleteParams::default())
            .await
            .context("deleting the APIService")?;
        Ok(())
    }
}

fn apiservice_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService"),
        "apiservices",
    )
}

/// The Service, its EndpointSlice pointing at the server, and the APIService; waits for Available.
async fn register(ns: &TestNamespace, ip: Ipv4Addr, port: u16) -> Result<()> {
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": SERVICE},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
    }))?;
    ns.api::<Service>()
        .patch(SERVICE, &apply, &Patch::Apply(&service))
        .await
        .context("applying the external metrics Service")?;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": SERVICE, "labels": {"kubernetes.io/service-name": SERVICE}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }))?;
    ns.api::<EndpointSlice>()
        .patch(SERVICE, &apply, &Patch::Apply(&slice))
        .await
        .context("applying the external metrics EndpointSlice")?;
    let api: Api<DynamicObject> = Api::all_with(ns.client.clone(), &apiservice_resource());
    let apiservice: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": APISERVICE},
        "spec": {
            "group": "external.metrics.k8s.io", "version": "v1beta1",
            "service": {"namespace": ns.name, "name": SERVICE, "port": 443},
            "insecureSkipTLSVerify": true,
            "groupPriorityMinimum": 100, "versionPriority": 100,
        },
    }))?;
    api.patch(APISERVICE, &apply, &Patch::Apply(&apiservice))
        .await
        .context("applying the APIService")?;
    crate::wait_for(
        &api,
        APISERVICE,
        "Available",
        Duration::from_secs(60),
        |o: Option<&DynamicObject>| {
            o.and_then(|o| o.data["status"]["conditions"].as_array().cloned())
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Available" && c["status"] == "True")
        },
    )
    .await?;
    Ok(())
}

/// A self-signed certificate made by `openssl` (the cluster's PKI tool) in a directory of its own.
fn tls_acceptor(tag: &str) -> Result<TlsAcceptor> {
    let dir =
        std::env::temp_dir().join(format!("e2e-external-metrics-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (key, cert) = (dir.join("tls.key"), dir.join("tls.crt"));
    crate::run(
        std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            ])
            .arg(format!("/CN={SERVICE}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )?;
    let certs = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key)?;
    let _ = std::fs::remove_dir_all(&dir);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TLS on top of a TCP listener, for `axum::serve`: a failed or stalled handshake drops that connection only.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, peer)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(stream);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The discovery document the aggregator's availability check reads.
async fn discovery() -> Response {
    axum::Json(json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
        "resources": [{"name": "externalmetrics", "singularName": "", "namespaced": true,
            "kind": "ExternalMetricValueList", "verbs": ["get"]}],
    }))
    .into_response()
}

async fn values(
    State(shared): State<Shared>,
    Path((namespace, metric)): Path<(String, String)>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Request {
            namespace,
            metric: metric.clone(),
            label_selector: params.get("labelSelector").cloned(),
            remote_user: headers
                .get("x-remote-user")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
        });
    let quantities = shared
        .values
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&metric)
        .cloned()
        .unwrap_or_default();
    let items: Vec<Value> = quantities
        .iter()
        .map(|q| {
            json!({"metricName": metric, "metricLabels": {}, "timestamp": "2026-12-05T00:00:00Z", "value": q})
        })
        .collect();
    axum::Json(json!({
        "kind": "ExternalMetricValueList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items,
    }))
    .into_response()
}

/// Fails unless some request for `metric` came through the aggregator as `user` with `selector`.
pub fn ensure_queried(
    requests: &[Request],
    metric: &str,
    selector: &str,
    user: &str,
) -> Result<()> {
    if requests.iter().any(|r| {
        r.metric == metric
            && r.label_selector.as_deref() == Some(selector)
            && r.remote_user.as_deref() == Some(user)
    }) {
        return Ok(());
    }
    bail!("no request for {metric} with labelSelector {selector:?} as {user}; seen: {requests:#?}")
}
