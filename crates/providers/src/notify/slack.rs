//! Slack: incoming webhook, or `chat.postMessage` with a bot token.
//! Discord and Rocket.Chat take the same body.

use serde::Serialize;

use super::http::{DeliveryOptions, Transport};
use super::provider::ResolvedProvider;
use super::secret::{SecretToken, SecretUrl};
use super::{Alert, Notifier, NotifyError, SendFuture, Severity, encode};

#[derive(Serialize)]
pub(crate) struct SlackPayload<'a> {
    channel: &'a str,
    username: &'a str,
    icon_url: &'a str,
    icon_emoji: &'a str,
    attachments: [SlackAttachment<'a>; 1],
}

#[derive(Serialize)]
struct SlackAttachment<'a> {
    color: &'a str,
    author_name: String,
    text: &'a str,
    mrkdwn_in: [&'a str; 1],
    fields: Vec<SlackField<'a>>,
}

#[derive(Serialize)]
struct SlackField<'a> {
    title: &'a str,
    value: &'a str,
    short: bool,
}

/// The Slack body; `colors` = (normal, error).
pub(crate) fn payload<'a>(
    alert: &'a Alert,
    channel: &'a str,
    username: &'a str,
    colors: (&'a str, &'a str),
) -> SlackPayload<'a> {
    let color = if alert.severity == Severity::Error {
        colors.1
    } else {
        colors.0
    };
    SlackPayload {
        channel,
        username,
        icon_url: "",
        icon_emoji: ":rocket:",
        attachments: [SlackAttachment {
            color,
            author_name: alert.key(),
            text: &alert.message,
            mrkdwn_in: ["text"],
            fields: alert
                .fields
                .iter()
                .map(|f| SlackField {
                    title: &f.name,
                    value: &f.value,
                    short: false,
                })
                .collect(),
        }],
    }
}

#[derive(Debug)]
pub struct Slack {
    url: SecretUrl,
    token: Option<SecretToken>,
    channel: String,
    username: String,
    transport: Transport,
}

impl Slack {
    pub fn new(p: &ResolvedProvider, options: DeliveryOptions) -> Result<Slack, NotifyError> {
        let mut secrets = p.address.secret_parts();
        secrets.extend(p.token.iter().map(|t| t.expose().to_owned()));
        Ok(Slack {
            url: p.address.clone(),
            token: p.token.clone(),
            channel: p.channel.clone(),
            username: p.username.clone(),
            transport: Transport::new(p.proxy.as_ref(), options, secrets)?,
        })
    }

    async fn post(&self, alert: &Alert) -> Result<(), NotifyError> {
        let body = encode(&payload(
            alert,
            &self.channel,
            &self.username,
            ("good", "danger"),
        ))?;
        let answer = self
            .transport
            .post(&self.url, body, self.token.as_ref())
            .await?;
        // The Web API answers 200 with {"ok": false} for a bad channel or token; incoming
        // webhooks answer a plain "ok".
        if let Ok(serde_json::Value::Object(map)) =
            serde_json::from_str::<serde_json::Value>(&answer.body)
            && map.get("ok") == Some(&serde_json::Value::Bool(false))
        {
            let error = map
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("unknown error");
            return Err(NotifyError::Refused {
                endpoint: self.url.redacted(),
                error: super::alert::one_line(error),
            });
        }
        Ok(())
    }
}

impl Notifier for Slack {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(self.post(alert))
    }
}
