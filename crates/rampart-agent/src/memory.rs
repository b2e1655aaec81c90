//! The agent's use of the C allocator (glibc malloc; nothing to do elsewhere, e.g. musl).
//!
//! Measured on the default configuration (issue 20, docs/benchmarks.md "Agent footprint"): glibc
//! gives each thread that allocates its own arena (64 MiB of address space, up to 8 per core),
//! keeps freed memory in them, and raises its mmap threshold after the first large free, so the
//! startup's transient work (parsing the kernel's BTF twice, the host audit's probes, the
//! first inventory round) stayed resident for the life of the agent. [`tune`] limits the arenas
//! and pins the mmap threshold (large buffers are unmapped when freed); [`trim`], called after
//! startup and every stats interval, gives the free pages of every arena back to the kernel.

/// Limits malloc to two arenas and pins the mmap threshold at 128 KiB. Call it first thing, before
/// threads start (arenas made earlier stay). Repeated calls are harmless.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt(3) only sets allocator parameters; both are valid values.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// Returns the free memory of every malloc arena to the kernel.
pub(crate) fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim(3) has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
