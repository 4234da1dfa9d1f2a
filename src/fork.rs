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

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
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

// parking_lot's raw locks are one atomic word each, 0 when free; its
// condvar is one atomic pointer, null with no waiter. The resets below
// store those values through the atomic (no byte is written any other
// way), and these checks keep the layouts honest.
const _: () = assert!(std::mem::size_of::<parking_lot::RawMutex>() == 1);
const _: () =
    assert!(std::mem::size_of::<parking_lot::RawRwLock>() == std::mem::size_of::<usize>());
const _: () = assert!(std::mem::size_of::<parking_lot::Condvar>() == std::mem::size_of::<usize>());

/// In a fork child, a lock that `prepare` took in the forking thread made
/// free again. Unlocking it would hand it to a thread of the parent that
/// was parked waiting for it (parking_lot hands a contended lock over to a
/// waiter), and that thread does not exist in the child.
pub fn reset_mutex<T: ?Sized>(m: &parking_lot::Mutex<T>) {
    // SAFETY: a RawMutex is a single AtomicU8 (size checked above), 0 when
    // unlocked with no waiter; the child's only thread holds the lock.
    let state = unsafe { &*(m.raw() as *const parking_lot::RawMutex).cast::<AtomicU8>() };
    state.store(0, Ordering::Release);
}

/// As `reset_mutex`, for a read-write lock.
pub fn reset_rwlock<T: ?Sized>(l: &parking_lot::RwLock<T>) {
    // SAFETY: a RawRwLock is a single AtomicUsize (size checked above), 0
    // when unlocked with no waiter; the child's only thread holds it.
    let state = unsafe { &*(l.raw() as *const parking_lot::RawRwLock).cast::<AtomicUsize>() };
    state.store(0, Ordering::Release);
}

/// In a fork child, a condition variable with no waiters: those it had are
/// threads of the parent (waking them would queue them on its mutex).
pub fn reset_condvar(c: &parking_lot::Condvar) {
    // SAFETY: a Condvar is a single AtomicPtr (size checked above), null
    // with no waiter; the child's only thread holds its mutex.
    let state = unsafe { &*(c as *const parking_lot::Condvar).cast::<AtomicUsize>() };
    state.store(0, Ordering::Release);
}

/// The current fork generation (see `FORK_GENERATION`).
pub fn generation() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}
