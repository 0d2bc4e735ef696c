//! A bounded HTTP traffic driver. Every run has a request count and a deadline, and targets are checked against
//! an allow-list: loopback, the netns' pod range and Service range, and cluster DNS names, nothing else.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures::StreamExt as _;
use serde::Deserialize;

use crate::Result;

/// Pod CIDR (10.244.0.0/16) and Service CIDR (10.96.0.0/16) of hack/cluster; both exist only inside its netns.
const NETNS_RANGES: [([u8; 2], &str); 2] = [([10, 244], "pod"), ([10, 96], "service")];
/// Hard caps whatever a test asks for.
const MAX_REQUESTS: usize = 100_000;
const MAX_DURATION: Duration = Duration::from_secs(300);
const MAX_CONCURRENCY: usize = 64;

/// Refuses any target outside loopback and the cluster netns.
pub fn check_target(url: &reqwest::Url) -> Result<()> {
    let host = url.host_str().context("URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        let ok = ip.is_loopback()
            || matches!(ip, IpAddr::V4(v4) if NETNS_RANGES.iter().any(|(p, _)| v4.octets()[..2] == p[..]));
        ensure!(
            ok,
            "traffic to {ip} refused: only loopback and the cluster netns ranges are allowed"
        );
        return Ok(());
    }
    let name = host.trim_end_matches('.');
    // Cluster DNS (CoreDNS inside the netns) resolves these to ClusterIPs or pod IPs only.
    let ok = name == "localhost" || name.ends_with(".svc") || name.ends_with(".svc.cluster.local");
    ensure!(
        ok,
        "traffic to {host} refused: use an IP, localhost or a *.svc[.cluster.local] name"
    );
    Ok(())
}

/// What a testapp pod answers on `/` (podinfo's shape).
#[derive(Debug, Deserialize, Clone)]
pub struct PodinfoReply {
    pub hostname: String,
    pub version: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub sent: usize,
    pub by_status: BTreeMap<u16, usize>,
    pub by_version: BTreeMap<String, usize>,
    pub by_pod: BTreeMap<String, usize>,
    /// Transport errors (connect, timeout), with a few samples.
    pub errors: usize,
    pub error_samples: Vec<String>,
    pub elapsed: Duration,
    /// The longest request, send to body read (an upper bound on what the server measured for any request).
    pub slowest: Duration,
    /// False when the deadline stopped the run before `count` requests.
    pub complete: bool,
}

impl Report {
    pub fn ok(&self) -> usize {
        self.by_status.get(&200).copied().unwrap_or(0)
    }

    /// Share of 2xx replies served by `version`, in percent.
    pub fn version_share(&self, version: &str) -> f64 {
        let total: usize = self.by_version.values().sum();
        if total == 0 {
            return 0.0;
        }
        100.0 * self.by_version.get(version).copied().unwrap_or(0) as f64 / total as f64
    }
}

/// One traffic run: `count` GETs of `url` (with `Host: host` if given), `concurrency` at a time, stopping at
/// `deadline` whatever is left.
pub struct Run<'a> {
    pub url: &'a str,
    pub host: Option<&'a str>,
    pub count: usize,
    pub concurrency: usize,
    pub deadline: Duration,
}

impl<'a> Run<'a> {
    pub fn new(url: &'a str, count: usize) -> Self {
        Run {
            url,
            host: None,
            count,
            concurrency: 8,
            deadline: Duration::from_secs(60),
        }
    }

    pub fn host(mut self, host: &'a str) -> Self {
        self.host = Some(host);
        self
    }

