//! `kuma`: a cluster-scoped TrafficRoute `<apex>` (kuma.io/v1alpha1) splitting the apex Kuma
//! service between the primary and canary services.

use flagger_api::Canary;
use flagger_core::{RouteState, Routes};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::{
    Router, RouterError, RouterFuture, apex_metadata, apply_value, get_value, namespace,
    owner_reference, primary_entry_share, service_port, state,
};

const MESH_ANNOTATION: &str = "kuma.io/mesh";
const SERVICE_TAG: &str = "kuma.io/service";

pub struct KumaRouter {
    client: Client,
}

impl KumaRouter {
    pub fn new(client: Client) -> Self {
        KumaRouter { client }
    }

    fn api(&self) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kuma.io", "v1alpha1", "TrafficRoute"),
            "trafficroutes",
        );
        Api::all_with(self.client.clone(), &ar)
    }
}

/// Kuma's name for the Kubernetes Service `name` of the canary's namespace on `port`.
fn kuma_service(canary: &Canary, name: &str, port: i64) -> String {
    format!("{name}_{}_svc_{port}", namespace(canary))
}

/// The whole TrafficRoute for `routes`.
pub fn render(canary: &Canary, routes: Routes) -> Result<Value, RouterError> {
    let port = service_port(canary)?;
    let mesh = canary
        .annotations()
        .get(MESH_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| "default".to_string());
    let (labels, annotations) = apex_metadata(canary);
    let apex = canary.spec.apex_name();
    Ok(json!({
        "apiVersion": "kuma.io/v1alpha1",
        "kind": "TrafficRoute",
        "mesh": mesh,
        "metadata": {
            "name": apex,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(canary)?],
        },
        "spec": {
            "sources": [{"match": {SERVICE_TAG: "*"}}],
            "destinations": [{"match": {SERVICE_TAG: kuma_service(canary, apex, port)}}],
            "conf": {"split": [
                {"weight": routes.primary, "destination": {
                    SERVICE_TAG: kuma_service(canary, &canary.spec.primary_service_name(), port)}},
                {"weight": routes.canary, "destination": {
                    SERVICE_TAG: kuma_service(canary, &canary.spec.canary_service_name(), port)}},
            ]},
        },
    }))
}

