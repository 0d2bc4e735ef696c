//! The `/metrics` body, handed to the connection in chunks as it is encoded.
//!
//! Every canary has ~30 series (11 one-hot phases, a 12-bucket duration histogram, weights,
//! status, run start), ~2.9 KB of exposition text: at 10 000 canaries one scrape is ~29 MB. Built
//! as one string it grew by doubling to up to twice that, once per scrape, and glibc kept the
//! freed room: the controller's resident memory then followed the scrape, not the canaries. Here
//! the text goes out in 64 KB chunks while it is encoded, and no large block is ever allocated.
//!
//! The exposition is written in two parts. The families come first, and their writer never waits
//! for the scraper: each family holds its lock while it is written, and a tick creating a series
//! blocks a runtime thread on it. Had that writer waited for a slow scraper, ticks would have
//! blocked every runtime thread, leaving none to send what the scraper was waiting for: the whole
//! controller would hang. Their chunks queue without bound; they are a small part of the text.
//! Every canary's own series come second, written from a copy with no lock held: there a chunk
//! waits until fewer than [`QUEUED`] are on their way, so a slow scraper holds up only its own
//! scrape. Without that, a scraper slower than the encoder (a busy machine) had the whole text
//! queued at once: the controller's memory at 10 000 canaries rose by one scrape's 25 MB, and
//! glibc kept it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::StreamExt;
use futures::channel::mpsc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// What one chunk holds before it is handed to the connection.
const CHUNK: usize = 64 * 1024;

/// Chunks of the canaries' series on their way to the connection at most (1 MB).
const QUEUED: usize = 16;

/// How long a chunk waits for a scraper that reads nothing before the scrape is abandoned (longer
/// than any scraper's timeout: Prometheus' default is 10 s).
const STALLED: Duration = Duration::from_secs(120);

type Chunk = Result<Bytes, std::io::Error>;

/// A chunk, and the room it takes in the queue until the connection takes it.
type Queued = (Chunk, Option<OwnedSemaphorePermit>);

/// The exposition of `metrics` as a body that is encoded while it is sent.
pub fn body(metrics: Arc<Metrics>) -> Body {
    let (sender, chunks) = mpsc::unbounded::<Queued>();
    let room = Arc::new(Semaphore::new(QUEUED));
    let runtime = tokio::runtime::Handle::current();
    // Encoding is synchronous and, at thousands of canaries, long enough to deserve a thread of
    // its own rather than a turn of the async workers.
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks::new(sender, room, runtime);
        let encoded = metrics.encode_families(&mut out).and_then(|()| {
            out.may_wait = true;
            metrics.encode_canaries(&mut out)?;
            metrics.encode_end(&mut out)
        });
        out.finish(encoded);
    });
    // The room a chunk took is given back as the connection takes it.
    Body::from_stream(chunks.map(|(chunk, _room)| chunk))
}

/// A `fmt::Write` that hands what is written to the connection in chunks of `CHUNK` bytes.
struct Chunks {
    sender: mpsc::UnboundedSender<Queued>,
    buffer: String,
    room: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
    /// Whether a chunk waits for room in the queue: only while no lock is held.
    may_wait: bool,
    stalled: Duration,
}

impl Chunks {
    fn new(
        sender: mpsc::UnboundedSender<Queued>,
        room: Arc<Semaphore>,
        runtime: tokio::runtime::Handle,
    ) -> Chunks {
        Chunks {
            sender,
            buffer: String::with_capacity(CHUNK),
            room,
            runtime,
            may_wait: false,
            stalled: STALLED,
        }
    }

    /// An error once the scraper is gone (or stalled): encoding stops.
    fn send(&mut self, chunk: Chunk) -> fmt::Result {
        let room = if self.may_wait {
            let (room, stalled) = (self.room.clone(), self.stalled);
            // On the encoder's own thread, never a runtime worker.
            let waited = self
                .runtime
                .block_on(async move { tokio::time::timeout(stalled, room.acquire_owned()).await });
            match waited {
                Ok(Ok(room)) => Some(room),
                // The semaphore is never closed; a scraper that reads nothing for so long is
                // treated as gone.
                Ok(Err(_)) | Err(_) => return Err(fmt::Error),
            }
        } else {
            None
        };
        self.sender
            .unbounded_send((chunk, room))
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
            // Nothing more to do if the scraper is gone too; the error takes no room.
            self.may_wait = false;
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

    /// A writer on a thread of its own, as the encoder runs, and the runtime its waits use.
    fn writer(
        may_wait: bool,
    ) -> (
        tokio::runtime::Runtime,
        Chunks,
        mpsc::UnboundedReceiver<Queued>,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let (sender, chunks) = mpsc::unbounded::<Queued>();
        let mut out = Chunks::new(
            sender,
            Arc::new(Semaphore::new(QUEUED)),
            runtime.handle().clone(),
        );
        out.may_wait = may_wait;
        (runtime, out, chunks)
    }

    #[test]
    fn a_scraper_that_goes_away_stops_the_encoder() {
        for may_wait in [false, true] {
            let (_runtime, mut out, chunks) = writer(may_wait);
            drop(chunks);
            assert_eq!(
                fmt::Write::write_str(&mut out, &"x".repeat(CHUNK)),
                Err(fmt::Error)
            );
        }
    }

    /// The families are written with their locks held: that part must finish whether or not
    /// anyone reads (a scraper that stalls would otherwise hang every tick that creates a series).
    #[test]
    fn the_families_writer_never_waits_for_the_scraper() {
        let (_runtime, mut out, chunks) = writer(false);
        for _ in 0..4 * QUEUED {
            assert_eq!(fmt::Write::write_str(&mut out, &"x".repeat(CHUNK)), Ok(()));
        }
        out.finish(Ok(()));
        drop(chunks);
    }

    #[test]
    fn the_canaries_writer_waits_for_the_scraper_and_gives_up_on_one_that_stalls() {
        let (_runtime, mut out, mut chunks) = writer(true);
        let room = out.room.clone();
        out.stalled = Duration::from_millis(50);
        let chunk = "x".repeat(CHUNK);
        for _ in 0..QUEUED {
            assert_eq!(fmt::Write::write_str(&mut out, &chunk), Ok(()));
        }
        assert_eq!(room.available_permits(), 0, "the queue is full");
        assert_eq!(
            fmt::Write::write_str(&mut out, &chunk),
            Err(fmt::Error),
            "nobody read: the scrape is abandoned, not the thread"
        );
        // Taking a chunk gives its room back.
        let taken = chunks.try_recv().ok();
        assert!(taken.is_some());
        drop(taken);
        assert_eq!(room.available_permits(), 1);
        assert_eq!(fmt::Write::write_str(&mut out, &chunk), Ok(()));
    }
}
