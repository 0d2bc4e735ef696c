//! Datadog: `GET /api/v1/query`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use super::factory::{ProviderConfigError, VendorConfig};
use super::http::{base_address, check_status, lookback, probe, send};
use super::{MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, json_sample};

pub const DEFAULT_ADDRESS: &str = "https://api.datadoghq.com";
const TIMEOUT: Duration = Duration::from_secs(5);
/// The look-back is ten windows, so sparse series still have a point.
const LOOKBACK_WINDOWS: u32 = 10;

#[derive(Debug)]
pub struct DatadogProvider {
    address: String,
    api_key: String,
    application_key: String,
    client: reqwest::Client,
}

impl DatadogProvider {
    pub fn new(config: &VendorConfig) -> Result<Self, ProviderConfigError> {
        let address = base_address("datadog", config.address, Some(DEFAULT_ADDRESS))?;
        Ok(DatadogProvider {
            address: address.to_string(),
            api_key: config.required("datadog", "datadog_api_key")?,
            application_key: config.required("datadog", "datadog_application_key")?,
            client: config.client(TIMEOUT)?,
        })
    }

    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.address))
            .header("DD-API-KEY", &self.api_key)
            .header("DD-APPLICATION-KEY", &self.application_key)
    }
}

impl MetricProvider for DatadogProvider {
    fn kind(&self) -> &'static str {
        "datadog"
    }

    fn run_query<'a>(&'a self, query: &'a str, interval: Duration) -> QueryFuture<'a> {
        Box::pin(async move {
            let (from, to) = lookback(interval, LOOKBACK_WINDOWS);
            let req = self.request("/api/v1/query").query(&[
                ("query", query.to_string()),
                ("from", from.as_secs().to_string()),
                ("to", to.as_secs().to_string()),
            ]);
            let (status, body) = send(req).await?;
            parse_response(status, &body)
        })
    }

    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(async move { probe("datadog validate", self.request("/api/v1/validate")).await })
    }
}

#[derive(Deserialize)]
struct Response {
    status: Option<String>,
    error: Option<String>,
    #[serde(default)]
    series: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    pointlist: Vec<Vec<Json>>,
}

/// First series, first (oldest) point: `[<ms timestamp>, <value or null>]`.
pub fn parse_response(status: u16, body: &str) -> Result<Sample, MetricError> {
    check_status("error response", status, body)?;
    let resp: Response = serde_json::from_str(body)
        .map_err(|e| MetricError::failed(format!("error unmarshaling datadog response: {e}")))?;
    if resp.status.as_deref() == Some("error") {
        return Err(MetricError::failed(format!(
            "datadog query error: {}",
            resp.error.unwrap_or_default()
        )));
    }
    let series = resp
        .series
        .first()
        .ok_or_else(|| MetricError::no_values("no series"))?;
    let point = series
        .pointlist
        .first()
        .ok_or_else(|| MetricError::no_values("empty pointlist"))?;
    match point.get(1) {
        Some(Json::Number(n)) => json_sample(n, "point"),
        Some(Json::Null) => Err(MetricError::no_values("point value is null")),
        other => Err(MetricError::failed(format!("malformed point {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped as the "Query timeseries points" (v1) reference documents the 200 answer.
    const OK: &str = r#"{
      "status": "ok",
      "res_type": "time_series",
      "resp_version": 1,
      "query": "sum:trace.http.request.errors{service:podinfo}.as_count()/sum:trace.http.request.hits{service:podinfo}.as_count()",
      "from_date": 1733075400000,
      "to_date": 1733076000000,
      "series": [
        {
          "unit": null,
          "query_index": 0,
          "aggr": "sum",
          "metric": "trace.http.request.errors",
          "tag_set": [],
          "expression": "sum:trace.http.request.errors{service:podinfo}.as_count()/sum:trace.http.request.hits{service:podinfo}.as_count()",
          "scope": "service:podinfo",
          "interval": 60,
          "length": 3,
          "start": 1733075400000,
          "end": 1733075579999,
          "pointlist": [[1733075400000.0, 0.0125], [1733075460000.0, 0.02], [1733075520000.0, null]],
          "display_name": "trace.http.request.errors",
          "attributes": {}
        }
      ],
      "values": [],
      "times": [],
      "message": "",
      "group_by": []
    }"#;
    const EMPTY: &str = r#"{"status":"ok","res_type":"time_series","resp_version":1,"query":"avg:nope{*}","from_date":1733075400000,"to_date":1733076000000,"series":[],"values":[],"times":[],"message":"","group_by":[]}"#;
    const NULL_FIRST: &str =
        r#"{"status":"ok","series":[{"metric":"m","pointlist":[[1733075400000.0,null]]}]}"#;
    const FORBIDDEN: &str = r#"{"errors": ["Forbidden"]}"#;
    const BAD_QUERY: &str = r#"{"errors": ["Error parsing query: \n unable to parse avg:: Rule 'scope_expr' didn't match at ':' (line 1, column 5)."]}"#;

    #[test]
    fn first_series_first_point() {
        assert_eq!(parse_response(200, OK).unwrap(), Sample::new(0.0125));
    }

    #[test]
    fn no_series_or_null_point_is_no_data() {
        assert!(parse_response(200, EMPTY).unwrap_err().is_no_values());
        assert!(parse_response(200, NULL_FIRST).unwrap_err().is_no_values());
    }

    #[test]
    fn errors_carry_the_message() {
        let e = parse_response(403, FORBIDDEN).unwrap_err();
        assert_eq!(e.to_string(), "error response (HTTP 403): Forbidden");
        let e = parse_response(400, BAD_QUERY).unwrap_err();
        assert!(e.to_string().contains("Error parsing query"), "{e}");
        assert!(!parse_response(200, "<html>").unwrap_err().is_no_values());
    }
}
