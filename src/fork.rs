//! Fork awareness: the library's `pthread_atfork` handlers.
//!
//! In a fork child only the forking thread exists. Two things follow:
//! - state that other threads of the parent were part of must be
//!   recognised (engine loops, by their fork generation) or forgotten
//!   (trace calls in progress, a blocking sender's turn);
//! - a lock that such a thread held at the fork would stay held for ever
//!   in the child. So the modules that own locks other threads may hold
//!   (the handle table, the sockets' queues, the default engine slot, the
//!   live engine list, the trace sink) register hooks here: `prepare`
//!   takes their locks before the fork, `parent` and `child` release them
//!   after it, in the child after resetting what the vanished threads left.
//!
//! This module names none of them: each registers its hooks with a rank,
//! and the ranks give the one order in which the locks are taken (the
//! library's lock order), released in reverse.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

/// How many times this process is a fork child of the process that
/// started counting: bumped in the child by the handler.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Where a module's hooks run in the lock order: lower ranks are locked
/// first before a fork and released last after it.
#[derive(Clone, Copy)]
pub enum Rank {
    /// The handle table's shards, then every socket's queue.
    Table = 0,
    /// The default engine's slot.
    DefaultEngine = 1,
    /// The list of live engines.
    LiveEngines = 2,
    /// The trace callback.
    Trace = 3,
}

const RANKS: usize = 4;

/// What one module does around a fork.
pub struct Hooks {
    /// Before the fork, in the forking thread: take the module's locks.
    pub prepare: fn(),
    /// After the fork, in the parent: release them.
    pub parent: fn(),
    /// After the fork, in the child: reset what the parent's other
    /// threads left behind, then release the locks.
    pub child: fn(),
}

static HOOKS: [OnceLock<Hooks>; RANKS] = [const { OnceLock::new() }; RANKS];

extern "C" fn prepare() {
    for hooks in HOOKS.iter().filter_map(OnceLock::get) {
        (hooks.prepare)();
    }
}

extern "C" fn parent() {
    for hooks in HOOKS.iter().rev().filter_map(OnceLock::get) {
        (hooks.parent)();
    }
}

extern "C" fn child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    for hooks in HOOKS.iter().rev().filter_map(OnceLock::get) {
        (hooks.child)();
    }
}

/// Registers the process-wide handlers, once; call it before creating
/// state that a fork child must see differently.
pub fn watch() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers handlers that run around fork(2) in the forking
        // thread (and in the child, where it is the only thread); they take
        // and release the library's locks in one fixed order and touch
        // only the library's own state.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    });
}

/// Registers a module's hooks at `rank` (once per rank; later calls for a
/// rank that has hooks do nothing).
pub fn register(rank: Rank, hooks: Hooks) {
    watch();
    let _ = HOOKS[rank as usize].set(hooks);
}

/// The current fork generation (see `FORK_GENERATION`).
pub fn generation() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}
