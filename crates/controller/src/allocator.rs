//! The controller's setting of glibc's allocator, so that it holds less memory than it otherwise
//! would.
//!
//! glibc gives each thread that allocates while another does its own arena, up to 8 per core,
//! and keeps what is freed for reuse instead of returning it. A controller decodes a burst of
//! objects on every relist and every mass rollout, so its RSS sat well above its live heap
//! (heaptrack at 1 000 canaries: 50.9 MB peak heap under 85 MiB RSS). Measured with
//! `hack/bench scale` at 1 000 canaries, two arenas cut RSS from 59.1 to 50.9 MiB idle and 78.1
//! to 71.1 MiB peak at the same speed, where a build using mimalloc instead measured 81.1 / 102.5
//! MiB. Other allocators (musl's) are left alone.
//!
//! What is freed in the middle of an arena stays resident even so: glibc gives back only the top
//! of an arena on its own. Initialising a thousand canaries leaves such holes (a relist's decoded
//! pages, the first writes' buffers); at rest they were 7 of the 57 MiB the controller held
//! (`malloc_trim` called from a debugger: 57.1 → 49.9 MiB; at 10 000 canaries, where the memory is
//! mostly live, one trim gave back 230.7 → 222.2 MiB). [`release_free_memory_every`] returns them
//! now and then; what it costs is logged (at info level when it held the arenas for long).

use std::time::Duration;

/// Caps glibc's arenas at two, unless the operator set `MALLOC_ARENA_MAX` (glibc reads that
/// itself). Call before any other thread starts.
pub fn cap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets one of the allocator's parameters; the caller runs it before
        // any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// How often the free memory inside the arenas goes back to the kernel. Each time costs a walk
/// of the free lists with each arena locked in turn, and the pages given back are faulted in
/// again when they are reused; once a minute keeps both small while a controller at rest stays
/// near its live heap.
pub const RELEASE_PERIOD: Duration = Duration::from_secs(60);

/// A release that took this long is logged at info level.
const SLOW_RELEASE: Duration = Duration::from_millis(50);

/// Gives the pages no allocation uses back to the kernel: `malloc_trim`, which walks every arena,
/// not only the top of the main one. Blocks while it walks; run it off the async threads.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks; it may run on any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Releases the allocator's free memory every `period`, on a blocking thread, forever.
pub async fn release_free_memory_every(period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // An interval's first tick is at once: a controller just started has nothing to give back.
    tick.tick().await;
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        if tokio::task::spawn_blocking(release_free_memory)
            .await
            .is_err()
        {
            // Only a runtime shutting down cancels a blocking task.
            return;
        }
        let took = started.elapsed();
        // Threads that allocate wait for an arena the walk holds: a slow walk is worth seeing.
        if took >= SLOW_RELEASE {
            tracing::info!(
                took_ms = took.as_secs_f64() * 1000.0,
                "giving the allocator's free memory back to the kernel was slow"
            );
        } else {
            tracing::debug!(
                took_ms = took.as_secs_f64() * 1000.0,
                "gave the allocator's free memory back to the kernel"
            );
        }
    }
}
