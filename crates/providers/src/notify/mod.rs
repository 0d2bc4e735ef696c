//! Notifiers: deliver one alert to a chat or webhook endpoint.
//!
//! The controller resolves an `AlertProvider` (or its global flags) with [`provider::resolve`],
//! builds a [`ProviderNotifier`] and calls [`ProviderNotifier::notify`] per alert the severity
//! filter ([`admits`]) lets through. Delivery failures and template warnings come back as data;
//! none of them ever affects the run, and none carries a webhook URL or token.

mod alert;
mod discord;
mod from_core;
mod gchat;
mod generic;
mod http;
mod msteams;
pub mod provider;
mod rocket;
mod secret;
mod slack;
pub mod template;

#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use alert::{Alert, CheckFailure, CheckLine, Field, Reason, Severity, ThresholdRange, admits};
pub use discord::Discord;
pub use from_core::{check_from_core, reason_from_core, severity_from_core};
pub use gchat::GChat;
pub use generic::Generic;
pub use http::{DeliveryOptions, ensure_crypto_provider};
pub use msteams::{MsTeams, MsTeamsFormat};
pub use provider::{
    GlobalFlags, ProviderType, ResolveError, ResolvedProvider, Route, SecretData, resolve,
    resolve_global, route,
};
pub use rocket::Rocket;
pub use secret::{InvalidUrl, SecretToken, SecretUrl};
pub use slack::Slack;

use alert::one_line;

/// What `send` returns: boxed so notifiers can live behind `dyn Notifier`.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>>;

/// One backend. `send` posts `alert.message` and `alert.fields` as they are; templating is done
/// before, by [`ProviderNotifier`].
pub trait Notifier: Send + Sync + fmt::Debug {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a>;
}

/// A failed delivery. `Display` and `Debug` name the endpoint as `scheme://host/…` only.
#[derive(Clone, PartialEq, Eq)]
pub enum NotifyError {
    /// The notifier could not be built (proxy, client, header value).
    Config(String),
    /// The receiver answered with a non-2xx status (after `attempts` tries).
    Status {
        endpoint: String,
        status: u16,
        body: String,
        attempts: u32,
    },
    /// No HTTP answer: connection refused, timeout, TLS.
    Transport {
        endpoint: String,
        message: String,
        attempts: u32,
    },
    /// HTTP 2xx, but the API said no (Slack `{"ok": false, "error": …}`).
    Refused {
        endpoint: String,
        error: String,
    },
    Encode(String),
}

impl NotifyError {
    pub fn attempts(&self) -> u32 {
        match self {
            NotifyError::Status { attempts, .. } | NotifyError::Transport { attempts, .. } => {
                *attempts
            }
            NotifyError::Refused { .. } => 1,
            NotifyError::Config(_) | NotifyError::Encode(_) => 0,
        }
    }
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::Config(m) => write!(f, "notifier configuration: {m}"),
            NotifyError::Status {
                endpoint,
                status,
                body,
                attempts,
            } => {
                write!(
                    f,
                    "{endpoint} answered HTTP {status} (attempts: {attempts})"
                )?;
                let body = one_line(body);
                if body.is_empty() {
                    Ok(())
                } else {
                    write!(f, ": {body}")
                }
            }
            NotifyError::Transport {
                endpoint,
                message,
                attempts,
            } => {
                write!(
                    f,
                    "sending to {endpoint} failed (attempts: {attempts}): {message}"
                )
            }
            NotifyError::Refused { endpoint, error } => {
                write!(f, "{endpoint} refused the message: {error}")
            }
            NotifyError::Encode(m) => write!(f, "encoding the payload failed: {m}"),
        }
    }
}

// Debug reads like Display: the fields are already free of secrets, and a derived Debug would
// invite someone to add one that is not.
impl fmt::Debug for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NotifyError({self})")
    }
}

impl std::error::Error for NotifyError {}

pub(crate) fn encode<T: serde::Serialize>(payload: &T) -> Result<Vec<u8>, NotifyError> {
    serde_json::to_vec(payload).map_err(|e| NotifyError::Encode(e.to_string()))
}

/// The result of one alert to one provider.
#[derive(Debug)]
pub struct Delivery {
    pub result: Result<(), NotifyError>,
    /// The `messageTemplate` failed and the standard text was sent: a Warning event for the
    /// canary, whatever `result` is.
    pub template_warning: Option<String>,
}

/// A resolved provider ready to post: the backend plus the provider's `messageTemplate`.
#[derive(Debug)]
pub struct ProviderNotifier {
    pub type_: ProviderType,
    notifier: Box<dyn Notifier>,
    message_template: Option<String>,
    /// Where alerts are posted; the controller limits concurrent deliveries per host by it.
    address: Option<SecretUrl>,
}

impl ProviderNotifier {
    pub fn new(
        provider: &ResolvedProvider,
        options: DeliveryOptions,
    ) -> Result<ProviderNotifier, NotifyError> {
        let p = provider;
        let notifier: Box<dyn Notifier> = match p.type_ {
            ProviderType::Slack => Box::new(Slack::new(p, options)?),
            ProviderType::MsTeams => Box::new(MsTeams::new(p, options)?),
            ProviderType::Discord => Box::new(Discord::new(p, options)?),
            ProviderType::Rocket => Box::new(Rocket::new(p, options)?),
            ProviderType::GChat => Box::new(GChat::new(p, options)?),
            ProviderType::Generic => Box::new(Generic::new(p, options)?),
        };
        Ok(ProviderNotifier {
            type_: p.type_,
            notifier,
            message_template: p.message_template.clone(),
            address: Some(p.address.clone()),
        })
    }

    /// Wraps any backend (tests, custom formats) with an optional template.
    pub fn from_parts(
        type_: ProviderType,
        notifier: Box<dyn Notifier>,
        message_template: Option<String>,
    ) -> Self {
        ProviderNotifier {
            type_,
            notifier,
            message_template,
            address: None,
        }
    }

    /// Where this notifier's alerts go; `None` for one built from parts.
    pub fn address(&self) -> Option<&SecretUrl> {
        self.address.as_ref()
    }

    /// The alert as it will be posted: with a template, its output replaces the message and the
    /// fields are dropped; a failing template leaves the alert as is.
    pub fn prepare(&self, alert: &Alert) -> (Alert, Option<String>) {
        let Some(t) = &self.message_template else {
            return (alert.clone(), None);
        };
        let rendered = template::render(t, alert);
        let mut out = alert.clone();
        if rendered.templated {
            out.message = rendered.message;
            out.fields.clear();
        }
        (out, rendered.warning)
    }

    pub async fn notify(&self, alert: &Alert) -> Delivery {
        let (alert, template_warning) = self.prepare(alert);
        let result = self.notifier.send(&alert).await;
        Delivery {
            result,
            template_warning,
        }
    }
}
