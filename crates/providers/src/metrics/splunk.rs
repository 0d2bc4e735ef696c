//! Splunk Observability (SignalFx): the SignalFlow program runs through SignalFlow's HTTP
//! `execute` call, whose answer is a Server-Sent Events stream.
//!
//! Flagger's client speaks the WebSocket flavour of the same API; both run the program over the
//! same `stream.<realm>` host with the same token and deliver the same messages, and the HTTP one
//! keeps TLS, timeouts and `insecureSkipVerify` on the client every other provider uses.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use super::factory::{ProviderConfigError, VendorConfig};
use super::http::{base_address, check_status, describe, lookback, probe, read_body};
use super::{MetricError, MetricProvider, ProbeFuture, QueryFuture, Sample, finite_or_no_data};

pub const TOKEN_KEY: &str = "sf_token_key";
const TOKEN_HEADER: &str = "X-SF-Token";
const TIMEOUT: Duration = Duration::from_secs(5);
const LOOKBACK_WINDOWS: u32 = 10;
/// What a computation may stream before it is cut off.
const MAX_STREAM: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct SplunkProvider {
    stream: String,
    api: String,
    token: String,
    client: reqwest::Client,
}

impl SplunkProvider {
    pub fn new(config: &VendorConfig) -> Result<Self, ProviderConfigError> {
        Self::with_timeout(config, TIMEOUT)
    }

    pub fn with_timeout(
        config: &VendorConfig,
        timeout: Duration,
    ) -> Result<Self, ProviderConfigError> {
        let address = base_address("splunk", config.address, None)?;
        let (stream, api) = endpoints(address)?;
        Ok(SplunkProvider {
            stream,
            api,
            token: config.required("splunk", TOKEN_KEY)?,
            client: config.client(timeout)?,
        })
    }

    async fn execute(&self, program: &str, interval: Duration) -> Result<Vec<Event>, MetricError> {
        let (start, stop) = lookback(interval, LOOKBACK_WINDOWS);
        let resp = self
            .client
            .post(format!("{}/v2/signalflow/execute", self.stream))
            .query(&[
                ("start", start.as_millis().to_string()),
                ("stop", stop.as_millis().to_string()),
                ("immediate", "true".to_string()),
            ])
            .header(TOKEN_HEADER, &self.token)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(program.to_string())
            .send()
            .await
            .map_err(|e| MetricError::failed(format!("error executing query: {}", describe(&e))))?;
        if resp.status().as_u16() >= 400 {
            let (status, body) = read_body(resp).await?;
            check_status("error executing query", status, &body)?;
            return Err(MetricError::failed(format!(
                "error executing query (HTTP {status})"
            )));
        }
        read_events(resp).await
    }
}

/// The SignalFlow (`stream.<realm>`) and REST (`api.<realm>`) bases from the template's address,
/// which may name either, with an `http(s)` or `ws(s)` scheme, as Flagger accepts.
pub fn endpoints(address: &str) -> Result<(String, String), ProviderConfigError> {
    let mut url = url::Url::parse(address)
        .map_err(|_| ProviderConfigError(format!("splunk address {address:?} is not a URL")))?;
    let scheme = match url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        other => {
            return Err(ProviderConfigError(format!(
                "splunk address scheme {other:?} is not http(s) or ws(s)"
            )));
        }
    };
    let host = url.host_str().unwrap_or_default().to_string();
    let with_host = |url: &mut url::Url, host: &str| -> Result<String, ProviderConfigError> {
        url.set_scheme(scheme)
            .and_then(|()| url.set_host(Some(host)).map_err(|_| ()))
            .map_err(|()| ProviderConfigError(format!("splunk address {address:?} is unusable")))?;
        Ok(url.as_str().trim_end_matches('/').to_string())
    };
    let rest = |prefix: &str| host.strip_prefix(prefix).map(str::to_string);
    let (stream_host, api_host) = match (rest("api."), rest("stream.")) {
        (Some(realm), _) => (format!("stream.{realm}"), host.clone()),
        (_, Some(realm)) => (host.clone(), format!("api.{realm}")),
        _ => (host.clone(), host.clone()),
    };
    Ok((
        with_host(&mut url, &stream_host)?,
        with_host(&mut url, &api_host)?,
    ))
}

