//! Google Chat: a card with one text section for the message and one per field.

use serde::Serialize;

use super::http::{DeliveryOptions, Transport};
use super::provider::ResolvedProvider;
use super::secret::SecretUrl;
use super::{Alert, Notifier, NotifyError, SendFuture, encode};

#[derive(Serialize)]
struct Payload {
    cards: [Card; 1],
}

#[derive(Serialize)]
struct Card {
    header: Header,
    sections: Vec<Section>,
}

#[derive(Serialize)]
struct Header {
    title: &'static str,
    subtitle: String,
    #[serde(rename = "imageUrl")]
    image_url: &'static str,
}

#[derive(Serialize)]
struct Section {
    widgets: [Widget; 1],
}

#[derive(Serialize)]
struct Widget {
    #[serde(rename = "textParagraph")]
    text_paragraph: Text,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

fn section(text: String) -> Section {
    Section {
        widgets: [Widget {
            text_paragraph: Text { text },
        }],
    }
}

fn payload(alert: &Alert) -> Payload {
    let mut sections = Vec::with_capacity(alert.fields.len() + 1);
    sections.push(section(format!(
        "<font color=#848484><strong>{}</strong></font>",
        alert.message
    )));
    for f in &alert.fields {
        sections.push(section(format!(
            "{}<br><font color=#848484><strong>{}</strong></font>",
            f.name, f.value
        )));
    }
    Payload {
        cards: [Card {
            header: Header {
                title: "Flagger",
                subtitle: alert.key(),
                image_url: "https://flagger.app/favicon.png",
            },
            sections,
        }],
    }
}

#[derive(Debug)]
pub struct GChat {
    url: SecretUrl,
    transport: Transport,
}

impl GChat {
    pub fn new(p: &ResolvedProvider, options: DeliveryOptions) -> Result<GChat, NotifyError> {
        Ok(GChat {
            url: p.address.clone(),
            transport: Transport::new(p.proxy.as_ref(), options, p.address.secret_parts())?,
        })
    }

    async fn post(&self, alert: &Alert) -> Result<(), NotifyError> {
        self.transport
            .post(&self.url, encode(&payload(alert))?, None)
            .await
            .map(drop)
    }
}

impl Notifier for GChat {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(self.post(alert))
    }
}
