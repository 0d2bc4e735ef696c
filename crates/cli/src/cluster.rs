//! How the commands that talk to a cluster (`status`, `promote`, `validate --cluster`, …) find it:
//! kubectl's own flags and defaults, so `kubectl flagger …` and `flagger-rs …` reach the cluster and
//! namespace `kubectl get` would. Failures are said in the user's terms, one line each.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(long, short = 'n', global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// A client for the chosen cluster and the namespace commands act in.
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl ClusterArgs {
    pub async fn connect(&self) -> Result<Cluster, CliError> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let no_cluster =
            |e: &dyn std::fmt::Display| CliError::NoCluster(format!("no cluster configured: {e}"));
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                    CliError::NoCluster(format!("cannot read kubeconfig {}: {e}", path.display()))
                })?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| no_cluster(&e))?
            }
            None if self.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| no_cluster(&e))?,
            None => Config::infer().await.map_err(|e| no_cluster(&e))?,
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)
            .map_err(|e| CliError::NoCluster(format!("cannot build a client: {e}")))?;
        Ok(Cluster { client, namespace })
    }
}

/// An error a person on call can act on; `Display` is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    NoCluster(String),
    #[error("{0}")]
    Api(String),
    #[error("{0}")]
    Usage(String),
}

/// What went wrong talking to the API server about `what` (e.g. `get canaries.flagger.app` in
/// `test`), said as kubectl would rather than as the client library's debug form.
pub fn api_error(error: &kube::Error, verb: &str, resource: &str, namespace: &str) -> CliError {
    let place = if namespace.is_empty() {
        String::new()
    } else {
        format!(" in namespace {namespace}")
    };
    match error {
        kube::Error::Api(status) => match status.code {
            401 => CliError::Api(format!(
                "the cluster did not accept your credentials ({})",
                status.message
            )),
            403 => CliError::Api(format!(
                "no permission to {verb} {resource}{place}: {}",
                status.message
            )),
            // A missing object names itself in the details; a missing resource type has none.
            404 if status.details.as_ref().is_none_or(|d| d.name.is_empty()) => {
                CliError::Api(format!(
                    "the cluster does not serve {resource}: are flagger-rs's CRDs installed? \
                     (`flagger-rs crds | kubectl apply -f -`)"
                ))
            }
            404 => CliError::Api(format!("{}{place}", status.message)),
            _ => CliError::Api(format!(
                "cannot {verb} {resource}{place}: {} ({})",
                status.message, status.code
            )),
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => CliError::NoCluster(format!(
            "cannot reach the cluster: {}",
            flagger_providers::wording::kube_error(error)
        )),
        other => CliError::Api(format!(
            "cannot {verb} {resource}{place}: {}",
            flagger_providers::wording::kube_error(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn status(code: u16, message: &str, name: Option<&str>) -> kube::Error {
        let mut status = Status::failure(message, "");
        status.code = code;
        status.details =
            name.map(|name| serde_json::from_value(serde_json::json!({ "name": name })).unwrap());
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn api_errors_read_as_the_user_would_say_them() {
        let forbidden = status(403, "canaries.flagger.app is forbidden", None);
        assert_eq!(
            api_error(&forbidden, "list", "canaries.flagger.app", "test").to_string(),
            "no permission to list canaries.flagger.app in namespace test: canaries.flagger.app is forbidden"
        );
        let no_crd = status(
            404,
            "the server could not find the requested resource",
            Some(""),
        );
        assert!(
            api_error(&no_crd, "list", "canaries.flagger.app", "test")
                .to_string()
                .contains("CRDs installed")
        );
        let missing = status(
            404,
            "canaries.flagger.app \"podinfo\" not found",
            Some("podinfo"),
        );
        assert_eq!(
            api_error(&missing, "get", "canaries.flagger.app", "test").to_string(),
            "canaries.flagger.app \"podinfo\" not found in namespace test"
        );
    }

    #[test]
    fn credentials_and_other_refusals_are_one_line_naming_the_request() {
        let unauthorized = status(401, "Unauthorized", None);
        assert_eq!(
            api_error(&unauthorized, "list", "canaries.flagger.app", "test").to_string(),
            "the cluster did not accept your credentials (Unauthorized)"
        );
        let forbidden = status(403, "events is forbidden", None);
        assert_eq!(
            api_error(&forbidden, "list", "events", "").to_string(),
            "no permission to list events: events is forbidden"
        );
        let busy = status(503, "etcd is busy", None);
        let line = api_error(&busy, "watch", "canaries.flagger.app", "test").to_string();
        assert_eq!(
            line,
            "cannot watch canaries.flagger.app in namespace test: etcd is busy (503)"
        );
        assert!(!line.contains('\n'));
    }
}
