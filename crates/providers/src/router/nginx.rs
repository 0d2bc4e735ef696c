//! `nginx`: the canary Ingress `<ingressRef>-canary`, a copy of the user's Ingress pointing at
//! `<apex>-canary`, driven by `<prefix>/canary*` annotations.

use std::collections::BTreeMap;

use flagger_api::Canary;
use flagger_core::{RouteState, Routes};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::canary_ingress::{self, Ingresses};
use super::{Router, RouterError, RouterFuture};

const PROVIDER: &str = "nginx";

pub struct NginxRouter {
    client: Client,
    prefix: String,
}

impl NginxRouter {
    pub fn new(client: Client, prefix: String) -> Self {
        NginxRouter { client, prefix }
    }

    fn ingresses<'a>(&self, canary: &'a Canary) -> Ingresses<'a> {
        Ingresses::new(&self.client, canary, PROVIDER)
    }
}

/// Renames backends `<apex>` to `<apex>-canary`; true when at least one was found.
fn retarget(backend: &mut IngressBackend, apex: &str, canary_svc: &str) -> bool {
    match backend.service.as_mut() {
        Some(svc) if svc.name == apex => {
            svc.name = canary_svc.to_string();
            true
        }
        _ => false,
    }
}

/// The canary annotations for `routes` (`<prefix>/canary*` keys only).
pub fn routing_annotations(
    canary: &Canary,
    prefix: &str,
    routes: Routes,
) -> BTreeMap<String, String> {
    let key = |s: &str| format!("{prefix}/{s}");
    let mut out = BTreeMap::new();
    out.insert(key("canary"), "true".to_string());
    let matches = canary.spec.analysis.matches();
    if routes.canary == 0 || matches.is_empty() {
        out.insert(key("canary-weight"), routes.canary.to_string());
        return out;
    }
    // A/B: the last header seen wins, as in Flagger.
    for m in matches {
        for (name, h) in m.headers.iter().flatten() {
            out.retain(|k, _| k == &key("canary"));
            if name.eq_ignore_ascii_case("cookie") {
                if let Some(v) = &h.exact {
                    out.insert(key("canary-by-cookie"), v.clone());
                }
                continue;
            }
            out.insert(key("canary-by-header"), name.clone());
            if let Some(v) = &h.exact {
                out.insert(key("canary-by-header-value"), v.clone());
            } else if let Some(v) = &h.regex {
                out.insert(key("canary-by-header-pattern"), v.clone());
            }
        }
    }
    out
}

/// The canary Ingress for `source` with the given canary annotations.
pub fn render(
    canary: &Canary,
    source: &Ingress,
    prefix: &str,
    routing: &BTreeMap<String, String>,
) -> Result<Value, RouterError> {
    let apex = canary.spec.apex_name();
    let canary_svc = canary.spec.canary_service_name();
    let mut spec = source.spec.clone().unwrap_or_default();
    let mut found = false;
    if let Some(b) = spec.default_backend.as_mut() {
        found |= retarget(b, apex, &canary_svc);
    }
    for rule in spec.rules.iter_mut().flatten() {
        for path in rule.http.iter_mut().flat_map(|h| h.paths.iter_mut()) {
            found |= retarget(&mut path.backend, apex, &canary_svc);
        }
    }
    if !found {
        return Err(RouterError::Invalid(format!(
            "backend {apex} not found in ingress {}",
            source.name_any()
        )));
    }
    let canary_prefix = format!("{prefix}/canary");
    let annotations =
        canary_ingress::annotations(source, |k| k.starts_with(&canary_prefix), routing);
    canary_ingress::object(canary, PROVIDER, source, annotations, &spec)
}

/// Routes from the canary Ingress' annotations.
pub fn parse(canary: &Canary, prefix: &str, ingress: &Ingress) -> Result<RouteState, RouterError> {
    let annotations = ingress.annotations();
    let key = |s: &str| format!("{prefix}/{s}");
    let ab = !canary.spec.analysis.matches().is_empty();
    if ab
        && (annotations.contains_key(&key("canary-by-cookie"))
            || annotations.contains_key(&key("canary-by-header")))
    {
        return Ok(RouteState {
            primary: 0,
            canary: 100,
            mirrored: false,
        });
    }
    let w = annotations
        .get(&key("canary-weight"))
        .and_then(|w| w.trim().parse::<u32>().ok())
        .ok_or_else(|| {
            RouterError::Api(format!(
                "ingress {} has no valid {} annotation",
                ingress.name_any(),
                key("canary-weight")
            ))
        })?
        .min(100);
    Ok(RouteState {
        primary: 100 - w,
        canary: w,
        mirrored: false,
    })
}

