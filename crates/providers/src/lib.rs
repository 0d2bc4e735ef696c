//! Adapters, one file per backend, behind three small traits: `router::Router`,
//! `metrics::MetricProvider` and `notify::Notifier`.

pub mod metrics;
pub mod notify;
pub mod router;
pub mod wording;
