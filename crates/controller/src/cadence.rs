//! When a canary's next tick is due.
//!
//! A tick's successor is due one interval after the time the tick was *scheduled* for, not after
//! it finished: the time a tick takes (waiting for a worker behind other canaries, API calls,
//! webhooks, metric queries, the status write) would otherwise add to every interval and stretch a
//! run beyond `ticks × interval` (see "schedule fidelity" in docs/benchmarks.md). This is the cadence of
//! Flagger's `time.Ticker`, which is anchored on its start, not on the end of each tick, and the
//! rule kept here: a tick that overruns its slot is followed immediately by one tick,
//! no burst, missed slots are dropped.
//!
//! The anchor is in memory only. After a restart the status gives the next tick
//! (lastTransitionTime + interval, see `reconcile::restart_due`); from there the cadence is
//! anchored again, so a restart costs at most one shifted tick, never a burst.

use std::time::Duration;

use tokio::time::Instant;

/// Next due time of a canary whose tick started at `started` and finished at `now`.
///
/// `scheduled` is the due time the tick ran for. A tick that ran because it was due (`scheduled`
/// at or before `started`) keeps the grid `scheduled + k × after`: its successor is due at the
/// next grid point, however late the tick started or however long it took. When grid points
/// passed meanwhile, the successor is due at once, once, and the grid goes on from the last
/// passed point, like a Go ticker whose receiver was slow: one missed tick is made up, the others
/// are dropped, so a backlog never turns into a burst. A tick that was not due (a watch event:
/// new revision, initialisation) starts a new grid at its start.
pub fn next_due(
    scheduled: Option<Instant>,
    started: Instant,
    now: Instant,
    after: Duration,
) -> Instant {
    let Some(grid) = scheduled.filter(|due| *due <= started) else {
        return started + after;
    };
    if after.is_zero() {
        return now;
    }
    let passed = now.saturating_duration_since(grid).as_nanos() / after.as_nanos();
    let steps = u32::try_from(passed).unwrap_or(u32::MAX).max(1);
    grid.checked_add(after.saturating_mul(steps)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_late_start_and_a_slow_tick_do_not_shift_the_next_tick() {
        let due = Instant::now();
        // Started 300 ms after its due time (queued behind other canaries), took 900 ms.
        let next = next_due(Some(due), due + ms(300), due + ms(1200), INTERVAL);
        assert_eq!(next, due + INTERVAL);
    }

    #[test]
    fn ticks_on_schedule_stay_on_a_fixed_grid() {
        let start = Instant::now();
        let mut due = None;
        let mut started = start;
        for n in 1..=8u32 {
            let next = next_due(due, started, started + ms(700), INTERVAL);
            assert_eq!(next, start + INTERVAL * n);
            // Every tick starts 250 ms after it is due: the lateness never adds up.
            due = Some(next);
            started = next + ms(250);
        }
    }

    #[test]
    fn an_unscheduled_tick_anchors_on_its_start() {
        let t = Instant::now();
        // A watch event (new revision) runs a tick before the idle tick that was due later.
        assert_eq!(
            next_due(Some(t + ms(4000)), t, t + ms(50), INTERVAL),
            t + INTERVAL
        );
        assert_eq!(next_due(None, t, t + ms(50), INTERVAL), t + INTERVAL);
    }

    #[test]
    fn a_tick_that_missed_grid_points_is_followed_once_at_once_then_the_grid_goes_on() {
        let due = Instant::now();
        // Queued for 12.5 s behind other canaries (interval 10 s), took 300 ms.
        let started = due + ms(12_500);
        let now = started + ms(300);
        let next = next_due(Some(due), started, now, INTERVAL);
        assert_eq!(next, due + INTERVAL, "the missed tick is due at once");
        assert!(next <= now);
        // The make-up tick runs at once and its successor is back on the grid, not a burst.
        let after_make_up = next_due(Some(next), now, now + ms(100), INTERVAL);
        assert_eq!(after_make_up, due + INTERVAL * 2);
    }

    #[test]
    fn a_backlog_of_many_intervals_is_made_up_by_one_tick_only() {
        let due = Instant::now();
        let started = due + INTERVAL * 6 + ms(400);
        let now = started + ms(100);
        let next = next_due(Some(due), started, now, INTERVAL);
        assert_eq!(next, due + INTERVAL * 6);
        assert_eq!(
            next_due(Some(next), now, now + ms(50), INTERVAL),
            due + INTERVAL * 7
        );
    }

    #[test]
    fn a_zero_interval_is_due_at_once() {
        let t = Instant::now();
        assert_eq!(next_due(Some(t), t, t + ms(5), Duration::ZERO), t + ms(5));
    }
}
