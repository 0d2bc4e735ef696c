//! Event webhooks: every event recorded for a canary is also posted to
//! its `type: event` hooks (filtered by `metadata.eventType`), or to the
//! `-event-webhook` URL when it has none. Failures are logged and never affect the run.

use std::collections::BTreeMap;

use flagger_api::analysis::{CanaryWebhook, HookType};
use flagger_api::{Canary, CanaryStatus};
use flagger_core::{Event, EventName, EventType};
use kube::ResourceExt;

use crate::context::Context;
use crate::fulfil;

pub async fn post(ctx: &Context, canary: &Canary, status: &CanaryStatus, event: &Event) {
    let hooks: Vec<&CanaryWebhook> = canary
        .spec
        .analysis
        .webhooks
        .iter()
        .flatten()
        .filter(|h| h.hook_type() == Some(HookType::Event))
        .collect();
    let global;
    let targets: Vec<&CanaryWebhook> = if hooks.is_empty() {
        if ctx.flags.event_webhook.is_empty() {
            return;
        }
        global = CanaryWebhook {
            name: "event-webhook".into(),
            url: ctx.flags.event_webhook.clone(),
            ..Default::default()
        };
        vec![&global]
    } else {
        hooks
    };
    let name = lifecycle_name(event.name);
    for hook in targets.into_iter().filter(|h| selects(h, event, &name)) {
        let metadata = metadata(
            hook.metadata.as_ref(),
            event,
            &name,
            jiff::Timestamp::now().as_millisecond(),
        );
        let phase = status.phase.unwrap_or_default();
        let mut payload = fulfil::payload(canary, status, phase, None);
        payload.metadata = Some(metadata);
        if let Err(e) = crate::webhooks::call(ctx, canary, hook, &payload).await {
            tracing::warn!(canary = %canary.name_any(), hook = %hook.name, error = %e, "event webhook failed");
        }
    }
}

fn lifecycle_name(name: EventName) -> String {
    serde_json::to_value(name)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| "other".into())
}

fn type_name(t: EventType) -> &'static str {
    match t {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// `metadata.eventType` selects events by Kubernetes type, lifecycle name, or `analysis-complete`
/// (a run ended); unknown values select everything, as Flagger ignores the key.
fn selects(hook: &CanaryWebhook, event: &Event, name: &str) -> bool {
    let Some(filter) = hook.metadata.as_ref().and_then(|m| m.get("eventType")) else {
        return true;
    };
    match filter.as_str() {
        "Normal" | "Warning" => filter == type_name(event.type_),
        "analysis-complete" => name == "succeeded" || name == "failed",
        other if KNOWN_NAMES.contains(&other) => other == name,
        _ => true,
    }
}

const KNOWN_NAMES: &[&str] = &[
    "initialized",
    "waiting",
    "revision-detected",
    "restarted",
    "analysis-started",
    "check-failed",
    "weight-advanced",
    "iteration-advanced",
    "waiting-traffic-increase",
    "waiting-promotion",
    "promotion-started",
    "succeeded",
    "rollback",
    "failed",
    "terminating",
    "terminated",
    "other",
];

/// The event's keys win over the hook's own metadata of the same name.
fn metadata(
    hook: Option<&BTreeMap<String, String>>,
    event: &Event,
    name: &str,
    now_ms: i64,
) -> BTreeMap<String, String> {
    let mut out = hook.cloned().unwrap_or_default();
    out.insert("eventMessage".into(), event.message.clone());
    out.insert("eventType".into(), type_name(event.type_).into());
    out.insert("timestamp".into(), now_ms.to_string());
    out.insert("eventName".into(), name.into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(type_: EventType, name: EventName) -> Event {
        Event {
            type_,
            name,
            message: "Promotion completed! Scaling down podinfo.test".into(),
            reason: None,
        }
    }

    fn hook(filter: Option<&str>) -> CanaryWebhook {
        CanaryWebhook {
            name: "events".into(),
            type_: Some("event".into()),
            url: "http://events.test/".into(),
            metadata: filter.map(|f| [("eventType".to_string(), f.to_string())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn filters_by_type_lifecycle_name_and_run_end() {
        let done = event(EventType::Normal, EventName::Succeeded);
        let warn = event(EventType::Warning, EventName::CheckFailed);
        let name = |e: &Event| lifecycle_name(e.name);
        assert_eq!(name(&done), "succeeded");
        assert_eq!(name(&warn), "check-failed");
        for (filter, e, selected) in [
            (None, &done, true),
            (Some("Normal"), &done, true),
            (Some("Warning"), &done, false),
            (Some("Warning"), &warn, true),
            (Some("analysis-complete"), &done, true),
            (Some("analysis-complete"), &warn, false),
            (Some("check-failed"), &warn, true),
            (Some("check-failed"), &done, false),
            (Some("daily"), &done, true),
        ] {
            assert_eq!(
                selects(&hook(filter), e, &name(e)),
                selected,
                "{filter:?} {:?}",
                e.name
            );
        }
    }

    #[test]
    fn event_keys_win_over_hook_metadata() {
        let hook_metadata: BTreeMap<String, String> = [
            ("eventType".to_string(), "Normal".to_string()),
            ("team".to_string(), "web".to_string()),
        ]
        .into();
        let m = metadata(
            Some(&hook_metadata),
            &event(EventType::Normal, EventName::Succeeded),
            "succeeded",
            1234,
        );
        assert_eq!(
            m["eventMessage"],
            "Promotion completed! Scaling down podinfo.test"
        );
        assert_eq!(m["eventType"], "Normal");
        assert_eq!(m["timestamp"], "1234");
        assert_eq!(m["eventName"], "succeeded");
        assert_eq!(m["team"], "web");
    }
}
