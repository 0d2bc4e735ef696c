//! The manual-request annotations: a request the controller would refuse is flagged before it is
//! written. Warnings, not errors: a mistyped request must never stop the rollout it is about.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::problems::{Problems, child};
use super::reason;
use crate::request::{REQUEST, REQUEST_ID, RequestAction};

pub(crate) fn check(p: &mut Problems, meta: &ObjectMeta) {
    let Some(annotations) = meta.annotations.as_ref() else {
        return;
    };
    let Some(value) = annotations.get(REQUEST) else {
        return;
    };
    let path = child("metadata.annotations", REQUEST);
    if let Err(e) = value.parse::<RequestAction>() {
        p.warn(reason::UNKNOWN_REQUEST, path.clone(), e.to_string());
    }
    if annotations.get(REQUEST_ID).is_none_or(|id| id.is_empty()) {
        p.warn(
            reason::UNKNOWN_REQUEST,
            path,
            format!("no {REQUEST_ID} annotation: the controller acts only on a request with an id"),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn problems(annotations: &[(&str, &str)]) -> Vec<String> {
        let meta = ObjectMeta {
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        };
        let mut p = Problems::default();
        check(&mut p, &meta);
        p.into_vec().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn unknown_requests_and_requests_without_an_id_are_flagged() {
        assert!(problems(&[]).is_empty());
        assert!(problems(&[(REQUEST, "promote"), (REQUEST_ID, "1")]).is_empty());
        assert_eq!(
            problems(&[(REQUEST, "promot"), (REQUEST_ID, "1")]),
            [
                "metadata.annotations[\"flagger-rs.dev/request\"]: warning: unknown request \"promot\": expected one of promote, abort, pause, resume, retry"
            ]
        );
        assert_eq!(
            problems(&[(REQUEST, "abort")]),
            [
                "metadata.annotations[\"flagger-rs.dev/request\"]: warning: no flagger-rs.dev/request-id annotation: the controller acts only on a request with an id"
            ]
        );
    }
}
