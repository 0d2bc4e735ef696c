//! Graphite render API: `GET /render?<query>&format=json`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use super::factory::{ProviderConfigError, VendorConfig, secret_string};
use super::http::{send, truncate};
use super::{MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, answered};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct GraphiteProvider {
    render_url: url::Url,
    credentials: Option<(String, String)>,
    client: reqwest::Client,
}

impl GraphiteProvider {
    pub fn new(config: &VendorConfig) -> Result<Self, ProviderConfigError> {
        let address = config
            .address
            .ok_or_else(|| ProviderConfigError("graphite address is required".into()))?;
        let mut render_url = url::Url::parse(address)
            .ok()
            .filter(|u| !u.cannot_be_a_base())
            .ok_or_else(|| {
                ProviderConfigError(format!("graphite address {address:?} is not a valid URL"))
            })?;
        let path = format!("{}/render", render_url.path().trim_end_matches('/'));
        render_url.set_path(&path);
        let credentials = match config.secret {
            Some(s) => match (secret_string(s, "username")?, secret_string(s, "password")?) {
                (Some(u), Some(p)) => Some((u, p)),
                _ => None,
            },
            None => None,
        };
        Ok(GraphiteProvider {
            render_url,
            credentials,
            client: config.client(TIMEOUT)?,
        })
    }

    async fn render(&self, query: &str) -> Result<Sample, MetricError> {
        let url = render_url(&self.render_url, query);
        let mut req = self.client.get(url);
        if let Some((u, p)) = &self.credentials {
            req = req.basic_auth(u, Some(p));
        }
        let (status, body) = send(req).await?;
        parse_response(status, &body)
    }
}

/// The query is itself a URL query string (`target=…&from=-1min`): whitespace is removed, its
/// pairs are kept, and `format=json` replaces any format the user gave.
pub fn render_url(base: &url::Url, query: &str) -> url::Url {
    let compact: String = query.chars().filter(|c| !c.is_whitespace()).collect();
    let mut url = base.clone();
    {
        let mut pairs = url.query_pairs_mut();
        pairs.clear();
        for (k, v) in url::form_urlencoded::parse(compact.as_bytes()) {
            if k != "format" {
                pairs.append_pair(&k, &v);
            }
        }
        pairs.append_pair("format", "json");
    }
    url
}

impl MetricProvider for GraphiteProvider {
    fn kind(&self) -> &'static str {
        "graphite"
    }

    fn run_query<'a>(&'a self, query: &'a str, _interval: Duration) -> QueryFuture<'a> {
        Box::pin(self.render(query))
    }

    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            answered(
                self.render("target=constantLine(100)&from=-1min&until=now")
                    .await,
            )
        })
    }
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    datapoints: Vec<Vec<Json>>,
}

/// The last non-null datapoint over all series; datapoints are `[value, timestamp]`.
pub fn parse_response(status: u16, body: &str) -> Result<Sample, MetricError> {
    if status >= 400 {
        return Err(MetricError::failed(format!(
            "error response (HTTP {status}): {}",
            truncate(body)
        )));
    }
    let series: Vec<Series> = serde_json::from_str(body).map_err(|e| {
        MetricError::failed(format!(
            "error unmarshaling graphite response: {e}, '{}'",
            truncate(body)
        ))
    })?;
    let last = series
        .iter()
        .flat_map(|s| s.datapoints.iter())
        .filter_map(|dp| dp.first().and_then(Json::as_f64))
        .rfind(|v| !v.is_nan());
    last.map(Sample::new)
        .ok_or_else(|| MetricError::no_values("no non-null datapoints"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // graphite-web 1.1 `format=json` output.
    const TWO_SERIES: &str = r#"[
      {"target": "sumSeries(stats.timers.podinfo.canary.*.upper_90)", "tags": {"name": "sumSeries(stats.timers.podinfo.canary.*.upper_90)", "aggregatedBy": "sum"},
       "datapoints": [[12.5, 1733075940], [14.0, 1733075950], [null, 1733075960]]},
      {"target": "stats.timers.podinfo.canary.b.upper_90", "tags": {"name": "stats.timers.podinfo.canary.b.upper_90"},
       "datapoints": [[7.25, 1733075940], [null, 1733075950]]}
    ]"#;
    const ALL_NULL: &str = r#"[{"target": "x", "tags": {"name": "x"}, "datapoints": [[null, 1733075940], [null, 1733075950]]}]"#;

    #[test]
    fn last_non_null_over_all_series() {
        assert_eq!(parse_response(200, TWO_SERIES).unwrap(), Sample::new(7.25));
    }

    #[test]
    fn empty_and_null_are_no_data() {
        assert!(parse_response(200, "[]").unwrap_err().is_no_values());
        assert!(parse_response(200, ALL_NULL).unwrap_err().is_no_values());
    }

    #[test]
    fn errors() {
        let e = parse_response(400, "Bad Request: invalid target").unwrap_err();
        assert!(e.to_string().contains("invalid target"), "{e}");
        assert!(!parse_response(200, "<html>").unwrap_err().is_no_values());
    }

    #[test]
    fn query_becomes_url_parameters() {
        let base = url::Url::parse("http://graphite:8080/render").unwrap();
        let url = render_url(
            &base,
            "target=summarize(stats.podinfo.errors, '1min', 'sum')\n&from=-2min&format=raw",
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                (
                    "target".into(),
                    "summarize(stats.podinfo.errors,'1min','sum')".into()
                ),
                ("from".into(), "-2min".into()),
                ("format".into(), "json".into())
            ]
        );
    }
}
