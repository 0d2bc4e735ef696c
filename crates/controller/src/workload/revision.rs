//! Revision hashes: an opaque digest of what a new version of the target
//! changes. Only equality matters, so the hash is taken over a canonical JSON form (keys sorted,
//! no whitespace) and is stable across processes and releases of this crate.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use flagger_api::status::PodOverridesStatus;

use crate::workload::labels::FLAGGER_ID;
use crate::workload::overrides;
use crate::workload::scaling::SCALE_TO_ZERO_KEY;

/// Marks hashes computed by flagger-rs, so hashes left in a status by Go Flagger are recognised
/// and adopted (see `adoption` for why they are not reproduced).
pub const REVISION_PREFIX: &str = "r1.";

pub fn is_own_format(hash: &str) -> bool {
    hash.starts_with(REVISION_PREFIX)
}

/// Deployment: `.spec.template`, with canary pod overrides reverted.
pub fn of_deployment(d: &Deployment, pod_overrides: Option<&PodOverridesStatus>) -> String {
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    of_template(&overrides::own_template(&template, pod_overrides))
}

/// DaemonSet: `.spec.template` without the scale-to-zero node selector (a nil selector counts as
/// `{}`), with canary pod overrides reverted: scaling the canary is never a new revision.
pub fn of_daemonset(d: &DaemonSet, pod_overrides: Option<&PodOverridesStatus>) -> String {
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    of_template(&without_scale_to_zero(overrides::own_template(
        &template,
        pod_overrides,
    )))
}

pub fn of_template(template: &PodTemplateSpec) -> String {
    hash(&normalized(template.clone()))
}

fn without_scale_to_zero(mut template: PodTemplateSpec) -> PodTemplateSpec {
    if let Some(ns) = template
        .spec
        .as_mut()
        .and_then(|s| s.node_selector.as_mut())
    {
        ns.remove(SCALE_TO_ZERO_KEY);
    }
    template
}

/// Empty and absent node selectors mean the same to the scheduler; treating them alike keeps a
/// selector emptied by a restore from looking like a change.
fn normalized(mut template: PodTemplateSpec) -> PodTemplateSpec {
    if let Some(spec) = template.spec.as_mut()
        && spec.node_selector.as_ref().is_some_and(|m| m.is_empty())
    {
        spec.node_selector = None;
    }
    template
}

pub(crate) fn hash(v: &impl Serialize) -> String {
    let value = serde_json::to_value(v).unwrap_or(Value::Null);
    let digest = Sha256::digest(canonical_json(&value).as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{REVISION_PREFIX}{hex}")
}

/// JSON with object keys sorted at every level and no whitespace, independent of serde_json's
/// `preserve_order` feature (which another crate in the build may switch on).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, v);
    out
}

fn write_canonical(out: &mut String, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(out, &m[k]);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        leaf => out.push_str(&leaf.to_string()),
    }
}

/// Adoption: whether the primary template a promotion of the current target would produce equals
/// the live primary's, ignoring the `flagger-id` nonce (a fresh one per promotion).
pub fn same_primary_template(computed: &PodTemplateSpec, live: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = normalized(t.clone());
        if let Some(meta) = t.metadata.as_mut()
            && let Some(a) = meta.annotations.as_mut()
        {
            a.remove(FLAGGER_ID);
            if a.is_empty() {
                meta.annotations = None;
            }
        }
        canonical_json(&serde_json::to_value(&t).unwrap_or(Value::Null))
    };
    strip(computed) == strip(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"d": [true, null, "x"], "c": 2.5}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":2.5,"d":[true,null,"x"]},"b":1}"#
        );
    }

    #[test]
    fn hash_is_prefixed_stable_and_template_only() {
        let d = fixtures::deployment();
        let h = of_deployment(&d, None);
        assert!(is_own_format(&h));
        assert_eq!(h.len(), REVISION_PREFIX.len() + 32);
        assert_eq!(h, of_deployment(&fixtures::deployment(), None));
        // Scaling and object metadata are not revisions.
        let scaled = fixtures::deployment_with(
            json!({"spec": {"replicas": 0}, "metadata": {"labels": {"x": "y"}}}),
        );
        assert_eq!(of_deployment(&scaled, None), h);
        assert!(!is_own_format("{Spec:{Containers:...}}"));
    }

    #[test]
    fn a_template_change_is_a_new_revision() {
        let d = fixtures::deployment();
        let bumped = fixtures::deployment_with(
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}}),
        );
        assert_ne!(of_deployment(&bumped, None), of_deployment(&d, None));
    }

    #[test]
    fn daemonset_scale_to_zero_selector_is_not_a_revision() {
        let ds = fixtures::daemonset();
        let h = of_daemonset(&ds, None);
        let zero = fixtures::daemonset_with(
            json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_KEY: "true"}}}}}),
        );
        assert_eq!(of_daemonset(&zero, None), h);
        let empty =
            fixtures::daemonset_with(json!({"spec": {"template": {"spec": {"nodeSelector": {}}}}}));
        assert_eq!(of_daemonset(&empty, None), h);
        let other = fixtures::daemonset_with(
            json!({"spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}}}),
        );
        assert_ne!(of_daemonset(&other, None), h);
    }

    #[test]
    fn applied_pod_overrides_are_not_a_revision() {
        let d = fixtures::deployment();
        let own = of_deployment(&d, None);
        let overridden = fixtures::deployment_with(json!({"spec": {"template": {"spec": {
            "nodeSelector": {"node-type": "spot"},
            "tolerations": [{"key": "spot", "operator": "Exists"}]
        }}}}));
        let status: PodOverridesStatus =
            serde_json::from_value(json!({"nodeSelector": {}, "tolerations": [], "applied": true}))
                .unwrap();
        assert_eq!(of_deployment(&overridden, Some(&status)), own);
        // Without the status the overrides are just a different template.
        assert_ne!(of_deployment(&overridden, None), own);
    }

    #[test]
    fn primary_templates_compare_without_the_flagger_id() {
        let t = fixtures::deployment().spec.unwrap().template;
        let mut a = t.clone();
        let mut b = t.clone();
        a.metadata
            .as_mut()
            .unwrap()
            .annotations
            .as_mut()
            .unwrap()
            .insert(FLAGGER_ID.into(), "1".into());
        b.metadata
            .as_mut()
            .unwrap()
            .annotations
            .as_mut()
            .unwrap()
            .insert(FLAGGER_ID.into(), "2".into());
        assert!(same_primary_template(&a, &b));
        b.spec.as_mut().unwrap().containers[0].image = Some("podinfo:6.0.1".into());
        assert!(!same_primary_template(&a, &b));
    }
}
