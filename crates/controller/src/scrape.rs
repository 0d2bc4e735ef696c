//! The `/metrics` body, handed to the connection in chunks as it is encoded.
//!
//! Every canary has ~30 series (11 one-hot phases, a 12-bucket duration histogram, weights,
//! status, run start), ~2.9 KB of exposition text: at 10 000 canaries one scrape is ~29 MB. Built
//! as one string it grew by doubling to up to twice that, once per scrape, and glibc kept the
//! freed room: the controller's resident memory then followed the scrape, not the canaries. Here
//! the text goes out in 64 KB chunks while it is encoded, and no large block is ever allocated.
//!
//! The encoder never waits for the scraper: it holds the registry's locks while it writes, and a
//! tick creating a series blocks a runtime thread on them. Had the encoder waited for a slow
//! scraper, ticks would have blocked every runtime thread, leaving none to send what the scraper
//! was waiting for (and none to run the timers): the whole controller would hang. So chunks queue
//! without bound for the connection; a scrape costs at most its text, as before, and usually far
//! less, as the connection sends while the encoder writes.

use std::fmt;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use futures::channel::mpsc;

use crate::metrics::Metrics;

/// What one chunk holds before it is handed to the connection.
const CHUNK: usize = 64 * 1024;

type Chunk = Result<Bytes, std::io::Error>;

/// The exposition of `metrics` as a body that is encoded while it is sent.
pub fn body(metrics: Arc<Metrics>) -> Body {
    let (sender, chunks) = mpsc::unbounded::<Chunk>();
    // Encoding is synchronous and, at thousands of canaries, long enough to deserve a thread of
    // its own rather than a turn of the async workers.
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks::new(sender);
        let encoded = metrics.encode_into(&mut out);
        out.finish(encoded);
    });
    Body::from_stream(chunks)
}

/// A `fmt::Write` that hands what is written to the connection in chunks of `CHUNK` bytes.
struct Chunks {
    sender: mpsc::UnboundedSender<Chunk>,
    buffer: String,
}

impl Chunks {
    fn new(sender: mpsc::UnboundedSender<Chunk>) -> Chunks {
        Chunks {
            sender,
            buffer: String::with_capacity(CHUNK),
        }
    }

    /// An error once the scraper is gone: encoding stops.
    fn send(&mut self, chunk: Chunk) -> fmt::Result {
        self.sender
            .unbounded_send(chunk)
            .map_err(|_gone| fmt::Error)
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
        if encoded.and_then(|()| self.flush()).is_err() {
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

    #[test]
    fn a_scraper_that_goes_away_stops_the_encoder() {
        let (sender, chunks) = mpsc::unbounded::<Chunk>();
        drop(chunks);
        let mut out = Chunks::new(sender);
        assert_eq!(
            fmt::Write::write_str(&mut out, &"x".repeat(CHUNK)),
            Err(fmt::Error)
        );
    }

    /// The encoder holds the registry's locks: it must finish whether or not anyone reads (a
    /// scraper that stalls would otherwise hang every tick that creates a series).
    #[test]
    fn the_encoder_never_waits_for_the_scraper() {
        let (sender, chunks) = mpsc::unbounded::<Chunk>();
        let mut out = Chunks::new(sender);
        for _ in 0..64 {
            assert_eq!(fmt::Write::write_str(&mut out, &"x".repeat(CHUNK)), Ok(()));
        }
        out.finish(Ok(()));
        drop(chunks);
    }
}
