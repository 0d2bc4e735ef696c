//! Event aggregation, as client-go's event recorder does it: the same event (same object, type,
//! reason and message) seen again bumps `count` and `lastTimestamp` of the one Event already
//! written instead of creating another, and the writes of repeats about one object are
//! rate-limited by a token bucket (a new message is always written at once). A stuck canary that fails the same step every tick then leaves one Event whose
//! count grows, not one Event per tick in etcd.
//!
//! Unlike client-go, an occurrence that the rate limit holds back is not lost: the series keeps
//! counting and its latest count is written once the bucket has a token again, so `count` stays
//! the number of occurrences. (If the Event was deleted meanwhile, that count has no Event to go
//! to: a series keeps no copy of it, and the next occurrence starts a new one.) A repeat that
//! comes while its series' first Event is still being created waits for that create and bumps
//! the Event it made, so writes sent without waiting never make two Events of one series.
//!
//! Pure bookkeeping (no I/O, time passed in), so the schedule is tested without an API server.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

/// Writes allowed per object: a burst, then one per `refill`.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub burst: u32,
    pub refill: Duration,
}

/// client-go's burst (25 writes per object); one write per 30 s after it, so a canary stuck on
/// one failure costs 120 writes an hour to one Event instead of 720 new Events.
pub const LIMIT: Limit = Limit {
    burst: 25,
    refill: Duration::from_secs(30),
};

/// Series kept per canary; past it the canary's least recently seen is dropped (its next
/// occurrence starts a new Event, nothing else is lost). Per canary, not for all of them: with one
/// bound for the whole controller (client-go's 4 096), a thousand canaries with a handful of
/// messages each evict one another's series, and every waiting tick's repeated Warning becomes a
/// new Event instead of a count bump. Memory then follows the number of canaries.
const MAX_SERIES_PER_CANARY: usize = 32;

/// How long a series is kept without a new occurrence: client-go's aggregation window. Repeats
/// within a run (ticks come seconds to minutes apart) keep bumping one Event; a canary at rest
/// keeps none (see [`Correlator::sweep`]).
pub const SERIES_IDLE: Duration = Duration::from_secs(600);

/// How often a repeat that came while its series' first Event was still being created looks
/// again whether the create was answered. Creates under load take a few hundred milliseconds.
const CREATE_POLL: Duration = Duration::from_millis(50);

/// What makes two events the same, as client-go's aggregation key does.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SeriesKey {
    pub namespace: String,
    pub name: String,
    uid: String,
    type_: String,
    reason: String,
    message: String,
}

impl SeriesKey {
    pub fn of(event: &Event) -> SeriesKey {
        let object = &event.involved_object;
        SeriesKey {
            namespace: object.namespace.clone().unwrap_or_default(),
            name: object.name.clone().unwrap_or_default(),
            uid: object.uid.clone().unwrap_or_default(),
            type_: event.type_.clone().unwrap_or_default(),
            reason: event.reason.clone().unwrap_or_default(),
            message: event.message.clone().unwrap_or_default(),
        }
    }

