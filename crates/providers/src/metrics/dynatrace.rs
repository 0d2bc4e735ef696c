//! Dynatrace metrics API v2: `GET /api/v2/metrics/query`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use super::factory::{ProviderConfigError, VendorConfig};
use super::http::{base_address, check_status, lookback, probe, send};
use super::{MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, json_sample};

const TIMEOUT: Duration = Duration::from_secs(5);
const LOOKBACK_WINDOWS: u32 = 10;

#[derive(Debug)]
pub struct DynatraceProvider {
    address: String,
    token: String,
    client: reqwest::Client,
}

impl DynatraceProvider {
    pub fn new(config: &VendorConfig) -> Result<Self, ProviderConfigError> {
        Ok(DynatraceProvider {
            address: base_address("dynatrace", config.address, None)?.to_string(),
            token: config.required("dynatrace", "dynatrace_token")?,
            client: config.client(TIMEOUT)?,
        })
    }

    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.address)).header(
            reqwest::header::AUTHORIZATION,
            format!("Api-Token {}", self.token),
        )
    }
}

impl MetricProvider for DynatraceProvider {
    fn kind(&self) -> &'static str {
        "dynatrace"
    }

    fn run_query<'a>(&'a self, query: &'a str, interval: Duration) -> QueryFuture<'a> {
        Box::pin(async move {
            let (from, to) = lookback(interval, LOOKBACK_WINDOWS);
            let req = self.request("/api/v2/metrics/query").query(&[
                ("metricSelector", query.to_string()),
                ("resolution", "Inf".to_string()),
                ("from", from.as_millis().to_string()),
                ("to", to.as_millis().to_string()),
            ]);
            let (status, body) = send(req).await?;
            parse_response(status, &body)
        })
    }

    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(
            async move { probe("dynatrace", self.request("/api/v2/metrics?pageSize=1")).await },
        )
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    result: Vec<Collection>,
}

#[derive(Deserialize)]
struct Collection {
    #[serde(default)]
    data: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    values: Vec<Json>,
}

/// The first value of the last data entry of the first result.
pub fn parse_response(status: u16, body: &str) -> Result<Sample, MetricError> {
    check_status("error response", status, body)?;
    let resp: Response = serde_json::from_str(body)
        .map_err(|e| MetricError::failed(format!("error unmarshaling dynatrace response: {e}")))?;
    let series = resp
        .result
        .first()
        .and_then(|c| c.data.last())
        .ok_or_else(|| MetricError::no_values("no data"))?;
    match series.values.first() {
        Some(Json::Number(n)) => json_sample(n, "value"),
        Some(Json::Null) | None => Err(MetricError::no_values("no value in the last data entry")),
        Some(other) => Err(MetricError::failed(format!("malformed value {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped as the Metrics API v2 `GET /metrics/query` reference documents its answer.
    const OK: &str = r#"{
      "totalCount": 2,
      "nextPageKey": null,
      "resolution": "Inf",
      "result": [
        {
          "metricId": "builtin:service.response.time:percentile(99)",
          "dataPointCountRatio": 0.0000144,
          "dimensionCountRatio": 0.00024,
          "data": [
            {"dimensions": ["SERVICE-1A2B3C4D5E6F7A8B"], "dimensionMap": {"dt.entity.service": "SERVICE-1A2B3C4D5E6F7A8B"},
             "timestamps": [1733076000000], "values": [184213.5]},
            {"dimensions": ["SERVICE-9F8E7D6C5B4A3F2E"], "dimensionMap": {"dt.entity.service": "SERVICE-9F8E7D6C5B4A3F2E"},
             "timestamps": [1733076000000], "values": [90412.25]}
          ]
        }
      ]
    }"#;
    const NO_DATA: &str = r#"{"totalCount":0,"nextPageKey":null,"resolution":"Inf","result":[{"metricId":"builtin:service.errors.total.rate","dataPointCountRatio":0.0,"dimensionCountRatio":0.0,"data":[]}]}"#;
    const NULL_VALUE: &str = r#"{"totalCount":1,"resolution":"Inf","result":[{"metricId":"m","data":[{"dimensions":[],"dimensionMap":{},"timestamps":[1733076000000],"values":[null]}]}]}"#;
    const BAD_SELECTOR: &str = r#"{"error":{"code":400,"message":"Cannot parse metric selector: Unexpected token ')' at position 27","constraintViolations":[]}}"#;

    #[test]
    fn last_entry_first_value() {
        assert_eq!(parse_response(200, OK).unwrap(), Sample::new(90412.25));
    }

    #[test]
    fn no_data() {
        assert!(parse_response(200, NO_DATA).unwrap_err().is_no_values());
        assert!(parse_response(200, NULL_VALUE).unwrap_err().is_no_values());
    }

    #[test]
    fn errors_carry_the_message() {
        let e = parse_response(400, BAD_SELECTOR).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error response (HTTP 400): Cannot parse metric selector: Unexpected token ')' at position 27"
        );
    }
}