impl MetricProvider for SplunkProvider {
    fn kind(&self) -> &'static str {
        "splunk"
    }

    fn run_query<'a>(&'a self, query: &'a str, interval: Duration) -> QueryFuture<'a> {
        Box::pin(async move { pick_value(&self.execute(query, interval).await?) })
    }

    fn is_online(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let req = self
                .client
                .get(format!("{}/v2/metric?limit=1", self.api))
                .header(TOKEN_HEADER, &self.token);
            probe("error response", req).await
        })
    }
}

/// One Server-Sent Event: its name and its (joined) data lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// Splits an event stream as the SSE format defines it: `event:` names the event, `data:` lines
/// are joined with newlines, a blank line ends the event, `:` starts a comment.
#[derive(Default)]
pub struct SseParser {
    pending: String,
    name: String,
    data: Vec<String>,
}

impl SseParser {
    /// The events completed by `text`; an unfinished line waits for the next call.
    pub fn feed(&mut self, text: &str) -> Vec<Event> {
        self.pending.push_str(text);
        let mut events = Vec::new();
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() || !self.name.is_empty() {
                    events.push(Event {
                        name: std::mem::take(&mut self.name),
                        data: std::mem::take(&mut self.data).join("\n"),
                    });
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.name = value.to_string(),
                "data" => self.data.push(value.to_string()),
                _ => {}
            }
        }
        events
    }
}

/// Reads the stream up to the computation's end (or the server closing it).
async fn read_events(mut resp: reqwest::Response) -> Result<Vec<Event>, MetricError> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut read = 0;
    let mut rest = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| {
            MetricError::failed(format!("error reading the stream: {}", describe(&e)))
        })?;
        let Some(chunk) = chunk else { break };
        read += chunk.len();
        if read > MAX_STREAM {
            return Err(MetricError::failed(format!(
                "the computation streamed more than {MAX_STREAM} bytes"
            )));
        }
        rest.extend_from_slice(&chunk);
        // A chunk may end inside a UTF-8 sequence; keep the tail for the next one.
        let valid = match std::str::from_utf8(&rest) {
            Ok(_) => rest.len(),
            Err(e) => e.valid_up_to(),
        };
        let text = String::from_utf8_lossy(&rest[..valid]).into_owned();
        rest.drain(..valid);
        let new = parser.feed(&text);
        let finished = new.iter().any(is_terminal);
        events.extend(new);
        if finished {
            break;
        }
    }
    events.extend(parser.feed("\n\n"));
    Ok(events)
}

fn is_terminal(e: &Event) -> bool {
    match e.name.as_str() {
        "error" => true,
        "control-message" => serde_json::from_str::<Json>(&e.data).is_ok_and(|j| {
            matches!(
                j["event"].as_str(),
                Some("END_OF_CHANNEL" | "CHANNEL_ABORT")
            )
        }),
        _ => false,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataMessage {
    #[serde(default)]
    data: Vec<Datum>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Datum {
    ts_id: String,
    value: Option<f64>,
}

/// The last non-null value; an error event or an aborted channel fails the query, and values
/// from more than one time series are ambiguous (Flagger refuses them too).
pub fn pick_value(events: &[Event]) -> Result<Sample, MetricError> {
    let mut points = Vec::new();
    for e in events {
        match e.name.as_str() {
            "data" => {
                let msg: DataMessage = serde_json::from_str(&e.data).map_err(|err| {
                    MetricError::failed(format!("error decoding a data message: {err}"))
                })?;
                points.extend(
                    msg.data
                        .into_iter()
                        .filter_map(|d| d.value.map(|v| (d.ts_id, v))),
                );
            }
            "error" => {
                return Err(MetricError::failed(format!(
                    "error executing query: {}",
                    e.data.trim()
                )));
            }
            "control-message" if is_terminal(e) && e.data.contains("CHANNEL_ABORT") => {
                let info = serde_json::from_str::<Json>(&e.data)
                    .map(|j| j["abortInfo"].to_string())
                    .unwrap_or_default();
                return Err(MetricError::failed(format!(
                    "error executing query: computation aborted: {info}"
                )));
            }
            _ => {}
        }
    }
    let series: BTreeSet<&str> = points.iter().map(|(ts, _)| ts.as_str()).collect();
    if series.len() > 1 {
        return Err(MetricError::failed(format!(
            "invalid response: multiple values returned ({} time series)",
            series.len()
        )));
    }
    let (_, value) = points
        .last()
        .ok_or_else(|| MetricError::no_values("the computation published no values"))?;
    finite_or_no_data(*value, "value").map(Sample::new)
}