    fn object(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    /// What tells this event's series from the canary's others: its type, reason and message.
    fn series_digest(&self) -> u64 {
        digest(&(&self.type_, &self.reason, &self.message))
    }

    /// Which object the canary is: a canary created again under its name has another uid.
    fn object_digest(&self) -> u64 {
        digest(&self.uid)
    }
}

/// Series are told apart by a 64-bit hash of what makes them the same instead of holding those
/// strings: with the few series a canary has, two different messages of one canary sharing a
/// hash is too unlikely to weigh against the memory of thousands of canaries running at once.
fn digest(what: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    what.hash(&mut hasher);
    hasher.finish()
}

/// One write to do: patch the Event `existing` to `count` and `last`, or create `event`.
#[derive(Debug)]
pub struct Write {
    /// The Event object written before, when there is one.
    pub existing: Option<String>,
    pub count: i32,
    pub last: Timestamp,
    /// The whole Event with the series' name, count and times: what is created when nothing was
    /// written yet, or when the object written is gone. A series keeps no Event, so the write of a
    /// held-back count (see [`Correlator::flush`]) has none: it can only bump its object.
    pub event: Option<Box<Event>>,
}

#[derive(Debug)]
pub enum Step {
    Write(Write),
    /// Rate-limited: flush the series after this wait.
    Defer(Duration),
    /// Rate-limited, and a flush is already scheduled.
    Pending,
}

#[derive(Debug)]
pub enum Flush {
    Write(Write),
    Wait(Duration),
    Nothing,
}

/// One series, kept compact: what it needs to bump its Event's count, not the Event. With a mass
/// rollout every canary has a handful of series within the window at once: holding each latest
/// Event (over a kilobyte with its strings) and later its message, reason, type and annotations
/// with the canary's object reference made them the largest part of what a running canary costs
/// (heaptrack, 1 000 canaries in a mass rollout: 2.7 MB of the ~6 MB the heap grows by from rest;
/// 1.1 MB as kept here). An occurrence comes with its whole Event, so creating one never needs
/// what the series dropped.
struct Series {
    /// With the canary's uid, what makes two events the same ([`SeriesKey::series_digest`]).
    same: u64,
    /// The Event object's name: the latest occurrence's until one is written, then the object's.
    name: Box<str>,
    count: i32,
    first: Timestamp,
    last: Timestamp,
    /// The count the Event object holds; 0 until it is created.
    written: i32,
    /// The first Event's create is on its way: a repeat meanwhile waits for it and bumps what
    /// it created, instead of creating a second Event of the same series.
    creating: bool,
    flush_pending: bool,
    seen: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(limit: Limit, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(limit.burst),
            at: now,
        }
    }

    fn refill(&mut self, limit: Limit, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64()
            / limit.refill.as_secs_f64().max(f64::EPSILON);
        self.tokens = (self.tokens + earned).min(f64::from(limit.burst));
        self.at = now;
    }

    fn take(&mut self, limit: Limit, now: Instant) -> Result<(), Duration> {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // At least a millisecond: rounded to whole nanoseconds, the wait for a token a rounding
            // error short of whole would be zero, and a flush would wait for it again and again.
            Err(limit
                .refill
                .mul_f64(1.0 - self.tokens)
                .max(Duration::from_millis(1)))
        }
    }
}

pub struct Correlator {
    limit: Limit,
    /// Per canary (namespace, name): its series and the bucket limiting its writes. Indexed by
    /// canary so that bounding, expiring and forgetting one canary's series never walks the
    /// series of thousands of others.
    canaries: HashMap<(String, String), CanarySeries>,
}

#[derive(Default)]
struct CanarySeries {
    /// The canary object its series are about ([`SeriesKey::object_digest`]).
    object: u64,
    /// A list, not a map: a canary has at most [`MAX_SERIES_PER_CANARY`], usually a handful,
    /// and a scan of a few entries costs less than a table's spare room and a key per lookup.
    series: Vec<Series>,
    /// Absent until the first repeat is limited, and again once refilled (see `sweep`).
    bucket: Option<Bucket>,
}

impl Correlator {
    pub fn new(limit: Limit) -> Correlator {
        Correlator {
            limit,
            canaries: HashMap::new(),
        }
    }

