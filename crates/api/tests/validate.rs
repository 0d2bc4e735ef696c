//! Validation end to end: broken manifests with the exact field path of each problem, the
//! shipped examples, and hostile input.

use std::path::{Path, PathBuf};

use flagger_api::decode;
use flagger_api::validate::{self, Options, Problem, Severity};
use proptest::prelude::*;
use serde_json::Value;

const CANARY: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  revertOnDeletion: true
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
        interval: 1m
      - name: latency
        templateRef: {name: latency}
        thresholdRange: {max: 0.5}
    webhooks:
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
        metadata: {cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}
    alerts:
      - name: slack
        providerRef: {name: slack}
"#;

const METRIC_TEMPLATE: &str = r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: latency, namespace: test}
spec:
  provider: {type: prometheus, address: "http://prometheus:9090"}
  query: 'histogram_quantile(0.99, sum(rate(x_bucket{namespace="{{ namespace }}"}[{{ interval }}])) by (le))'
"#;

const ALERT_PROVIDER: &str = r#"
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {name: slack, namespace: test}
spec:
  type: slack
  secretRef: {name: slack-url}
"#;

fn yaml(text: &str) -> Value {
    let mut docs = decode::parse_documents(text.as_bytes()).unwrap();
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0)
}

/// RFC 7386 merge patch: objects merge, `null` deletes, everything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn problems(doc: &Value) -> Vec<Problem> {
    validate::document(doc, &Options::default()).problems
}

#[test]
fn the_bases_are_valid() {
    for base in [CANARY, METRIC_TEMPLATE, ALERT_PROVIDER] {
        let found = problems(&yaml(base));
        assert!(found.is_empty(), "{found:#?}");
    }
}

#[test]
fn saas_metric_templates_validate() {
    for provider in [
        "{type: cloudwatch, address: null, region: eu-west-1}",
        "{type: stackdriver, address: null, secretRef: {name: gcp}}",
        "{type: splunk, address: 'https://api.us1.signalfx.com', secretRef: {name: sfx}}",
        "{type: splunk, address: 'wss://stream.us1.signalfx.com', secretRef: {name: sfx}}",
    ] {
        let mut doc = yaml(METRIC_TEMPLATE);
        merge(&mut doc, &yaml(&format!("spec: {{provider: {provider}}}")));
        let found = problems(&doc);
        assert!(found.is_empty(), "{provider}: {found:#?}");
    }
}

#[test]
fn a_keda_scaled_object_autoscaler_is_accepted() {
    let mut doc = yaml(CANARY);
    merge(
        &mut doc,
        &yaml(
            "spec: {autoscalerRef: {apiVersion: keda.sh/v1alpha1, kind: ScaledObject, name: podinfo-so, primaryScalerQueries: {requests: 'vector(1)'}, primaryScalerReplicas: {minReplicas: 2, maxReplicas: 4}}}",
        ),
    );
    let found = problems(&doc);
    assert!(found.is_empty(), "{found:#?}");
}

use Severity::{Error as E, Info as I, Warning as W};

