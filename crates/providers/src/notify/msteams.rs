//! Microsoft Teams. Two formats, chosen by the address:
//! * Workflows (Power Automate) URLs take an Adaptive Card message; the Office 365 connectors
//!   they replace are being retired by Microsoft.
//! * Every other URL gets Flagger's MessageCard, so a connector URL or
//!   a relay written for Flagger keeps receiving exactly what it did.

use serde::Serialize;
use serde_json::{Value, json};

use super::http::{DeliveryOptions, Transport};
use super::provider::ResolvedProvider;
use super::secret::SecretUrl;
use super::{Alert, Notifier, NotifyError, SendFuture, Severity, encode};

/// Hosts of Teams Workflows triggers (`*.logic.azure.com`, `*.api.powerplatform.com`).
const WORKFLOW_HOST_SUFFIXES: &[&str] = &[
    ".logic.azure.com",
    ".powerplatform.com",
    ".powerautomate.com",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsTeamsFormat {
    /// Legacy Office 365 connector `MessageCard`, Flagger's format.
    MessageCard,
    /// Teams Workflows: `{"type": "message", "attachments": [AdaptiveCard]}`.
    AdaptiveCard,
}

impl MsTeamsFormat {
    pub fn for_address(address: &SecretUrl) -> MsTeamsFormat {
        let host = address
            .expose()
            .host_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if WORKFLOW_HOST_SUFFIXES.iter().any(|s| host.ends_with(s)) {
            MsTeamsFormat::AdaptiveCard
        } else {
            MsTeamsFormat::MessageCard
        }
    }
}

#[derive(Serialize)]
struct MessageCard<'a> {
    #[serde(rename = "@type")]
    type_: &'static str,
    #[serde(rename = "@context")]
    context: &'static str,
    #[serde(rename = "themeColor")]
    theme_color: &'static str,
    summary: String,
    sections: [Section<'a>; 1],
}

#[derive(Serialize)]
struct Section<'a> {
    #[serde(rename = "activityTitle")]
    activity_title: &'a str,
    #[serde(rename = "activitySubtitle")]
    activity_subtitle: String,
    facts: Vec<Fact<'a>>,
}

#[derive(Serialize)]
struct Fact<'a> {
    name: &'a str,
    value: &'a str,
}

fn message_card(alert: &Alert) -> MessageCard<'_> {
    MessageCard {
        type_: "MessageCard",
        context: "http://schema.org/extensions",
        theme_color: if alert.severity == Severity::Error {
            "FF0000"
        } else {
            "0076D7"
        },
        summary: alert.key(),
        sections: [Section {
            activity_title: &alert.message,
            activity_subtitle: alert.key(),
            facts: alert
                .fields
                .iter()
                .map(|f| Fact {
                    name: &f.name,
                    value: &f.value,
                })
                .collect(),
        }],
    }
}

/// Adaptive Card 1.4 (the highest Teams renders): title, message (red for errors), facts.
fn adaptive_card(alert: &Alert) -> Value {
    let mut message = json!({"type": "TextBlock", "text": alert.message, "wrap": true});
    if alert.severity == Severity::Error {
        message["color"] = json!("attention");
    }
    let mut items = vec![
        json!({"type": "TextBlock", "text": alert.key(), "size": "large", "weight": "bolder", "wrap": true}),
        message,
    ];
    if !alert.fields.is_empty() {
        let facts: Vec<Value> = alert
            .fields
            .iter()
            .map(|f| json!({"title": f.name, "value": f.value}))
            .collect();
        items.push(json!({"type": "FactSet", "facts": facts}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": [{"type": "Container", "items": items}],
            },
        }],
    })
}

#[derive(Debug)]
pub struct MsTeams {
    url: SecretUrl,
    format: MsTeamsFormat,
    transport: Transport,
}

impl MsTeams {
    pub fn new(p: &ResolvedProvider, options: DeliveryOptions) -> Result<MsTeams, NotifyError> {
        MsTeams::with_format(p, options, MsTeamsFormat::for_address(&p.address))
    }

    pub fn with_format(
        p: &ResolvedProvider,
        options: DeliveryOptions,
        format: MsTeamsFormat,
    ) -> Result<MsTeams, NotifyError> {
        Ok(MsTeams {
            url: p.address.clone(),
            format,
            transport: Transport::new(p.proxy.as_ref(), options, p.address.secret_parts())?,
        })
    }

    async fn post(&self, alert: &Alert) -> Result<(), NotifyError> {
        let body = match self.format {
            MsTeamsFormat::MessageCard => encode(&message_card(alert))?,
            MsTeamsFormat::AdaptiveCard => encode(&adaptive_card(alert))?,
        };
        self.transport.post(&self.url, body, None).await.map(drop)
    }
}

impl Notifier for MsTeams {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(self.post(alert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_address() {
        let cases = [
            (
                "https://xyz.webhook.office.com/webhookb2/abc",
                MsTeamsFormat::MessageCard,
            ),
            (
                "https://outlook.office.com/webhook/abc",
                MsTeamsFormat::MessageCard,
            ),
            ("http://127.0.0.1:8080/teams", MsTeamsFormat::MessageCard),
            (
                "https://prod-12.westus.logic.azure.com:443/workflows/abc/triggers/manual",
                MsTeamsFormat::AdaptiveCard,
            ),
            (
                "https://default1a.2b.environment.api.powerplatform.com:443/powerautomate/x",
                MsTeamsFormat::AdaptiveCard,
            ),
        ];
        for (url, want) in cases {
            assert_eq!(
                MsTeamsFormat::for_address(&SecretUrl::parse(url).unwrap()),
                want,
                "{url}"
            );
        }
    }
}
