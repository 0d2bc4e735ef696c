//! Client-side rate limiting of API requests: Flagger's `-kubeconfig-qps` and `-kubeconfig-burst`,
//! which client-go turns into a token bucket every request of the client waits on.
//!
//! The bucket is governor's GCRA (equivalent to a token bucket of `burst` tokens refilled at `qps`
//! per second) behind a tower layer on the kube client's service stack. The kube client queues
//! requests in front of its stack and asks the stack whether it is ready before sending each one,
//! so a request waits in `poll_ready` for its token and requests leave in the order they were made.
//! A watch takes one token when it starts, however long it then streams, as in client-go.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use governor::clock::Clock;
use governor::{Quota, RateLimiter};

use crate::metrics::{ApiRequests, RequestLabels};
use crate::timings::Timings;

/// client-go's values when the flags are 0: `rest.DefaultQPS` and `rest.DefaultBurst`.
const DEFAULT_QPS: u32 = 5;
const DEFAULT_BURST: u32 = 10;

/// How fast the controller may send requests to the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRate {
    /// A negative `-kubeconfig-qps`: client-go then builds no limiter.
    Unlimited,
    /// At most `burst` requests at once, refilled at `qps` per second.
    Limited { qps: NonZeroU32, burst: NonZeroU32 },
}

impl ClientRate {
    /// The rate client-go derives from `QPS` and `Burst`: 0 means client-go's default, a
    /// negative QPS turns limiting off, and a negative burst with limiting on is refused (client-go
    /// refuses to build such a client).
    pub fn from_flags(qps: i32, burst: i32) -> Result<ClientRate, String> {
        let qps = match qps {
            q if q < 0 => return Ok(ClientRate::Unlimited),
            0 => DEFAULT_QPS,
            q => q.unsigned_abs(),
        };
        let burst = match burst {
            b if b < 0 => {
                return Err(format!(
                    "-kubeconfig-burst={burst}: must be at least 0 when -kubeconfig-qps limits requests"
                ));
            }
            0 => DEFAULT_BURST,
            b => b.unsigned_abs(),
        };
        match (NonZeroU32::new(qps), NonZeroU32::new(burst)) {
            (Some(qps), Some(burst)) => Ok(ClientRate::Limited { qps, burst }),
            _ => Err("-kubeconfig-qps and -kubeconfig-burst must be positive".to_string()),
        }
    }
}

/// The limiter's clock is tokio's, so a test on a paused runtime sees the same time the waits use.
#[derive(Clone, Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type Bucket = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// The shared bucket of one client.
#[derive(Clone, Debug)]
pub struct Limiter {
    bucket: Arc<Bucket>,
    clock: TokioClock,
}

impl Limiter {
    /// `None` for [`ClientRate::Unlimited`].
    pub fn new(rate: ClientRate) -> Option<Limiter> {
        let ClientRate::Limited { qps, burst } = rate else {
            return None;
        };
        let clock = TokioClock::default();
        let quota = Quota::per_second(qps).allow_burst(burst);
        Some(Limiter {
            bucket: Arc::new(RateLimiter::direct_with_clock(quota, clock.clone())),
            clock,
        })
    }

    /// Takes a token if one is there; otherwise how long until the next one.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.bucket
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// Puts every request of the service it wraps through a [`Limiter`] (none: requests pass),
/// counts it, times its wait for a token and its answer, and logs it at debug.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limiter: Option<Limiter>,
    requests: ApiRequests,
    timings: Timings,
}

impl RateLimitLayer {
    pub fn new(rate: ClientRate, requests: ApiRequests, timings: Timings) -> Self {
        RateLimitLayer {
            limiter: Limiter::new(rate),
            requests,
            timings,
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            limiter: self.limiter.clone(),
            requests: self.requests.clone(),
            timings: self.timings.clone(),
            wait: None,
            refused_at: None,
            admitted: false,
        }
    }
}

pub struct RateLimited<S> {
    inner: S,
    limiter: Option<Limiter>,
    requests: ApiRequests,
    timings: Timings,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the request at the head of the queue was first refused a token.
    refused_at: Option<tokio::time::Instant>,
    /// A token is held for the next `call`.
    admitted: bool,
}

