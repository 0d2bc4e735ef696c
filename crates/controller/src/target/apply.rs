//! The writes the target shell makes: server-side apply of the objects we generate, merge patches
//! of the user's own objects, each recorded in the cache so the next read waits for it.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde_json::Value;

use crate::cache::{Cache, Cached};
use crate::status::FIELD_MANAGER;

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The server-side apply body of a desired object we generate.
pub(super) fn apply_body<K>(object: &K) -> Result<Value, kube::Error>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let mut body = serde_json::to_value(object).map_err(kube::Error::SerdeError)?;
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), K::api_version(&()).into());
        map.insert("kind".into(), K::kind(&()).into());
        // Status is the owning controller's business, never part of our intent.
        map.remove("status");
    }
    Ok(body)
}

/// Server-side apply of a desired object we generate.
pub(super) async fn apply<K>(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    object: &K,
) -> Result<(), kube::Error>
where
    K: Cached + Serialize,
{
    apply_value::<K>(client, cache, namespace, &apply_body(object)?).await
}

pub(super) async fn apply_value<K>(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    body: &Value,
) -> Result<(), kube::Error>
where
    K: Cached,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    let applied = api
        .patch(name, &apply_params(), &Patch::Apply(body))
        .await?;
    cache.wrote(&applied);
    cache.applied(body);
    Ok(())
}

/// A merge patch of an object that is not ours alone: only the fields in `patch` change.
pub(super) async fn merge_patch<K>(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    name: &str,
    field_manager: Option<&str>,
    patch: &Value,
) -> Result<(), kube::Error>
where
    K: Cached,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams {
        field_manager: field_manager.map(str::to_string),
        ..PatchParams::default()
    };
    let patched = api.patch(name, &params, &Patch::Merge(patch)).await?;
    cache.wrote(&patched);
    Ok(())
}

/// The named objects that exist, by name: from the watch cache, or a GET per name (only the few
/// configs a pod template references, never a LIST of every Secret of the namespace).
pub(super) async fn get_named<K: Cached>(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    names: BTreeSet<String>,
) -> Result<BTreeMap<String, K>, kube::Error> {
    let mut found = BTreeMap::new();
    for name in names {
        if let Some(object) = cache.get(client, namespace, &name).await? {
            found.insert(name, object);
        }
    }
    Ok(found)
}
