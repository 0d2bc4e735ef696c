//! The `/metrics` body, streamed in chunks as it is encoded.
//!
//! Every canary has ~30 series (11 one-hot phases, a 12-bucket duration histogram, weights,
//! status, run start), ~2.9 KB of exposition text: at 10 000 canaries one scrape is ~29 MB. Built
//! as one string it grew by doubling to up to twice that, once per scrape, and glibc kept the
//! freed room: the controller's resident memory then followed the scrape, not the canaries.
//! Streamed, a scrape holds a few chunks at a time.
//!
//! The encoder holds the registry's locks while it writes, and a new series waits for them; so a
//! scraper that stops reading must not hold the encoder: past `SCRAPE_DEADLINE` the scrape is cut
//! off (the scraper sees a truncated body and fails the scrape) and the locks are released.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::SinkExt;
use futures::channel::mpsc;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// What one chunk holds before it is handed to the connection.
const CHUNK: usize = 64 * 1024;
/// Chunks encoded ahead of what the scraper has read.
const CHUNKS_AHEAD: usize = 4;
/// The longest a scrape may take: past Prometheus's longest usual scrape timeout.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(60);

type Chunk = Result<Bytes, std::io::Error>;

/// The exposition of `metrics` as a body that is encoded while it is sent.
pub fn body(metrics: Arc<Metrics>) -> Body {
    let (sender, chunks) = mpsc::channel::<Chunk>(CHUNKS_AHEAD);
    let runtime = tokio::runtime::Handle::current();
    let deadline = Instant::now() + SCRAPE_DEADLINE;
    // Encoding is synchronous and, at thousands of canaries, long enough to deserve a thread
    // of its own rather than a turn of the async workers.
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks::new(sender, runtime, deadline);
        let encoded = metrics.encode_into(&mut out);
        out.finish(encoded);
    });
    Body::from_stream(chunks)
}

/// A `fmt::Write` that sends what is written in chunks of `CHUNK` bytes.
struct Chunks {
    sender: mpsc::Sender<Chunk>,
    runtime: tokio::runtime::Handle,
    deadline: Instant,
    buffer: String,
}

impl Chunks {
    fn new(
        sender: mpsc::Sender<Chunk>,
        runtime: tokio::runtime::Handle,
        deadline: Instant,
    ) -> Chunks {
        Chunks {
            sender,
            runtime,
            deadline,
            buffer: String::with_capacity(CHUNK),
        }
    }

    /// Sends `chunk`, waiting while the scraper is behind; an error once the scraper is gone or
    /// the deadline has passed.
    fn send(&mut self, chunk: Chunk) -> fmt::Result {
        let sending = self.sender.send(chunk);
        match self
            .runtime
            .block_on(tokio::time::timeout_at(self.deadline, sending))
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_gone)) => Err(fmt::Error),
            Err(_late) => Err(fmt::Error),
        }
    }

    fn flush(&mut self) -> fmt::Result {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buffer, String::with_capacity(CHUNK));
        self.send(Ok(Bytes::from(full)))
    }

    /// Sends what is left, or, when encoding failed, an error that aborts the response so the
    /// scraper does not take a truncated body for a whole one.
    fn finish(mut self, encoded: fmt::Result) {
        let ended = encoded.and_then(|()| self.flush());
        if ended.is_err() {
            // Nothing more to do if the scraper is gone too.
            let _ = self.send(Err(std::io::Error::other("metrics encoding stopped")));
        }
    }
}

impl fmt::Write for Chunks {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.buffer.push_str(s);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_many_chunks_long_arrives_whole_and_in_order() {
        let metrics = Arc::new(Metrics::new(false));
        for n in 0..2_000 {
            metrics.set_phase(
                &format!("canary-{n:04}"),
                "test",
                "podinfo",
                flagger_api::CanaryPhase::Succeeded,
            );
        }
        let whole = metrics.encode().unwrap();
        assert!(whole.len() > 10 * CHUNK, "{} bytes", whole.len());
        let mut streamed = Vec::new();
        let mut chunks = 0;
        let mut stream = body(metrics).into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() < 2 * CHUNK);
            streamed.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert!(chunks > 10);
        assert_eq!(String::from_utf8(streamed).unwrap(), whole);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scraper_that_goes_away_stops_the_encoder() {
        let (sender, chunks) = mpsc::channel::<Chunk>(0);
        let deadline = Instant::now() + SCRAPE_DEADLINE;
        let runtime = tokio::runtime::Handle::current();
        drop(chunks);
        let written = tokio::task::spawn_blocking(move || {
            let mut out = Chunks::new(sender, runtime, deadline);
            fmt::Write::write_str(&mut out, &"x".repeat(CHUNK))
        })
        .await
        .unwrap();
        assert_eq!(written, Err(fmt::Error));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scraper_that_stops_reading_is_cut_off_at_the_deadline() {
        let (sender, chunks) = mpsc::channel::<Chunk>(0);
        let runtime = tokio::runtime::Handle::current();
        // A deadline already near: the scraper below never reads.
        let deadline = Instant::now() + Duration::from_millis(50);
        let written = tokio::task::spawn_blocking(move || {
            let mut out = Chunks::new(sender, runtime, deadline);
            (0..4).try_for_each(|_| fmt::Write::write_str(&mut out, &"x".repeat(CHUNK)))
        })
        .await
        .unwrap();
        assert_eq!(written, Err(fmt::Error));
        drop(chunks);
    }
}
