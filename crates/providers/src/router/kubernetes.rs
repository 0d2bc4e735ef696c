//! `kubernetes`: no routing object. The apex Service always selects the primary and the canary is
//! reachable only through `<apex>-canary`, so runs are Blue/Green.

use flagger_api::Canary;
use flagger_core::{RouteState, Routes};

use super::{Router, RouterFuture};

pub struct KubernetesRouter;

impl Router for KubernetesRouter {
    fn reconcile<'a>(&'a self, _: &'a Canary) -> RouterFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn set_routes<'a>(&'a self, _: &'a Canary, _: Routes) -> RouterFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// `0/100` while a Blue/Green run is iterating, `100/0` otherwise, as Flagger reports it.
    fn get_routes<'a>(&'a self, canary: &'a Canary) -> RouterFuture<'a, RouteState> {
        let iterating = canary
            .status
            .as_ref()
            .and_then(|s| s.iterations)
            .is_some_and(|i| i > 0);
        Box::pin(async move {
            Ok(if iterating {
                RouteState {
                    primary: 0,
                    canary: 100,
                    mirrored: false,
                }
            } else {
                RouteState::PRIMARY
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagger_api::CanaryStatus;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn routes_follow_the_iteration_counter() {
        let mut canary = Canary::new("podinfo", Default::default());
        assert_eq!(
            block_on(KubernetesRouter.get_routes(&canary)).unwrap(),
            RouteState::PRIMARY
        );
        canary.status = Some(CanaryStatus {
            iterations: Some(2),
            ..Default::default()
        });
        let routes = block_on(KubernetesRouter.get_routes(&canary)).unwrap();
        assert_eq!((routes.primary, routes.canary), (0, 100));
        assert!(block_on(KubernetesRouter.set_routes(&canary, Routes::CANARY)).is_ok());
    }
}
