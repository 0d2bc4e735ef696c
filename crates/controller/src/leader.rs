//! Leader election on a coordination.k8s.io Lease named like Flagger's, so Flagger and flagger-rs
//! never both lead during a migration.
//!
//! The rules are client-go's: a follower takes a Lease over only when its record has not changed for
//! the record's lease duration as measured on the follower's own clock (so clock skew between nodes
//! cannot make a live leader look expired); the leader stops acting when it could not renew within the
//! renew deadline, which is shorter than the lease duration, so it has stopped before anyone may take
//! over; a leader that shuts down cleanly empties the holder so a follower takes over at once.

use std::sync::Mutex;
use std::time::Duration;

use flagger_providers::wording::{Plain, kube_error};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;

pub const LEASE_NAME: &str = "flagger-leader-election";

#[derive(Clone, Debug)]
pub struct Timings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timings {
    /// Flagger's values.
    fn default() -> Self {
        Timings {
            lease_duration: Duration::from_secs(60),
            renew_deadline: Duration::from_secs(15),
            retry_period: Duration::from_secs(5),
        }
    }
}

impl Timings {
    /// A renew deadline at or past the lease duration would let two replicas act at once.
    pub fn checked(self) -> Result<Timings, String> {
        if self.retry_period.is_zero() {
            return Err("the retry period must be positive".into());
        }
        if self.renew_deadline <= self.retry_period {
            return Err(format!(
                "the renew deadline ({:?}) must be longer than the retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "the lease duration ({:?}) must be longer than the renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.lease_duration.as_secs() < 1 {
            return Err(
                "the lease duration must be at least 1s (the Lease counts whole seconds)".into(),
            );
        }
        Ok(self)
    }
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    /// The other holder's record as last seen, and when it was first seen in that state.
    observed: Mutex<Option<Observed>>,
}

#[derive(Clone, Debug)]
struct Observed {
    resource_version: String,
    since: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Acquired,
    HeldByOther(String),
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
        timings: Timings,
    ) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity,
            timings,
            observed: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) {
        let mut last_holder = String::new();
        tracing::info!(lease = %self.name, identity = %self.identity, "waiting for the leader election lease");
        loop {
            match self.attempt().await {
                Ok(Attempt::Acquired) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acting as elected leader");
                    return;
                }
                Ok(Attempt::HeldByOther(holder)) => {
                    if holder != last_holder {
                        tracing::info!(lease = %self.name, identity = %self.identity, %holder, "another instance has been elected as leader");
                        last_holder = holder;
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "leader election attempt failed")
                }
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// Renews the lease every retry period; returns when it could not be renewed within the renew
    /// deadline, after which another replica may take over and this one must stop acting.
    pub async fn hold(&self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.timings.retry_period).await;
            match self.attempt().await {
                Ok(Attempt::Acquired) => last_renewal = Instant::now(),
                Ok(Attempt::HeldByOther(holder)) => {
                    tracing::error!(lease = %self.name, %holder, "leadership lost: the lease has another holder");
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "renewing the lease failed")
                }
            }
            if last_renewal.elapsed() > self.timings.renew_deadline {
                tracing::error!(lease = %self.name, "leadership lost: renew deadline exceeded");
                return;
            }
        }
    }

