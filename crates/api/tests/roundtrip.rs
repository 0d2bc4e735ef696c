//! A Flagger user's manifests deserialize and serialize back unchanged, and every field they can
//! hold is in the generated CRD schema.

use flagger_api::{AlertProvider, Canary, MetricTemplate};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_round_trip<T: Serialize + DeserializeOwned>(original: &Value) {
    let typed: T = serde_json::from_value(original.clone()).expect("fixture deserializes");
    let back = serde_json::to_value(&typed).expect("serializes");
    assert_eq!(&back, original);
}

#[test]
fn every_field_of_each_kind_round_trips() {
    assert_round_trip::<Canary>(&fixture("canary-every-field.yaml"));
    assert_round_trip::<MetricTemplate>(&fixture("metrictemplate-every-field.yaml"));
    assert_round_trip::<AlertProvider>(&fixture("alertprovider-every-field.yaml"));
}

/// Walks a document and the schema together; returns the paths the schema has no place for.
fn paths_missing_from_schema(
    value: &Value,
    schema: &JSONSchemaProps,
    path: &str,
    out: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = format!("{path}.{key}");
                let by_name = schema.properties.as_ref().and_then(|p| p.get(key));
                let by_map = match &schema.additional_properties {
                    Some(JSONSchemaPropsOrBool::Schema(s)) => Some(s.as_ref()),
                    _ => None,
                };
                match by_name.or(by_map) {
                    Some(child_schema) => {
                        paths_missing_from_schema(child, child_schema, &child_path, out)
                    }
                    None if schema.x_kubernetes_preserve_unknown_fields == Some(true) => {}
                    None if path.is_empty()
                        && (key == "metadata" || key == "apiVersion" || key == "kind") => {}
                    None => out.push(child_path),
                }
            }
        }
        Value::Array(items) => {
            let item_schema = match &schema.items {
                Some(JSONSchemaPropsOrArray::Schema(s)) => s.as_ref(),
                _ => {
                    out.push(format!("{path}[]"));
                    return;
                }
            };
            for item in items {
                paths_missing_from_schema(item, item_schema, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_generated_schema_covers_every_field_flagger_accepts() {
    let crds = flagger_api::crd::all();
    let fixtures = [
        "canary-every-field.yaml",
        "metrictemplate-every-field.yaml",
        "alertprovider-every-field.yaml",
    ];
    for (crd, name) in crds.iter().zip(fixtures) {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("every CRD has a schema");
        let mut missing = Vec::new();
        paths_missing_from_schema(&fixture(name), schema, "", &mut missing);
        assert!(
            missing.is_empty(),
            "{name}: fields with no place in the schema: {missing:?}"
        );
    }
}

/// Every `required` list of a schema, keyed by the property path that carries it.
fn required_lists(schema: &JSONSchemaProps, path: &str, out: &mut Vec<(String, Vec<String>)>) {
    if let Some(required) = schema.required.as_ref().filter(|r| !r.is_empty()) {
        let mut sorted = required.clone();
        sorted.sort();
        out.push((path.to_string(), sorted));
    }
    for (key, child) in schema.properties.iter().flatten() {
        required_lists(child, &format!("{path}.{key}"), out);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        required_lists(items, &format!("{path}[]"), out);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
        required_lists(values, &format!("{path}{{}}"), out);
    }
}

/// A field required here but optional in Flagger's CRD would make the API server refuse a
/// Flagger user's manifest; the list is exactly Flagger's (plus the records flagger-rs writes).
#[test]
fn the_schema_requires_exactly_what_flaggers_requires() {
    let crds = flagger_api::crd::all();
    let mut found = Vec::new();
    for crd in &crds {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema");
        required_lists(schema, &crd.spec.names.kind, &mut found);
    }
    let expected: Vec<(&str, Vec<&str>)> = vec![
        ("Canary.spec", vec!["analysis", "targetRef"]),
        ("Canary.spec.analysis.alerts[]", vec!["name", "providerRef"]),
        ("Canary.spec.analysis.alerts[].providerRef", vec!["name"]),
        ("Canary.spec.analysis.metrics[]", vec!["name"]),
        ("Canary.spec.analysis.metrics[].templateRef", vec!["name"]),
        // A flagger-rs extra, absent from every Flagger manifest: a reference names its template
        // as `templateRef` does.
        (
            "Canary.spec.analysis.metrics[].judge.totalTemplateRef",
            vec!["name"],
        ),
        ("Canary.spec.analysis.sessionAffinity", vec!["cookieName"]),
        ("Canary.spec.analysis.webhooks[]", vec!["name", "url"]),
        // flagger-rs extension: the loadtester token a webhook sends.
        (
            "Canary.spec.analysis.webhooks[].bearerTokenSecretRef",
            vec!["key", "name"],
        ),
        (
            "Canary.spec.autoscalerRef",
            vec!["apiVersion", "kind", "name"],
        ),
        ("Canary.spec.ingressRef", vec!["apiVersion", "kind", "name"]),
        ("Canary.spec.routeRef", vec!["apiVersion", "kind", "name"]),
        ("Canary.spec.service", vec!["port"]),
        ("Canary.spec.service.gatewayRefs[]", vec!["name"]),
        ("Canary.spec.service.mirror[]", vec!["backendRef"]),
        ("Canary.spec.service.mirror[].backendRef", vec!["name"]),
        ("Canary.spec.targetRef", vec!["apiVersion", "kind", "name"]),
        (
            "Canary.spec.upstreamRef",
            vec!["apiVersion", "kind", "name"],
        ),
        (
            "Canary.status.canaryAnalysis.iterations[]",
            vec!["failed", "iteration", "kind", "name", "time"],
        ),
        (
            "Canary.status.conditions[]",
            vec!["reason", "status", "type"],
        ),
        ("MetricTemplate.spec", vec!["provider", "query"]),
        ("MetricTemplate.spec.provider", vec!["type"]),
        ("MetricTemplate.spec.provider.secretRef", vec!["name"]),
        (
            "MetricTemplate.status.conditions[]",
            vec!["reason", "status", "type"],
        ),
        ("AlertProvider.spec", vec!["type"]),
        ("AlertProvider.spec.secretRef", vec!["name"]),
        (
            "AlertProvider.status.conditions[]",
            vec!["reason", "status", "type"],
        ),
    ];
    let mut expected: Vec<(String, Vec<String>)> = expected
        .into_iter()
        .map(|(p, r)| (p.to_string(), r.into_iter().map(String::from).collect()))
        .collect();
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
}

mod generated {
    use super::*;
    use flagger_api::analysis::{CanaryMetric, CanaryWebhook, CrossNamespaceRef, ThresholdRange};
    use flagger_api::{CanaryAnalysis, CanaryService, CanarySpec, Number, TargetRef};
    use proptest::collection::{btree_map, vec};
    use proptest::option::of;
    use proptest::prelude::*;

    fn number() -> impl Strategy<Value = Number> {
        prop_oneof![
            (0i64..1000).prop_map(Number::from),
            (0.0f64..1000.0).prop_map(Number::from)
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,20}"
    }

    fn metric() -> impl Strategy<Value = CanaryMetric> {
        (
            name(),
            of("[1-9][0-9]?[ms]"),
            of(number()),
            of((of(number()), of(number()))),
            of(".{0,40}"),
            of(name()),
            of(any::<bool>()),
            of(prop_oneof![
                Just("fail".to_string()),
                Just("hold".to_string())
            ]),
        )
            .prop_map(
                |(name, interval, threshold, range, query, template, dry_run, no_data)| {
                    CanaryMetric {
                        name,
                        interval,
                        threshold,
                        threshold_range: range.map(|(min, max)| ThresholdRange { min, max }),
                        query,
                        template_ref: template.map(|name| CrossNamespaceRef {
                            name,
                            namespace: None,
                        }),
                        template_variables: None,
                        dry_run,
                        no_data,
                        judge: None,
                    }
                },
            )
    }

    fn webhook() -> impl Strategy<Value = CanaryWebhook> {
        let types = prop::sample::select(flagger_api::analysis::WEBHOOK_TYPES);
        (
            name(),
            of(types),
            of(any::<bool>()),
            of(btree_map(name(), ".{0,20}", 0..3)),
        )
            .prop_map(|(name, type_, mute, metadata)| CanaryWebhook {
                url: format!("http://{name}.test/"),
                name,
                type_: type_.map(str::to_string),
                mute_alert: mute,
                metadata,
                ..Default::default()
            })
    }

    fn canary() -> impl Strategy<Value = Canary> {
        let providers = prop::sample::select(flagger_api::canary::PROVIDERS);
        let analysis = (
            of("[1-9][0-9]?[ms]"),
            of(number()),
            of(number()),
            of(vec(number(), 0..5)),
            of(any::<bool>()),
            of(vec(metric(), 0..4)),
            of(vec(webhook(), 0..4)),
        )
            .prop_map(
                |(interval, threshold, step_weight, step_weights, mirror, metrics, webhooks)| {
                    CanaryAnalysis {
                        interval,
                        threshold,
                        step_weight,
                        step_weights,
                        mirror,
                        metrics,
                        webhooks,
                        ..Default::default()
                    }
                },
            );
        (
            name(),
            of(providers),
            prop::sample::select(&["Deployment", "DaemonSet"][..]),
            of(1i64..65535),
            analysis,
            of(any::<bool>()),
        )
            .prop_map(|(name, provider, kind, port, analysis, skip)| {
                let spec = CanarySpec {
                    provider: provider.map(str::to_string),
                    target_ref: TargetRef {
                        api_version: "apps/v1".into(),
                        kind: kind.into(),
                        name: name.clone(),
                    },
                    service: port.map(|p| CanaryService {
                        port: p.into(),
                        ..Default::default()
                    }),
                    skip_analysis: skip,
                    analysis,
                    ..Default::default()
                };
                Canary::new(&name, spec)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn canaries_round_trip_through_json_and_yaml(canary in canary()) {
            let json = serde_json::to_value(&canary).unwrap();
            let from_json: Canary = serde_json::from_value(json.clone()).unwrap();
            prop_assert_eq!(&from_json, &canary);
            let yaml = serde_saphyr::to_string(&canary).unwrap();
            let from_yaml: Value = serde_saphyr::from_str(&yaml).unwrap();
            prop_assert_eq!(from_yaml, json);
        }
    }
}
