//! Discord, through its Slack-compatible endpoint (`<address>/slack`).

use super::http::{DeliveryOptions, Transport};
use super::provider::ResolvedProvider;
use super::secret::SecretUrl;
use super::{Alert, Notifier, NotifyError, SendFuture, encode, slack};

#[derive(Debug)]
pub struct Discord {
    url: SecretUrl,
    channel: String,
    username: String,
    transport: Transport,
}

/// Appends `/slack` to the path unless it is already there (the query, e.g. `?wait=true`, stays).
pub(crate) fn slack_endpoint(address: &SecretUrl) -> SecretUrl {
    let path = address.expose().path();
    if path.ends_with("/slack") {
        address.clone()
    } else {
        address.with_path(&format!("{}/slack", path.trim_end_matches('/')))
    }
}

impl Discord {
    pub fn new(p: &ResolvedProvider, options: DeliveryOptions) -> Result<Discord, NotifyError> {
        let url = slack_endpoint(&p.address);
        let mut secrets = p.address.secret_parts();
        secrets.extend(url.secret_parts());
        Ok(Discord {
            url,
            channel: p.channel.clone(),
            username: p.username.clone(),
            transport: Transport::new(p.proxy.as_ref(), options, secrets)?,
        })
    }

    async fn post(&self, alert: &Alert) -> Result<(), NotifyError> {
        let body = encode(&slack::payload(
            alert,
            &self.channel,
            &self.username,
            ("good", "danger"),
        ))?;
        self.transport.post(&self.url, body, None).await.map(drop)
    }
}

impl Notifier for Discord {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(self.post(alert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_suffix_is_added_once() {
        let cases = [
            (
                "https://discord.com/api/webhooks/1/abc",
                "https://discord.com/api/webhooks/1/abc/slack",
            ),
            (
                "https://discord.com/api/webhooks/1/abc/",
                "https://discord.com/api/webhooks/1/abc/slack",
            ),
            (
                "https://discord.com/api/webhooks/1/abc/slack",
                "https://discord.com/api/webhooks/1/abc/slack",
            ),
            (
                "https://discord.com/api/webhooks/1/abc?wait=true",
                "https://discord.com/api/webhooks/1/abc/slack?wait=true",
            ),
        ];
        for (input, want) in cases {
            let u = SecretUrl::parse(input).unwrap();
            assert_eq!(slack_endpoint(&u).expose().as_str(), want);
        }
    }
}
