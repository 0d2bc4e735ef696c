//! The cluster's Prometheus → Alertmanager → receiver path, as tests and benchmarks see it.
//!
//! `hack/cluster/up` has Prometheus load deploy/monitoring/rules.yaml (group interval 1 s instead of 10 s) and
//! scrape, as job `flagger-rs` with `honor_labels`, every target file in `<cluster dir>/flagger-rs.sd/`. A test
//! registers its own controller's `/metrics` there with a [`ScrapeTarget`]; Alertmanager sends every alert to the
//! testapp's receiver ([`crate::RECEIVER`]), which keeps each notification. Tests share that one Prometheus and
//! receiver, so they pick their alerts out by the `namespace` label (their namespace is unique).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{Result, poll_until};

/// A `/metrics` address in the cluster Prometheus' file discovery, removed again when dropped.
pub struct ScrapeTarget {
    pub instance: String,
    file: PathBuf,
}

impl ScrapeTarget {
    /// Registers `127.0.0.1:<port>` under the file name `<name>.json` (use the test's namespace: unique).
    pub fn register(name: &str, port: u16) -> Result<ScrapeTarget> {
        let dir = crate::controller::cluster_dir().join("flagger-rs.sd");
        if !dir.is_dir() {
            bail!(
                "{} does not exist: the cluster predates controller scraping (run hack/cluster/down and up)",
                dir.display()
            );
        }
        let instance = format!("127.0.0.1:{port}");
        let file = dir.join(format!("{name}.json"));
        // Prometheus watches the directory and may read a half-written file: write aside, then rename.
        let tmp = dir.join(format!(".{name}.json.tmp"));
        std::fs::write(&tmp, json!([{"targets": [instance]}]).to_string())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &file).with_context(|| format!("creating {}", file.display()))?;
        Ok(ScrapeTarget { instance, file })
    }
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        std::fs::remove_file(&self.file).ok();
    }
}

/// Runs an instant query and returns its result vector.
pub async fn query(prometheus: &str, promql: &str) -> Result<Vec<Value>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let v: Value = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .with_context(|| format!("querying {prometheus}"))?
        .error_for_status()?
        .json()
        .await?;
    if v["status"] != "success" {
        bail!("query {promql}: {v}");
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Waits until Prometheus has scraped `instance` of job `flagger-rs` successfully.
pub async fn wait_scraped(prometheus: &str, instance: &str, timeout: Duration) -> Result<()> {
    let promql = format!("up{{job=\"flagger-rs\",instance=\"{instance}\"}} == 1");
    poll_until(
        &format!("Prometheus scraping the controller at {instance}"),
        timeout,
        || {
            let promql = promql.clone();
            async move { Ok((!query(prometheus, &promql).await?.is_empty()).then_some(())) }
        },
    )
    .await
}

/// One alert of an Alertmanager webhook notification.
#[derive(Clone, Debug)]
pub struct NotifiedAlert {
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Option<String>,
}

impl NotifiedAlert {
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// The alerts named `alertname` in one Alertmanager webhook notification (its JSON body).
pub fn alerts_named(notification: &Value, alertname: &str) -> Vec<NotifiedAlert> {
    notification["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == alertname)
        .map(|a| NotifiedAlert {
            status: a["status"].as_str().unwrap_or_default().to_string(),
            labels: string_map(&a["labels"]),
            annotations: string_map(&a["annotations"]),
            starts_at: a["startsAt"].as_str().map(str::to_string),
        })
        .collect()
}

/// `(labels.name, startsAt)` of every firing CanaryRollback alert in a webhook body.
pub fn firing_rollbacks(body: &str) -> Vec<(String, Option<String>)> {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    alerts_named(&v, "CanaryRollback")
        .into_iter()
        .filter(|a| a.status == "firing")
        .map(|a| (a.label("name").to_string(), a.starts_at))
        .collect()
}

/// Every notification the cluster's receiver has kept, oldest first.
pub async fn receiver_notifications() -> Result<Vec<Value>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("{}/alerts", crate::RECEIVER);
    let resp = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url}: HTTP {}", resp.status());
    }
    Ok(resp.json().await?)
}

/// The `alertname` alerts of namespace `namespace` in every notification of the cluster's receiver, in the
/// order they were delivered (one entry per alert per notification).
pub async fn received_alerts(namespace: &str, alertname: &str) -> Result<Vec<NotifiedAlert>> {
    Ok(receiver_notifications()
        .await?
        .iter()
        .flat_map(|n| alerts_named(n, alertname))
        .filter(|a| a.label("namespace") == namespace)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_of_a_webhook_body_are_picked_by_name() {
        let body = json!({"receiver": "local", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "CanaryRollback", "name": "app", "namespace": "n1"},
             "annotations": {"summary": "s"}, "startsAt": "2026-12-01T20:00:00Z"},
            {"status": "firing", "labels": {"alertname": "CanaryFailed", "name": "app", "namespace": "n1"}},
            {"status": "resolved", "labels": {"alertname": "CanaryRollback", "name": "other", "namespace": "n2"}},
        ]});
        let got = alerts_named(&body, "CanaryRollback");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].label("namespace"), "n1");
        assert_eq!(got[0].annotations["summary"], "s");
        assert_eq!(got[1].status, "resolved");
        assert_eq!(
            firing_rollbacks(&body.to_string()),
            vec![("app".to_string(), Some("2026-12-01T20:00:00Z".to_string()))]
        );
    }
}