/// (base, merge patch as YAML, expected path, word of the message, severity)
const BROKEN: &[(&str, &str, &str, &str, Severity)] = &[
    (
        CANARY,
        "spec: {targetRef: {kind: StatefulSet}}",
        "spec.targetRef.kind",
        "unsupported kind",
        E,
    ),
    (
        CANARY,
        "spec: {targetRef: {kind: null}}",
        "spec.targetRef.kind",
        "required",
        E,
    ),
    (
        CANARY,
        "spec: {targetRef: null}",
        "spec.targetRef",
        "required",
        E,
    ),
    (
        CANARY,
        "spec: {targetRef: {name: podinfo-with-a-name-that-is-far-too-long-for-a-service-name}}",
        "spec.targetRef.name",
        "63",
        E,
    ),
    (
        CANARY,
        "spec: {service: {name: 1podinfo}}",
        "spec.service.name",
        "DNS-1035",
        E,
    ),
    (
        CANARY,
        "spec: {service: null}",
        "spec.service",
        "required",
        E,
    ),
    (
        CANARY,
        "spec: {service: {port: 0}}",
        "spec.service.port",
        "> 0",
        E,
    ),
    (
        CANARY,
        "spec: {service: {port: 9898.5}}",
        "spec.service.port",
        "integer",
        E,
    ),
    (
        CANARY,
        "spec: {service: {port: http}}",
        "spec.service.port",
        "invalid type",
        E,
    ),
    (
        CANARY,
        "spec: {service: {targetPort: 70000}}",
        "spec.service.targetPort",
        "65535",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {interval: 1h}}",
        "spec.analysis.interval",
        "pattern",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {interval: 5mx}}",
        "spec.analysis.interval",
        "duration",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {interval: null}}",
        "spec.analysis.interval",
        "required",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {threshold: null}}",
        "spec.analysis.threshold",
        "required",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {threshold: 0}}",
        "spec.analysis.threshold",
        "at least 1",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {stepWeight: 150}}",
        "spec.analysis.stepWeight",
        "between 0 and 100",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {stepWeight: 60}}",
        "spec.analysis.stepWeight",
        "greater than maxWeight",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {maxWeight: 101}}",
        "spec.analysis.maxWeight",
        "between 0 and 100",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {stepWeight: null, maxWeight: null, stepWeights: [10, 5]}}",
        "spec.analysis.stepWeights[1]",
        "increase",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {stepWeight: null, maxWeight: null, stepWeights: [10, 200]}}",
        "spec.analysis.stepWeights[1]",
        "between 1 and 100",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {iterations: 10}}",
        "spec.analysis.iterations",
        "cannot be combined with stepWeight",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {stepWeights: [10, 20]}}",
        "spec.analysis.stepWeight",
        "cannot be combined with stepWeights",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {stepWeight: null}}",
        "spec.analysis",
        "one of iterations",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {stepWeight: null, iterations: 2.5}}",
        "spec.analysis.iterations",
        "integer",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {metrics: [{name: latency, query: up, thresholdRange: {min: 10, max: 1}}]}}",
        "spec.analysis.metrics[0].thresholdRange",
        "greater than max",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {metrics: [{name: error-count, query: up, threshold: 1, noData: wait}]}}",
        "spec.analysis.metrics[0].noData",
        "fail or hold",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {metrics: [{name: error-count, query: up, threshold: 1, noData: hold, dryRun: true}]}}",
        "spec.analysis.metrics[0].noData",
        "ignored with dryRun",
        W,
    ),
    (
        CANARY,
        "spec: {analysis: {metrics: [{name: error-count}]}}",
        "spec.analysis.metrics[0]",
        "neither query nor templateRef",
        W,
    ),
    (
        CANARY,
        "spec: {analysis: {metrics: [{name: error-count, query: up}]}}",
        "spec.analysis.metrics[0]",
        "threshold",
        W,
    ),
    (
        CANARY,
        "spec: {analysis: {metrics: [{name: a, query: up, threshold: 1}, {name: a, query: up, threshold: 1}]}}",
        "spec.analysis.metrics[1].name",
        "duplicate",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {metrics: [{name: a, query: 'sum({{ nosuch }})', threshold: 1}]}}",
        "spec.analysis.metrics[0].query",
        "not defined",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {metrics: [{name: a, query: 'sum({{ namespace )', threshold: 1}]}}",
        "spec.analysis.metrics[0].query",
        "unclosed action",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {metrics: [{name: request-duration, interval: 1h}]}}",
        "spec.analysis.metrics[0].interval",
        "pattern",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {webhooks: [{name: a, url: 'http://x/'}, {name: a, url: 'http://y/'}]}}",
        "spec.analysis.webhooks[1].name",
        "duplicate",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {webhooks: [{name: a, type: pre-release, url: 'http://x/'}]}}",
        "spec.analysis.webhooks[0].type",
        "unknown webhook type",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {webhooks: [{name: a, url: /hook}]}}",
        "spec.analysis.webhooks[0].url",
        "absolute http(s)",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {webhooks: [{name: a, url: 'http://x/', bearerTokenSecretRef: {name: t, key: ''}}]}}",
        "spec.analysis.webhooks[0].bearerTokenSecretRef.key",
        "required",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {webhooks: [{name: a, url: 'ftp://x/'}]}}",
        "spec.analysis.webhooks[0].url",
        "absolute http(s)",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {webhooks: [{name: a, url: 'http://x/', timeout: 1h}]}}",
        "spec.analysis.webhooks[0].timeout",
        "pattern",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {webhooks: [{name: a, url: 'http://x/', timeout: 90s}]}}",
        "spec.analysis.webhooks",
        "longer than the interval",
        W,
    ),
    (
        CANARY,
        "spec: {provider: linkerd, analysis: {stepWeight: null, maxWeight: null, iterations: 10, match: [{headers: {x-canary: {exact: insider}}}]}}",
        "spec.analysis.match",
        "cannot route by header",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {stepWeight: null, maxWeight: null, iterations: 10, match: [{headers: {x-canary: {exact: a, regex: b}}}]}}",
        "spec.analysis.match[0].headers.x-canary",
        "exactly one",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {stepWeight: null, maxWeight: null, iterations: 10, match: [{headers: {x-canary: {suffix: a}}}]}}",
        "spec.analysis.match[0].headers.x-canary.suffix",
        "cannot match headers by suffix",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {stepWeight: null, maxWeight: null, iterations: 10, match: [{headers: {x-canary: {regex: '(a'}}}]}}",
        "spec.analysis.match[0].headers.x-canary.regex",
        "regex",
        E,
    ),
    (
        CANARY,
        "spec: {provider: linkerd, analysis: {stepWeight: null, maxWeight: null, iterations: 10, mirror: true}}",
        "spec.analysis.mirror",
        "cannot mirror",
        W,
    ),
    (
        CANARY,
        "spec: {provider: gatewayapi:v1, service: {gatewayRefs: [{name: gw}]}, analysis: {mirror: true}}",
        "spec.analysis.mirror",
        "cannot mirror",
        W,
    ),
    (
        CANARY,
        "spec: {provider: envoy}",
        "spec.provider",
        "unknown provider",
        E,
    ),
    (
        METRIC_TEMPLATE,
        "spec: {provider: {type: stackdriver, address: null}}",
        "spec.provider.secretRef",
        "required for the stackdriver provider",
        E,
    ),
    (
        METRIC_TEMPLATE,
        "spec: {provider: {type: splunk, address: 'ftp://api.us1.signalfx.com'}}",
        "spec.provider.address",
        "not an absolute http(s) URL",
        E,
    ),
    (
        CANARY,
        "spec: {targetRef: {apiVersion: v1, kind: Service, name: podinfo}}",
        "spec.targetRef.kind",
        "a Service target runs with the kubernetes and gatewayapi providers in flagger-rs, not with",
        E,
    ),
    (
        CANARY,
        "spec: {provider: gatewayapi:v1, targetRef: {apiVersion: v1, kind: Service, name: podinfo}, service: {port: 0, gatewayRefs: [{name: gw}]}}",
        "spec.service.port",
        "the HTTPRoute sends to the -primary and -canary copies",
        E,
    ),
    (
        CANARY,
        "spec: {provider: kubernetes, targetRef: {apiVersion: v1, kind: Service, name: podinfo}, autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}}",
        "spec.autoscalerRef",
        "no workload to scale",
        E,
    ),
    (
        CANARY,
        "spec: {provider: apisix}",
        "spec.routeRef",
        "required with the apisix provider",
        E,
    ),
    (
        CANARY,
        "spec: {provider: apisix, routeRef: {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}, analysis: {stepWeight: null, maxWeight: null, iterations: 5, match: [{headers: {x-canary: {exact: insider}}}]}}",
        "spec.analysis.match",
        "the apisix provider cannot route by header",
        E,
    ),
    (
        CANARY,
        "spec: {provider: gatewayapi}",
        "spec.provider",
        "gatewayapi:v1",
        E,
    ),
    (
        CANARY,
        "spec: {provider: gatewayapi:v1}",
        "spec.service.gatewayRefs",
        "at least one",
        E,
    ),
    (
        CANARY,
        "spec: {provider: gatewayapi:v1, service: {gatewayRefs: [{name: gw, port: 70000}]}}",
        "spec.service.gatewayRefs[0].port",
        "65535",
        E,
    ),
    (
        CANARY,
        "spec: {provider: nginx}",
        "spec.ingressRef",
        "required",
        E,
    ),
    (
        CANARY,
        "spec: {provider: gatewayapi:v1, service: {gatewayRefs: [{name: gw}], mirror: [{backendRef: {name: shadow}}]}}",
        "spec.service.mirror[0].backendRef.port",
        "Must have port",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {sessionAffinity: {cookieName: flagger, primaryCookieName: flagger}}}",
        "spec.analysis.sessionAffinity.primaryCookieName",
        "same cookie name",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {sessionAffinity: {cookieName: flagger, sameSite: Sometimes}}}",
        "spec.analysis.sessionAffinity.sameSite",
        "unsupported value",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {foo: bar}}",
        "spec.analysis.foo",
        "unknown field",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {alerts: [{name: a, severity: critical, providerRef: {name: slack}}]}}",
        "spec.analysis.alerts[0].severity",
        "unknown severity",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {alerts: [{name: a}]}}",
        "spec.analysis.alerts[0].providerRef",
        "required",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {delay: 1h}}",
        "spec.analysis.delay",
        "pattern",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {mirror: true, canaryAnalysis: {stepWeightPromotion: 10, maxMirrorWeight: 150}}}",
        "spec.analysis.canaryAnalysis.maxMirrorWeight",
        "between 1 and 100",
        E,
    ),
    (
        CANARY,
        "spec: {analysis: {canaryAnalysis: {templateVariables: {tolerations: [{key: spot, operator: Sometimes}]}}}}",
        "spec.analysis.canaryAnalysis.templateVariables.tolerations[0].operator",
        "unsupported value",
        E,
    ),
    (
        CANARY,
        "spec: {targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: podinfo}}",
        "spec.provider",
        "requires the knative provider, not istio",
        E,
    ),
    (
        CANARY,
        "spec: {provider: knative}",
        "spec.targetRef",
        "Knative",
        E,
    ),
    (
        CANARY,
        "spec: {autoscalerRef: {apiVersion: autoscaling/v2, kind: VerticalPodAutoscaler, name: podinfo}}",
        "spec.autoscalerRef.kind",
        "unsupported kind",
        E,
    ),
    (
        CANARY,
        "spec: {revertOnDeletion: null}",
        "spec.revertOnDeletion",
        "an apex Service that was yours stays",
        I,
    ),
    (
        CANARY,
        "metadata: {name: Podinfo}",
        "metadata.name",
        "DNS-1123",
        E,
    ),
    (
        CANARY,
        "metadata: {namespace: my_ns}",
        "metadata.namespace",
        "DNS-1123 label",
        E,
    ),
    (
        CANARY,
        "apiVersion: flagger.app/v1alpha1",
        "apiVersion",
        "unsupported apiVersion",
        E,
    ),
    (CANARY, "kind: Canaries", "kind", "unknown kind", E),
    (
        METRIC_TEMPLATE,
        "spec: {provider: {type: prom}}",
        "spec.provider.type",
        "unknown metric provider",
        E,
    ),
    (
        METRIC_TEMPLATE,
        "spec: {provider: {address: null}}",
        "spec.provider.address",
        "required",
        E,
    ),
    (
        METRIC_TEMPLATE,
        "spec: {provider: {address: prometheus:9090}}",
        "spec.provider.address",
        "absolute",
        E,
    ),
    (
        METRIC_TEMPLATE,
        "spec: {provider: {type: cloudwatch, address: null}}",
        "spec.provider.region",
        "required",
        E,
    ),
    (
        METRIC_TEMPLATE,
        "spec: {query: '{{ if namespace }}x'}",
        "spec.query",
        "does not parse",
        E,
    ),
    (
        METRIC_TEMPLATE,
        "spec: {query: null}",
        "spec.query",
        "required",
        E,
    ),
    (
        METRIC_TEMPLATE,
        "spec: {provider: null}",
        "spec.provider",
        "required",
        E,
    ),
    (
        ALERT_PROVIDER,
        "spec: {type: pagerduty}",
        "spec.type",
        "unknown alert provider type",
        E,
    ),
    (
        ALERT_PROVIDER,
        "spec: {secretRef: null}",
        "spec",
        "one of address or secretRef",
        E,
    ),
    (
        ALERT_PROVIDER,
        "spec: {address: 'https://hooks.example.com/x'}",
        "spec.secretRef",
        "both",
        E,
    ),
    (
        ALERT_PROVIDER,
        "spec: {secretRef: null, address: hooks.example.com}",
        "spec.address",
        "absolute",
        E,
    ),
    (
        ALERT_PROVIDER,
        "spec: {type: generic, messageTemplate: '{{ .Name '}",
        "spec.messageTemplate",
        "unclosed action",
        E,
    ),
    (
        ALERT_PROVIDER,
        "spec: {type: generic, messageTemplate: '{{ if .Name }}x'}",
        "spec.messageTemplate",
        "does not parse",
        E,
    ),
];

