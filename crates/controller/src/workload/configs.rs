//! Tracked ConfigMaps and Secrets: which configs a pod template uses, which
//! of them are tracked, their `-primary` copies and the template rewrite that points the primary
//! at those copies.

use std::collections::{BTreeMap, BTreeSet};

use flagger_api::Canary;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::workload::labels::{copyable_annotations, include_by_prefix, non_empty};
use crate::workload::{Settings, WorkloadError, checksum, namespace_of, owner_reference};

pub const CONFIG_TRACKING_ANNOTATION: &str = "flagger.app/config-tracking";

/// Secret types Flagger tracks; registry credentials and service-account tokens are left alone
/// because their consumers are not pods' volumes or env.
pub const TRACKED_SECRET_TYPES: [&str; 4] = [
    "Opaque",
    "kubernetes.io/basic-auth",
    "kubernetes.io/ssh-auth",
    "kubernetes.io/tls",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    /// The prefix of `status.trackedConfigs` keys.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "configmap",
            ConfigKind::Secret => "secret",
        }
    }
}

/// A config the pod template refers to. `optional` holds only when every reference to it is
/// optional: one mandatory reference makes a missing object an error.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigRef {
    pub kind: ConfigKind,
    pub name: String,
    pub optional: bool,
}

impl ConfigRef {
    /// `configmap/<name>` or `secret/<name>`.
    pub fn key(&self) -> String {
        key(self.kind, &self.name)
    }
}

pub fn key(kind: ConfigKind, name: &str) -> String {
    format!("{}/{}", kind.as_str(), name)
}

/// Visits every ConfigMap/Secret name in volumes, projected volumes, `env[].valueFrom` and
/// `envFrom` of containers and init containers, with the reference's `optional` flag. Discovery
/// and renaming share it so they can never disagree on what counts as a reference.
fn visit_refs(spec: &mut PodSpec, f: &mut dyn FnMut(ConfigKind, &mut String, bool)) {
    for v in spec.volumes.iter_mut().flatten() {
        if let Some(cm) = v.config_map.as_mut() {
            f(
                ConfigKind::ConfigMap,
                &mut cm.name,
                cm.optional.unwrap_or(false),
            );
        }
        if let Some(s) = v.secret.as_mut()
            && let Some(name) = s.secret_name.as_mut()
        {
            f(ConfigKind::Secret, name, s.optional.unwrap_or(false));
        }
        for source in v
            .projected
            .iter_mut()
            .flat_map(|p| p.sources.iter_mut().flatten())
        {
            if let Some(cm) = source.config_map.as_mut() {
                f(
                    ConfigKind::ConfigMap,
                    &mut cm.name,
                    cm.optional.unwrap_or(false),
                );
            }
            if let Some(s) = source.secret.as_mut() {
                f(ConfigKind::Secret, &mut s.name, s.optional.unwrap_or(false));
            }
        }
    }
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        visit_container(c, f);
    }
}

fn visit_container(c: &mut Container, f: &mut dyn FnMut(ConfigKind, &mut String, bool)) {
    for env in c.env.iter_mut().flatten() {
        if let Some(from) = env.value_from.as_mut() {
            if let Some(r) = from.config_map_key_ref.as_mut() {
                f(
                    ConfigKind::ConfigMap,
                    &mut r.name,
                    r.optional.unwrap_or(false),
                );
            } else if let Some(r) = from.secret_key_ref.as_mut() {
                f(ConfigKind::Secret, &mut r.name, r.optional.unwrap_or(false));
            }
        }
    }
    for from in c.env_from.iter_mut().flatten() {
        if let Some(r) = from.config_map_ref.as_mut() {
            f(
                ConfigKind::ConfigMap,
                &mut r.name,
                r.optional.unwrap_or(false),
            );
        } else if let Some(r) = from.secret_ref.as_mut() {
            f(ConfigKind::Secret, &mut r.name, r.optional.unwrap_or(false));
        }
    }
}

