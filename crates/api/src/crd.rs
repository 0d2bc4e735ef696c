//! CustomResourceDefinitions generated from the types, finished with what derives cannot say.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::{AlertProvider, Canary, MetricTemplate};

/// The three CRDs, in the order Flagger's chart lists them.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut canary = Canary::crd();
    if let Some(spec) = spec_schema(&mut canary) {
        set_kind_enum(spec, "ingressRef", "Ingress");
        set_kind_enum(spec, "routeRef", "ApisixRoute");
    }
    let mut crds = vec![canary, MetricTemplate::crd(), AlertProvider::crd()];
    for crd in &mut crds {
        // kube's derive requires `spec`; Flagger's schemas do not, and an object the API server
        // admits for Flagger must be admitted here too.
        if let Some(root) = root_schema(crd) {
            root.required = None;
        }
        // Helm must not delete the CRDs (and with them every Canary) on uninstall, as in Flagger.
        crd.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("helm.sh/resource-policy".into(), "keep".into());
    }
    crds
}

/// All CRDs as one multi-document YAML stream, as committed under `deploy/crds/`.
pub fn to_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

fn root_schema(crd: &mut CustomResourceDefinition) -> Option<&mut JSONSchemaProps> {
    crd.spec
        .versions
        .first_mut()?
        .schema
        .as_mut()?
        .open_api_v3_schema
        .as_mut()
}

fn spec_schema(crd: &mut CustomResourceDefinition) -> Option<&mut JSONSchemaProps> {
    root_schema(crd)?.properties.as_mut()?.get_mut("spec")
}

fn set_kind_enum(spec: &mut JSONSchemaProps, field: &str, kind: &str) {
    let kind_schema = spec
        .properties
        .as_mut()
        .and_then(|p| p.get_mut(field))
        .and_then(|f| f.properties.as_mut())
        .and_then(|p| p.get_mut("kind"));
    if let Some(kind_schema) = kind_schema {
        kind_schema.enum_ = Some(vec![serde_json::Value::String(kind.into()).into()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_match_the_types() {
        let committed = include_str!("../../../deploy/crds/flagger.yaml");
        let generated = to_yaml().unwrap();
        assert!(
            committed == generated,
            "deploy/crds/flagger.yaml is out of date with the API types: run `make crds` and commit it"
        );
    }

    #[test]
    fn crds_carry_flaggers_names_and_columns() {
        let crds = all();
        let names: Vec<_> = crds.iter().map(|c| c.spec.names.plural.as_str()).collect();
        assert_eq!(names, ["canaries", "metrictemplates", "alertproviders"]);
        for crd in &crds {
            assert_eq!(crd.spec.group, "flagger.app");
            assert_eq!(
                crd.spec.names.categories.as_deref(),
                Some(&["all".to_string()][..])
            );
            assert_eq!(crd.spec.names.short_names, None);
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, "v1beta1");
            assert!(
                version
                    .subresources
                    .as_ref()
                    .is_some_and(|s| s.status.is_some())
            );
        }
        let columns: Vec<_> = crds[0].spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.json_path.as_str(),
                    c.priority.unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            columns,
            [
                ("Status", ".status.phase", 0),
                ("Weight", ".status.canaryWeight", 0),
                ("Suspended", ".spec.suspend", 1),
                ("FailedChecks", ".status.failedChecks", 1),
                ("Interval", ".spec.analysis.interval", 1),
                ("Mirror", ".spec.analysis.mirror", 1),
                ("StepWeight", ".spec.analysis.stepWeight", 1),
                ("StepWeights", ".spec.analysis.stepWeights", 1),
                ("MaxWeight", ".spec.analysis.maxWeight", 1),
                ("LastTransitionTime", ".status.lastTransitionTime", 0),
            ]
        );
    }
}
