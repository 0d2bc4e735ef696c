//! Kubernetes events on the Canary, as core/v1 Events: Flagger's ClusterRole grants `events` in the
//! core group only, so kube's events.k8s.io recorder would be refused under Flagger's manifests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagger_api::Canary;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use flagger_core::{EventType, Reason};
use tokio::time::Instant;

use crate::context::lock;
use crate::event_series::{Correlator, Flush, LIMIT, SeriesKey, Step, Write};

/// Event annotations with the rendered query and the value of a failed check: Flagger's message text stays as
/// it is, and `kubectl get event -o yaml` shows what was asked and what came back (issue 7).
pub const ANN_QUERY: &str = "flagger-rs.dev/query";
pub const ANN_VALUE: &str = "flagger-rs.dev/value";
pub const ANN_THRESHOLD: &str = "flagger-rs.dev/threshold";

pub fn check_annotations(reason: Option<&Reason>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let check = match reason {
        Some(Reason::CheckFailed { check }) => check.as_ref(),
        Some(Reason::FailedChecks {
            last: Some(check), ..
        }) => check.as_ref(),
        _ => return out,
    };
    if let Some(q) = check.query.as_ref().filter(|q| !q.is_empty()) {
        out.insert(ANN_QUERY.to_string(), q.clone());
    }
    if let Some(v) = check.value {
        out.insert(ANN_VALUE.to_string(), v.to_string());
    }
    if let Some(t) = &check.threshold {
        out.insert(ANN_THRESHOLD.to_string(), t.clone());
    }
    out
}

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    dry_run: bool,
    correlator: Arc<Mutex<Correlator>>,
}

/// An event write on its way; [`Recorded::written`] waits for the API server's answer. Dropped,
/// the write still goes on.
#[must_use = "a tick waits for its events before writing its status"]
pub struct Recorded(Option<tokio::task::JoinHandle<()>>);

impl Recorded {
    /// Waits until the write is answered (a failure was logged by the write itself).
    pub async fn written(self) {
        if let Some(write) = self.0
            && let Err(e) = write.await
        {
            tracing::error!(error = %e, "recording event failed");
        }
    }
}

impl Recorder {
    pub fn new(client: Client, dry_run: bool) -> Recorder {
        Recorder {
            client,
            dry_run,
            correlator: Arc::new(Mutex::new(Correlator::new(LIMIT))),
        }
    }

    /// Records one event and waits until it is written; a failure is logged, never allowed to
    /// fail the tick.
    pub async fn record(&self, canary: &Canary, type_: EventType, message: &str) {
        self.start(canary, type_, message, BTreeMap::new())
            .written()
            .await
    }

    /// Records one event and sends its write without waiting for the answer, so that a tick's
    /// Event and its other writes are on their way to the API server together instead of one
    /// round trip after another (a reaction to a new revision is an Event, a Deployment patch
    /// and a status write: three round trips in a row before, two now). The tick waits for
    /// what it started before writing its status, so an Event is never seen after the status
    /// that followed it.
    ///
    /// A repeat of an event already recorded for the canary bumps the count of that Event, and
    /// the Event writes of one canary are rate-limited (see [`Correlator`]).
    pub fn start(
        &self,
        canary: &Canary,
        type_: EventType,
        message: &str,
        annotations: BTreeMap<String, String>,
    ) -> Recorded {
        let namespace = canary.namespace().unwrap_or_default();
        match type_ {
            EventType::Normal => {
                tracing::info!(canary = %canary.name_any(), namespace, "{message}")
            }
            EventType::Warning => {
                tracing::warn!(canary = %canary.name_any(), namespace, "{message}")
            }
        }
        let mut event = build(canary, type_, message, self.dry_run, Timestamp::now());
        if !annotations.is_empty() {
            event.metadata.annotations = Some(annotations);
        }
        let key = SeriesKey::of(&event);
        let step = lock(&self.correlator).observe(&key, event, Instant::now(), Timestamp::now());
        match step {
            Step::Write(write) => {
                let recorder = self.clone();
                Recorded(Some(tokio::spawn(async move {
                    recorder.write(&key, write).await
                })))
            }
            Step::Defer(wait) => {
                let recorder = self.clone();
                tokio::spawn(async move { recorder.flush_after(key, wait).await });
                Recorded(None)
            }
            Step::Pending => Recorded(None),
        }
    }

