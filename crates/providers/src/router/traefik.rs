//! `traefik`: TraefikService `<apex>` (traefik.io/v1alpha1), `weighted` primary/canary, or
//! `mirroring` while the canary is shadowed (the mirroring shape is a
//! flagger-rs extension).

use flagger_api::Canary;
use flagger_core::Routes;
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

use super::one_object::one_object;
use super::{
    RouterError, RouterFuture, apex_metadata, apply_value, dynamic_api, ensure_some_weight,
    namespace, owned_metadata, primary_entry_share, service_port, weight,
};

const GVK: (&str, &str, &str) = ("traefik.io", "v1alpha1", "TraefikService");
const PLURAL: &str = "traefikservices";

pub struct TraefikRouter {
    client: Client,
}

impl TraefikRouter {
    pub fn new(client: Client) -> Self {
        TraefikRouter { client }
    }

    fn api(&self, canary: &Canary) -> Api<DynamicObject> {
        dynamic_api(&self.client, &namespace(canary), GVK, PLURAL)
    }

    async fn apply(&self, canary: &Canary, routes: Routes) -> Result<(), RouterError> {
        let body = render(canary, routes)?;
        apply_value(&self.api(canary), canary.spec.apex_name(), &body).await
    }
}

/// The whole TraefikService for `routes`. `mirror > 0` with no canary weight gives the
/// `mirroring` shape (a TraefikService is either weighted or mirroring).
pub fn render(canary: &Canary, routes: Routes) -> Result<Value, RouterError> {
    ensure_some_weight("traefik", routes)?;
    let ns = namespace(canary);
    let port = service_port(canary)?;
    let apex = canary.spec.apex_name();
    let primary = canary.spec.primary_service_name();
    let canary_svc = canary.spec.canary_service_name();
    let (labels, annotations) = apex_metadata(canary);
    let spec = if routes.mirror > 0 && routes.canary == 0 {
        json!({"mirroring": {
            "name": primary, "kind": "Service", "namespace": ns, "port": port,
            "mirrors": [{
                "name": canary_svc, "kind": "Service", "namespace": ns, "port": port,
                "percent": routes.mirror.min(100),
            }],
        }})
    } else {
        let mut services = vec![json!({
            "name": primary, "namespace": ns, "port": port, "weight": routes.primary,
        })];
        if routes.canary > 0 {
            services.push(json!({
                "name": canary_svc, "namespace": ns, "port": port, "weight": routes.canary,
            }));
        }
        json!({"weighted": {"services": services}})
    };
    Ok(json!({
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TraefikService",
        "metadata": owned_metadata(canary, apex, labels, annotations)?,
        "spec": spec,
    }))
}

/// Reads the routes back: primary weight, canary = 100 − primary; `mirroring` is `100/0` mirrored.
pub fn parse(canary: &Canary, obj: &Value) -> Result<Routes, RouterError> {
    let name = canary.spec.apex_name();
    let spec = &obj["spec"];
    if let Some(m) = spec.get("mirroring").filter(|m| m.is_object()) {
        let percent = m["mirrors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"] == canary.spec.canary_service_name().as_str())
            .map(|x| weight(x.get("percent")).unwrap_or(100))
            .unwrap_or(0);
        return Ok(Routes {
            primary: 100,
            canary: 0,
            mirror: percent,
        });
    }
    let services = spec["weighted"]["services"]
        .as_array()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            RouterError::Api(format!("TraefikService {name} has no weighted services"))
        })?;
    let primary_name = canary.spec.primary_service_name();
    primary_entry_share(
        services,
        |s| s["name"] == primary_name.as_str(),
        || format!("TraefikService {name} does not contain routes for {primary_name}"),
    )
}

one_object!(TraefikRouter, "TraefikService", api);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;

    fn canary() -> Canary {
        fixtures::canary(json!({
            "provider": "traefik",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {
                "port": 80, "targetPort": 9898,
                "apex": {
                    "labels": {"test": "test-label", "kustomize.toolkit.fluxcd.io/name": "x"},
                    "annotations": {"test": "test-annotation"},
                },
            },
            "analysis": {"interval": "15s", "threshold": 5, "maxWeight": 60, "stepWeight": 20},
        }))
    }

    #[test]
    fn initial_routes_send_everything_to_the_primary() {
        insta::assert_yaml_snapshot!(render(&canary(), Routes::PRIMARY).unwrap());
    }

    #[test]
    fn canary_weights() {
        let obj = render(&canary(), Routes::split(40)).unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&canary(), &obj).unwrap(), Routes::split(40));
    }

    #[test]
    fn mirroring_shadows_to_the_canary() {
        let routes = Routes {
            primary: 100,
            canary: 0,
            mirror: 40,
        };
        let obj = render(&canary(), routes).unwrap();
        insta::assert_yaml_snapshot!(obj);
        let back = parse(&canary(), &obj).unwrap();
        assert_eq!(back, routes);
        assert!(crate::router::state(back).mirrored);
    }

    #[test]
    fn full_promotion_to_canary_keeps_the_primary_entry() {
        let obj = render(&canary(), Routes::CANARY).unwrap();
        assert_eq!(parse(&canary(), &obj).unwrap(), Routes::CANARY);
    }

    #[test]
    fn both_zero_is_an_error() {
        let routes = Routes {
            primary: 0,
            canary: 0,
            mirror: 0,
        };
        assert!(render(&canary(), routes).is_err());
    }

    #[test]
    fn no_services_is_an_error() {
        let obj = json!({"spec": {"weighted": {"services": []}}});
        assert!(parse(&canary(), &obj).is_err());
    }
}
