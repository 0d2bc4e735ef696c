//! The primary workload `<target>-primary`: a copy of the target Deployment or
//! DaemonSet that serves production traffic between runs.

use std::collections::BTreeSet;

use flagger_api::Canary;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;

use crate::workload::labels::{
    FLAGGER_ID, StringMap, copyable_annotations, include_by_prefix, mark_managed_by, non_empty,
    primary_labels, without_flux_keys,
};
use crate::workload::scaling::SCALE_TO_ZERO_KEY;
use crate::workload::selector::{self, SelectorLabel};
use crate::workload::{Settings, WorkloadError, configs, overrides, owner_reference};

/// Which write the primary is built for: object annotations and replicas differ between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryWrite {
    /// First creation of the primary.
    Create,
    /// Promotion (or skip-analysis): the target's current spec copied over.
    Promote,
}

pub struct PrimaryInputs<'a> {
    pub canary: &'a Canary,
    pub settings: &'a Settings,
    /// Keys (`configmap/<name>`, `secret/<name>`) of the tracked configs, whose references the
    /// primary template points at the `-primary` copies.
    pub tracked_configs: &'a BTreeSet<String>,
    /// A fresh UUID v4 for the `flagger-id` template annotation: a new value forces the primary to
    /// roll even when only a tracked config changed. Given by the caller so this stays pure.
    pub flagger_id: &'a str,
    pub write: PrimaryWrite,
}

/// `<target>-primary` Deployment to server-side apply.
pub fn primary_deployment(
    target: &Deployment,
    inputs: &PrimaryInputs,
) -> Result<Deployment, WorkloadError> {
    let selector = selector::of_deployment(target, &inputs.settings.selector_labels)?;
    let spec = target.spec.clone().unwrap_or_default();
    let template = primary_template(&spec.template, &target.name_any(), &selector, inputs, false);
    Ok(Deployment {
        metadata: primary_meta(&target.metadata, &selector, inputs)?,
        spec: Some(DeploymentSpec {
            replicas: primary_replicas(spec.replicas, inputs),
            progress_deadline_seconds: spec.progress_deadline_seconds,
            min_ready_seconds: spec.min_ready_seconds,
            revision_history_limit: spec.revision_history_limit,
            strategy: spec.strategy.clone(),
            selector: primary_selector(&selector),
            template,
            paused: None,
        }),
        status: None,
    })
}

/// `<target>-primary` DaemonSet to server-side apply. The target must use the RollingUpdate
/// strategy: with OnDelete a promotion would never reach the primary's pods.
pub fn primary_daemonset(
    target: &DaemonSet,
    inputs: &PrimaryInputs,
) -> Result<DaemonSet, WorkloadError> {
    let selector = selector::of_daemonset(target, &inputs.settings.selector_labels)?;
    let spec = target.spec.clone().unwrap_or_default();
    if let Some(strategy) = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .filter(|t| !t.is_empty() && *t != "RollingUpdate")
    {
        return Err(WorkloadError::UnsupportedUpdateStrategy {
            name: target.name_any(),
            namespace: target.namespace().unwrap_or_default(),
            strategy: strategy.to_string(),
        });
    }
    let template = primary_template(&spec.template, &target.name_any(), &selector, inputs, true);
    Ok(DaemonSet {
        metadata: primary_meta(&target.metadata, &selector, inputs)?,
        spec: Some(DaemonSetSpec {
            min_ready_seconds: spec.min_ready_seconds,
            revision_history_limit: spec.revision_history_limit,
            update_strategy: spec.update_strategy.clone(),
            selector: primary_selector(&selector),
            template,
        }),
        status: None,
    })
}

fn primary_selector(selector: &SelectorLabel) -> LabelSelector {
    LabelSelector {
        match_labels: Some([(selector.key.clone(), selector.primary_value())].into()),
        match_expressions: None,
    }
}

