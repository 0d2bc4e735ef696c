//! The API server's audit log (`hack/cluster/up` records every ServiceAccount request at Metadata level) and
//! RBAC rules, to compare what a controller did with what it was granted.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::{Result, TestNamespace, strings};

/// The log `hack/cluster/up` points the API server at.
pub fn log_path() -> PathBuf {
    crate::controller::cluster_dir().join("audit/audit.log")
}

/// One resource request as the audit log records it (a watch is a `watch`, a `?watch` list included).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    /// `resource` or `resource/subresource`, as RBAC names them.
    pub resource: String,
    /// None for a cluster-scoped request (or a list across namespaces).
    pub namespace: Option<String>,
    pub code: u16,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        let scope = self.namespace.as_deref().unwrap_or("(cluster)");
        write!(
            f,
            "{} {group}/{} in {scope} -> {}",
            self.verb, self.resource, self.code
        )
    }
}

/// Everything `user` asked the API server, in order: resource requests and the paths of non-resource ones
/// (discovery, `/version`).
#[derive(Debug, Default)]
pub struct Requests {
    pub resources: Vec<Request>,
    pub non_resource: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(rename = "auditID")]
    audit_id: String,
    verb: String,
    request_u_r_i: String,
    user: User,
    object_ref: Option<ObjectRef>,
    response_status: Option<Status>,
}

#[derive(Deserialize)]
struct User {
    username: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    resource: Option<String>,
    subresource: Option<String>,
    namespace: Option<String>,
    api_group: Option<String>,
}

#[derive(Deserialize)]
struct Status {
    code: Option<u16>,
}

/// The requests of `user` in the audit log. A long-running request (a watch) is logged when its response
/// starts and again when it ends; it counts once.
pub fn requests_of(user: &str) -> Result<Requests> {
    let path = log_path();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the audit log {}", path.display()))?;
    let mut seen = BTreeSet::new();
    let mut out = Requests::default();
    for line in text.lines().filter(|l| l.contains(user)) {
        let event: Event =
            serde_json::from_str(line).with_context(|| format!("parsing audit event {line}"))?;
        if event.user.username != user || !seen.insert(event.audit_id) {
            continue;
        }
        match event
            .object_ref
            .and_then(|o| Some((o.resource.clone()?, o)))
        {
            Some((resource, o)) => out.resources.push(Request {
                verb: event.verb,
                group: o.api_group.unwrap_or_default(),
                resource: match o.subresource {
                    Some(sub) => format!("{resource}/{sub}"),
                    None => resource,
                },
                namespace: o.namespace,
                code: event.response_status.and_then(|s| s.code).unwrap_or(0),
            }),
            None => {
                let path = event.request_u_r_i.split('?').next().unwrap_or_default();
                out.non_resource.insert(format!("{} {path}", event.verb));
            }
        }
    }
    Ok(out)
}

/// A kubeconfig for the cluster of KUBECONFIG that authenticates as ServiceAccount `account` (like the pod's
/// projected token would).
pub async fn service_account_kubeconfig(ns: &TestNamespace, account: &str) -> Result<PathBuf> {
    let accounts: Api<ServiceAccount> = ns.api();
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("a token for ServiceAccount {account}"))?
        .status
        .context("TokenRequest without status")?
        .token;
    let admin = std::env::var("KUBECONFIG").context("KUBECONFIG is unset")?;
    let text = std::fs::read_to_string(&admin).with_context(|| format!("reading {admin}"))?;
    let mut config: Value = serde_saphyr::from_str(&text).context("parsing KUBECONFIG")?;
    let user = format!("system:serviceaccount:{}:{account}", ns.name);
    config["users"] = json!([{"name": user, "user": {"token": token}}]);
    for context in config["contexts"].as_array_mut().into_iter().flatten() {
        context["context"]["user"] = json!(user);
    }
    let path = std::env::temp_dir().join(format!("flagger-rs-e2e-{}-sa.kubeconfig", ns.name));
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

/// One RBAC rule, scoped to a namespace when it comes from a Role.
#[derive(Clone, Debug)]
pub struct Rule {
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    pub namespace: Option<String>,
}

/// The rules of a ClusterRole or Role (as JSON); a Role's apply only in its namespace.
pub fn rules(role: &Value) -> Vec<Rule> {
    let namespace = (role["kind"] == "Role")
        .then(|| role["metadata"]["namespace"].as_str().map(String::from))
        .flatten();
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| Rule {
            groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            verbs: strings(&r["verbs"]),
            namespace: namespace.clone(),
        })
        .collect()
}

fn matches(items: &[String], want: &str) -> bool {
    items.iter().any(|i| i == "*" || i == want)
}

/// Whether `rules` allow `request` (RBAC's own matching; no resourceNames are used by the charts).
pub fn allows(rules: &[Rule], request: &Request) -> bool {
    rules.iter().any(|r| {
        matches(&r.groups, &request.group)
            && matches(&r.resources, &request.resource)
            && matches(&r.verbs, &request.verb)
            && r.namespace
                .as_ref()
                .is_none_or(|ns| request.namespace.as_ref() == Some(ns))
    })
}

/// (group, resource, verb) of a request, as RBAC grants it. A server-side apply that created its object (a
/// PATCH answered 201) needed `create` as well as `patch`.
pub fn grants_used(request: &Request) -> Vec<(String, String, String)> {
    let mut verbs = vec![request.verb.clone()];
    if request.verb == "patch" && request.code == 201 {
        verbs.push("create".into());
    }
    verbs
        .into_iter()
        .map(|v| (request.group.clone(), request.resource.clone(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(verb: &str, group: &str, resource: &str, ns: Option<&str>) -> Request {
        Request {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: ns.map(String::from),
            code: 200,
        }
    }

    #[test]
    fn a_role_allows_only_in_its_namespace_and_a_cluster_role_everywhere() {
        let role = rules(&json!({
            "kind": "Role", "metadata": {"namespace": "a"},
            "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}],
        }));
        let lease = |ns| request("get", "coordination.k8s.io", "leases", ns);
        assert!(allows(&role, &lease(Some("a"))));
        assert!(!allows(&role, &lease(Some("b"))));
        assert!(!allows(&role, &lease(None)));
        let cluster = rules(&json!({
            "kind": "ClusterRole",
            "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "patch"]}],
        }));
        assert!(allows(
            &cluster,
            &request("patch", "", "services", Some("x"))
        ));
        assert!(!allows(
            &cluster,
            &request("update", "", "services", Some("x"))
        ));
        assert!(!allows(
            &cluster,
            &request("patch", "", "services/status", Some("x"))
        ));
        assert!(!allows(
            &cluster,
            &request("patch", "apps", "services", Some("x"))
        ));
    }

    #[test]
    fn an_apply_that_creates_uses_create_and_patch() {
        let mut apply = request("patch", "apps", "deployments", Some("x"));
        assert_eq!(grants_used(&apply).len(), 1);
        apply.code = 201;
        let verbs: Vec<String> = grants_used(&apply).into_iter().map(|g| g.2).collect();
        assert_eq!(verbs, ["patch", "create"]);
    }
}
