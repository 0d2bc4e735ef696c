//! Rocket.Chat: the Slack body with Teams-blue / red colours.

use super::http::{DeliveryOptions, Transport};
use super::provider::ResolvedProvider;
use super::secret::SecretUrl;
use super::{Alert, Notifier, NotifyError, SendFuture, encode, slack};

#[derive(Debug)]
pub struct Rocket {
    url: SecretUrl,
    channel: String,
    username: String,
    transport: Transport,
}

impl Rocket {
    pub fn new(p: &ResolvedProvider, options: DeliveryOptions) -> Result<Rocket, NotifyError> {
        Ok(Rocket {
            url: p.address.clone(),
            channel: p.channel.clone(),
            username: p.username.clone(),
            transport: Transport::new(p.proxy.as_ref(), options, p.address.secret_parts())?,
        })
    }

    async fn post(&self, alert: &Alert) -> Result<(), NotifyError> {
        let body = encode(&slack::payload(
            alert,
            &self.channel,
            &self.username,
            ("#0076D7", "#FF0000"),
        ))?;
        self.transport.post(&self.url, body, None).await.map(drop)
    }
}

impl Notifier for Rocket {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(self.post(alert))
    }
}
