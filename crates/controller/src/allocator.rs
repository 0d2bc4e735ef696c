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
