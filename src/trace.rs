//! Tracing: one line per operation — handle, operation,
//! bytes, status, and for async operations the time from submission to
//! completion — to the caller's callback (`sock_set_trace`) and, with
//! `SOCK_TRACE=1` in the environment, to stderr. The logger belongs to the
//! caller: no global logging framework is touched. Off, a call pays one
//! load and one branch.

use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::handle::sock_handle;
use crate::status::{self, sock_status};

/// Receives one NUL-terminated trace line per operation (valid only during
/// the call). Runs on the thread that did the operation — for async
/// completions the engine's thread — so it must be thread-safe. Calling
/// `sock_set_trace` from inside it fails with SOCK_ALREADY_IN_PROGRESS.
pub type sock_trace_callback =
    Option<unsafe extern "C" fn(line: *const c_char, user_data: *mut c_void)>;

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

type TraceFn = unsafe extern "C" fn(*const c_char, *mut c_void);

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The caller's `user_data` for the trace callback, handed back untouched.
#[derive(Clone, Copy)]
struct TraceUserData(*mut c_void);
// SAFETY: the library never dereferences it; it only passes it to the
// caller's trace callback, which is documented to run on any thread.
unsafe impl Send for TraceUserData {}

/// The callback, and the generation of its `set`: a call in progress is
/// counted in `RUNNING[generation % 2]`, so `set` can wait for the calls of
/// the callback it replaced (and only those) to return.
struct TraceTarget {
    callback: Option<(TraceFn, TraceUserData)>,
    generation: usize,
}

static TARGET: Mutex<TraceTarget> = Mutex::new(TraceTarget {
    callback: None,
    generation: 0,
});

/// The trace target, locked; the first use registers the fork hooks that
/// keep its lock free in a fork child.
fn target() -> MutexGuard<'static, TraceTarget> {
    static HOOKS: Once = Once::new();
    HOOKS.call_once(|| {
        crate::fork::register(
            crate::fork::Rank::Trace,
            crate::fork::Hooks {
                prepare: || std::mem::forget(TARGET.lock()),
                // SAFETY: `prepare` took the lock in this thread and forgot
                // its guard.
                parent: || unsafe { TARGET.force_unlock() },
                child: || {
                    after_fork_in_child();
                    crate::fork::reset_mutex(&TARGET);
                },
            },
        )
    });
    TARGET.lock()
}
static RUNNING: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
/// One `set` at a time: each waits for its generation to drain before the
/// next may start another, so a counter only ever holds one generation. A
/// flag rather than a mutex so that a fork child can clear it (a thread of
/// the parent may have held it).
static SETTING: AtomicBool = AtomicBool::new(false);

/// In a fork child, the calls and the `set` that other threads of the
/// parent had in progress will never end: forget them.
fn after_fork_in_child() {
    RUNNING[0].store(0, Ordering::Relaxed);
    RUNNING[1].store(0, Ordering::Relaxed);
    SETTING.store(false, Ordering::Relaxed);
}

/// The turn to `set`, taken: lets the next one in when it ends, however
/// it ends.
struct Setting;

impl Drop for Setting {
    fn drop(&mut self) {
        SETTING.store(false, Ordering::Release);
    }
}