/// Primary weight from the split entry of the primary service, canary = 100 − primary; no primary
/// entry is an error.
pub fn parse(canary: &Canary, obj: &Value) -> Result<Routes, RouterError> {
    let primary_name = canary.spec.primary_service_name();
    let split = obj["spec"]["conf"]["split"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    primary_entry_share(
        split,
        |s| {
            s["destination"][SERVICE_TAG]
                .as_str()
                .and_then(|tag| tag.split('_').next())
                == Some(primary_name.as_str())
        },
        || {
            format!(
                "TrafficRoute {} does not contain routes for {primary_name} and {}",
                canary.spec.apex_name(),
                canary.spec.canary_service_name(),
            )
        },
    )
}

/// A TrafficRoute has no namespace, so canaries with the same apex name in two namespaces would
/// write the same object. The live one belongs to another canary when another Canary owns it and
/// it routes another namespace's service: refuse rather than take its traffic over.
pub fn check_owner(canary: &Canary, live: &Value) -> Result<(), RouterError> {
    let uid = canary.metadata.uid.as_deref().unwrap_or_default();
    let other_owner = live["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["kind"] == "Canary" && o["controller"] == true && o["uid"] != uid);
    let Some(owner) = other_owner else {
        return Ok(());
    };
    let live_service = live["spec"]["destinations"][0]["match"][SERVICE_TAG]
        .as_str()
        .unwrap_or_default();
    let ours = format!("{}_{}_svc_", canary.spec.apex_name(), namespace(canary));
    if live_service.starts_with(&ours) {
        // The same service (a Canary deleted and created again): ours to take over.
        return Ok(());
    }
    let other_ns = live_service
        .split('_')
        .nth(1)
        .unwrap_or("another namespace");
    Err(RouterError::Invalid(format!(
        "TrafficRoute {name} is cluster-scoped and already belongs to canary {owner} in namespace \
         {other_ns}; set a different spec.service.name for this canary",
        name = canary.spec.apex_name(),
        owner = owner["name"].as_str().unwrap_or_default(),
    )))
}

impl Router for KumaRouter {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let api = self.api();
            let name = canary.spec.apex_name();
            let routes = match get_value(&api, name).await? {
                Some(live) => {
                    check_owner(canary, &live)?;
                    // The live weights are carried over: only set_routes moves traffic.
                    parse(canary, &live).unwrap_or(Routes::PRIMARY)
                }
                None => Routes::PRIMARY,
            };
            apply_value(&api, name, &render(canary, routes)?).await
        })
    }

    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let api = self.api();
            let name = canary.spec.apex_name();
            if let Some(live) = get_value(&api, name).await? {
                check_owner(canary, &live)?;
            }
            apply_value(&api, name, &render(canary, routes)?).await
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState> {
        Box::pin(async move {
            let name = canary.spec.apex_name();
            let live = get_value(&self.api(), name)
                .await?
                .ok_or_else(|| RouterError::Api(format!("TrafficRoute {name} not found")))?;
            check_owner(canary, &live)?;
            parse(canary, &live).map(state)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;

    fn canary() -> Canary {
        let mut c = fixtures::canary(json!({
            "provider": "kuma",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898, "apex": {"annotations": {"team": "a"}}},
            "analysis": {"interval": "15s", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
        }));
        c.metadata.annotations = Some([(MESH_ANNOTATION.to_string(), "mesh-a".to_string())].into());
        c
    }

    #[test]
    fn initial_routes() {
        let obj = render(&canary(), Routes::PRIMARY).unwrap();
        insta::assert_yaml_snapshot!(obj);
        assert_eq!(parse(&canary(), &obj).unwrap(), Routes::PRIMARY);
    }

    #[test]
    fn canary_step() {
        let obj = render(&canary(), Routes::split(20)).unwrap();
        insta::assert_yaml_snapshot!(obj["spec"]["conf"]);
        assert_eq!(parse(&canary(), &obj).unwrap(), Routes::split(20));
    }

    #[test]
    fn promotion_and_rollback() {
        let c = canary();
        let promoting = render(&c, Routes::CANARY).unwrap();
        assert_eq!(parse(&c, &promoting).unwrap(), Routes::CANARY);
        let back = render(&c, Routes::PRIMARY).unwrap();
        assert_eq!(back, render(&c, Routes::PRIMARY).unwrap());
        assert_eq!(back["spec"]["conf"]["split"][1]["weight"], 0);
    }

    #[test]
    fn mesh_defaults_to_default() {
        let mut c = canary();
        c.metadata.annotations = None;
        assert_eq!(render(&c, Routes::PRIMARY).unwrap()["mesh"], "default");
    }

    #[test]
    fn no_primary_entry_is_an_error() {
        let obj = json!({"spec": {"conf": {"split": [
            {"weight": 100, "destination": {SERVICE_TAG: "other_test_svc_9898"}},
        ]}}});
        assert!(parse(&canary(), &obj).is_err());
        assert!(parse(&canary(), &json!({})).is_err());
    }

    #[test]
    fn a_second_canary_with_the_same_apex_in_another_namespace_is_refused() {
        let first = canary();
        let live = render(&first, Routes::split(30)).unwrap();
        // Same name, other namespace, other uid.
        let mut second = canary();
        second.metadata.namespace = Some("other".to_string());
        second.metadata.uid = Some("3b3f4c2e-0000-4000-8000-000000000002".to_string());
        let err = check_owner(&second, &live).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TrafficRoute podinfo is cluster-scoped and already belongs to canary podinfo in \
             namespace test; set a different spec.service.name for this canary"
        );
        // Its owner, and the same canary created again in the same namespace, go on.
        assert!(check_owner(&first, &live).is_ok());
        let mut recreated = canary();
        recreated.metadata.uid = Some("3b3f4c2e-0000-4000-8000-000000000003".to_string());
        assert!(check_owner(&recreated, &live).is_ok());
    }
}