    /// Writes a rate-limited series once its object may be written again.
    async fn flush_after(&self, key: SeriesKey, mut wait: Duration) {
        loop {
            tokio::time::sleep(wait).await;
            let step = lock(&self.correlator).flush(&key, Instant::now());
            match step {
                Flush::Write(write) => return self.write(&key, write).await,
                Flush::Wait(again) => wait = again,
                Flush::Nothing => return,
            }
        }
    }

    async fn write(&self, key: &SeriesKey, write: Write) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &key.namespace);
        let Write {
            existing,
            count,
            last,
            event,
        } = write;
        let written = match (existing, event) {
            (Some(name), event) => {
                let patch = serde_json::json!({"count": count, "lastTimestamp": Time(last)});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(event) => Ok(event),
                    // Expired (the API server keeps events for an hour) or deleted: start anew.
                    Err(kube::Error::Api(s)) if s.code == 404 => match event {
                        Some(event) => api.create(&PostParams::default(), &event).await,
                        None => {
                            lock(&self.correlator).lost(key);
                            return;
                        }
                    },
                    Err(e) => Err(e),
                }
            }
            (None, Some(event)) => api.create(&PostParams::default(), &event).await,
            // Never asked for: a series with no object is written only with an occurrence.
            (None, None) => return,
        };
        match written {
            Ok(event) => lock(&self.correlator).wrote(key, &event.name_any(), count),
            Err(e) => {
                lock(&self.correlator).failed(key);
                tracing::warn!(canary = %key.name, namespace = %key.namespace, error = %e, "recording event failed")
            }
        }
    }

    /// Drops the aggregation state of a canary that is gone.
    pub fn forget(&self, namespace: &str, name: &str) {
        lock(&self.correlator).forget(namespace, name);
    }

    /// Drops the aggregation state no repeat has needed for a while (see [`Correlator::sweep`]).
    pub fn sweep(&self) {
        lock(&self.correlator).sweep(Instant::now());
    }

    /// The canaries with aggregation state, as (namespace, name).
    pub fn canaries(&self) -> Vec<(String, String)> {
        lock(&self.correlator).canaries()
    }
}

