//! Every builtin query rendered for one canary, per query set.

use std::collections::BTreeMap;

use crate::metrics::builtin::{BuiltinMetric, QuerySet};
use crate::metrics::template::QueryModel;

fn model() -> QueryModel {
    QueryModel {
        name: "podinfo".into(),
        namespace: "test".into(),
        target: "podinfo".into(),
        service: "podinfo".into(),
        ingress: "podinfo".into(),
        route: "podinfo".into(),
        interval: "1m".into(),
        variables: BTreeMap::new(),
    }
}

#[test]
fn builtin_queries_per_provider() {
    let m = model();
    for set in QuerySet::ALL {
        for metric in [
            BuiltinMetric::RequestSuccessRate,
            BuiltinMetric::RequestDuration,
        ] {
            let rendered = set.render(metric, &m).unwrap();
            assert!(!rendered.contains("{{"), "{rendered}");
            assert!(!rendered.contains("no value"), "{rendered}");
            insta::assert_snapshot!(format!("{}__{}", set.name(), metric.name()), rendered);
        }
    }
}

#[test]
fn istio_success_rate_matches_the_spec_example() {
    assert_eq!(
        QuerySet::Istio
            .render(BuiltinMetric::RequestSuccessRate, &model())
            .unwrap(),
        r#"sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload=~"podinfo",response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload=~"podinfo"}[1m])) * 100"#
    );
}

#[test]
fn skipper_encodes_non_word_characters() {
    let m = QueryModel {
        namespace: "my-ns".into(),
        ingress: "web.ingress".into(),
        service: "pod-info".into(),
        ..model()
    };
    let q = QuerySet::Skipper
        .render(BuiltinMetric::RequestSuccessRate, &m)
        .unwrap();
    assert!(
        q.contains(
            r#"route=~"kube(ew)?_my_ns__web_ingress_canary__.*__pod_info_canary(_[0-9]+)?""#
        ),
        "{q}"
    );
}
