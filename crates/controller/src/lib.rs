//! The kube-rs shell around the rollout core: it observes the cluster, calls
//! `flagger_core::advance`, and carries out the actions it returns.

pub mod alerts;
pub mod allocator;
pub mod availability;
pub mod backoff;
pub mod cache;
pub mod cadence;
pub mod checks;
pub mod client;
pub mod context;
pub mod cookies;
pub mod event_series;
pub mod eventhooks;
pub mod events;
pub mod execute;
pub mod finalizer;
pub mod flags;
pub mod fulfil;
pub mod judge;
pub mod knative_target;
pub mod leader;
pub mod metrics;
pub mod outbound;
pub mod ratelimit;
pub mod reconcile;
pub mod redact;
pub mod resync;
pub mod run;
pub mod server;
pub mod status;
pub mod target;
pub mod targets;
pub mod watches;
pub mod webhooks;
pub mod workers;
pub mod workload;