/// The configs a pod template refers to, sorted by kind and name, each once.
pub fn referenced(spec: &PodSpec) -> Vec<ConfigRef> {
    let mut found: BTreeMap<(ConfigKind, String), bool> = BTreeMap::new();
    // The visitor needs `&mut`; walking a scratch copy keeps this function's input untouched.
    let mut scratch = spec.clone();
    visit_refs(&mut scratch, &mut |kind, name, optional| {
        if name.is_empty() {
            return;
        }
        let all_optional = found.entry((kind, name.clone())).or_insert(true);
        *all_optional &= optional;
    });
    found
        .into_iter()
        .map(|((kind, name), optional)| ConfigRef {
            kind,
            name,
            optional,
        })
        .collect()
}

/// `flagger.app/config-tracking: disable…` opts an object out of tracking and copying.
pub fn tracking_disabled(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_TRACKING_ANNOTATION))
        .is_some_and(|v| v.starts_with("disable"))
}

/// The tracked configs of a target, as read from the cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackedConfigs {
    pub configmaps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
}

impl TrackedConfigs {
    /// Picks the tracked configs among `refs`. `configmaps`/`secrets` hold the objects the shell
    /// found, by name; a mandatory reference to a missing object is an error (the tick ends with a
    /// Warning event), an optional one is skipped.
    pub fn resolve(
        canary: &Canary,
        refs: &[ConfigRef],
        configmaps: &BTreeMap<String, ConfigMap>,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<TrackedConfigs, WorkloadError> {
        let mut tracked = TrackedConfigs::default();
        let missing = |r: &ConfigRef| WorkloadError::ConfigNotFound {
            kind: r.kind.as_str(),
            name: r.name.clone(),
            namespace: namespace_of(canary),
        };
        for r in refs {
            match r.kind {
                ConfigKind::ConfigMap => match configmaps.get(&r.name) {
                    Some(cm) if !tracking_disabled(&cm.metadata) => {
                        tracked.configmaps.insert(r.name.clone(), cm.clone());
                    }
                    Some(_) => {}
                    None if r.optional => {}
                    None => return Err(missing(r)),
                },
                ConfigKind::Secret => match secrets.get(&r.name) {
                    Some(s) if !tracking_disabled(&s.metadata) && is_tracked_secret_type(s) => {
                        tracked.secrets.insert(r.name.clone(), s.clone());
                    }
                    Some(_) => {}
                    None if r.optional => {}
                    None => return Err(missing(r)),
                },
            }
        }
        Ok(tracked)
    }

    pub fn is_empty(&self) -> bool {
        self.configmaps.is_empty() && self.secrets.is_empty()
    }

    /// `status.trackedConfigs`: key → checksum.
    pub fn checksums(&self) -> BTreeMap<String, String> {
        let cms = self
            .configmaps
            .iter()
            .map(|(n, cm)| (key(ConfigKind::ConfigMap, n), checksum::configmap(cm)));
        let secrets = self
            .secrets
            .iter()
            .map(|(n, s)| (key(ConfigKind::Secret, n), checksum::secret(s)));
        cms.chain(secrets).collect()
    }

    /// The keys whose references the primary template renames to `-primary`.
    pub fn keys(&self) -> BTreeSet<String> {
        let cms = self
            .configmaps
            .keys()
            .map(|n| key(ConfigKind::ConfigMap, n));
        let secrets = self.secrets.keys().map(|n| key(ConfigKind::Secret, n));
        cms.chain(secrets).collect()
    }

    /// The `-primary` copies to apply. `live` finds an existing copy by name, so owner references
    /// of other canaries sharing it are kept.
    pub fn primary_copies<'a>(
        &self,
        canary: &Canary,
        settings: &Settings,
        live_configmap: impl Fn(&str) -> Option<&'a ConfigMap>,
        live_secret: impl Fn(&str) -> Option<&'a Secret>,
    ) -> Result<(Vec<ConfigMap>, Vec<Secret>), WorkloadError> {
        let mut cms = Vec::new();
        for cm in self.configmaps.values() {
            let name = primary_name(&cm.metadata);
            let live = live_configmap(&name).map(|l| &l.metadata);
            cms.push(ConfigMap {
                metadata: primary_meta(&cm.metadata, name, canary, settings, live)?,
                data: cm.data.clone(),
                binary_data: cm.binary_data.clone(),
                // `immutable` is left out: a promotion must be able to rewrite the copy.
                immutable: None,
            });
        }
        let mut secrets = Vec::new();
        for s in self.secrets.values() {
            let name = primary_name(&s.metadata);
            let live = live_secret(&name).map(|l| &l.metadata);
            secrets.push(Secret {
                metadata: primary_meta(&s.metadata, name, canary, settings, live)?,
                data: s.data.clone(),
                type_: s.type_.clone(),
                immutable: None,
                string_data: None,
            });
        }
        Ok((cms, secrets))
    }
}

