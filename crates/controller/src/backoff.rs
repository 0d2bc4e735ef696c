//! How long a canary whose tick failed waits before the next try: doubling from a short first
//! retry up to a cap, so a canary that cannot be reconciled (an API server refusing us, a broken
//! object) costs a few requests an hour instead of one every few seconds, while a passing glitch
//! is retried at once.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

/// The retry schedule of failed ticks: 5 s (what every retry was before), 10 s, 20 s, … 5 min.
pub const RETRY: Backoff = Backoff {
    first: Duration::from_secs(5),
    cap: Duration::from_secs(300),
};

impl Backoff {
    /// The wait after `failures` earlier consecutive failures (0 for the first failure).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_retry_up_to_the_cap() {
        let delays: Vec<u64> = (0..10).map(|n| RETRY.delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        assert_eq!(RETRY.delay(u32::MAX), RETRY.cap, "no overflow");
    }
}