    /// Counts one occurrence of `event` and says whether to write it now.
    pub fn observe(&mut self, key: &SeriesKey, event: Event, now: Instant, at: Timestamp) -> Step {
        let limit = self.limit;
        let canary = self.canaries.entry(key.object()).or_default();
        let object = key.object_digest();
        if canary.object != object {
            // A canary deleted and created again under its name is another object; the Events
            // of the old one are not this one's.
            canary.series.clear();
            canary.object = object;
        }
        let same = key.series_digest();
        let index = match canary.series.iter().position(|s| s.same == same) {
            Some(index) => index,
            None => {
                if canary.series.len() >= MAX_SERIES_PER_CANARY {
                    canary.evict_oldest();
                }
                canary.series.push(Series {
                    same,
                    name: Box::default(),
                    count: 0,
                    first: at,
                    last: at,
                    written: 0,
                    creating: false,
                    flush_pending: false,
                    seen: now,
                });
                canary.series.len() - 1
            }
        };
        let series = &mut canary.series[index];
        series.count = series.count.saturating_add(1);
        series.last = at;
        series.seen = now;
        if series.written == 0 {
            series.name = event.metadata.name.as_deref().unwrap_or_default().into();
        }
        if series.flush_pending {
            return Step::Pending;
        }
        if series.creating {
            series.flush_pending = true;
            return Step::Defer(CREATE_POLL);
        }
        if series.written == 0 {
            // A new message is news: written at once, whatever the rate of repeats. What the
            // limit holds back is repeats, which only bump a count nobody waits for.
            series.creating = true;
            return Step::Write(canary.write(index, Some(event)));
        }
        let bucket = canary
            .bucket
            .get_or_insert_with(|| Bucket::full(limit, now));
        match bucket.take(limit, now) {
            Ok(()) => Step::Write(canary.write(index, Some(event))),
            Err(wait) => {
                canary.series[index].flush_pending = true;
                Step::Defer(wait)
            }
        }
    }

    /// A deferred series' turn: write its latest count, or wait longer if the object's bucket
    /// is still empty.
    pub fn flush(&mut self, key: &SeriesKey, now: Instant) -> Flush {
        let limit = self.limit;
        let Some((canary, index)) = self.find(key) else {
            return Flush::Nothing;
        };
        let series = &mut canary.series[index];
        if series.creating {
            return Flush::Wait(CREATE_POLL);
        }
        if series.count <= series.written || series.written == 0 {
            // Nothing held back, or no object to bump (a flush has no Event to create).
            series.flush_pending = false;
            return Flush::Nothing;
        }
        let bucket = canary
            .bucket
            .get_or_insert_with(|| Bucket::full(limit, now));
        match bucket.take(limit, now) {
            Ok(()) => {
                canary.series[index].flush_pending = false;
                Flush::Write(canary.write(index, None))
            }
            Err(wait) => Flush::Wait(wait),
        }
    }

    /// Records that the series' Event `object` now holds `count`.
    pub fn wrote(&mut self, key: &SeriesKey, object: &str, count: i32) {
        if let Some((canary, index)) = self.find(key) {
            let series = &mut canary.series[index];
            if *series.name != *object {
                series.name = object.into();
            }
            series.written = series.written.max(count);
            series.creating = false;
        }
    }

    /// A write of the series failed. A failed create leaves the series without an object: its
    /// next occurrence creates one with the whole count, the repeats held back for the create
    /// included.
    pub fn failed(&mut self, key: &SeriesKey) {
        if let Some((canary, index)) = self.find(key) {
            canary.series[index].creating = false;
        }
    }

    /// The series' Event object is gone (deleted, or expired: the API server keeps events for an
    /// hour) and a held-back count had no Event to create it again with: the series ends, and its
    /// next occurrence starts a new Event.
    pub fn lost(&mut self, key: &SeriesKey) {
        if let Some((canary, index)) = self.find(key) {
            canary.series.swap_remove(index);
        }
    }

    fn find(&mut self, key: &SeriesKey) -> Option<(&mut CanarySeries, usize)> {
        let canary = self.canaries.get_mut(&key.object())?;
        if !canary.is_object_of(key) {
            return None;
        }
        let same = key.series_digest();
        let index = canary.series.iter().position(|s| s.same == same)?;
        Some((canary, index))
    }

    pub fn forget(&mut self, namespace: &str, name: &str) {
        self.canaries
            .remove(&(namespace.to_string(), name.to_string()));
    }

    pub fn canaries(&self) -> Vec<(String, String)> {
        let mut out: Vec<_> = self.canaries.keys().cloned().collect();
        out.sort();
        out
    }

