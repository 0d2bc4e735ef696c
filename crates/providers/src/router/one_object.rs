//! The routers whose whole routing is one object they render from the Canary for given weights
//! (contour's HTTPProxy, traefik's TraefikService, gloo's RouteTable, apisix's ApisixRoute): a
//! reconcile writes it again with the weights it holds, `set_routes` with new ones, and the weights
//! are read back from it.

use flagger_api::Canary;
use flagger_core::{RouteState, Routes};
use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::{Router, RouterError, RouterFuture, carried_routes, get_value, state};

pub(super) trait OneObject: Send + Sync {
    /// The object's kind, as messages name it.
    const KIND: &'static str;
    fn objects(&self, canary: &Canary) -> Api<DynamicObject>;
    /// Named after the apex Service unless the router says otherwise.
    fn object_name(canary: &Canary) -> Result<String, RouterError> {
        Ok(canary.spec.apex_name().to_string())
    }
    fn parse(canary: &Canary, obj: &Value) -> Result<Routes, RouterError>;
    /// Renders the object (and whatever it refers to) for `routes` and applies it.
    fn write<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()>;
}

impl<T: OneObject> Router for T {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async move {
            let name = T::object_name(canary)?;
            let routes =
                carried_routes(&self.objects(canary), &name, |live| T::parse(canary, live)).await?;
            self.write(canary, routes).await
        })
    }

    fn set_routes<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()> {
        self.write(canary, routes)
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState> {
        Box::pin(async move {
            let name = T::object_name(canary)?;
            let live = get_value(&self.objects(canary), &name)
                .await?
                .ok_or_else(|| RouterError::Api(format!("{} {name} not found", T::KIND)))?;
            T::parse(canary, &live).map(state)
        })
    }
}

/// `impl OneObject` for a router with an inherent `apply(canary, routes)` and a module-level
/// `parse(canary, obj)`; `$objects` names the inherent method that gives the object's Api.
macro_rules! one_object {
    ($router:ty, $kind:literal, $objects:ident $(, name: $name:path)?) => {
        impl $crate::router::one_object::OneObject for $router {
            const KIND: &'static str = $kind;

            fn objects(&self, canary: &Canary) -> Api<DynamicObject> {
                self.$objects(canary)
            }

            $(fn object_name(canary: &Canary) -> Result<String, RouterError> {
                $name(canary)
            })?

            fn parse(canary: &Canary, obj: &Value) -> Result<Routes, RouterError> {
                parse(canary, obj)
            }

            fn write<'a>(&'a self, canary: &'a Canary, routes: Routes) -> RouterFuture<'a, ()> {
                Box::pin(self.apply(canary, routes))
            }
        }
    };
}
pub(super) use one_object;
