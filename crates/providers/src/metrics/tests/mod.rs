//! Metric providers against a real HTTP server (axum on 127.0.0.1:0 answering with recorded
//! backend bodies), the in-cluster providers against a fake API server, and the builtin queries
//! rendered per router as snapshots.

mod cloudwatch;
mod in_cluster;
mod prometheus_http;
mod receiver;
mod snapshots;
mod splunk;
mod stackdriver;
mod tls;
mod vendors;
