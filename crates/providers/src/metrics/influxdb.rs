//! InfluxDB 2.x Flux queries: `POST /api/v2/query` answered in annotated CSV.

use std::time::Duration;

use super::factory::{ProviderConfigError, VendorConfig};
use super::http::{base_address, check_status, send};
use super::prometheus::parse_go_float;
use super::{
    MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, answered, finite_or_no_data,
};

/// Flagger's InfluxDB timeout.
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct InfluxdbProvider {
    query_url: String,
    credentials: Option<(String, String)>,
    client: reqwest::Client,
}

impl InfluxdbProvider {
    pub fn new(config: &VendorConfig) -> Result<Self, ProviderConfigError> {
        let address = base_address("influxdb", config.address, None)?;
        // Without a Secret the query goes unauthenticated; with one, both keys are needed.
        let credentials = match config.secret {
            Some(_) => Some((
                config.required("influxdb", "token")?,
                config.required("influxdb", "org")?,
            )),
            None => None,
        };
        Ok(InfluxdbProvider {
            query_url: format!("{address}/api/v2/query"),
            credentials,
            client: config.client(TIMEOUT)?,
        })
    }

    async fn flux(&self, query: &str) -> Result<Sample, MetricError> {
        let body = serde_json::json!({
            "query": query,
            "type": "flux",
            "dialect": {"header": true, "delimiter": ",", "annotations": ["datatype", "group", "default"]},
        });
        let mut req = self
            .client
            .post(&self.query_url)
            .header(reqwest::header::ACCEPT, "application/csv")
            .json(&body);
        if let Some((token, org)) = &self.credentials {
            req = req
                .header(reqwest::header::AUTHORIZATION, format!("Token {token}"))
                .query(&[("org", org)]);
        }
        let (status, body) = send(req).await?;
        parse_response(status, &body)
    }
}

impl MetricProvider for InfluxdbProvider {
    fn kind(&self) -> &'static str {
        "influxdb"
    }

    fn run_query<'a>(&'a self, query: &'a str, _interval: Duration) -> QueryFuture<'a> {
        Box::pin(self.flux(query))
    }

    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            answered(
                self.flux(r#"from(bucket: "default") |> range(start: -1m) |> limit(n: 1)"#)
                    .await,
            )
        })
    }
}

/// The `_value` of the first record; it must be a float (`double`), as Flagger requires.
pub fn parse_response(status: u16, body: &str) -> Result<Sample, MetricError> {
    check_status("error response", status, body)?;
    let mut datatypes: Vec<String> = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            // A blank line ends a table; the next one brings its own annotations and header.
            datatypes.clear();
            header = None;
            continue;
        }
        let fields = split_csv(line);
        if fields.first().is_some_and(|f| f == "#datatype") {
            datatypes = fields;
            continue;
        }
        if fields.first().is_some_and(|f| f.starts_with('#')) {
            continue;
        }
        let Some(columns) = &header else {
            header = Some(fields);
            continue;
        };
        // An error raised while streaming arrives as its own table with `error` and `reference`.
        if let Some(i) = columns.iter().position(|c| c == "error") {
            let message = fields.get(i).cloned().unwrap_or_default();
            return Err(MetricError::failed(format!(
                "influxdb query error: {message}"
            )));
        }
        let i = columns
            .iter()
            .position(|c| c == "_value")
            .ok_or_else(|| MetricError::failed("influxdb result has no _value column"))?;
        let raw = fields.get(i).map(String::as_str).unwrap_or_default();
        let datatype = datatypes.get(i).map(String::as_str).unwrap_or("double");
        if datatype != "double" {
            return Err(MetricError::failed(format!(
                "influxdb value {raw:?} has type {datatype}, expected a float"
            )));
        }
        if raw.is_empty() {
            return Err(MetricError::no_values("first record's _value is null"));
        }
        let value = parse_go_float(raw)
            .ok_or_else(|| MetricError::failed(format!("unparsable influxdb value {raw:?}")))?;
        return finite_or_no_data(value, "_value").map(Sample::new);
    }
    Err(MetricError::no_values("no records"))
}

/// One RFC 4180 line: commas separate, double quotes enclose, `""` escapes a quote.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => in_quotes = !in_quotes,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    // Annotated CSV as InfluxDB 2.x answers /api/v2/query with datatype/group/default annotations.
    const ONE_TABLE: &str = "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string\r\n\
#group,false,false,true,true,false,false,true,true,true\r\n\
#default,_result,,,,,,,,\r\n\
,result,table,_start,_stop,_time,_value,_field,_measurement,service\r\n\
,,0,2024-12-01T17:59:00Z,2024-12-01T18:00:00Z,2024-12-01T18:00:00Z,0.9875,success_ratio,http,\"podinfo,canary\"\r\n\
,,0,2024-12-01T17:59:00Z,2024-12-01T18:00:00Z,2024-12-01T18:00:00Z,0.5,success_ratio,http,podinfo\r\n\
\r\n";
    const LONG_VALUE: &str = "#datatype,string,long,long\r\n#group,false,false,false\r\n#default,_result,,\r\n,result,table,_value\r\n,,0,42\r\n\r\n";
    const EMPTY: &str = "\r\n";
    const STREAM_ERROR: &str = "#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n,\"runtime error @1:1-1:40: from: bucket \"\"nope\"\" not found\",\r\n\r\n";
    const HTTP_ERROR: &str = r#"{"code":"invalid","message":"compilation failed: error at @1:1-1:4: undefined identifier fro"}"#;

    #[test]
    fn first_record_value() {
        assert_eq!(parse_response(200, ONE_TABLE).unwrap(), Sample::new(0.9875));
    }

    #[test]
    fn non_float_is_an_error() {
        let e = parse_response(200, LONG_VALUE).unwrap_err();
        assert!(e.to_string().contains("expected a float"), "{e}");
    }

    #[test]
    fn empty_is_no_data() {
        assert!(parse_response(200, EMPTY).unwrap_err().is_no_values());
        assert!(parse_response(200, "").unwrap_err().is_no_values());
    }

    #[test]
    fn errors_carry_the_message() {
        let e = parse_response(200, STREAM_ERROR).unwrap_err();
        assert!(e.to_string().contains(r#"bucket "nope" not found"#), "{e}");
        let e = parse_response(400, HTTP_ERROR).unwrap_err();
        assert!(
            e.to_string()
                .contains("compilation failed: error at @1:1-1:4: undefined identifier fro"),
            "{e}"
        );
    }
}
