//! Builds a provider from a MetricTemplate's `spec.provider` and its Secret's data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flagger_api::metric_template::MetricProvider as ProviderSpec;
use thiserror::Error;

use super::MetricProvider;
use super::cloudwatch::CloudWatchProvider;
use super::datadog::DatadogProvider;
use super::dynatrace::DynatraceProvider;
use super::externalmetrics::ExternalMetricsProvider;
use super::graphite::GraphiteProvider;
use super::http::vendor_client;
use super::influxdb::InfluxdbProvider;
use super::keptn::KeptnProvider;
use super::newrelic::NewRelicProvider;
use super::prometheus::{PrometheusOptions, PrometheusProvider, auth_from_secret};
use super::splunk::SplunkProvider;
use super::stackdriver::StackdriverProvider;

/// A Secret's `data`, decoded: key → bytes.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// The template, its Secret or its address cannot make a working provider. Reported as
/// "Metric template {tpl}.{ns} …" and counted as a failed check.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ProviderConfigError(pub String);

/// A Secret value as text; secrets carry bytes, credentials must be UTF-8.
pub fn secret_string(
    secret: &SecretData,
    key: &str,
) -> Result<Option<String>, ProviderConfigError> {
    match secret.get(key) {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes.clone())
            .map(Some)
            .map_err(|_| ProviderConfigError(format!("secret key {key:?} is not valid UTF-8"))),
    }
}

/// Like [`secret_string`], for keys the provider cannot work without.
pub fn required_secret(
    secret: &SecretData,
    kind: &str,
    key: &str,
) -> Result<String, ProviderConfigError> {
    secret_string(secret, key)?.ok_or_else(|| {
        ProviderConfigError(format!("{kind} credentials do not contain the key {key:?}"))
    })
}

/// What a vendor's provider is built from: `spec.provider`'s address and TLS setting, and the
/// data of its `secretRef`'s Secret (`None` when the template names no Secret).
pub struct VendorConfig<'a> {
    pub address: Option<&'a str>,
    pub secret: Option<&'a SecretData>,
    pub insecure_skip_verify: bool,
}

/// The keys of a Secret the template does not name: none.
static NO_SECRET: SecretData = SecretData::new();

impl<'a> VendorConfig<'a> {
    /// An empty address counts as none.
    pub fn of(spec: &'a ProviderSpec, secret: Option<&'a SecretData>) -> Self {
        VendorConfig {
            address: spec.address.as_deref().filter(|a| !a.is_empty()),
            secret,
            insecure_skip_verify: spec.insecure_skip_verify.unwrap_or(false),
        }
    }

    /// A Secret value `kind` cannot work without; a template without a Secret has no keys.
    pub fn required(&self, kind: &str, key: &str) -> Result<String, ProviderConfigError> {
        required_secret(self.secret.unwrap_or(&NO_SECRET), kind, key)
    }

    /// A Secret value the provider can do without.
    pub fn optional(&self, key: &str) -> Result<Option<String>, ProviderConfigError> {
        secret_string(self.secret.unwrap_or(&NO_SECRET), key)
    }

    /// The vendor's HTTP client, honouring `insecureSkipVerify`.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, ProviderConfigError> {
        vendor_client(timeout, self.insecure_skip_verify)
    }
}

/// `secret` is the data of `spec.provider.secretRef`'s Secret, `None` when the template has no
/// `secretRef` (the caller reports a referenced but missing Secret itself).
pub fn build_provider(
    spec: &ProviderSpec,
    secret: Option<&SecretData>,
) -> Result<Arc<dyn MetricProvider>, ProviderConfigError> {
    let vendor = VendorConfig::of(spec, secret);
    let (address, insecure) = (vendor.address, vendor.insecure_skip_verify);
    let provider: Arc<dyn MetricProvider> = match spec.type_.as_str() {
        // Flagger falls back to prometheus for an empty type.
        "prometheus" | "" => {
            let mut options = PrometheusOptions::new(address.unwrap_or_default());
            options.auth = auth_from_secret(secret)?;
            options.headers = spec.headers.clone().unwrap_or_default();
            options.insecure_skip_verify = insecure;
            Arc::new(PrometheusProvider::new(options)?)
        }
        "datadog" => Arc::new(DatadogProvider::new(&vendor)?),
        "newrelic" => Arc::new(NewRelicProvider::new(&vendor)?),
        "graphite" => Arc::new(GraphiteProvider::new(&vendor)?),
        "influxdb" => Arc::new(InfluxdbProvider::new(&vendor)?),
        "dynatrace" => Arc::new(DynatraceProvider::new(&vendor)?),
        "cloudwatch" => Arc::new(CloudWatchProvider::new(&vendor, spec.region.as_deref())?),
        "splunk" => Arc::new(SplunkProvider::new(&vendor)?),
        "stackdriver" => Arc::new(StackdriverProvider::new(&vendor)?),
        "keptn" | "externalmetrics" => {
            return Err(ProviderConfigError(format!(
                "metric provider type {} reads the Kubernetes API: it needs the cluster's client",
                spec.type_
            )));
        }
        other => {
            return Err(ProviderConfigError(format!(
                "unknown metric provider type {other:?} (flagger-rs validate refuses such a MetricTemplate)"
            )));
        }
    };
    Ok(provider)
}

