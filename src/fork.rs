//! Fork awareness: one `pthread_atfork` child handler for the library.
//! In a fork child only the forking thread exists; state that other
//! threads of the parent were part of must be recognised (engine loops,
//! by their fork generation) or forgotten (trace calls in progress).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// How many times this process is a fork child of the process that
/// started counting: bumped in the child by the handler.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::trace::after_fork_in_child();
}

/// Registers the handler, once; call it before creating state that a fork
/// child must see differently.
pub fn watch() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a child handler that only touches atomics,
        // which is async-signal-safe as a fork child handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

/// The current fork generation (see `FORK_GENERATION`).
pub fn generation() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}
