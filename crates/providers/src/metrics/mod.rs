//! Metric providers: run a query, return one number (metrics.md).
//!
//! * [`MetricProvider`]: one rendered query in, one `f64` out, or a [`MetricError`] that keeps
//!   "no data" apart from "the query failed".
//! * [`template`]: Go text/template rendering with Flagger's query functions, strict about
//!   unknown variables.
//! * [`builtin`]: the `request-success-rate` / `request-duration` query per router.
//! * [`check`]: one `analysis.metrics[]` entry end to end (classify, render, query) to a value or
//!   why there is none. Thresholds, `dryRun` and `noData` are judged by the core alone.
//! * One file per backend: [`prometheus`], [`datadog`], [`newrelic`], [`graphite`],
//!   [`influxdb`], [`dynatrace`], [`cloudwatch`], [`stackdriver`], [`splunk`], and the in-cluster
//!   [`keptn`] and [`externalmetrics`]; [`factory`] builds one from a MetricTemplate's provider.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use thiserror::Error;

pub mod aws_credentials;
pub mod builtin;
pub mod check;
pub mod cloudwatch;
pub mod datadog;
pub mod dynatrace;
pub mod externalmetrics;
pub mod factory;
pub mod graphite;
mod http;
pub mod influxdb;
pub mod keptn;
pub mod newrelic;
pub mod prometheus;
pub mod splunk;
pub mod stackdriver;
pub mod template;

#[cfg(test)]
mod tests;

pub use check::{
    CheckContext, CheckError, CheckOutcome, MetricKind, ResolvedTemplate, check_metric,
};
pub use factory::{ProviderConfigError, SecretData, build_provider, build_provider_in_cluster};
pub use http::{BodyPrefix, install_crypto_provider, read_prefix, truncate};
pub use template::{QueryModel, RenderError, render};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// What [`MetricProvider::run_query`] returns.
pub type QueryFuture<'a> = BoxFuture<'a, Result<Sample, MetricError>>;
/// What [`MetricProvider::is_online`] returns.
pub type ProbeFuture<'a> = BoxFuture<'a, Result<(), MetricError>>;

/// The number a query produced, plus anything odd about it that deserves a Warning event
/// (e.g. Prometheus returning several series).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub warnings: Vec<String>,
}

impl Sample {
    pub fn new(value: f64) -> Self {
        Sample {
            value,
            warnings: Vec::new(),
        }
    }
}

/// Why a query produced no number. The three outcomes the analysis reports differently
/// (no values / query failed / out of range) stay apart: out of range is a verdict, not an error.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum MetricError {
    /// The backend answered, but with nothing usable: an empty result, or NaN (0/0 when the
    /// canary received no traffic). Counts under the no-data policy.
    #[error("no values found{}", detail_suffix(.0))]
    NoValues(String),
    /// Transport failure, timeout, HTTP status ≥ 400, a backend-reported error or an unreadable
    /// body; the message carries what the backend said.
    #[error("{0}")]
    QueryFailed(String),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl MetricError {
    pub fn no_values(detail: impl Into<String>) -> Self {
        MetricError::NoValues(detail.into())
    }

    pub fn failed(message: impl Into<String>) -> Self {
        MetricError::QueryFailed(message.into())
    }

    pub fn is_no_values(&self) -> bool {
        matches!(self, MetricError::NoValues(_))
    }
}

/// Turns a parsed number into the provider contract: NaN is no data; ±Inf is a value that the
/// thresholds compare as usual.
pub fn finite_or_no_data(value: f64, what: &str) -> Result<f64, MetricError> {
    if value.is_nan() {
        Err(MetricError::no_values(format!("{what} is NaN")))
    } else {
        Ok(value)
    }
}

/// A JSON number from a backend's answer as a sample.
fn json_sample(n: &serde_json::Number, what: &str) -> Result<Sample, MetricError> {
    let v = n
        .as_f64()
        .ok_or_else(|| MetricError::failed(format!("unreadable value {n}")))?;
    finite_or_no_data(v, what).map(Sample::new)
}

/// `is_online` by running a query: a backend that answers, even with no data, is up.
fn answered(result: Result<Sample, MetricError>) -> Result<(), MetricError> {
    match result {
        Ok(_) | Err(MetricError::NoValues(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One metrics backend. Implementations are cheap to share (`Arc<dyn MetricProvider>`) and safe
/// to call concurrently.
pub trait MetricProvider: Send + Sync {
    /// The provider type as written in a MetricTemplate (`prometheus`, `datadog`, …).
    fn kind(&self) -> &'static str;

    /// Runs one rendered query. `interval` is the metric's window, used by backends that take a
    /// look-back instead of a range in the query (Datadog, New Relic, Dynatrace, …).
    fn run_query<'a>(&'a self, query: &'a str, interval: Duration) -> QueryFuture<'a>;

    /// The "is online" probe run while a canary initialises; reported as an event only.
    fn is_online(&self) -> ProbeFuture<'_>;
}