/// At creation: the target's count if > 0, else 1. At promotion: the target's count, never 0 (a
/// target caught at zero must not take production down with it). With an autoscaler: left out of
/// the apply altogether, at creation too. Server-side apply removes a field its manager stops
/// sending, so a `replicas` applied once and then omitted would be reset to 1 under the HPA's feet;
/// never owning it lets the HPA (which enforces its minimum even without metrics) drive it alone.
fn primary_replicas(target: Option<i32>, inputs: &PrimaryInputs) -> Option<i32> {
    if inputs.canary.spec.autoscaler_ref.is_some() {
        return None;
    }
    Some(target.filter(|r| *r > 0).unwrap_or(1))
}

fn primary_meta(
    target: &ObjectMeta,
    selector: &SelectorLabel,
    inputs: &PrimaryInputs,
) -> Result<ObjectMeta, WorkloadError> {
    let prefixes = &inputs.settings.include_label_prefixes;
    let labels = primary_labels(
        include_by_prefix(target.labels.as_ref(), prefixes),
        selector,
    );
    let labels = mark_managed_by(labels, target.labels.as_ref());
    let annotations = match inputs.write {
        PrimaryWrite::Create => copyable_annotations(target.annotations.as_ref()),
        PrimaryWrite::Promote => {
            let copyable = copyable_annotations(target.annotations.as_ref());
            include_by_prefix(Some(&copyable), prefixes)
        }
    };
    Ok(ObjectMeta {
        name: Some(inputs.canary.spec.primary_workload_name()),
        namespace: target
            .namespace
            .clone()
            .or_else(|| inputs.canary.namespace()),
        labels: Some(labels),
        annotations: non_empty(annotations),
        owner_references: Some(vec![owner_reference(inputs.canary)?]),
        ..ObjectMeta::default()
    })
}

