//! Metric providers against a real HTTP server (axum on 127.0.0.1:0 answering with recorded
//! backend bodies), and the builtin queries rendered per router as snapshots.

mod prometheus_http;
mod receiver;
mod snapshots;
mod vendors;