    /// Drops every series not seen for [`SERIES_IDLE`] with nothing left to write, and a
    /// canary's entry once it has no series and a full bucket again (a fresh one is the same).
    /// A later occurrence of a dropped message starts a new Event. Without this, each canary
    /// keeps up to [`MAX_SERIES_PER_CANARY`] series forever (every run adds its messages), and
    /// the controller's memory grows with the runs of thousands of canaries at rest.
    pub fn sweep(&mut self, now: Instant) {
        let limit = self.limit;
        self.canaries.retain(|_, canary| {
            canary
                .series
                .retain(|s| s.flush_pending || now.saturating_duration_since(s.seen) < SERIES_IDLE);
            if let Some(bucket) = canary.bucket.as_mut() {
                bucket.refill(limit, now);
                if bucket.tokens >= f64::from(limit.burst) {
                    canary.bucket = None;
                }
            }
            !canary.series.is_empty() || canary.bucket.is_some()
        });
    }

    /// How many series are kept, over all canaries.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.canaries.values().map(|c| c.series.len()).sum()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CanarySeries {
    /// Whether `key` is about the object these series are: the same uid, not only the same name.
    fn is_object_of(&self, key: &SeriesKey) -> bool {
        self.object == key.object_digest()
    }

    /// Drops the canary's least recently seen series (its count stays: the new one takes its place).
    fn evict_oldest(&mut self) {
        if let Some(oldest) = (0..self.series.len()).min_by_key(|&i| self.series[i].seen) {
            self.series.swap_remove(oldest);
        }
    }

