//! `knative`: the Knative Service's own traffic split between the revision recorded as primary
//! (annotation `flagger.app/primary-revision`) and the latest revision. There is no copy of the
//! workload: Knative keeps every revision, so "primary" is a name, moved at promotion.

use flagger_api::Canary;
use flagger_core::{RouteState, Routes};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::{
    FIELD_MANAGER, Router, RouterError, RouterFuture, api_error, dynamic_api, get_value, namespace,
    weight,
};

/// The revision that serves as primary, on the Knative Service.
pub const PRIMARY_REVISION: &str = "flagger.app/primary-revision";
pub const GROUP_VERSION: &str = "serving.knative.dev/v1";

pub struct KnativeRouter {
    client: Client,
}

/// The Knative Services of the canary's namespace.
pub fn services(client: &Client, canary: &Canary) -> Api<DynamicObject> {
    dynamic_api(
        client,
        &namespace(canary),
        ("serving.knative.dev", "v1", "Service"),
        "services",
    )
}

/// The Knative Service's `spec.traffic` for `routes`: the latest revision gets the canary's share,
/// the primary revision the rest.
pub fn traffic(primary_revision: &str, routes: Routes) -> Value {
    json!([
        {"latestRevision": true, "percent": routes.canary},
        {"revisionName": primary_revision, "percent": routes.primary},
    ])
}

/// The apply body that writes only `spec.traffic` and the primary revision: the rest of the
/// Service stays the user's. Every apply carries both, because server-side apply removes what the
/// field manager wrote before and leaves out now.
pub fn traffic_body(canary: &Canary, primary_revision: &str, traffic: Value) -> Value {
    json!({
        "apiVersion": GROUP_VERSION,
        "kind": "Service",
        "metadata": {
            "name": canary.spec.target_ref.name,
            "namespace": namespace(canary),
            "annotations": {PRIMARY_REVISION: primary_revision},
        },
        "spec": {"traffic": traffic},
    })
}

fn primary_revision(service: &Value) -> Option<&str> {
    service["metadata"]["annotations"][PRIMARY_REVISION]
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Routes from the Service's `status.traffic`, as Knative reports what it serves.
pub fn parse(name: &str, service: &Value) -> Result<RouteState, RouterError> {
    let primary = primary_revision(service).ok_or_else(|| {
        RouterError::Api(format!(
            "Knative Service {name} has no {PRIMARY_REVISION} annotation"
        ))
    })?;
    let entries = service["status"]["traffic"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let latest = |e: &&Value| e["latestRevision"].as_bool() == Some(true);
    // When the latest revision is the primary one, Knative lists it twice: once as the latest,
    // once by name; the primary's share is the named entry's.
    let canary_entry = entries.iter().find(latest);
    let primary_entry = entries
        .iter()
        .find(|e| e["revisionName"] == primary && !latest(e))
        .or_else(|| entries.iter().find(|e| e["revisionName"] == primary));
    let percent = |entry: Option<&Value>, what: &str| {
        weight(entry.map(|e| &e["percent"])).ok_or_else(|| {
            RouterError::Api(format!(
                "Knative Service {name}: status.traffic has no percent for the {what}"
            ))
        })
    };
    Ok(RouteState {
        primary: percent(primary_entry, &format!("primary revision {primary}"))?,
        canary: percent(canary_entry, "latest revision")?,
        mirrored: false,
    })
}

impl KnativeRouter {
    pub fn new(client: Client) -> Self {
        KnativeRouter { client }
    }

    async fn live(&self, canary: &Canary) -> Result<Value, RouterError> {
        let name = &canary.spec.target_ref.name;
        get_value(&services(&self.client, canary), name)
            .await?
            .ok_or_else(|| RouterError::Api(format!("Knative Service {name} not found")))
    }
}

impl Router for KnativeRouter {
    /// Nothing to create: the Knative Service is the routing object, and initialising the canary
    /// records its primary revision.
    fn reconcile<'a>(&'a self, _canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let live = self.live(canary).await?;
            let name = &canary.spec.target_ref.name;
            let primary = primary_revision(&live).ok_or_else(|| {
                RouterError::Api(format!(
                    "Knative Service {name} has no {PRIMARY_REVISION} annotation"
                ))
            })?;
            let body = traffic_body(canary, primary, traffic(primary, routes));
            super::apply_value(&services(&self.client, canary), name, &body).await
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState> {
        Box::pin(async move { parse(&canary.spec.target_ref.name, &self.live(canary).await?) })
    }

    /// The primary-revision annotation goes; the traffic split stays as the last run left it.
    fn finalize<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let name = &canary.spec.target_ref.name;
            let patch = json!({"metadata": {"annotations": {PRIMARY_REVISION: null}}});
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            match services(&self.client, canary)
                .patch(name, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(api_error(&format!("updating Knative Service {name}"), e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fixtures;

    fn canary() -> Canary {
        fixtures::canary(json!({
            "provider": "knative",
            "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
            "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 40, "stepWeight": 20},
        }))
    }

    /// As Knative reports a split between revision 00001 (primary) and 00002 (latest).
    fn served(primary: &str, status_traffic: Value) -> Value {
        json!({
            "metadata": {"name": "podinfo", "annotations": {PRIMARY_REVISION: primary}},
            "status": {"traffic": status_traffic},
        })
    }

    #[test]
    fn traffic_per_step() {
        let c = canary();
        insta::assert_yaml_snapshot!(
            "initialise",
            traffic_body(
                &c,
                "podinfo-00001",
                traffic("podinfo-00001", Routes::PRIMARY)
            )
        );
        insta::assert_yaml_snapshot!(
            "weight_20",
            traffic_body(
                &c,
                "podinfo-00001",
                traffic("podinfo-00001", Routes::split(20))
            )
        );
        insta::assert_yaml_snapshot!(
            "promoted",
            traffic_body(
                &c,
                "podinfo-00002",
                traffic("podinfo-00002", Routes::PRIMARY)
            )
        );
    }

    #[test]
    fn routes_from_status_traffic() {
        let split = served(
            "podinfo-00001",
            json!([
                {"latestRevision": true, "revisionName": "podinfo-00002", "percent": 20},
                {"latestRevision": false, "revisionName": "podinfo-00001", "percent": 80},
            ]),
        );
        let s = parse("podinfo", &split).unwrap();
        assert_eq!((s.primary, s.canary, s.mirrored), (80, 20, false));
        // Latest and primary are one revision (after initialisation or promotion).
        let same = served(
            "podinfo-00002",
            json!([
                {"latestRevision": true, "revisionName": "podinfo-00002", "percent": 0},
                {"latestRevision": false, "revisionName": "podinfo-00002", "percent": 100},
            ]),
        );
        let s = parse("podinfo", &same).unwrap();
        assert_eq!((s.primary, s.canary), (100, 0));
    }

    #[test]
    fn missing_annotation_or_entries_are_errors() {
        let no_primary = json!({"metadata": {"name": "podinfo"}, "status": {"traffic": []}});
        assert_eq!(
            parse("podinfo", &no_primary).unwrap_err().to_string(),
            "Knative Service podinfo has no flagger.app/primary-revision annotation"
        );
        let no_latest = served(
            "podinfo-00001",
            json!([{"latestRevision": false, "revisionName": "podinfo-00001", "percent": 100}]),
        );
        assert_eq!(
            parse("podinfo", &no_latest).unwrap_err().to_string(),
            "Knative Service podinfo: status.traffic has no percent for the latest revision"
        );
        let not_reconciled = served("podinfo-00001", Value::Null);
        assert!(parse("podinfo", &not_reconciled).is_err());
    }
}
