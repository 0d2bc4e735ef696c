//! Label and annotation copying rules shared by every generated object.

use std::collections::BTreeMap;

use crate::workload::selector::SelectorLabel;

pub type StringMap = BTreeMap<String, String>;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_FLAGGER: &str = "flagger";
pub const FLAGGER_ID: &str = "flagger-id";

/// Any key containing this belongs to Flux and is never copied: copying it would make Flux think
/// it manages the generated object and prune or revert it.
pub const FLUX_MARKER: &str = "toolkit.fluxcd.io";

/// Written on generated Services and routing objects so Flux does not revert the weights and
/// selectors the controller sets.
pub const FLUX_ANNOTATIONS: [(&str, &str); 2] = [
    ("kustomize.toolkit.fluxcd.io/reconcile", "disabled"),
    ("helm.toolkit.fluxcd.io/driftDetection", "disabled"),
];

/// Annotations that other controllers or kubectl maintain on the *target*. Carrying them onto a
/// server-side-applied copy would make the controller co-own them and fight the Deployment and
/// DaemonSet controllers on every apply (each write a watch event, each event another write).
const FOREIGN_ANNOTATION_PREFIXES: [&str; 2] = [
    "deployment.kubernetes.io/",
    "deprecated.daemonset.template.generation",
];
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub fn is_flux_key(key: &str) -> bool {
    key.contains(FLUX_MARKER)
}

/// Every entry except Flux's.
pub fn without_flux_keys(map: Option<&StringMap>) -> StringMap {
    map.into_iter()
        .flatten()
        .filter(|(k, _)| !is_flux_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Annotations of a target that may be copied onto a generated object: Flux keys and the
/// annotations kubectl and the workload controllers maintain are dropped.
pub fn copyable_annotations(map: Option<&StringMap>) -> StringMap {
    without_flux_keys(map)
        .into_iter()
        .filter(|(k, _)| {
            k != LAST_APPLIED && !FOREIGN_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .collect()
}

/// Flag `-include-label-prefix`: entries whose key starts with one of `prefixes` (`*` = all).
/// Empty prefixes are ignored: Go's `strings.HasPrefix(k, "")` made Flagger copy everything when
/// the flag was unset (fluxcd/flagger#1403), while its documented default is "none".
pub fn include_by_prefix(map: Option<&StringMap>, prefixes: &[String]) -> StringMap {
    let included = |k: &str| {
        prefixes
            .iter()
            .filter(|p| !p.is_empty())
            .any(|p| p == "*" || k.starts_with(p.as_str()))
    };
    without_flux_keys(map)
        .into_iter()
        .filter(|(k, _)| included(k))
        .collect()
}

/// Adds Flux's "hands off" annotations, overriding any user value for those keys.
pub fn with_flux_annotations(mut map: StringMap) -> StringMap {
    map.retain(|k, _| !is_flux_key(k));
    for (k, v) in FLUX_ANNOTATIONS {
        map.insert(k.to_string(), v.to_string());
    }
    map
}

/// Labels of primary objects and pods: the selector label points at the primary pods.
pub fn primary_labels(mut labels: StringMap, selector: &SelectorLabel) -> StringMap {
    labels.insert(selector.key.clone(), selector.primary_value());
    labels
}

/// Beyond Flagger: mark generated objects, unless the source already names
/// its manager (a copied `Helm` wins).
pub fn mark_managed_by(mut labels: StringMap, source: Option<&StringMap>) -> StringMap {
    if !source.is_some_and(|s| s.contains_key(MANAGED_BY)) {
        labels
            .entry(MANAGED_BY.to_string())
            .or_insert_with(|| MANAGED_BY_FLAGGER.to_string());
    }
    labels
}

/// `None` for an empty map, so applied objects carry no `labels: {}` noise.
pub fn non_empty(map: StringMap) -> Option<StringMap> {
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
pub(crate) fn map(entries: &[(&str, &str)]) -> StringMap {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> StringMap {
        map(&[
            ("app", "podinfo"),
            ("app.kubernetes.io/name", "podinfo"),
            ("app.kubernetes.io/managed-by", "Helm"),
            ("kustomize.toolkit.fluxcd.io/name", "apps"),
            ("team", "web"),
        ])
    }

    #[test]
    fn prefix_filter_includes_only_matching_keys() {
        let got = include_by_prefix(Some(&source()), &["app.kubernetes.io".into()]);
        assert_eq!(
            got,
            map(&[
                ("app.kubernetes.io/managed-by", "Helm"),
                ("app.kubernetes.io/name", "podinfo")
            ])
        );
    }

    #[test]
    fn prefix_star_includes_all_but_flux_keys() {
        let got = include_by_prefix(Some(&source()), &["*".into()]);
        assert!(!got.contains_key("kustomize.toolkit.fluxcd.io/name"));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn no_prefix_or_empty_prefix_includes_nothing() {
        assert!(include_by_prefix(Some(&source()), &[]).is_empty());
        assert!(include_by_prefix(Some(&source()), &["".into()]).is_empty());
        assert!(include_by_prefix(None, &["*".into()]).is_empty());
    }

    #[test]
    fn flux_annotations_replace_user_flux_keys() {
        let got = with_flux_annotations(map(&[
            ("kustomize.toolkit.fluxcd.io/reconcile", "enabled"),
            ("helm.toolkit.fluxcd.io/other", "x"),
            ("team", "web"),
        ]));
        assert_eq!(
            got,
            map(&[
                ("helm.toolkit.fluxcd.io/driftDetection", "disabled"),
                ("kustomize.toolkit.fluxcd.io/reconcile", "disabled"),
                ("team", "web"),
            ])
        );
    }

    #[test]
    fn copyable_annotations_drop_controller_and_kubectl_keys() {
        let got = copyable_annotations(Some(&map(&[
            ("deployment.kubernetes.io/revision", "3"),
            ("deprecated.daemonset.template.generation", "2"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ("kubectl.kubernetes.io/restartedAt", "2024-01-01T00:00:00Z"),
            ("fluxcd.io/automated", "true"),
            ("kustomize.toolkit.fluxcd.io/checksum", "x"),
        ])));
        assert_eq!(
            got,
            map(&[
                ("fluxcd.io/automated", "true"),
                ("kubectl.kubernetes.io/restartedAt", "2024-01-01T00:00:00Z"),
            ])
        );
    }

    #[test]
    fn primary_labels_rewrite_only_the_selector_label() {
        let selector = SelectorLabel {
            key: "app".into(),
            value: "podinfo".into(),
        };
        let got = primary_labels(map(&[("app", "podinfo"), ("version", "1")]), &selector);
        assert_eq!(got, map(&[("app", "podinfo-primary"), ("version", "1")]));
    }

    #[test]
    fn managed_by_added_only_when_the_source_has_none() {
        let plain = map(&[("app", "podinfo")]);
        assert_eq!(
            mark_managed_by(plain.clone(), Some(&plain)),
            map(&[("app", "podinfo"), (MANAGED_BY, "flagger")])
        );
        let helm = map(&[(MANAGED_BY, "Helm")]);
        assert_eq!(mark_managed_by(helm.clone(), Some(&helm)), helm);
        // The source's own manager wins even when the prefix filter did not copy it.
        assert_eq!(
            mark_managed_by(StringMap::new(), Some(&helm)),
            StringMap::new()
        );
    }
}