    /// The write of series `index`: its count and last time, to patch its object if one exists,
    /// and `event`, when the write comes with an occurrence, as the series would create it (the
    /// object's name, the series' count and times).
    fn write(&self, index: usize, event: Option<Event>) -> Write {
        let series = &self.series[index];
        let event = event.map(|mut event| {
            event.metadata.name = Some(series.name.to_string());
            event.count = Some(series.count);
            event.first_timestamp = Some(Time(series.first));
            event.last_timestamp = Some(Time(series.last));
            Box::new(event)
        });
        Write {
            existing: (series.written > 0).then(|| series.name.to_string()),
            count: series.count,
            last: series.last,
            event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn event(name: &str, message: &str) -> Event {
        Event {
            involved_object: ObjectReference {
                kind: Some("Canary".into()),
                name: Some(name.into()),
                namespace: Some("test".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            type_: Some("Warning".into()),
            reason: Some("Synced".into()),
            message: Some(message.into()),
            count: Some(1),
            ..Default::default()
        }
    }

    /// Drives one canary's events through the correlator the way the recorder does, with
    /// writes that always succeed, and returns the objects created and the writes made.
    struct Sim {
        c: Correlator,
        objects: HashMap<String, i32>,
        writes: usize,
        deferred: Vec<(Instant, SeriesKey)>,
    }

    impl Sim {
        fn new(limit: Limit) -> Sim {
            Sim {
                c: Correlator::new(limit),
                objects: HashMap::new(),
                writes: 0,
                deferred: Vec::new(),
            }
        }

        fn apply(&mut self, key: &SeriesKey, write: Write) {
            let name = write
                .existing
                .unwrap_or_else(|| format!("event-{}", self.objects.len()));
            let count = write.count;
            self.objects.insert(name.clone(), count);
            self.writes += 1;
            self.c.wrote(key, &name, count);
        }

        fn run_flushes(&mut self, until: Instant) {
            while let Some(pos) = self.deferred.iter().position(|(at, _)| *at <= until) {
                let (at, key) = self.deferred.remove(pos);
                match self.c.flush(&key, at) {
                    Flush::Write(w) => self.apply(&key, w),
                    Flush::Wait(wait) => self.deferred.push((at + wait, key)),
                    Flush::Nothing => {}
                }
            }
        }

        fn record(&mut self, e: Event, now: Instant) {
            self.run_flushes(now);
            let key = SeriesKey::of(&e);
            match self.c.observe(&key, e, now, Timestamp::now()) {
                Step::Write(w) => self.apply(&key, w),
                Step::Defer(wait) => self.deferred.push((now + wait, key)),
                Step::Pending => {}
            }
        }
    }

    #[test]
    fn a_hundred_repeats_leave_one_event_with_count_100() {
        let mut sim = Sim::new(LIMIT);
        let t0 = Instant::now();
        let tick = Duration::from_secs(1);
        for n in 0..100 {
            sim.record(event("podinfo", "Halt advancement"), t0 + tick * n);
        }
        sim.run_flushes(t0 + Duration::from_secs(3600));
        assert_eq!(sim.objects.len(), 1, "{:?}", sim.objects);
        assert_eq!(sim.objects.values().next(), Some(&100));
        // The create, the burst, then one write per refill period over the remaining ~75 s,
        // then the final flush.
        assert!(
            sim.writes <= 1 + 25 + 75 / 30 + 2,
            "{} writes for 100 repeats",
            sim.writes
        );
    }

    #[test]
    fn different_messages_and_objects_are_different_events() {
        let mut sim = Sim::new(LIMIT);
        let t0 = Instant::now();
        sim.record(event("a", "one"), t0);
        sim.record(event("a", "two"), t0);
        sim.record(event("b", "one"), t0);
        sim.record(event("a", "one"), t0);
        let mut counts: Vec<i32> = sim.objects.values().copied().collect();
        counts.sort();
        assert_eq!(counts, [1, 1, 2]);
    }

    #[test]
    fn repeats_are_limited_per_object_new_messages_never_wait_and_nothing_is_lost() {
        let limit = Limit {
            burst: 2,
            refill: Duration::from_secs(10),
        };
        let mut sim = Sim::new(limit);
        let t0 = Instant::now();
        for message in ["one", "two"] {
            for _ in 0..5 {
                sim.record(event("a", message), t0);
            }
        }
        // Two creates (new messages are not limited), then the burst of 2 patches, the rest held.
        assert_eq!(sim.writes, 4);
        assert_eq!(sim.objects.values().sum::<i32>(), 2 + 2);
        sim.record(event("a", "three"), t0);
        assert_eq!(sim.writes, 5, "a new message is written at once");
        // Another object has its own bucket.
        sim.record(event("b", "x"), t0);
        sim.record(event("b", "x"), t0);
        assert_eq!(sim.writes, 7);
        sim.run_flushes(t0 + Duration::from_secs(10 * 8));
        let mut counts: Vec<i32> = sim.objects.values().copied().collect();
        counts.sort();
        assert_eq!(counts, [1, 2, 5, 5], "every held-back repeat is counted");
        assert_eq!(
            sim.writes, 9,
            "the two held series, one write each once a token is back"
        );
    }

    #[test]
    fn forgetting_a_canary_drops_its_series_and_bucket() {
        let mut c = Correlator::new(LIMIT);
        let now = Instant::now();
        for name in ["a", "b"] {
            let e = event(name, "m");
            c.observe(&SeriesKey::of(&e), e, now, Timestamp::now());
        }
        c.forget("test", "a");
        assert_eq!(c.canaries(), [("test".to_string(), "b".to_string())]);
    }

    #[test]
    fn thousands_of_canaries_keep_their_series_and_repeats_bump_counts() {
        let mut sim = Sim::new(LIMIT);
        let t0 = Instant::now();
        let messages = [
            "New revision detected",
            "not ready: waiting",
            "Advance weight 10",
        ];
        for round in 0..3u32 {
            for canary in 0..2000 {
                for message in messages {
                    sim.record(
                        event(&format!("app-{canary}"), message),
                        t0 + Duration::from_secs(u64::from(round)),
                    );
                }
            }
        }
        assert_eq!(
            sim.objects.len(),
            2000 * messages.len(),
            "one Event per series"
        );
        assert!(sim.objects.values().all(|&count| count == 3));
    }

    #[test]
    fn a_canary_past_its_bound_drops_its_own_oldest_series_only() {
        let mut c = Correlator::new(LIMIT);
        let now = Instant::now();
        let other = event("b", "kept");
        c.observe(&SeriesKey::of(&other), other.clone(), now, Timestamp::now());
        for n in 0..=MAX_SERIES_PER_CANARY {
            let e = event("a", &format!("m{n}"));
            let later = now + Duration::from_secs(n as u64 + 1);
            c.observe(&SeriesKey::of(&e), e, later, Timestamp::now());
        }
        assert_eq!(c.len(), MAX_SERIES_PER_CANARY + 1);
        let kept = |c: &mut Correlator, e: &Event| c.find(&SeriesKey::of(e)).is_some();
        assert!(kept(&mut c, &other));
        assert!(!kept(&mut c, &event("a", "m0")));
    }

    #[test]
    fn a_series_not_seen_for_the_idle_window_is_dropped_and_its_next_occurrence_is_new() {
        let mut sim = Sim::new(LIMIT);
        let t0 = Instant::now();
        sim.record(event("resting", "Promotion completed"), t0);
        // A waiting canary repeats its message every 10 s, so its series stays.
        let mut t = t0;
        while t < t0 + SERIES_IDLE * 2 {
            sim.record(event("waiting", "Halt advancement"), t);
            t += Duration::from_secs(10);
            sim.c.sweep(t);
        }
        assert_eq!(
            sim.c.canaries(),
            [("test".to_string(), "waiting".to_string())],
            "the canary at rest keeps nothing"
        );
        assert_eq!(sim.c.len(), 1);
        sim.record(event("resting", "Promotion completed"), t);
        assert_eq!(
            sim.objects.len(),
            3,
            "a message after the window starts a new Event: {:?}",
            sim.objects
        );
    }

    #[test]
    fn a_series_with_a_held_back_count_outlives_the_idle_window_until_written() {
        let limit = Limit {
            burst: 1,
            refill: SERIES_IDLE * 2,
        };
        let mut sim = Sim::new(limit);
        let t0 = Instant::now();
        for _ in 0..3 {
            sim.record(event("a", "m"), t0);
        }
        sim.c.sweep(t0 + SERIES_IDLE + Duration::from_secs(1));
        assert_eq!(sim.c.len(), 1, "its last count is not written yet");
        sim.run_flushes(t0 + SERIES_IDLE * 3);
        assert_eq!(sim.objects.values().copied().collect::<Vec<_>>(), [3]);
        sim.c.sweep(t0 + SERIES_IDLE * 5);
        assert!(sim.c.is_empty());
        assert!(sim.c.canaries().is_empty(), "and its bucket, full again");
    }

    #[test]
    fn the_event_written_is_the_one_recorded_with_the_series_count_and_times() {
        use flagger_api::Canary;
        use flagger_core::EventType;
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("test".into());
        canary.metadata.uid = Some("u1".into());
        canary.metadata.resource_version = Some("7".into());
        let first = Timestamp::from_second(1_700_000_000).unwrap();
        let mut recorded = crate::events::build(&canary, EventType::Warning, "halt", false, first);
        recorded.metadata.annotations = Some([("k".to_string(), "v".to_string())].into());
        let key = SeriesKey::of(&recorded);
        let mut c = Correlator::new(LIMIT);
        let now = Instant::now();
        let Step::Write(created) = c.observe(&key, recorded.clone(), now, first) else {
            panic!("a new message is written at once");
        };
        assert_eq!(created.existing, None);
        assert_eq!(
            created.event.as_deref(),
            Some(&recorded),
            "nothing of the event is lost"
        );
        let name = recorded.metadata.name.clone().unwrap_or_default();
        c.wrote(&key, &name, 1);

        canary.metadata.resource_version = Some("8".into());
        let later = Timestamp::from_second(1_700_000_010).unwrap();
        let again = crate::events::build(&canary, EventType::Warning, "halt", false, later);
        let Step::Write(bumped) = c.observe(&key, again.clone(), now, later) else {
            panic!("a repeat within the burst is written");
        };
        assert_eq!(bumped.existing.as_deref(), Some(name.as_str()));
        let want = Event {
            metadata: ObjectMeta {
                name: Some(name),
                ..again.metadata.clone()
            },
            count: Some(2),
            first_timestamp: Some(Time(first)),
            ..again
        };
        assert_eq!((bumped.count, bumped.last), (2, later));
        assert_eq!(
            bumped.event.as_deref(),
            Some(&want),
            "the object's name, the first time, the count"
        );
    }

    #[test]
    fn a_held_back_count_bumps_its_object_and_a_lost_object_starts_the_series_anew() {
        let limit = Limit {
            burst: 1,
            refill: Duration::from_secs(30),
        };
        let mut c = Correlator::new(limit);
        let now = Instant::now();
        let e = event("a", "m");
        let key = SeriesKey::of(&e);
        let Step::Write(created) = c.observe(&key, e.clone(), now, Timestamp::now()) else {
            panic!("a new message is written at once");
        };
        c.wrote(&key, "a.1", created.count);
        assert!(matches!(
            c.observe(&key, e.clone(), now, Timestamp::now()),
            Step::Write(_)
        ));
        c.wrote(&key, "a.1", 2);
        let Step::Defer(wait) = c.observe(&key, e.clone(), now, Timestamp::now()) else {
            panic!("the bucket is empty");
        };
        let Flush::Write(held) = c.flush(&key, now + wait) else {
            panic!("a token is back");
        };
        assert_eq!(held.existing.as_deref(), Some("a.1"));
        assert_eq!(held.count, 3);
        assert!(held.event.is_none(), "a series keeps no Event to create");
        // The recorder found the object gone.
        c.lost(&key);
        let Step::Write(anew) = c.observe(&key, e, now + wait, Timestamp::now()) else {
            panic!("a new series is written at once");
        };
        assert_eq!(anew.existing, None);
        assert_eq!(anew.event.and_then(|e| e.count), Some(1));
    }

    #[test]
    fn a_repeat_while_the_first_create_is_on_its_way_bumps_what_it_creates() {
        let mut c = Correlator::new(LIMIT);
        let now = Instant::now();
        let e = event("a", "m");
        let key = SeriesKey::of(&e);
        let Step::Write(first) = c.observe(&key, e.clone(), now, Timestamp::now()) else {
            panic!("a new message is written at once");
        };
        assert_eq!(first.existing, None);
        let Step::Defer(wait) = c.observe(&key, e.clone(), now, Timestamp::now()) else {
            panic!("a second create of the same series would be a second Event");
        };
        assert!(matches!(
            c.observe(&key, e.clone(), now, Timestamp::now()),
            Step::Pending
        ));
        assert!(
            matches!(c.flush(&key, now + wait), Flush::Wait(_)),
            "the create is not answered yet"
        );
        c.wrote(&key, "a.1", 1);
        let Flush::Write(bump) = c.flush(&key, now + wait * 2) else {
            panic!("the create was answered");
        };
        assert_eq!(bump.existing.as_deref(), Some("a.1"));
        assert_eq!(bump.count, 3);
    }

    #[test]
    fn a_failed_create_leaves_the_next_occurrence_to_create_with_the_whole_count() {
        let mut c = Correlator::new(LIMIT);
        let now = Instant::now();
        let e = event("a", "m");
        let key = SeriesKey::of(&e);
        assert!(matches!(
            c.observe(&key, e.clone(), now, Timestamp::now()),
            Step::Write(_)
        ));
        let Step::Defer(wait) = c.observe(&key, e.clone(), now, Timestamp::now()) else {
            panic!("waits for the create");
        };
        c.failed(&key);
        assert!(
            matches!(c.flush(&key, now + wait), Flush::Nothing),
            "no object to bump"
        );
        let Step::Write(again) = c.observe(&key, e, now + wait, Timestamp::now()) else {
            panic!("the series has no object: the next occurrence creates one");
        };
        assert_eq!(again.existing, None);
        assert_eq!(again.event.and_then(|e| e.count), Some(3));
    }

    #[test]
    fn a_canary_created_again_under_its_name_starts_new_series() {
        let mut sim = Sim::new(LIMIT);
        let t0 = Instant::now();
        sim.record(event("a", "m"), t0);
        sim.record(event("a", "m"), t0);
        let mut recreated = event("a", "m");
        recreated.involved_object.uid = Some("u2".into());
        sim.record(recreated.clone(), t0);
        let mut counts: Vec<i32> = sim.objects.values().copied().collect();
        counts.sort();
        assert_eq!(counts, [1, 2], "the new object's event is its own");
        assert!(
            sim.c.find(&SeriesKey::of(&event("a", "m"))).is_none(),
            "the old object's series are gone"
        );
        assert!(sim.c.find(&SeriesKey::of(&recreated)).is_some());
    }
}
