//! `flagger-rs events NAME`: the canary's Events in the order they first happened, with their
//! reasons; an aggregated Event (the controller bumps `count` for a repeat) says how often.

use std::process::ExitCode;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::cluster::{CliError, api_error};
use crate::duration::short as duration;
use crate::output::{Output, print, structured};
use crate::status::{canaries_api, get_canary};

pub use crate::status::OneCanaryArgs as Args;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub count: u32,
    pub message: String,
}

pub fn run(args: &Args) -> ExitCode {
    crate::command::run_async(events(args))
}

async fn events(args: &Args) -> Result<(), CliError> {
    let cluster = args.cluster.connect().await?;
    let namespace = cluster.namespace.as_str();
    // The canary first: a wrong name is "not found", not an empty list.
    let canaries = canaries_api(cluster.client.clone(), namespace, false);
    get_canary(&canaries, &args.name, namespace).await?;
    let list = canary_events(cluster.client, &args.name, namespace).await?;
    let views = views(&list);
    let text = match args.output {
        Output::Text => render(&views, Timestamp::now()),
        other => structured(&views, other)?,
    };
    print(&text);
    Ok(())
}

/// The Events whose object is the Canary `name` in `namespace`.
pub async fn canary_events(
    client: kube::Client,
    name: &str,
    namespace: &str,
) -> Result<Vec<Event>, CliError> {
    let api: Api<Event> = Api::namespaced(client, namespace);
    let selector = format!("involvedObject.kind=Canary,involvedObject.name={name}");
    Ok(api
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(|e| api_error(&e, "list", "events", namespace))?
        .items)
}

fn first_seen(e: &Event) -> Option<Timestamp> {
    e.first_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn last_seen(e: &Event) -> Option<Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| {
            e.series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        })
        .or_else(|| first_seen(e))
}

/// The Events as views, oldest first (ties keep the API server's order).
pub fn views(events: &[Event]) -> Vec<EventView> {
    let mut views: Vec<EventView> = events
        .iter()
        .map(|e| EventView {
            first_seen: first_seen(e),
            last_seen: last_seen(e),
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            count: e
                .count
                .or_else(|| e.series.as_ref().and_then(|s| s.count))
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(1)
                .max(1),
            message: e.message.clone().unwrap_or_default(),
        })
        .collect();
    views.sort_by_key(|v| v.first_seen);
    views
}

fn age(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map(|t| duration(u64::try_from(now.duration_since(t).as_secs()).unwrap_or(0)))
        .unwrap_or_else(|| "-".into())
}

pub fn render(views: &[EventView], now: Timestamp) -> String {
    if views.is_empty() {
        return "no events (the API server keeps them for an hour by default)".into();
    }
    let reason_width = views
        .iter()
        .map(|v| v.reason.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:>8}  {:<7}  {:<reason_width$}  {:>5}  MESSAGE\n",
        "AGE", "TYPE", "REASON", "COUNT"
    );
    for v in views {
        let count = if v.count > 1 {
            format!(
                "x{} over {}",
                v.count,
                age(v.first_seen, v.last_seen.unwrap_or(now))
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:>8}  {:<7}  {:<reason_width$}  {:>5}  {}{}\n",
            age(v.first_seen, now),
            v.type_,
            v.reason,
            v.count,
            v.message,
            if count.is_empty() {
                String::new()
            } else {
                format!(" ({count})")
            }
        ));
    }
    out
}
