//! AlertProvider.

use super::canary::object_meta;
use super::fields;
use super::problems::Problems;
use super::{Problem, template};
use crate::alert_provider::{ALERT_PROVIDER_TYPES, AlertProvider};

pub fn alert_provider(a: &AlertProvider) -> Vec<Problem> {
    let mut p = Problems::default();
    object_meta(&mut p, &a.metadata);
    let s = &a.spec;
    if s.type_.is_empty() {
        p.schema("spec.type", "required");
    } else if !ALERT_PROVIDER_TYPES.contains(&s.type_.as_str()) {
        p.schema(
            "spec.type",
            format!(
                "unknown alert provider type {:?} (one of {})",
                s.type_,
                ALERT_PROVIDER_TYPES.join(", ")
            ),
        );
    }
    // The schema's oneOf is on key presence: an empty address still counts as set.
    match (s.address.as_deref(), s.secret_ref.as_ref()) {
        (None, None) => p.schema("spec", "one of address or secretRef is required"),
        (Some(_), Some(_)) => p.schema(
            "spec.secretRef",
            "address and secretRef cannot both be set: the schema admits exactly one of them (put the address in the Secret's address key)",
        ),
        (Some(addr), None) => {
            if let Err(e) = fields::http_url(addr) {
                p.invalid("spec.address", e);
            }
        }
        (None, Some(secret)) => {
            if secret.name.is_empty() {
                p.schema("spec.secretRef.name", "required");
            }
        }
    }
    if let Some(proxy) = s.proxy.as_deref()
        && let Err(e) = fields::http_url(proxy)
    {
        p.invalid("spec.proxy", e);
    }
    if let Some(t) = s.message_template.as_deref()
        && let Err(e) = template::check_message_template(t)
    {
        p.invalid("spec.messageTemplate", e);
    }
    p.into_vec()
}