pub fn build(
    canary: &Canary,
    type_: EventType,
    message: &str,
    dry_run: bool,
    now: Timestamp,
) -> Event {
    let namespace = canary.namespace().unwrap_or_default();
    let (reason, message) = if dry_run {
        ("DryRun", format!("[dry-run] {message}"))
    } else {
        ("Synced", message.to_string())
    };
    Event {
        metadata: ObjectMeta {
            // Unique per event, like client-go's `<object>.<hex nanos>` names.
            name: Some(format!("{}.{:x}", canary.name_any(), now.as_nanosecond())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(flagger_api::API_VERSION.into()),
            kind: Some("Canary".into()),
            name: Some(canary.name_any()),
            namespace: Some(namespace),
            uid: canary.metadata.uid.clone(),
            resource_version: canary.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        source: Some(EventSource {
            component: Some("flagger".into()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        // No eventTime: with it the API server would require the events.k8s.io reporting fields.
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_metric_events_carry_query_value_and_threshold() {
        use flagger_api::status::CheckKind;
        use flagger_core::FailedCheck;
        let check = FailedCheck {
            kind: CheckKind::Metric,
            name: "request-success-rate".into(),
            value: Some(70.0),
            threshold: Some("min 99".into()),
            query: Some("sum(rate(x[10s]))".into()),
            message: "Halt podinfo.test advancement success rate 70.00% < 99%".into(),
        };
        let no_data = FailedCheck {
            value: None,
            query: None,
            ..check.clone()
        };
        let failed = Reason::CheckFailed {
            check: Box::new(check.clone()),
        };
        let threshold = Reason::FailedChecks {
            failed_checks: 2,
            threshold: 2,
            last: Some(Box::new(check)),
            records: vec![],
        };
        let want: BTreeMap<String, String> = [
            (ANN_QUERY, "sum(rate(x[10s]))"),
            (ANN_VALUE, "70"),
            (ANN_THRESHOLD, "min 99"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let table: [(Option<&Reason>, BTreeMap<String, String>); 4] = [
            (Some(&failed), want.clone()),
            (Some(&threshold), want),
            (
                Some(&Reason::CheckFailed {
                    check: Box::new(no_data),
                }),
                [(ANN_THRESHOLD.to_string(), "min 99".to_string())].into(),
            ),
            (None, BTreeMap::new()),
        ];
        for (reason, want) in table {
            assert_eq!(check_annotations(reason), want, "{reason:?}");
        }
    }

    #[test]
    fn events_look_like_flaggers() {
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("test".into());
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let event = build(
            &canary,
            EventType::Warning,
            "Canary failed! Scaling down podinfo.test",
            false,
            now,
        );
        assert_eq!(event.reason.as_deref(), Some("Synced"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.involved_object.kind.as_deref(), Some("Canary"));
        assert_eq!(
            event.source.and_then(|s| s.component).as_deref(),
            Some("flagger")
        );
        assert!(event.metadata.name.unwrap().starts_with("podinfo."));

        let dry = build(
            &canary,
            EventType::Normal,
            "Advance podinfo.test canary weight 10",
            true,
            now,
        );
        assert_eq!(dry.reason.as_deref(), Some("DryRun"));
        assert_eq!(
            dry.message.as_deref(),
            Some("[dry-run] Advance podinfo.test canary weight 10")
        );
    }
}

#[cfg(test)]
mod write_tests {
    use std::sync::Arc;

    use tokio::sync::{Semaphore, mpsc};

    use super::*;

    /// A request the fake API server received: method, path and the Event's name and count.
    type Seen = (String, String, String, i64);

    /// An API server that reports each request as it arrives and answers it only once `answers`
    /// has a permit for it, echoing the Event written.
    fn held_api_server() -> (Client, mpsc::UnboundedReceiver<Seen>, Arc<Semaphore>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let answers = Arc::new(Semaphore::new(0));
        let permits = answers.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let (tx, permits) = (tx.clone(), permits.clone());
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let bytes = req.into_body().collect_bytes().await?;
                let mut body: serde_json::Value = serde_json::from_slice(&bytes)?;
                let name = path.rsplit('/').next().unwrap_or_default().to_string();
                let name = if method == "POST" {
                    body["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                } else {
                    name
                };
                let count = body["count"].as_i64().unwrap_or_default();
                tx.send((method, path, name.clone(), count))?;
                permits.acquire().await?.forget();
                body["metadata"]["name"] = serde_json::Value::String(name);
                let answer = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(body.to_string().into_bytes()))?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(answer)
            }
        });
        (Client::new(service, "test"), rx, answers)
    }

    fn canary() -> Canary {
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("test".into());
        canary.metadata.uid = Some("u1".into());
        canary
    }

    #[tokio::test]
    async fn an_event_is_sent_at_once_and_written_when_answered() {
        let (client, mut seen, answers) = held_api_server();
        let recorder = Recorder::new(client, false);
        let canary = canary();
        let message = "New revision detected! Scaling up podinfo.test";

        // Started, not awaited: the API server has the create while the caller goes on.
        let recorded = recorder.start(&canary, EventType::Normal, message, BTreeMap::new());
        let (method, path, name, count) = seen.recv().await.expect("the create arrives");
        assert_eq!((method.as_str(), count), ("POST", 1));
        assert_eq!(path, "/api/v1/namespaces/test/events");
        let waiting = tokio::spawn(recorded.written());
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "written before the API server answered"
        );

        answers.add_permits(1);
        waiting.await.expect("the wait ends");
        // Once written, the series knows its object: the next tick's repeat bumps it.
        let again = recorder.start(&canary, EventType::Normal, message, BTreeMap::new());
        let (method, path, bumped, count) = seen.recv().await.expect("the bump arrives");
        assert_eq!((method.as_str(), count), ("PATCH", 2));
        assert_eq!(path, format!("/api/v1/namespaces/test/events/{name}"));
        assert_eq!(bumped, name);
        answers.add_permits(1);
        again.written().await;
    }
}