impl<S, B> tower::Service<http::Request<B>> for RateLimited<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(limiter) = &self.limiter {
            while !self.admitted {
                if let Some(wait) = self.wait.as_mut() {
                    ready!(wait.as_mut().poll(cx));
                    self.wait = None;
                }
                match limiter.try_acquire() {
                    Ok(()) => {
                        self.admitted = true;
                        if let Some(refused_at) = self.refused_at.take() {
                            self.timings
                                .api_budget_wait
                                .inc_by(refused_at.elapsed().as_secs_f64());
                        }
                    }
                    Err(wait) => {
                        self.refused_at
                            .get_or_insert_with(tokio::time::Instant::now);
                        self.wait = Some(Box::pin(tokio::time::sleep(wait)));
                    }
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.admitted = false;
        // One line per request (a watch counts once, when it starts): at debug, how an operator
        // sees what the controller asks of the API server, e.g. that an idle canary asks nothing.
        tracing::debug!(method = %request.method(), uri = %request.uri(), "API request");
        let labels = RequestLabels {
            method: method_of(&request).to_string(),
            resource: resource_of(request.uri().path()),
        };
        self.requests.get_or_create(&labels).inc();
        let answer = self.inner.call(request);
        let timings = self.timings.clone();
        Box::pin(async move {
            let sent = tokio::time::Instant::now();
            let answer = answer.await;
            // A watch's answer is its first response, not the stream it then sends.
            timings
                .api_request
                .get_or_create(&labels)
                .observe(sent.elapsed().as_secs_f64());
            answer
        })
    }
}

/// The request's HTTP method, or `WATCH` for a GET with `watch=true` (or `watch=1`).
fn method_of<B>(request: &http::Request<B>) -> &str {
    let watch = request.uri().query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    if watch && request.method() == http::Method::GET {
        "WATCH"
    } else {
        request.method().as_str()
    }
}

/// The resource a request path names, with its subresource (`canaries/status`): what an operator
/// needs to tell a controller's reads and writes apart, never a name (that would be a series per
/// object). Paths outside `/api` and `/apis` resources (discovery, OpenAPI) are `discovery`.
fn resource_of(path: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Past `/api/<version>` or `/apis/<group>/<version>`.
    let rest = match segments.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return "discovery".to_string(),
    };
    // `namespaces/<ns>/<resource>…` names a namespaced resource; `namespaces[/<name>]` the
    // namespaces themselves.
    let rest = match rest {
        ["namespaces", _, resource, rest @ ..] => [&[*resource][..], rest].concat(),
        rest => rest.to_vec(),
    };
    match rest.as_slice() {
        [] => "discovery".to_string(),
        [resource] | [resource, _] => (*resource).to_string(),
        [resource, _, subresource, ..] => format!("{resource}/{subresource}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_told_apart_from_gets() {
        let request = |method: http::Method, uri: &str| {
            http::Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .unwrap()
        };
        let watch = request(
            http::Method::GET,
            "/apis/flagger.app/v1beta1/canaries?resourceVersion=1&watch=true",
        );
        assert_eq!(method_of(&watch), "WATCH");
        let list = request(http::Method::GET, "/api/v1/configmaps?watch=false");
        assert_eq!(method_of(&list), "GET");
        let patch = request(http::Method::PATCH, "/api/v1/namespaces/a/events/e");
        assert_eq!(method_of(&patch), "PATCH");
    }

    #[test]
    fn requests_are_counted_by_resource_never_by_name() {
        let cases = [
            (
                "/apis/apps/v1/namespaces/test/deployments/podinfo",
                "deployments",
            ),
            ("/apis/apps/v1/namespaces/test/deployments", "deployments"),
            ("/apis/apps/v1/deployments", "deployments"),
            (
                "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo/status",
                "canaries/status",
            ),
            ("/api/v1/namespaces/test/events/podinfo.1234", "events"),
            ("/api/v1/namespaces/test", "namespaces"),
            ("/api/v1/namespaces", "namespaces"),
            ("/api/v1/nodes/node-1/status", "nodes/status"),
            ("/apis/apps/v1", "discovery"),
            ("/apis", "discovery"),
            ("/openapi/v3", "discovery"),
            ("/version", "discovery"),
        ];
        for (path, resource) in cases {
            assert_eq!(resource_of(path), resource, "{path}");
        }
    }

    fn limited(qps: u32, burst: u32) -> ClientRate {
        ClientRate::Limited {
            qps: NonZeroU32::new(qps).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    #[test]
    fn flags_map_to_client_gos_rate() {
        assert_eq!(ClientRate::from_flags(100, 250), Ok(limited(100, 250)));
        assert_eq!(ClientRate::from_flags(0, 0), Ok(limited(5, 10)));
        assert_eq!(ClientRate::from_flags(-1, -1), Ok(ClientRate::Unlimited));
        let error = ClientRate::from_flags(10, -1).unwrap_err();
        assert!(error.contains("-kubeconfig-burst=-1"), "{error}");
        assert!(Limiter::new(ClientRate::Unlimited).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_admits_the_burst_then_qps_per_second() {
        let limiter = Limiter::new(limited(2, 3)).unwrap();
        let admitted = |limiter: &Limiter| {
            std::iter::from_fn(|| limiter.try_acquire().ok())
                .take(100)
                .count()
        };
        assert_eq!(admitted(&limiter), 3, "the burst at once");
        assert_eq!(limiter.try_acquire(), Err(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(499)).await;
        assert_eq!(admitted(&limiter), 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(admitted(&limiter), 1);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            admitted(&limiter),
            3,
            "an idle client saves up the burst, no more"
        );
    }
}