#[test]
fn broken_manifests_report_the_exact_field_path() {
    assert!(BROKEN.len() >= 30);
    let mut failures = Vec::new();
    for (i, (base, patch, path, word, severity)) in BROKEN.iter().enumerate() {
        let mut doc = yaml(base);
        merge(&mut doc, &yaml(patch));
        let found = problems(&doc);
        let hit = found
            .iter()
            .any(|p| p.path == *path && p.message.contains(word) && p.severity == *severity);
        if !hit {
            failures.push(format!(
                "case {i} ({patch}): no {severity} at {path} containing {word:?}; got {found:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            manifests(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(path);
        }
    }
}

#[test]
fn every_example_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files = Vec::new();
    manifests(&dir, &mut files);
    assert!(!files.is_empty(), "no examples under {}", dir.display());
    let mut checked = 0;
    for file in files {
        let docs = decode::parse_documents(&std::fs::read(&file).unwrap()).unwrap();
        for (i, doc) in docs.iter().enumerate() {
            if !decode::is_flagger_document(doc) {
                continue;
            }
            checked += 1;
            let found = problems(doc);
            assert!(found.is_empty(), "{}:{}: {found:#?}", file.display(), i + 1);
        }
    }
    assert!(
        checked >= 10,
        "only {checked} flagger.app objects in examples/"
    );
}

#[test]
fn hostile_input_fails_cleanly() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    assert!(decode::parse_documents(bomb.as_bytes()).is_err());
    let deep = format!("{}x{}", "{a: ".repeat(10_000), "}".repeat(10_000));
    assert!(decode::parse_documents(deep.as_bytes()).is_err());
    let deep_block: String = (0..2_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    assert!(decode::parse_documents(deep_block.as_bytes()).is_err());
    assert!(decode::parse_documents(b"kind: Canary\nmetadata: {name: \xc3\x28}\n").is_err());
    let wrong = yaml("apiVersion: flagger.app/v2\nkind: Rollout\nmetadata: {name: x}\n");
    let found = problems(&wrong);
    assert!(found.iter().any(|p| p.path == "apiVersion"), "{found:#?}");
    assert!(found.iter().any(|p| p.path == "kind"), "{found:#?}");
}

#[test]
fn type_errors_do_not_hide_other_problems() {
    let mut doc = yaml(CANARY);
    merge(
        &mut doc,
        &yaml(
            "spec: {targetRef: [1], service: {port: [80]}, analysis: {threshold: x, metrics: 3, webhooks: [1, {name: a, url: 'http://x/', bogus: 1}]}}",
        ),
    );
    let found = problems(&doc);
    assert!(
        found.iter().any(|p| p.path.starts_with("spec.targetRef")),
        "{found:#?}"
    );
    for path in [
        "spec.service.port",
        "spec.analysis.threshold",
        "spec.analysis.metrics",
        "spec.analysis.webhooks[0]",
        "spec.analysis.webhooks[1].bogus",
    ] {
        assert!(found.iter().any(|p| p.path == path), "{path}: {found:#?}");
    }
}

fn check_bytes(bytes: &[u8]) {
    if let Ok(docs) = decode::parse_documents(bytes) {
        for doc in &docs {
            if decode::is_flagger_document(doc) {
                let _ = validate::document(doc, &Options::default());
            }
        }
    }
}

/// Text that looks like a Canary often enough to reach deep into the validator.
fn yamlish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("apiVersion: flagger.app/v1beta1".to_string()),
        Just("kind: Canary".to_string()),
        Just("kind: MetricTemplate".to_string()),
        Just("kind: AlertProvider".to_string()),
        Just("spec:".to_string()),
        Just("  analysis:".to_string()),
        Just("  service: {port: 80}".to_string()),
        Just("  targetRef: {apiVersion: apps/v1, kind: Deployment, name: p}".to_string()),
        Just("    metrics: [{name: m, query: '{{ namespace }}'}]".to_string()),
        Just("  query: '{{ if x }}'".to_string()),
        Just("---".to_string()),
        "[ a-z:{}\\[\\],&*!|>'\"#0-9.-]{0,40}",
        "(  ){0,3}[a-zA-Z]{1,12}: [a-zA-Z0-9.{}\\[\\]&*-]{0,20}",
    ];
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_bytes(&bytes);
    }

    #[test]
    fn arbitrary_yamlish_text_never_panics(text in yamlish()) {
        check_bytes(text.as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn template_checks_always_finish(text in "(\\{\\{|\\}\\}|-| |\\.|[a-z]{1,6}|\"|`|'|\\(|\\)|\\$|:=|/\\*|\\*/|é|\n){0,24}") {
        if let Err(e) = validate::check_query_template(&text) {
            prop_assert!(!e.contains("did not finish"), "{text:?}: {e}");
        }
        if let Err(e) = validate::check_message_template(&text) {
            prop_assert!(!e.contains("did not finish"), "{text:?}: {e}");
        }
    }
}
