//! A Skipper ingress controller for one test: Skipper built from its Go module by `hack/cluster/skipper`
//! (`FLAGGER_RS_SKIPPER_BIN`, set by `hack/e2e`), its Kubernetes data client reading our API server
//! through a `kubectl proxy` (Skipper speaks plain HTTP to the API outside a pod, as Zalando runs it
//! with a proxy sidecar), its `/metrics` registered with the cluster's Prometheus. Started by the
//! tests that route through it, so no other test pays for it; both children die with the guard.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, ensure};

use crate::bench::free_port;
use crate::controller::Proc;
use crate::monitoring::{ScrapeTarget, wait_scraped};
use crate::{PROMETHEUS, Result, poll_until};

/// Skipper's address for the Ingress class `skipper`, as `http://127.0.0.1:<port>`.
pub struct Skipper {
    pub url: String,
    _proxy: Proc,
    _skipper: Proc,
    _scrape: ScrapeTarget,
}

fn binary() -> Result<PathBuf> {
    let path = std::env::var_os("FLAGGER_RS_SKIPPER_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .context("FLAGGER_RS_SKIPPER_BIN is unset: hack/e2e builds Skipper with hack/cluster/skipper and sets it")?;
    ensure!(path.is_file(), "no Skipper binary at {}", path.display());
    Ok(path)
}

async fn answers(what: &str, url: String) -> Result<()> {
    poll_until(what, Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            let ok = crate::traffic::get(&url, None)
                .await
                .is_ok_and(|(s, _)| s == 200);
            Ok(ok.then_some(()))
        }
    })
    .await
}

impl Skipper {
    /// Starts the proxy and Skipper, and waits until Skipper serves metrics and Prometheus scrapes them.
    pub async fn start(ns: &str) -> Result<Skipper> {
        let bin = binary()?;
        let api_port = free_port()?;
        let proxy = Proc::spawn_program(
            "kubectl proxy",
            &format!("{ns}-kubectl-proxy"),
            std::path::Path::new("kubectl"),
            &[
                "proxy".into(),
                format!("--port={api_port}"),
                "--address=127.0.0.1".into(),
            ],
            &[],
        )?;
        answers(
            "kubectl proxy",
            format!("http://127.0.0.1:{api_port}/version"),
        )
        .await?;
        let (port, metrics_port) = (free_port()?, free_port()?);
        let args = [
            "-kubernetes".to_string(),
            format!("-kubernetes-url=http://127.0.0.1:{api_port}"),
            "-kubernetes-path-mode=path-prefix".into(),
            format!("-address=127.0.0.1:{port}"),
            format!("-support-listener=127.0.0.1:{metrics_port}"),
            format!("-metrics-listener=127.0.0.1:{metrics_port}"),
            // The flags Flagger's Skipper guide runs with, so the builtin queries find their series.
            "-metrics-flavour=prometheus".into(),
            "-route-response-metrics".into(),
            "-serve-route-metrics".into(),
            "-route-backend-metrics".into(),
            "-histogram-metric-buckets=.01,.1,1,10".into(),
            // Route updates within half a second of an Ingress change, instead of three.
            "-source-poll-timeout=500".into(),
            "-application-log-level=INFO".into(),
        ];
        let skipper = Proc::spawn_program("skipper", &format!("{ns}-skipper"), &bin, &args, &[])?;
        answers(
            "skipper metrics",
            format!("http://127.0.0.1:{metrics_port}/metrics"),
        )
        .await?;
        let scrape = ScrapeTarget::register(&format!("{ns}-skipper"), metrics_port)?;
        wait_scraped(PROMETHEUS, &scrape.instance, Duration::from_secs(60)).await?;
        Ok(Skipper {
            url: format!("http://127.0.0.1:{port}"),
            _proxy: proxy,
            _skipper: skipper,
            _scrape: scrape,
        })
    }
}
