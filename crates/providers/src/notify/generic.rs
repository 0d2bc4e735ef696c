//! Generic webhook: the alert as plain JSON, for any receiver.

use serde::Serialize;

use super::http::{DeliveryOptions, Transport};
use super::provider::ResolvedProvider;
use super::secret::{SecretToken, SecretUrl};
use super::{Alert, Notifier, NotifyError, SendFuture, encode};

#[derive(Serialize)]
struct Payload<'a> {
    name: &'a str,
    namespace: &'a str,
    phase: &'a str,
    severity: &'a str,
    message: &'a str,
    fields: Vec<Field<'a>>,
    checksum: &'a str,
    timestamp: String,
}

#[derive(Serialize)]
struct Field<'a> {
    name: &'a str,
    value: &'a str,
}

fn payload(alert: &Alert) -> Payload<'_> {
    Payload {
        name: &alert.name,
        namespace: &alert.namespace,
        phase: alert.phase.as_str(),
        severity: alert.severity.as_str(),
        message: &alert.message,
        fields: alert
            .fields
            .iter()
            .map(|f| Field {
                name: &f.name,
                value: &f.value,
            })
            .collect(),
        checksum: &alert.checksum,
        timestamp: alert.timestamp_ms.to_string(),
    }
}

#[derive(Debug)]
pub struct Generic {
    url: SecretUrl,
    token: Option<SecretToken>,
    transport: Transport,
}

impl Generic {
    pub fn new(p: &ResolvedProvider, options: DeliveryOptions) -> Result<Generic, NotifyError> {
        let mut secrets = p.address.secret_parts();
        secrets.extend(p.token.iter().map(|t| t.expose().to_owned()));
        Ok(Generic {
            url: p.address.clone(),
            token: p.token.clone(),
            transport: Transport::new(p.proxy.as_ref(), options, secrets)?,
        })
    }

    async fn post(&self, alert: &Alert) -> Result<(), NotifyError> {
        self.transport
            .post(&self.url, encode(&payload(alert))?, self.token.as_ref())
            .await
            .map(drop)
    }
}

impl Notifier for Generic {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(self.post(alert))
    }
}
