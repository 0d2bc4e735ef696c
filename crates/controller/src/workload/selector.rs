//! Selector label resolution: which of the `-selector-labels` the target's pods are
//! selected by, and with what value.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::workload::WorkloadError;

pub const DEFAULT_SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];

/// `<label>: <value>` of the target's `spec.selector.matchLabels`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorLabel {
    pub key: String,
    pub value: String,
}

impl SelectorLabel {
    /// The value primary pods carry.
    pub fn primary_value(&self) -> String {
        format!("{}-primary", self.value)
    }
}

/// The first of `labels` present in `selector.matchLabels`. `kind` names the target in the error
/// ("deployment", "daemonset"), as Flagger's message does.
pub fn resolve(
    kind: &'static str,
    meta: &ObjectMeta,
    selector: &LabelSelector,
    labels: &[String],
) -> Result<SelectorLabel, WorkloadError> {
    let match_labels = selector.match_labels.as_ref();
    labels
        .iter()
        .find_map(|l| {
            match_labels.and_then(|m| m.get(l)).map(|v| SelectorLabel {
                key: l.clone(),
                value: v.clone(),
            })
        })
        .ok_or_else(|| WorkloadError::NoSelectorLabel {
            kind,
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            labels: labels.to_vec(),
        })
}

pub fn of_deployment(
    d: &k8s_openapi::api::apps::v1::Deployment,
    labels: &[String],
) -> Result<SelectorLabel, WorkloadError> {
    let empty = LabelSelector::default();
    let selector = d.spec.as_ref().map(|s| &s.selector).unwrap_or(&empty);
    resolve("deployment", &d.metadata, selector, labels)
}

pub fn of_daemonset(
    d: &k8s_openapi::api::apps::v1::DaemonSet,
    labels: &[String],
) -> Result<SelectorLabel, WorkloadError> {
    let empty = LabelSelector::default();
    let selector = d.spec.as_ref().map(|s| &s.selector).unwrap_or(&empty);
    resolve("daemonset", &d.metadata, selector, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Settings, fixtures};
    use serde_json::json;

    fn defaults() -> Vec<String> {
        Settings::default().selector_labels
    }

    #[test]
    fn first_configured_label_present_wins() {
        let d = fixtures::deployment_with(json!({"spec": {"selector": {"matchLabels": {
            "app": null, "app.kubernetes.io/name": "web", "name": "podinfo-name"
        }}}}));
        let got = of_deployment(&d, &defaults()).unwrap();
        assert_eq!(
            got,
            SelectorLabel {
                key: "name".into(),
                value: "podinfo-name".into()
            }
        );
    }

    #[test]
    fn default_app_label_of_podinfo() {
        let got = of_deployment(&fixtures::deployment(), &defaults()).unwrap();
        assert_eq!(
            got,
            SelectorLabel {
                key: "app".into(),
                value: "podinfo".into()
            }
        );
        assert_eq!(got.primary_value(), "podinfo-primary");
    }

    #[test]
    fn custom_flag_order_is_respected() {
        let d = fixtures::deployment_with(json!({"spec": {"selector": {"matchLabels": {
            "app.kubernetes.io/instance": "inst"
        }}}}));
        let labels = vec!["app.kubernetes.io/instance".to_string(), "app".to_string()];
        assert_eq!(
            of_deployment(&d, &labels).unwrap().key,
            "app.kubernetes.io/instance"
        );
    }

    #[test]
    fn missing_label_is_a_clear_error() {
        let d = fixtures::daemonset_with(json!({"spec": {"selector": {"matchLabels": null}}}));
        let err = of_daemonset(&d, &defaults()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "daemonset podinfo.test spec.selector.matchLabels must contain one of [app name app.kubernetes.io/name]"
        );
    }
}
