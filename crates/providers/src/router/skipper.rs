//! `skipper`: the canary Ingress `<ingressRef>-canary`, a copy of the user's Ingress where every path
//! to `<apex>` goes to `<apex>-primary` and again to `<apex>-canary`, split by Skipper's
//! `zalando.org/backend-weights` annotation. Skipper routes no request headers to one backend only
//! through it, so this router does weights alone (no A/B, no mirroring).

use std::collections::BTreeMap;

use flagger_api::Canary;
use flagger_core::{RouteState, Routes};
use k8s_openapi::api::networking::v1::Ingress;
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::canary_ingress::{self, Ingresses};
use super::{Router, RouterError, RouterFuture};

const PROVIDER: &str = "skipper";
pub const BACKEND_WEIGHTS: &str = "zalando.org/backend-weights";
pub const PREDICATE: &str = "zalando.org/skipper-predicate";
/// Makes the canary Ingress' routes win over the user's Ingress for the same host and path.
const WINS: &str = "Weight(100)";
/// Switches the canary Ingress off, so traffic flows through the user's Ingress again.
const DISABLED: &str = "False()";

pub struct SkipperRouter {
    client: Client,
}

impl SkipperRouter {
    pub fn new(client: Client) -> Self {
        SkipperRouter { client }
    }

    fn ingresses<'a>(&self, canary: &'a Canary) -> Ingresses<'a> {
        Ingresses::new(&self.client, canary, PROVIDER)
    }
}

/// `insert` first, then the user's own predicates without the ones this router manages.
fn with_predicate(user: Option<&str>, insert: &str) -> String {
    let mut out = vec![insert];
    for p in user.unwrap_or_default().split("&&").map(str::trim) {
        if !p.is_empty() && p != WINS && p != DISABLED {
            out.push(p);
        }
    }
    out.join(" && ")
}

/// The weights and predicate annotations for `routes`, given the user's Ingress.
pub fn routing_annotations(
    canary: &Canary,
    source: &Ingress,
    routes: Routes,
) -> Result<BTreeMap<String, String>, RouterError> {
    let weights = BTreeMap::from([
        (canary.spec.primary_service_name(), routes.primary),
        (canary.spec.canary_service_name(), routes.canary),
    ]);
    let weights = serde_json::to_string(&weights)
        .map_err(|e| RouterError::Invalid(format!("encoding {BACKEND_WEIGHTS}: {e}")))?;
    let switch = if routes.canary == 0 { DISABLED } else { WINS };
    let user = source.annotations().get(PREDICATE).map(String::as_str);
    Ok(BTreeMap::from([
        (BACKEND_WEIGHTS.to_string(), weights),
        (PREDICATE.to_string(), with_predicate(user, switch)),
    ]))
}

/// The canary Ingress for `source` with the given routing annotations.
pub fn render(
    canary: &Canary,
    source: &Ingress,
    routing: &BTreeMap<String, String>,
) -> Result<Value, RouterError> {
    let apex = canary.spec.apex_name();
    let primary = canary.spec.primary_service_name();
    let canary_svc = canary.spec.canary_service_name();
    let mut spec = source.spec.clone().unwrap_or_default();
    let mut found = false;
    for http in spec
        .rules
        .iter_mut()
        .flatten()
        .filter_map(|r| r.http.as_mut())
    {
        let mut added = Vec::new();
        for path in http.paths.iter_mut() {
            let Some(svc) = path.backend.service.as_mut().filter(|s| s.name == apex) else {
                continue;
            };
            svc.name = primary.clone();
            let mut copy = path.clone();
            if let Some(svc) = copy.backend.service.as_mut() {
                svc.name = canary_svc.clone();
            }
            added.push(copy);
            found = true;
        }
        http.paths.extend(added);
    }
    if !found {
        return Err(RouterError::Invalid(format!(
            "backend {apex} not found in ingress {}",
            source.name_any()
        )));
    }
    let annotations =
        canary_ingress::annotations(source, |k| k == BACKEND_WEIGHTS || k == PREDICATE, routing);
    canary_ingress::object(canary, PROVIDER, source, annotations, &spec)
}

/// Routes from the canary Ingress' backend weights; both backends must have one.
pub fn parse(canary: &Canary, ingress: &Ingress) -> Result<RouteState, RouterError> {
    let name = ingress.name_any();
    let raw = ingress.annotations().get(BACKEND_WEIGHTS).ok_or_else(|| {
        RouterError::Api(format!(
            "ingress {name} has no {BACKEND_WEIGHTS} annotation"
        ))
    })?;
    let weights: BTreeMap<String, Value> = serde_json::from_str(raw)
        .map_err(|e| RouterError::Api(format!("ingress {name}: {BACKEND_WEIGHTS}: {e}")))?;
    let weight = |svc: String| {
        super::weight(weights.get(&svc)).ok_or_else(|| {
            RouterError::Api(format!(
                "ingress {name}: {BACKEND_WEIGHTS} has no weight for {svc}"
            ))
        })
    };
    Ok(RouteState {
        primary: weight(canary.spec.primary_service_name())?,
        canary: weight(canary.spec.canary_service_name())?,
        mirrored: false,
    })
}