fn is_tracked_secret_type(s: &Secret) -> bool {
    // An unset type is defaulted to Opaque by the API server.
    TRACKED_SECRET_TYPES.contains(&s.type_.as_deref().unwrap_or("Opaque"))
}

fn primary_name(meta: &ObjectMeta) -> String {
    format!("{}-primary", meta.name.as_deref().unwrap_or_default())
}

fn primary_meta(
    source: &ObjectMeta,
    name: String,
    canary: &Canary,
    settings: &Settings,
    live: Option<&ObjectMeta>,
) -> Result<ObjectMeta, WorkloadError> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: source
            .namespace
            .clone()
            .or_else(|| canary.metadata.namespace.clone()),
        labels: non_empty(include_by_prefix(
            source.labels.as_ref(),
            &settings.include_label_prefixes,
        )),
        annotations: non_empty(copyable_annotations(source.annotations.as_ref())),
        owner_references: Some(shared_owner_references(
            canary,
            live.and_then(|l| l.owner_references.as_ref()),
        )?),
        ..ObjectMeta::default()
    })
}

/// A primary config shared by several canaries keeps every sharing canary as an owner: it is
/// garbage-collected only when the last of them is deleted. Only one owner may be the controller,
/// so a canary arriving second becomes a plain owner. Every sharer applies with the same field
/// manager, so the others' references must be part of this apply or it would remove them.
pub fn shared_owner_references(
    canary: &Canary,
    live: Option<&Vec<OwnerReference>>,
) -> Result<Vec<OwnerReference>, WorkloadError> {
    let mut mine = owner_reference(canary)?;
    let others: Vec<OwnerReference> = live
        .into_iter()
        .flatten()
        .filter(|o| o.uid != mine.uid)
        .cloned()
        .collect();
    if others.iter().any(|o| o.controller == Some(true)) {
        mine.controller = Some(false);
    }
    let mut all = others;
    all.push(mine);
    Ok(all)
}

