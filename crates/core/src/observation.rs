//! What the shell saw at the start of a tick, plus the results of the hooks and queries the core
//! asked for (`Action::Need`).

use std::collections::BTreeMap;

use flagger_api::analysis::HookType;
use jiff::Timestamp;

use crate::action::Workload;
use crate::session_affinity::FreshCookies;

#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Revision hash of the target now.
    pub revision: String,
    /// Checksums of the tracked ConfigMaps/Secrets, keyed `configmap/<name>` / `secret/<name>`.
    pub configs: BTreeMap<String, String>,
    pub primary: Readiness,
    /// Readiness of the target (the canary workload).
    pub canary: Readiness,
    /// Routes as read back from the router. Ignored in dry-run, where the status is the truth.
    pub routes: Result<RouteState, String>,
    /// Annotation `flagger.app/skip-analysis: "true"`.
    pub skip_analysis_annotation: bool,
    /// Annotation `flagger.app/reset`.
    pub reset_token: Option<String>,
    /// The manual request the Canary's annotations carry (see [`crate::manual`]).
    pub request: Option<ManualRequest>,
    pub deleting: bool,
    pub has_finalizer: bool,
    pub webhooks: Vec<HookResult>,
    pub metrics: Vec<MetricResult>,
    /// The statistical judge's look this tick (`Need::Judge`).
    pub judge: Option<crate::judging::JudgeReport>,
    /// Random values for a session-affinity cookie this tick may create (the core has no
    /// randomness of its own).
    pub fresh_cookies: FreshCookies,
}

impl Observation {
    /// Whether a tick that waited for `workload`'s rollout has something new to decide: the rollout
    /// ended, ready or failed.
    pub fn done_waiting_for(&self, workload: Workload) -> bool {
        let readiness = match workload {
            Workload::Primary => &self.primary,
            Workload::Canary => &self.canary,
        };
        !matches!(readiness, Readiness::Waiting { .. })
    }

    /// A canary whose workloads are ready and whose routes are at `routes`; no hook or metric
    /// results yet.
    pub fn ready(revision: impl Into<String>, routes: RouteState) -> Observation {
        Observation {
            revision: revision.into(),
            configs: BTreeMap::new(),
            primary: Readiness::Ready,
            canary: Readiness::Ready,
            routes: Ok(routes),
            skip_analysis_annotation: false,
            reset_token: None,
            request: None,
            deleting: false,
            has_finalizer: false,
            webhooks: Vec::new(),
            metrics: Vec::new(),
            judge: None,
            fresh_cookies: FreshCookies::default(),
        }
    }

    pub(crate) fn hook(&self, kind: HookType, name: &str) -> Option<&Result<(), String>> {
        self.webhooks
            .iter()
            .find(|h| h.kind == kind && h.name == name)
            .map(|h| &h.outcome)
    }

    pub(crate) fn metric(&self, name: &str) -> Option<&MetricResult> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// A `flagger-rs.dev/request` annotation with its id and requester, as written; the action is
/// kept as text so that an unknown one can be answered by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualRequest {
    pub id: String,
    pub action: String,
    pub requested_by: Option<String>,
}

/// Primary weight, canary weight, and whether the canary is mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteState {
    pub primary: u32,
    pub canary: u32,
    pub mirrored: bool,
}

impl RouteState {
    pub const PRIMARY: RouteState = RouteState {
        primary: 100,
        canary: 0,
        mirrored: false,
    };
}

#[derive(Clone, Debug, PartialEq)]
pub enum Readiness {
    Ready,
    /// Retriable. `since` is when the workload stopped making progress; once it is older than the
    /// canary's `progressDeadlineSeconds` the core treats the workload as failed.
    Waiting {
        message: String,
        since: Option<Timestamp>,
    },
    /// Non-retriable (e.g. the Deployment's own `ProgressDeadlineExceeded`).
    Failed {
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct HookResult {
    pub kind: HookType,
    pub name: String,
    /// `Err` carries the response body or the transport error.
    pub outcome: Result<(), String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricResult {
    pub name: String,
    /// The rendered query, for failure reports.
    pub query: Option<String>,
    pub outcome: MetricOutcome,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MetricOutcome {
    Value(f64),
    /// The provider answered without a value; the message is the full "no values found" text.
    NoData(String),
    /// The backend did not answer usefully (unreachable, timeout, HTTP error, unreadable
    /// answer). Like `NoData`, a `noData: hold` metric holds on it: the canary is not to blame.
    QueryFailed(String),
    /// The query could not be run at all (template or Secret missing, render error, no usable
    /// query): a configuration problem, always a failed check.
    Error(String),
}