    pub async fn drive(&self) -> Result<Report> {
        let url = reqwest::Url::parse(self.url).with_context(|| format!("parsing {}", self.url))?;
        check_target(&url)?;
        if self.count > MAX_REQUESTS || self.deadline > MAX_DURATION {
            bail!("traffic run over the caps ({MAX_REQUESTS} requests, {MAX_DURATION:?})");
        }
        let client = http_client()?;
        let start = tokio::time::Instant::now();
        let deadline = start + self.deadline;
        let mut replies = futures::stream::iter(0..self.count)
            .map(|_| {
                let mut req = client.get(url.clone());
                if let Some(h) = self.host {
                    req = req.header(reqwest::header::HOST, h);
                }
                async move {
                    let sent = tokio::time::Instant::now();
                    let resp = req.send().await?;
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await?;
                    Ok::<_, reqwest::Error>((
                        status,
                        serde_json::from_slice::<PodinfoReply>(&body).ok(),
                        sent.elapsed(),
                    ))
                }
            })
            .buffer_unordered(self.concurrency.clamp(1, MAX_CONCURRENCY));
        let mut report = Report::default();
        loop {
            let next = tokio::time::timeout_at(deadline, replies.next()).await;
            match next {
                Err(_) => break,
                Ok(None) => {
                    report.complete = true;
                    break;
                }
                Ok(Some(r)) => {
                    report.sent += 1;
                    match r {
                        Ok((status, reply, took)) => {
                            report.slowest = report.slowest.max(took);
                            *report.by_status.entry(status).or_default() += 1;
                            if let (true, Some(reply)) = ((200..300).contains(&status), reply) {
                                *report.by_version.entry(reply.version).or_default() += 1;
                                *report.by_pod.entry(reply.hostname).or_default() += 1;
                            }
                        }
                        Err(e) => {
                            report.errors += 1;
                            if report.error_samples.len() < 5 {
                                report.error_samples.push(format!("{e:#}"));
                            }
                        }
                    }
                }
            }
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }
}

/// A client for in-netns traffic: no proxies from the environment, short timeouts.
pub fn http_client() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(MAX_CONCURRENCY)
        .build()?)
}

/// One bounded GET, returning status and body; the target is allow-list checked.
pub async fn get(url: &str, host: Option<&str>) -> Result<(u16, String)> {
    let u = reqwest::Url::parse(url)?;
    check_target(&u)?;
    let mut req = http_client()?.get(u);
    if let Some(h) = host {
        req = req.header(reqwest::header::HOST, h);
    }
    let resp = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// A Prometheus instant query against the in-netns Prometheus; returns (labels, value) per series.
pub async fn prom_query(query: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
    #[derive(Deserialize)]
    struct Resp {
        status: String,
        data: Option<Data>,
        error: Option<String>,
    }
    #[derive(Deserialize)]
    struct Data {
        result: Vec<Series>,
    }
    #[derive(Deserialize)]
    struct Series {
        metric: BTreeMap<String, String>,
        value: (f64, String),
    }
    let url = reqwest::Url::parse(&format!("{}/api/v1/query", crate::PROMETHEUS))?;
    check_target(&url)?;
    let resp: Resp = http_client()?
        .get(url)
        .query(&[("query", query)])
        .send()
        .await
        .context("querying Prometheus")?
        .json()
        .await
        .context("decoding Prometheus' answer")?;
    ensure!(
        resp.status == "success",
        "Prometheus query {query:?} failed: {}",
        resp.error.unwrap_or_default()
    );
    resp.data
        .map(|d| d.result)
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            Ok((
                s.metric,
                s.value.1.parse::<f64>().context("non-numeric sample")?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let ok = [
            "http://127.0.0.1:8000/",
            "http://[::1]:1/",
            "http://10.244.0.3:9898/",
            "http://10.96.12.1/",
            "http://podinfo.test.svc.cluster.local:9898/",
            "http://localhost:9090/",
        ];
        for u in ok {
            assert!(
                check_target(&reqwest::Url::parse(u).unwrap_or_else(|e| panic!("{u}: {e}")))
                    .is_ok(),
                "{u}"
            );
        }
        let refused = [
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://example.com/",
            "http://8.8.8.8/",
        ];
        for u in refused {
            assert!(
                check_target(&reqwest::Url::parse(u).unwrap_or_else(|e| panic!("{u}: {e}")))
                    .is_err(),
                "{u}"
            );
        }
    }
}