/// Like [`build_provider`], with the cluster's API client for the providers that read the API
/// server (`keptn`, `externalmetrics`).
pub fn build_provider_in_cluster(
    spec: &ProviderSpec,
    secret: Option<&SecretData>,
    cluster: &kube::Client,
) -> Result<Arc<dyn MetricProvider>, ProviderConfigError> {
    let vendor = VendorConfig::of(spec, secret);
    match spec.type_.as_str() {
        "keptn" => Ok(Arc::new(KeptnProvider::new(cluster.clone()))),
        "externalmetrics" => Ok(Arc::new(ExternalMetricsProvider::new(
            &vendor,
            cluster.clone(),
        )?)),
        _ => build_provider(spec, secret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(type_: &str, address: Option<&str>) -> ProviderSpec {
        ProviderSpec {
            type_: type_.into(),
            address: address.map(Into::into),
            ..Default::default()
        }
    }

    fn secret(pairs: &[(&str, &str)]) -> SecretData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn builds_each_supported_type() {
        let cases: Vec<(ProviderSpec, Option<SecretData>)> = vec![
            (spec("prometheus", Some("http://prom:9090")), None),
            (
                spec("datadog", None),
                Some(secret(&[
                    ("datadog_api_key", "a"),
                    ("datadog_application_key", "b"),
                ])),
            ),
            (
                spec("newrelic", None),
                Some(secret(&[
                    ("newrelic_account_id", "1"),
                    ("newrelic_query_key", "k"),
                ])),
            ),
            (spec("graphite", Some("http://graphite")), None),
            (
                spec("influxdb", Some("http://influx:8086")),
                Some(secret(&[("token", "t"), ("org", "o")])),
            ),
            (
                spec("dynatrace", Some("https://x.live.dynatrace.com")),
                Some(secret(&[("dynatrace_token", "t")])),
            ),
            (
                ProviderSpec {
                    region: Some("eu-west-1".into()),
                    ..spec("cloudwatch", None)
                },
                Some(secret(&[
                    ("aws_access_key_id", "a"),
                    ("aws_secret_access_key", "s"),
                ])),
            ),
            (spec("stackdriver", None), Some(secret(&[("project", "p")]))),
            (
                spec("splunk", Some("https://api.us1.signalfx.com")),
                Some(secret(&[("sf_token_key", "t")])),
            ),
        ];
        for (s, sec) in cases {
            let p = build_provider(&s, sec.as_ref()).unwrap();
            assert_eq!(p.kind(), s.type_);
        }
    }

    #[test]
    fn configuration_errors() {
        for (s, sec, needle) in [
            (spec("prometheus", None), None, "not a valid URL"),
            (spec("graphite", None), None, "address"),
            (spec("datadog", None), Some(secret(&[])), "datadog_api_key"),
            (
                spec("newrelic", None),
                Some(secret(&[])),
                "newrelic_account_id",
            ),
            (
                spec("influxdb", Some("http://i")),
                Some(secret(&[("token", "t")])),
                "org",
            ),
            (spec("dynatrace", Some("http://d")), None, "dynatrace_token"),
            (spec("cloudwatch", None), None, "region not specified"),
        ] {
            let e = build_provider(&s, sec.as_ref()).err().unwrap();
            assert!(e.to_string().contains(needle), "{}: {e}", s.type_);
        }
    }
}
