//! Flagger's `-control-loop-interval`: every canary is reconciled at least that often, even when
//! no watch event and no scheduled tick asked for it, so nothing a lost event or a dropped requeue
//! would leave undone waits longer than one interval.
//!
//! A resync is an ordinary reconcile: it reads the canary, its workloads and configs from the
//! watch caches, the tick gate lets through only what is due or safe at any moment, and an idle
//! canary costs no API request, so a short interval costs CPU, not API-server load.

use std::time::Duration;

use futures::Stream;
use tokio::time::MissedTickBehavior;

/// One item per `interval`, the first one interval after the start (the watches' initial lists
/// already reconcile every canary once). A zero interval turns the resync off, as a Go ticker
/// refuses one.
pub fn every(interval: Duration) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(
        (!interval.is_zero()).then(|| {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            // A controller busy for several intervals owes one resync, not a burst of them.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        }),
        |ticks| async move {
            let mut ticks = ticks?;
            ticks.tick().await;
            tracing::debug!("resync: reconciling every canary");
            Some(((), Some(ticks)))
        },
    )
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio::time::Instant;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_once_per_interval_starting_one_interval_in() {
        let start = Instant::now();
        let interval = Duration::from_secs(10);
        let times: Vec<Duration> = every(interval)
            .take(3)
            .map(|()| start.elapsed())
            .collect()
            .await;
        assert_eq!(
            times,
            [interval, interval * 2, interval * 3],
            "on tokio's paused clock"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_interval_never_fires() {
        assert_eq!(std::pin::pin!(every(Duration::ZERO)).next().await, None);
    }
}