impl Router for SkipperRouter {
    /// Updates the canary Ingress from the user's; the live weights are kept so traffic does not move.
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let ingresses = self.ingresses(canary);
            let source = ingresses.source().await?;
            let routes = match ingresses.live().await? {
                Some(live) => parse(canary, &live).map_or(Routes::PRIMARY, |s| Routes {
                    primary: s.primary,
                    canary: s.canary,
                    mirror: 0,
                }),
                None => Routes::PRIMARY,
            };
            let routing = routing_annotations(canary, &source, routes)?;
            ingresses.apply(&render(canary, &source, &routing)?).await
        })
    }

    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let ingresses = self.ingresses(canary);
            let source = ingresses.source().await?;
            let routing = routing_annotations(canary, &source, routes)?;
            ingresses.apply(&render(canary, &source, &routing)?).await
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState> {
        Box::pin(async move { parse(canary, &self.ingresses(canary).require_live().await?) })
    }

    /// The canary Ingress goes: the user's Ingress was never changed and serves again.
    fn finalize<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move { self.ingresses(canary).delete().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;
    use serde_json::json;

    fn canary() -> Canary {
        fixtures::canary(json!({
            "provider": "skipper",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
            "service": {"port": 80, "targetPort": 9898},
            "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 40, "stepWeight": 20},
        }))
    }

    fn source(predicate: Option<&str>) -> Ingress {
        let mut annotations = json!({
            "zalando.org/skipper-filter": "consecutiveBreaker(15)",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "kustomize.toolkit.fluxcd.io/checksum": "abc",
        });
        if let Some(p) = predicate {
            annotations[PREDICATE] = json!(p);
        }
        serde_json::from_value(json!({
            "metadata": {
                "name": "podinfo", "namespace": "test",
                "labels": {"app": "podinfo", "kustomize.toolkit.fluxcd.io/name": "apps"},
                "annotations": annotations,
            },
            "spec": {
                "ingressClassName": "skipper",
                "rules": [{"host": "app.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}},
                    {"path": "/other", "pathType": "Prefix", "backend": {"service": {"name": "other", "port": {"number": 80}}}},
                ]}}],
            },
        }))
        .unwrap()
    }

    fn ingress(c: &Canary, src: &Ingress, routes: Routes) -> Value {
        let routing = routing_annotations(c, src, routes).unwrap();
        render(c, src, &routing).unwrap()
    }

    fn parsed(v: Value) -> Ingress {
        serde_json::from_value(v).unwrap()
    }

    /// Initialisation, a step and promotion's end, each as the whole object.
    #[test]
    fn canary_ingress_per_step() {
        let c = canary();
        let src = source(None);
        insta::assert_yaml_snapshot!("initial", ingress(&c, &src, Routes::PRIMARY));
        insta::assert_yaml_snapshot!("weight_20", ingress(&c, &src, Routes::split(20)));
        insta::assert_yaml_snapshot!("all_canary", ingress(&c, &src, Routes::CANARY));
    }

    #[test]
    fn weights_read_back_as_written() {
        let c = canary();
        let src = source(None);
        for routes in [
            Routes::PRIMARY,
            Routes::split(20),
            Routes::split(60),
            Routes::CANARY,
        ] {
            let back = parse(&c, &parsed(ingress(&c, &src, routes))).unwrap();
            assert_eq!(
                (back.primary, back.canary, back.mirrored),
                (routes.primary, routes.canary, false)
            );
        }
    }

    /// The user's predicate is kept behind the router's switch, which flips between winning over the
    /// user's Ingress and being switched off, never piling up.
    #[test]
    fn user_predicate_kept_after_the_switch() {
        let c = canary();
        let src = source(Some("Weight(100) && Header(\"X-Env\", \"prod\")"));
        let on = routing_annotations(&c, &src, Routes::split(20)).unwrap();
        assert_eq!(on[PREDICATE], "Weight(100) && Header(\"X-Env\", \"prod\")");
        let off = routing_annotations(&c, &src, Routes::PRIMARY).unwrap();
        assert_eq!(off[PREDICATE], "False() && Header(\"X-Env\", \"prod\")");
        assert_eq!(
            off[BACKEND_WEIGHTS],
            r#"{"podinfo-canary":0,"podinfo-primary":100}"#
        );
        assert_eq!(
            with_predicate(Some(" False() &&  && Path(\"/\") "), WINS),
            "Weight(100) && Path(\"/\")"
        );
    }

    #[test]
    fn missing_backend_and_weights_are_errors() {
        let mut c = canary();
        if let Some(s) = c.spec.service.as_mut() {
            s.name = Some("absent".into());
        }
        let src = source(None);
        let routing = routing_annotations(&c, &src, Routes::PRIMARY).unwrap();
        assert_eq!(
            render(&c, &src, &routing).unwrap_err().to_string(),
            "backend absent not found in ingress podinfo"
        );
        let c = canary();
        let mut live = parsed(ingress(&c, &src, Routes::split(20)));
        live.annotations_mut()
            .insert(BACKEND_WEIGHTS.into(), r#"{"podinfo-primary":80}"#.into());
        assert_eq!(
            parse(&c, &live).unwrap_err().to_string(),
            "ingress podinfo-canary: zalando.org/backend-weights has no weight for podinfo-canary"
        );
        live.annotations_mut().remove(BACKEND_WEIGHTS);
        assert!(parse(&c, &live).is_err());
    }
}
