//! Reports the input being processed when the run dies or stalls on it.
//!
//! A panic aborts in the shipped profile, so the panic hook is the last moment the input can be
//! written out; a stall is noticed by a thread that watches the input counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What is being processed now: its counter and its text.
pub struct Current {
    started: AtomicU64,
    input: Mutex<(String, Vec<u8>)>,
}

impl Current {
    /// Records the next input before it is processed.
    pub fn begin(&self, what: &str, input: &[u8]) {
        if let Ok(mut slot) = self.input.lock() {
            slot.0.clear();
            slot.0.push_str(what);
            slot.1.clear();
            slot.1.extend_from_slice(input);
        }
        self.started.fetch_add(1, Ordering::Release);
    }

    fn report(&self, why: &str) {
        // The panicking thread may hold the lock only if the panic came from `begin` itself.
        let Ok(slot) = self.input.try_lock() else {
            eprintln!("flagger-fuzz: {why}; the input could not be read");
            return;
        };
        let file = std::env::temp_dir().join(format!("flagger-fuzz-{}.input", std::process::id()));
        let saved = std::fs::write(&file, &slot.1).is_ok();
        eprintln!(
            "flagger-fuzz: {why} on a {} input ({} bytes{}):\n{}",
            slot.0,
            slot.1.len(),
            if saved {
                format!(", saved to {}", file.display())
            } else {
                String::new()
            },
            String::from_utf8_lossy(&slot.1)
        );
    }
}

/// Installs the panic report and a thread that ends the run when one input takes longer than
/// `limit`.
pub fn install(limit: Duration) -> Arc<Current> {
    let current = Arc::new(Current {
        started: AtomicU64::new(0),
        input: Mutex::new((String::new(), Vec::new())),
    });
    let for_hook = Arc::clone(&current);
    let default_hook = std::panic::take_hook();
    // Abort on any panic on any thread, whatever the profile: a panic on a helper thread (the
    // template lexer runs on one) would otherwise go unnoticed where panics unwind.
    std::panic::set_hook(Box::new(move |info| {
        for_hook.report("panic");
        default_hook(info);
        std::process::abort();
    }));
    let watched = Arc::clone(&current);
    std::thread::spawn(move || {
        let mut seen = watched.started.load(Ordering::Acquire);
        let mut since = Instant::now();
        loop {
            std::thread::sleep(limit / 8);
            let now = watched.started.load(Ordering::Acquire);
            if now != seen {
                seen = now;
                since = Instant::now();
            } else if since.elapsed() > limit {
                watched.report(&format!("no progress for {limit:?}"));
                std::process::exit(2);
            }
        }
    });
    current
}
