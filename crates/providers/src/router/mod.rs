//! Routers: apply routes, set and read weights (routers.md §1). One file per provider.

mod kubernetes;

use std::future::Future;
use std::pin::Pin;

use flagger_api::Canary;
use flagger_core::{RouteState, Routes};

pub use kubernetes::KubernetesRouter;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("{0}")]
    Api(String),
    #[error("provider {0} is not supported yet")]
    Unsupported(String),
}

pub type RouterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RouterError>> + Send + 'a>>;

/// The contract of routers.md §1. A reconcile never moves traffic: only `set_routes` writes
/// weights, mirrors and session-affinity rules.
pub trait Router: Send + Sync {
    /// Creates the routing objects if missing (primary 100, canary 0), otherwise updates their
    /// structure only.
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()>;
    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()>;
    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState>;
    /// Reverts what was taken over (deletion with `revertOnDeletion`).
    fn finalize<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()>;
}

/// The router for an effective provider name (`spec.provider` or the `-mesh-provider` flag).
pub fn for_provider(provider: &str) -> Result<Box<dyn Router>, RouterError> {
    match provider {
        "kubernetes" => Ok(Box::new(KubernetesRouter)),
        other => Err(RouterError::Unsupported(other.to_string())),
    }
}