/// The primary pod template: the target's own template (canary pod overrides reverted), labels
/// pointing at the primary, a fresh `flagger-id`, tracked configs renamed, and affinity/spread
/// selectors that name the target's pods rewritten to name the primary's.
pub fn primary_template(
    template: &PodTemplateSpec,
    target_name: &str,
    selector: &SelectorLabel,
    inputs: &PrimaryInputs,
    daemonset: bool,
) -> PodTemplateSpec {
    let status = inputs
        .canary
        .status
        .as_ref()
        .and_then(|s| s.pod_overrides.as_ref());
    let own = overrides::own_template(template, status);
    let meta = own.metadata.unwrap_or_default();

    let labels = primary_labels(without_flux_keys(meta.labels.as_ref()), selector);
    let mut annotations: StringMap = without_flux_keys(meta.annotations.as_ref());
    annotations.insert(FLAGGER_ID.to_string(), inputs.flagger_id.to_string());

    let mut spec = own.spec.unwrap_or_default();
    configs::rename_to_primary(&mut spec, inputs.tracked_configs);
    rewrite_pod_selectors(&mut spec, target_name, &inputs.settings.selector_labels);
    if daemonset && let Some(ns) = spec.node_selector.as_mut() {
        ns.remove(SCALE_TO_ZERO_KEY);
        if ns.is_empty() {
            spec.node_selector = None;
        }
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}

/// Pod (anti-)affinity and topology spread constraints that select the target's pods by a
/// selector label equal to the target's name would, copied verbatim, spread the primary against
/// the canary instead of against itself.
fn rewrite_pod_selectors(spec: &mut PodSpec, target_name: &str, selector_labels: &[String]) {
    let primary = format!("{target_name}-primary");
    let rewrite = |sel: &mut Option<LabelSelector>| {
        let Some(sel) = sel.as_mut() else {
            return;
        };
        for (k, v) in sel.match_labels.iter_mut().flatten() {
            if selector_labels.contains(k) && v == target_name {
                v.clone_from(&primary);
            }
        }
        for expr in sel.match_expressions.iter_mut().flatten() {
            if selector_labels.contains(&expr.key) {
                for v in expr
                    .values
                    .iter_mut()
                    .flatten()
                    .filter(|v| *v == target_name)
                {
                    v.clone_from(&primary);
                }
            }
        }
    };
    for c in spec.topology_spread_constraints.iter_mut().flatten() {
        rewrite(&mut c.label_selector);
    }
    let Some(affinity) = spec.affinity.as_mut() else {
        return;
    };
    // PodAffinity and PodAntiAffinity are distinct types with the same two term lists.
    let term_lists = [
        affinity.pod_affinity.as_mut().map(|a| {
            (
                &mut a.required_during_scheduling_ignored_during_execution,
                &mut a.preferred_during_scheduling_ignored_during_execution,
            )
        }),
        affinity.pod_anti_affinity.as_mut().map(|a| {
            (
                &mut a.required_during_scheduling_ignored_during_execution,
                &mut a.preferred_during_scheduling_ignored_during_execution,
            )
        }),
    ];
    for (required, preferred) in term_lists.into_iter().flatten() {
        required
            .iter_mut()
            .flatten()
            .for_each(|t| rewrite(&mut t.label_selector));
        preferred
            .iter_mut()
            .flatten()
            .for_each(|w| rewrite(&mut w.pod_affinity_term.label_selector));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures::{self, FLAGGER_ID as ID};
    use serde_json::{Value, json};

    fn tracked() -> BTreeSet<String> {
        [
            "configmap/podinfo-config-env",
            "configmap/podinfo-config-vol",
            "secret/podinfo-secret-all",
        ]
        .map(String::from)
        .into()
    }

    fn build(
        target: &Deployment,
        canary: &Canary,
        settings: &Settings,
        write: PrimaryWrite,
    ) -> Value {
        let tracked = tracked();
        let inputs = PrimaryInputs {
            canary,
            settings,
            tracked_configs: &tracked,
            flagger_id: ID,
            write,
        };
        serde_json::to_value(primary_deployment(target, &inputs).unwrap()).unwrap()
    }

    fn owner() -> Value {
        json!([{
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
            "uid": fixtures::CANARY_UID, "controller": true, "blockOwnerDeletion": true
        }])
    }

    #[test]
    fn primary_deployment_snapshot() {
        let got = build(
            &fixtures::deployment(),
            &fixtures::canary(),
            &Settings::default(),
            PrimaryWrite::Create,
        );
        let mut expected_template = fixtures::pod_template_json();
        fixtures::merge(
            &mut expected_template,
            json!({
                "metadata": {
                    "labels": {"app": "podinfo-primary", "version": "6.0.0"},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9797", "flagger-id": ID, "kustomize.toolkit.fluxcd.io/checksum": null}
                }
            }),
        );
        let spec = &mut expected_template["spec"];
        spec["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"]["name"] =
            json!("podinfo-config-env-primary");
        spec["containers"][0]["envFrom"][1]["secretRef"]["name"] =
            json!("podinfo-secret-all-primary");
        spec["volumes"][0]["configMap"]["name"] = json!("podinfo-config-vol-primary");
        spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
            ["podAffinityTerm"]["labelSelector"]["matchExpressions"][0]["values"] =
            json!(["podinfo-primary"]);
        spec["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app"] =
            json!("podinfo-primary");
        assert_eq!(
            got,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "podinfo-primary",
                    "namespace": "test",
                    "labels": {"app": "podinfo-primary", "app.kubernetes.io/managed-by": "flagger"},
                    "annotations": {"owner": "web-team"},
                    "ownerReferences": owner()
                },
                "spec": {
                    "replicas": 2,
                    "minReadySeconds": 3,
                    "revisionHistoryLimit": 5,
                    "progressDeadlineSeconds": 60,
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                    "selector": {"matchLabels": {"app": "podinfo-primary"}},
                    "template": expected_template
                }
            })
        );
    }

    #[test]
    fn labels_follow_the_include_prefix_flag_and_helm_keeps_managed_by() {
        let target = fixtures::deployment_with(
            json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"}}}),
        );
        let settings = Settings {
            include_label_prefixes: vec!["app.kubernetes.io".into(), "team".into()],
            ..Settings::default()
        };
        let got = build(
            &target,
            &fixtures::canary(),
            &settings,
            PrimaryWrite::Create,
        );
        assert_eq!(
            got["metadata"]["labels"],
            json!({"app": "podinfo-primary", "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "demo", "team": "web"})
        );
    }

    #[test]
    fn promotion_filters_annotations_by_prefix() {
        let settings = Settings {
            include_label_prefixes: vec!["own".into(), "deployment.kubernetes.io".into()],
            ..Settings::default()
        };
        let got = build(
            &fixtures::deployment(),
            &fixtures::canary(),
            &settings,
            PrimaryWrite::Promote,
        );
        assert_eq!(got["metadata"]["annotations"], json!({"owner": "web-team"}));
        let none = build(
            &fixtures::deployment(),
            &fixtures::canary(),
            &Settings::default(),
            PrimaryWrite::Promote,
        );
        assert_eq!(none["metadata"].get("annotations"), None);
    }

    #[test]
    fn replicas_rules() {
        let canary = fixtures::canary();
        let zero = fixtures::deployment_with(json!({"spec": {"replicas": 0}}));
        assert_eq!(
            build(&zero, &canary, &Settings::default(), PrimaryWrite::Create)["spec"]["replicas"],
            1
        );
        assert_eq!(
            build(&zero, &canary, &Settings::default(), PrimaryWrite::Promote)["spec"]["replicas"],
            1
        );
        let five = fixtures::deployment_with(json!({"spec": {"replicas": 5}}));
        assert_eq!(
            build(&five, &canary, &Settings::default(), PrimaryWrite::Promote)["spec"]["replicas"],
            5
        );

        let hpa = fixtures::canary_with(
            json!({"autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"}}),
        );
        for write in [PrimaryWrite::Create, PrimaryWrite::Promote] {
            assert_eq!(
                build(&five, &hpa, &Settings::default(), write)["spec"].get("replicas"),
                None
            );
        }
    }

    #[test]
    fn a_different_selector_label_value_is_suffixed() {
        let target = fixtures::deployment_with(json!({
            "spec": {"selector": {"matchLabels": {"app": null, "app.kubernetes.io/name": "web"}},
                     "template": {"metadata": {"labels": {"app": null, "app.kubernetes.io/name": "web"}}}}
        }));
        let got = build(
            &target,
            &fixtures::canary(),
            &Settings::default(),
            PrimaryWrite::Create,
        );
        assert_eq!(
            got["spec"]["selector"],
            json!({"matchLabels": {"app.kubernetes.io/name": "web-primary"}})
        );
        assert_eq!(
            got["spec"]["template"]["metadata"]["labels"],
            json!({"app.kubernetes.io/name": "web-primary", "version": "6.0.0"})
        );
        // Affinity selectors naming the target (`app: podinfo`) are rewritten only for selector-label keys.
        assert_eq!(
            got["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]
                ["app"],
            "podinfo-primary"
        );
    }

    #[test]
    fn affinity_values_not_naming_the_target_are_kept() {
        let target = fixtures::deployment_with(json!({"spec": {"template": {"spec": {
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "other", "tier": "podinfo"}}}],
            "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "host", "labelSelector": {"matchExpressions": [{"key": "name", "operator": "In", "values": ["cache", "podinfo"]}]}}
            ]}}
        }}}}));
        let got = build(
            &target,
            &fixtures::canary(),
            &Settings::default(),
            PrimaryWrite::Create,
        );
        let spec = &got["spec"]["template"]["spec"];
        assert_eq!(
            spec["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
            json!({"app": "other", "tier": "podinfo"})
        );
        assert_eq!(
            spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["labelSelector"]
                ["matchExpressions"][0]["values"],
            json!(["cache", "podinfo-primary"])
        );
    }

    #[test]
    fn primary_never_gets_canary_pod_overrides() {
        let mut canary = fixtures::canary();
        canary.status = Some(
            serde_json::from_value(json!({"podOverrides": {"nodeSelector": {"node-type": "on-demand"}, "tolerations": [], "applied": true}}))
                .unwrap(),
        );
        let target = fixtures::deployment_with(json!({"spec": {"template": {"spec": {
            "nodeSelector": {"node-type": "spot"}, "tolerations": [{"key": "spot", "operator": "Exists"}]
        }}}}));
        let got = build(
            &target,
            &canary,
            &Settings::default(),
            PrimaryWrite::Promote,
        );
        assert_eq!(
            got["spec"]["template"]["spec"]["nodeSelector"],
            json!({"node-type": "on-demand"})
        );
        assert_eq!(got["spec"]["template"]["spec"].get("tolerations"), None);
    }

    #[test]
    fn missing_selector_label_is_an_error() {
        let target = fixtures::deployment_with(
            json!({"spec": {"selector": {"matchLabels": {"app": null, "tier": "web"}}}}),
        );
        let tracked = tracked();
        let settings = Settings::default();
        let canary = fixtures::canary();
        let inputs = PrimaryInputs {
            canary: &canary,
            settings: &settings,
            tracked_configs: &tracked,
            flagger_id: ID,
            write: PrimaryWrite::Create,
        };
        assert!(matches!(
            primary_deployment(&target, &inputs),
            Err(WorkloadError::NoSelectorLabel { .. })
        ));
    }

    #[test]
    fn primary_daemonset_snapshot() {
        let target = fixtures::daemonset_with(
            json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_KEY: "true"}}}}}),
        );
        let canary = fixtures::canary_with(json!({"targetRef": {"kind": "DaemonSet"}}));
        let settings = Settings::default();
        let tracked = BTreeSet::new();
        let inputs = PrimaryInputs {
            canary: &canary,
            settings: &settings,
            tracked_configs: &tracked,
            flagger_id: ID,
            write: PrimaryWrite::Create,
        };
        let got = serde_json::to_value(primary_daemonset(&target, &inputs).unwrap()).unwrap();
        assert_eq!(got["metadata"]["name"], "podinfo-primary");
        // The DaemonSet controller's own annotation is not copied.
        assert_eq!(got["metadata"].get("annotations"), None);
        assert_eq!(
            json!({"minReadySeconds": got["spec"]["minReadySeconds"], "revisionHistoryLimit": got["spec"]["revisionHistoryLimit"],
                   "updateStrategy": got["spec"]["updateStrategy"], "selector": got["spec"]["selector"]}),
            json!({"minReadySeconds": 3, "revisionHistoryLimit": 10,
                   "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                   "selector": {"matchLabels": {"app": "podinfo-primary"}}})
        );
        assert_eq!(got["spec"]["template"]["spec"].get("nodeSelector"), None);
        assert_eq!(
            got["spec"]["template"]["metadata"]["annotations"]["flagger-id"],
            ID
        );
    }

    #[test]
    fn daemonset_on_delete_strategy_is_rejected() {
        let target = fixtures::daemonset_with(
            json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}),
        );
        let canary = fixtures::canary();
        let settings = Settings::default();
        let tracked = BTreeSet::new();
        let inputs = PrimaryInputs {
            canary: &canary,
            settings: &settings,
            tracked_configs: &tracked,
            flagger_id: ID,
            write: PrimaryWrite::Create,
        };
        assert_eq!(
            primary_daemonset(&target, &inputs).unwrap_err().to_string(),
            "daemonset podinfo.test must have RollingUpdate strategy but have OnDelete"
        );
    }
}
