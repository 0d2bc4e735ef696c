//! New Relic Insights query API: `GET /v1/accounts/<id>/query?nrql=`.

use std::time::Duration;

use serde_json::Value as Json;

use super::factory::{ProviderConfigError, VendorConfig};
use super::http::{base_address, check_status, send};
use super::{MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, finite_or_no_data};

pub const DEFAULT_ADDRESS: &str = "https://insights-api.newrelic.com";
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct NewRelicProvider {
    query_url: String,
    query_key: Option<String>,
    client: reqwest::Client,
}

impl NewRelicProvider {
    pub fn new(config: &VendorConfig) -> Result<Self, ProviderConfigError> {
        let address = base_address("newrelic", config.address, Some(DEFAULT_ADDRESS))?;
        let account = config.required("newrelic", "newrelic_account_id")?;
        Ok(NewRelicProvider {
            query_url: format!("{address}/v1/accounts/{account}/query"),
            query_key: config.optional("newrelic_query_key")?,
            client: config.client(TIMEOUT)?,
        })
    }

    async fn nrql(&self, nrql: &str) -> Result<(u16, String), MetricError> {
        let mut req = self.client.get(&self.query_url).query(&[("nrql", nrql)]);
        if let Some(key) = &self.query_key {
            req = req.header("X-Query-Key", key);
        }
        send(req).await
    }
}

/// The window is appended to the user's NRQL, as Flagger does.
pub fn with_window(query: &str, interval: Duration) -> String {
    format!("{query} SINCE {} seconds ago", interval.as_secs())
}

impl MetricProvider for NewRelicProvider {
    fn kind(&self) -> &'static str {
        "newrelic"
    }

    fn run_query<'a>(&'a self, query: &'a str, interval: Duration) -> QueryFuture<'a> {
        Box::pin(async move {
            let (status, body) = self.nrql(&with_window(query, interval)).await?;
            parse_response(status, &body)
        })
    }

    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let (status, body) = self.nrql("SELECT count(*) FROM Metric").await?;
            check_status("newrelic", status, &body)
        })
    }
}

/// The first value of the first result. Aggregates that nest their value (`percentile` →
/// `{"percentiles": {"99": v}}`) are followed down to the number.
pub fn parse_response(status: u16, body: &str) -> Result<Sample, MetricError> {
    check_status("error response", status, body)?;
    let json: Json = serde_json::from_str(body)
        .map_err(|e| MetricError::failed(format!("error unmarshaling newrelic response: {e}")))?;
    if let Some(error) = json.get("error") {
        return Err(MetricError::failed(format!(
            "newrelic query error: {error}"
        )));
    }
    let results = json
        .get("results")
        .and_then(Json::as_array)
        .ok_or_else(|| MetricError::failed("newrelic response has no results"))?;
    let first = results
        .first()
        .ok_or_else(|| MetricError::no_values("empty results"))?;
    match first_number(first, 0) {
        Some(Some(v)) => finite_or_no_data(v, "result").map(Sample::new),
        Some(None) => Err(MetricError::no_values("result value is null")),
        None => Err(MetricError::failed(format!(
            "no numeric value in result {first}"
        ))),
    }
}

/// `Some(None)` for a null leaf (no data), `None` when nothing numeric is there at all.
fn first_number(v: &Json, depth: usize) -> Option<Option<f64>> {
    const MAX_DEPTH: usize = 4;
    match v {
        Json::Number(n) => Some(n.as_f64()),
        Json::Null => Some(None),
        Json::Object(o) if depth < MAX_DEPTH => o.values().find_map(|x| first_number(x, depth + 1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped as the Insights query API documents its answers.
    const AVERAGE: &str = r#"{
      "results": [{"average": 0.0321}],
      "performanceStats": {"inspectedCount": 1204, "omittedCount": 0, "matchCount": 1204, "wallClockTime": 21},
      "metadata": {
        "eventTypes": ["Transaction"], "eventType": "Transaction", "openEnded": true,
        "beginTime": "2024-12-01T17:59:00Z", "endTime": "2024-12-01T18:00:00Z",
        "beginTimeMillis": 1733075940000, "endTimeMillis": 1733076000000,
        "rawSince": "60 SECONDS AGO", "rawUntil": "NOW", "rawCompareWith": "",
        "guid": "6c9b2f44-9a8e-7f1c-2b3d-4e5f60718293", "routerGuid": "6c9b2f44-9a8e-7f1c-2b3d-4e5f60718293",
        "messages": [],
        "contents": [{"function": "average", "attribute": "duration", "simple": true}]
      }
    }"#;
    const PERCENTILE: &str = r#"{"results":[{"percentiles":{"99":0.2751}}],"metadata":{"contents":[{"function":"percentile","attribute":"duration","thresholds":[99]}]}}"#;
    const NULL_AVERAGE: &str = r#"{"results":[{"average":null}],"metadata":{}}"#;
    const SYNTAX: &str =
        r#"{"error":"NRQL Syntax Error: Error at line 1 position 8, unexpected 'FROMM'"}"#;

    #[test]
    fn first_value_of_first_result() {
        assert_eq!(parse_response(200, AVERAGE).unwrap(), Sample::new(0.0321));
        assert_eq!(parse_response(200, PERCENTILE).unwrap().value, 0.2751);
    }

    #[test]
    fn null_and_empty_are_no_data() {
        assert!(
            parse_response(200, NULL_AVERAGE)
                .unwrap_err()
                .is_no_values()
        );
        assert!(
            parse_response(200, r#"{"results":[]}"#)
                .unwrap_err()
                .is_no_values()
        );
    }

    #[test]
    fn errors_carry_the_message() {
        let e = parse_response(400, SYNTAX).unwrap_err();
        assert!(e.to_string().contains("NRQL Syntax Error"), "{e}");
        assert!(!e.is_no_values());
        let e = parse_response(200, SYNTAX).unwrap_err();
        assert!(e.to_string().contains("NRQL Syntax Error"), "{e}");
    }

    #[test]
    fn window_is_appended() {
        assert_eq!(
            with_window(
                "SELECT average(duration) FROM Transaction",
                Duration::from_secs(60)
            ),
            "SELECT average(duration) FROM Transaction SINCE 60 seconds ago"
        );
    }
}