/// Points the template at the `-primary` copies of the tracked configs; untracked references
/// (disabled, unsupported secret types, missing optional ones) are left alone.
pub fn rename_to_primary(spec: &mut PodSpec, tracked: &BTreeSet<String>) {
    visit_refs(spec, &mut |kind, name, _| {
        if tracked.contains(&key(kind, name)) {
            name.push_str("-primary");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;
    use serde_json::json;

    fn pod_spec() -> PodSpec {
        fixtures::deployment().spec.unwrap().template.spec.unwrap()
    }

    fn all_configs() -> (BTreeMap<String, ConfigMap>, BTreeMap<String, Secret>) {
        let cms = [
            "podinfo-config-env",
            "podinfo-config-all",
            "podinfo-config-init",
            "podinfo-config-vol",
            "podinfo-config-proj",
        ]
        .map(|n| (n.to_string(), fixtures::configmap(n, json!({"k": n}))));
        let secrets = [
            "podinfo-secret-env",
            "podinfo-secret-all",
            "podinfo-secret-vol",
            "podinfo-secret-proj",
        ]
        .map(|n| {
            (
                n.to_string(),
                fixtures::secret(n, "Opaque", json!({"k": "dg=="})),
            )
        });
        (cms.into(), secrets.into())
    }

    #[test]
    fn every_kind_of_reference_is_discovered() {
        let refs = referenced(&pod_spec());
        let keys: Vec<(String, bool)> = refs.iter().map(|r| (r.key(), r.optional)).collect();
        assert_eq!(
            keys,
            vec![
                ("configmap/podinfo-config-all".into(), false),
                ("configmap/podinfo-config-env".into(), false),
                ("configmap/podinfo-config-init".into(), false),
                ("configmap/podinfo-config-proj".into(), false),
                ("configmap/podinfo-config-vol".into(), false),
                ("secret/podinfo-secret-all".into(), true),
                ("secret/podinfo-secret-env".into(), false),
                ("secret/podinfo-secret-proj".into(), false),
                ("secret/podinfo-secret-vol".into(), false),
            ]
        );
    }

    #[test]
    fn one_mandatory_reference_makes_a_config_mandatory() {
        let mut spec = pod_spec();
        // podinfo-secret-all is optional in envFrom; a mandatory env reference to it wins.
        spec.containers[0].env.as_mut().unwrap().push(
            serde_json::from_value(json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "podinfo-secret-all", "key": "x"}}}))
                .unwrap(),
        );
        let refs = referenced(&spec);
        let r = refs
            .iter()
            .find(|r| r.name == "podinfo-secret-all")
            .unwrap();
        assert!(!r.optional);
    }

    #[test]
    fn resolve_skips_disabled_untracked_types_and_missing_optional() {
        let canary = fixtures::canary();
        let (mut cms, mut secrets) = all_configs();
        cms.get_mut("podinfo-config-vol")
            .unwrap()
            .metadata
            .annotations = Some(
            [(
                CONFIG_TRACKING_ANNOTATION.to_string(),
                "disabled".to_string(),
            )]
            .into(),
        );
        secrets.insert(
            "podinfo-secret-vol".into(),
            fixtures::secret(
                "podinfo-secret-vol",
                "kubernetes.io/dockerconfigjson",
                json!({}),
            ),
        );
        secrets.remove("podinfo-secret-all"); // optional
        let tracked =
            TrackedConfigs::resolve(&canary, &referenced(&pod_spec()), &cms, &secrets).unwrap();
        let keys: Vec<String> = tracked.keys().into_iter().collect();
        assert_eq!(
            keys,
            vec![
                "configmap/podinfo-config-all",
                "configmap/podinfo-config-env",
                "configmap/podinfo-config-init",
                "configmap/podinfo-config-proj",
                "secret/podinfo-secret-env",
                "secret/podinfo-secret-proj",
            ]
        );
    }

    #[test]
    fn missing_mandatory_config_is_an_error() {
        let canary = fixtures::canary();
        let (mut cms, secrets) = all_configs();
        cms.remove("podinfo-config-env");
        let err =
            TrackedConfigs::resolve(&canary, &referenced(&pod_spec()), &cms, &secrets).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configmap podinfo-config-env.test referenced by the pod template not found"
        );
    }

    #[test]
    fn checksums_are_keyed_by_kind_and_name() {
        let canary = fixtures::canary();
        let cms: BTreeMap<_, _> = [(
            "podinfo-config-env".to_string(),
            fixtures::configmap("podinfo-config-env", json!({"a": "b"})),
        )]
        .into();
        let refs = vec![ConfigRef {
            kind: ConfigKind::ConfigMap,
            name: "podinfo-config-env".into(),
            optional: false,
        }];
        let tracked = TrackedConfigs::resolve(&canary, &refs, &cms, &BTreeMap::new()).unwrap();
        assert_eq!(
            tracked.checksums(),
            [(
                "configmap/podinfo-config-env".to_string(),
                "db4a7ecb114bc66c".to_string()
            )]
            .into()
        );
    }

    #[test]
    fn rename_touches_only_tracked_references() {
        let mut spec = pod_spec();
        let tracked: BTreeSet<String> = [
            "configmap/podinfo-config-vol",
            "secret/podinfo-secret-proj",
            "configmap/podinfo-config-init",
            "secret/podinfo-secret-env",
        ]
        .map(String::from)
        .into();
        rename_to_primary(&mut spec, &tracked);
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v["volumes"][0]["configMap"]["name"],
            "podinfo-config-vol-primary"
        );
        assert_eq!(
            v["volumes"][1]["secret"]["secretName"],
            "podinfo-secret-vol"
        );
        assert_eq!(
            v["volumes"][2]["projected"]["sources"][0]["configMap"]["name"],
            "podinfo-config-proj"
        );
        assert_eq!(
            v["volumes"][2]["projected"]["sources"][1]["secret"]["name"],
            "podinfo-secret-proj-primary"
        );
        assert_eq!(
            v["initContainers"][0]["envFrom"][0]["configMapRef"]["name"],
            "podinfo-config-init-primary"
        );
        assert_eq!(
            v["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"]["name"],
            "podinfo-config-env"
        );
        assert_eq!(
            v["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]["name"],
            "podinfo-secret-env-primary"
        );
    }

    #[test]
    fn primary_copies_carry_data_filtered_labels_and_owner() {
        let canary = fixtures::canary();
        let settings = Settings {
            include_label_prefixes: vec!["app".into()],
            ..Settings::default()
        };
        let mut cm = fixtures::configmap("podinfo-config-env", json!({"color": "blue"}));
        cm.metadata.labels = Some(
            [
                ("app", "podinfo"),
                ("team", "web"),
                ("kustomize.toolkit.fluxcd.io/name", "x"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        );
        cm.immutable = Some(true);
        let secret = fixtures::secret(
            "podinfo-secret-env",
            "kubernetes.io/tls",
            json!({"tls.crt": "Y2VydA=="}),
        );
        let tracked = TrackedConfigs {
            configmaps: [("podinfo-config-env".to_string(), cm)].into(),
            secrets: [("podinfo-secret-env".to_string(), secret)].into(),
        };
        let (cms, secrets) = tracked
            .primary_copies(&canary, &settings, |_| None, |_| None)
            .unwrap();
        assert_eq!(
            serde_json::to_value(&cms[0]).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "podinfo-config-env-primary",
                    "namespace": "test",
                    "labels": {"app": "podinfo"},
                    "ownerReferences": [{
                        "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
                        "uid": fixtures::CANARY_UID, "controller": true, "blockOwnerDeletion": true
                    }]
                },
                "data": {"color": "blue"}
            })
        );
        let s = serde_json::to_value(&secrets[0]).unwrap();
        assert_eq!(s["metadata"]["name"], "podinfo-secret-env-primary");
        assert_eq!(s["type"], "kubernetes.io/tls");
        assert_eq!(s["data"], json!({"tls.crt": "Y2VydA=="}));
    }

    #[test]
    fn a_shared_primary_config_keeps_the_first_canary_as_controller() {
        let canary = fixtures::canary();
        let first = OwnerReference {
            api_version: "flagger.app/v1beta1".into(),
            kind: "Canary".into(),
            name: "other".into(),
            uid: "uid-of-other".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let live = vec![first.clone(), owner_reference(&canary).unwrap()];
        let got = shared_owner_references(&canary, Some(&live)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], first);
        assert_eq!(got[1].name, "podinfo");
        assert_eq!(got[1].controller, Some(false));

        let alone = shared_owner_references(&canary, None).unwrap();
        assert_eq!(alone, vec![owner_reference(&canary).unwrap()]);
    }
}
