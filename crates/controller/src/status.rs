//! Writing `Canary.status`: server-side apply on the status subresource, and only when something
//! changed, so a status write never feeds a reconcile loop by itself.

use flagger_api::status::Condition;
use flagger_api::{Canary, CanaryStatus};
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

/// Flagger's field manager name, so ownership stays put when flagger-rs replaces Flagger.
pub const FIELD_MANAGER: &str = "flagger";

/// What a status write did.
#[derive(Debug)]
pub enum Written {
    /// The status was already what the tick decided: nothing sent.
    Unchanged,
    /// Written; the API server's answer: the Canary as the write left it.
    Wrote(Box<Canary>),
}

pub async fn write(
    api: &Api<Canary>,
    canary: &Canary,
    status: &CanaryStatus,
) -> Result<Written, kube::Error> {
    if canary.status.as_ref() == Some(status) {
        return Ok(Written::Unchanged);
    }
    let body = serde_json::json!({
        "apiVersion": flagger_api::API_VERSION,
        "kind": "Canary",
        "status": status,
    });
    let mut written: Canary = api
        .patch_status(
            &canary.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    // Kept as the Canary until the watch brings it (see `own_writes`), where nothing reads them;
    // the watch's copies drop them too.
    written.metadata.managed_fields = None;
    Ok(Written::Wrote(Box::new(written)))
}

/// Sets (or replaces) a condition of `type_`, keeping `lastTransitionTime` when the status value
/// does not change. Returns whether anything changed.
pub fn set_condition(
    status: &mut CanaryStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c)
            if c.status == value && c.reason == reason && c.message.as_deref() == Some(message) =>
        {
            false
        }
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now);
            }
            c.status = value.into();
            c.reason = reason.into();
            c.message = Some(message.into());
            c.last_update_time = Some(now);
            true
        }
        None => {
            conditions.push(Condition {
                type_: type_.into(),
                status: value.into(),
                reason: reason.into(),
                message: Some(message.into()),
                last_update_time: Some(now),
                last_transition_time: Some(now),
            });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_change_only_when_their_content_does() {
        let t0 = Timestamp::from_second(100).unwrap();
        let t1 = Timestamp::from_second(200).unwrap();
        let mut status = CanaryStatus::default();
        assert!(set_condition(
            &mut status,
            "Valid",
            "True",
            "Valid",
            "ok",
            t0
        ));
        assert!(!set_condition(
            &mut status,
            "Valid",
            "True",
            "Valid",
            "ok",
            t1
        ));
        assert!(set_condition(
            &mut status,
            "Valid",
            "True",
            "Warnings",
            "w",
            t1
        ));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            c.last_transition_time,
            Some(t0),
            "same status value keeps the transition time"
        );
        assert!(set_condition(
            &mut status,
            "Valid",
            "False",
            "InvalidSpec",
            "bad",
            t1
        ));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(c.last_transition_time, Some(t1));
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
    }
}