impl Router for NginxRouter {
    /// Updates the spec; the live canary annotations are kept so traffic does not move.
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let ingresses = self.ingresses(canary);
            let source = ingresses.source().await?;
            let canary_prefix = format!("{}/canary", self.prefix);
            let routing = match ingresses.live().await? {
                Some(live) => {
                    let kept: BTreeMap<String, String> = live
                        .annotations()
                        .iter()
                        .filter(|(k, _)| k.starts_with(&canary_prefix))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if kept.is_empty() {
                        routing_annotations(canary, &self.prefix, Routes::PRIMARY)
                    } else {
                        kept
                    }
                }
                None => routing_annotations(canary, &self.prefix, Routes::PRIMARY),
            };
            let body = render(canary, &source, &self.prefix, &routing)?;
            ingresses.apply(&body).await
        })
    }

    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let ingresses = self.ingresses(canary);
            let source = ingresses.source().await?;
            let routing = routing_annotations(canary, &self.prefix, routes);
            let body = render(canary, &source, &self.prefix, &routing)?;
            ingresses.apply(&body).await
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState> {
        Box::pin(async move {
            let live = self.ingresses(canary).require_live().await?;
            parse(canary, &self.prefix, &live)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;
    use serde_json::json;

    const PREFIX: &str = "nginx.ingress.kubernetes.io";

    fn canary(analysis_match: Value) -> Canary {
        fixtures::canary(json!({
            "provider": "nginx",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
            "service": {"port": 80, "targetPort": 9898},
            "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 40, "stepWeight": 20, "match": analysis_match},
        }))
    }

    fn source() -> Ingress {
        serde_json::from_value(json!({
            "metadata": {
                "name": "podinfo", "namespace": "test",
                "labels": {"app": "podinfo", "kustomize.toolkit.fluxcd.io/name": "apps"},
                "annotations": {
                    "nginx.ingress.kubernetes.io/canary": "false",
                    "nginx.ingress.kubernetes.io/proxy-body-size": "1m",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                },
            },
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": "app.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}},
                ]}}],
            },
        }))
        .unwrap()
    }

    fn ingress(c: &Canary, routes: Routes) -> Ingress {
        let routing = routing_annotations(c, PREFIX, routes);
        serde_json::from_value(render(c, &source(), PREFIX, &routing).unwrap()).unwrap()
    }

    #[test]
    fn canary_weight() {
        let c = canary(Value::Null);
        let routing = routing_annotations(&c, PREFIX, Routes::split(20));
        insta::assert_yaml_snapshot!(render(&c, &source(), PREFIX, &routing).unwrap());
        let back = parse(&c, PREFIX, &ingress(&c, Routes::split(20))).unwrap();
        assert_eq!((back.primary, back.canary), (80, 20));
    }

    #[test]
    fn ab_by_header() {
        let c = canary(json!([{"headers": {"x-user": {"exact": "insider"}}}]));
        insta::assert_yaml_snapshot!(routing_annotations(&c, PREFIX, Routes::CANARY));
        let back = parse(&c, PREFIX, &ingress(&c, Routes::CANARY)).unwrap();
        assert_eq!((back.primary, back.canary), (0, 100));
        // c = 0 resets to a disabled canary.
        let reset = routing_annotations(&c, PREFIX, Routes::PRIMARY);
        assert_eq!(
            reset.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                format!("{PREFIX}/canary"),
                format!("{PREFIX}/canary-weight")
            ]
        );
        let back = parse(&c, PREFIX, &ingress(&c, Routes::PRIMARY)).unwrap();
        assert_eq!((back.primary, back.canary), (100, 0));
    }

    #[test]
    fn ab_by_cookie_and_pattern_last_wins() {
        let c = canary(json!([
            {"headers": {"x-user": {"regex": "^insider.*"}}},
            {"headers": {"cookie": {"exact": "canary"}}},
        ]));
        insta::assert_yaml_snapshot!(routing_annotations(&c, PREFIX, Routes::CANARY));
        let c = canary(json!([{"headers": {"x-user": {"regex": "^insider.*"}}}]));
        insta::assert_yaml_snapshot!(routing_annotations(&c, PREFIX, Routes::CANARY));
    }

    #[test]
    fn missing_backend_is_an_error() {
        let mut c = canary(Value::Null);
        if let Some(s) = c.spec.service.as_mut() {
            s.name = Some("other".into());
        }
        let routing = routing_annotations(&c, PREFIX, Routes::PRIMARY);
        let err = render(&c, &source(), PREFIX, &routing).unwrap_err();
        assert_eq!(
            err.to_string(),
            "backend other not found in ingress podinfo"
        );
    }
}