/// Waits (yielding, then sleeping) until `done` holds.
fn wait_until(mut done: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !done() {
        spins += 1;
        if spins < 100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

thread_local! {
    /// This thread is inside the trace callback (nested calls count).
    static IN_CALLBACK: Cell<u32> = const { Cell::new(0) };
}

/// A trace call in progress: counted in its generation's slot and in this
/// thread's callback depth from `start` until it is dropped.
struct Running {
    slot: usize,
    /// The fork generation it was counted in: a call that began in the
    /// parent and ends in a fork child (the callback forked) was forgotten
    /// by the child's reset, so it must not leave the count again.
    fork_generation: u64,
}

impl Running {
    /// Counts a call of the callback of generation slot `slot`; called
    /// under the target lock, so a `set` swapping the callback sees it.
    fn start(slot: usize) -> Running {
        RUNNING[slot].fetch_add(1, Ordering::Relaxed);
        IN_CALLBACK.with(|depth| depth.set(depth.get() + 1));
        Running {
            slot,
            fork_generation: crate::fork::generation(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        IN_CALLBACK.with(|depth| depth.set(depth.get() - 1));
        if crate::fork::generation() == self.fork_generation {
            RUNNING[self.slot].fetch_sub(1, Ordering::Release);
        }
    }
}

fn env_stderr() -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    *ENV.get_or_init(|| std::env::var_os("SOCK_TRACE").is_some_and(|v| v == "1"))
}

fn update_mode(has_callback: bool) -> bool {
    let on = has_callback || env_stderr();
    MODE.store(if on { ON } else { OFF }, Ordering::Relaxed);
    on
}

/// Whether tracing is on: the one branch every traced call pays.
#[inline]
pub fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        OFF => false,
        UNKNOWN => update_mode(target().callback.is_some()),
        _ => true,
    }
}

/// Sets (or with `None` removes) the trace callback, then waits until no
/// call of the previous one is running, so that its user data may be freed.
/// Refused with `SOCK_ALREADY_IN_PROGRESS` from inside the trace callback
/// (the wait would include the caller's own call).
pub fn set(callback: sock_trace_callback, user_data: *mut c_void) -> sock_status {
    if IN_CALLBACK.with(Cell::get) > 0 {
        return status::SOCK_ALREADY_IN_PROGRESS;
    }
    // Registers the fork hooks before the turn to set can be taken.
    drop(target());
    wait_until(|| {
        SETTING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    });
    let _setting = Setting;
    let replaced = {
        let mut target = target();
        target.callback = callback.map(|f| (f, TraceUserData(user_data)));
        update_mode(target.callback.is_some());
        let replaced = target.generation % 2;
        target.generation = target.generation.wrapping_add(1);
        replaced
    };
    // Calls that took the old callback counted themselves under the target
    // lock, before the swap; new calls count in the other slot.
    wait_until(|| RUNNING[replaced].load(Ordering::Acquire) == 0);
    status::SOCK_OK
}

fn emit(line: String) {
    if env_stderr() {
        eprintln!("libsock: {line}");
    }
    let (func, user_data, running) = {
        let target = target();
        let Some((func, user_data)) = target.callback else {
            return;
        };
        (func, user_data, Running::start(target.generation % 2))
    };
    // Built only for a callback (not for stderr alone); a line with a NUL
    // cannot be passed, and `running` ends the counted call on return.
    let Ok(text) = CString::new(line) else {
        return;
    };
    // SAFETY: the caller registered this callback for exactly this call
    // shape and keeps it (and `user_data`) valid until a `set` replacing it
    // returns, which waits for this call; the line is a valid C string for
    // the call's duration.
    unsafe { func(text.as_ptr(), user_data.0) };
    drop(running);
}

/// Traces a finished synchronous operation (or an async submission).
/// Off, this is one load and one branch.
#[inline(always)]
pub fn op(h: sock_handle, op: &str, bytes: usize, status: sock_status) {
    if MODE.load(Ordering::Relaxed) != OFF {
        op_slow(h, op, bytes, status);
    }
}

#[cold]
#[inline(never)]
fn op_slow(h: sock_handle, op: &str, bytes: usize, status: sock_status) {
    if enabled() {
        emit(format!(
            "h={h:#x} op={op} bytes={bytes} status={}({status})",
            status::status_name(status)
        ));
    }
}

/// Traces an async operation's completion, with its time since submission.
pub fn completion(
    h: sock_handle,
    op: &str,
    bytes: usize,
    status: sock_status,
    submitted: Option<Instant>,
) {
    if enabled() {
        let micros = submitted.map_or(0, |t| t.elapsed().as_micros());
        emit(format!(
            "h={h:#x} op={op}.done bytes={bytes} status={}({status}) latency_us={micros}",
            status::status_name(status)
        ));
    }
}

/// The submission time an async operation records: only when tracing.
#[inline(always)]
pub fn now_if_enabled() -> Option<Instant> {
    if MODE.load(Ordering::Relaxed) != OFF {
        now_slow()
    } else {
        None
    }
}

#[cold]
#[inline(never)]
fn now_slow() -> Option<Instant> {
    enabled().then(Instant::now)
}