    /// Gives the lease up if this replica holds it, so a follower need not wait out its duration.
    pub async fn release(&self) {
        match self.try_release().await {
            Ok(true) => {
                tracing::info!(lease = %self.name, identity = %self.identity, "leader election lease released")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %Plain(&e), "releasing the leader election lease failed")
            }
        }
    }

    async fn try_release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        let now = MicroTime(Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: spec.lease_transitions,
            ..Default::default()
        });
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(true)
    }

    /// One attempt, bounded by the renew deadline: a request hanging on a dead connection must not
    /// keep a leader acting past it.
    async fn attempt(&self) -> Result<Attempt, String> {
        match tokio::time::timeout(self.timings.renew_deadline, self.try_acquire_or_renew()).await {
            Ok(result) => result.map_err(|e| kube_error(&e)),
            Err(_) => Err(format!(
                "no answer from the API server within {:?}",
                self.timings.renew_deadline
            )),
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            self.api.create(&PostParams::default(), &lease).await?;
            return Ok(Attempt::Acquired);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        if holder == self.identity {
            lease.spec = Some(self.spec(now, spec.acquire_time.map(|t| t.0), transitions));
        } else {
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            let free = match self.observed.lock() {
                Ok(mut observed) => is_free(
                    &spec,
                    &version,
                    &mut observed,
                    Instant::now(),
                    self.timings.lease_duration,
                ),
                // A poisoned lock only means a panic elsewhere; waiting is the safe answer.
                Err(_) => false,
            };
            if !free {
                return Ok(Attempt::HeldByOther(holder));
            }
            lease.spec = Some(self.spec(now, None, transitions + 1));
        }
        // The resourceVersion in `lease` makes this a compare-and-swap: a concurrent taker wins
        // or loses as a whole.
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(Attempt::Acquired)
    }

    fn spec(&self, now: Timestamp, acquired: Option<Timestamp>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                self.timings
                    .lease_duration
                    .as_secs()
                    .try_into()
                    .unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired.unwrap_or(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}

/// Whether another replica's Lease may be taken: it has no holder, or its record (any write changes
/// the resourceVersion) has stayed the same for the holder's lease duration on this replica's clock.
fn is_free(
    spec: &LeaseSpec,
    resource_version: &str,
    observed: &mut Option<Observed>,
    now: Instant,
    own_duration: Duration,
) -> bool {
    if spec
        .holder_identity
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        return true;
    }
    let since = match observed {
        Some(o) if o.resource_version == resource_version => o.since,
        _ => {
            *observed = Some(Observed {
                resource_version: resource_version.to_string(),
                since: now,
            });
            now
        }
    };
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(own_duration);
    now.saturating_duration_since(since) > duration
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(duration),
            // Renew times are the holder's clock: they must not matter.
            renew_time: Some(MicroTime(Timestamp::from_second(0).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn an_unchanged_record_expires_after_its_duration_on_the_local_clock() {
        let start = Instant::now();
        let mut observed = None;
        let d = Duration::from_secs(60);
        assert!(!is_free(&held(10), "1", &mut observed, start, d));
        assert!(!is_free(
            &held(10),
            "1",
            &mut observed,
            start + Duration::from_secs(10),
            d
        ));
        assert!(is_free(
            &held(10),
            "1",
            &mut observed,
            start + Duration::from_secs(11),
            d
        ));
    }

    #[test]
    fn a_renewal_restarts_the_wait() {
        let start = Instant::now();
        let mut observed = None;
        let d = Duration::from_secs(60);
        assert!(!is_free(&held(10), "1", &mut observed, start, d));
        let later = start + Duration::from_secs(9);
        assert!(!is_free(&held(10), "2", &mut observed, later, d));
        assert!(!is_free(
            &held(10),
            "2",
            &mut observed,
            later + Duration::from_secs(10),
            d
        ));
        assert!(is_free(
            &held(10),
            "2",
            &mut observed,
            later + Duration::from_secs(11),
            d
        ));
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let mut observed = None;
        let released = LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            ..Default::default()
        };
        assert!(is_free(
            &released,
            "7",
            &mut observed,
            Instant::now(),
            Duration::from_secs(60)
        ));
        let empty = LeaseSpec {
            holder_identity: Some(String::new()),
            ..Default::default()
        };
        assert!(is_free(
            &empty,
            "8",
            &mut observed,
            Instant::now(),
            Duration::from_secs(60)
        ));
    }

    #[test]
    fn a_record_without_duration_uses_the_own_one() {
        let start = Instant::now();
        let mut observed = None;
        let mut spec = held(0);
        spec.lease_duration_seconds = None;
        let d = Duration::from_secs(5);
        assert!(!is_free(&spec, "1", &mut observed, start, d));
        assert!(!is_free(
            &spec,
            "1",
            &mut observed,
            start + Duration::from_secs(5),
            d
        ));
        assert!(is_free(
            &spec,
            "1",
            &mut observed,
            start + Duration::from_secs(6),
            d
        ));
    }

    #[test]
    fn timings_must_leave_the_leader_time_to_stop() {
        assert!(Timings::default().checked().is_ok());
        let t = |l, r, p| Timings {
            lease_duration: Duration::from_secs(l),
            renew_deadline: Duration::from_secs(r),
            retry_period: Duration::from_secs(p),
        };
        assert!(t(4, 3, 1).checked().is_ok());
        assert!(t(15, 15, 5).checked().is_err());
        assert!(t(60, 5, 5).checked().is_err());
        assert!(t(60, 15, 0).checked().is_err());
    }
}
