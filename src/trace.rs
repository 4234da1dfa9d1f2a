//! Tracing (contract §7): one line per operation — handle, operation,
//! bytes, status, and for async operations the time from submission to
//! completion — to the caller's callback (`sock_set_trace`) and, with
//! `SOCK_TRACE=1` in the environment, to stderr. The logger belongs to the
//! caller: no global logging framework is touched. Off, a call pays one
//! load and one branch.

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::handle::sock_handle;
use crate::queue::UserData;
use crate::status::{self, sock_status};
use crate::sync;

/// Receives one NUL-terminated trace line per operation (valid only during
/// the call). Runs on the thread that did the operation — for async
/// completions the engine's thread — so it must be thread-safe; it must not
/// call `sock_set_trace`.
pub type sock_trace_callback =
    Option<unsafe extern "C" fn(line: *const c_char, user_data: *mut c_void)>;

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
static SINK: Mutex<Option<(unsafe extern "C" fn(*const c_char, *mut c_void), UserData)>> =
    Mutex::new(None);

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
        UNKNOWN => update_mode(sync::lock(&SINK).is_some()),
        _ => true,
    }
}

/// Sets (or with `None` removes) the trace callback.
pub fn set(callback: sock_trace_callback, user_data: *mut c_void) {
    let mut sink = sync::lock(&SINK);
    *sink = callback.map(|f| (f, UserData(user_data)));
    update_mode(sink.is_some());
}

fn emit(line: String) {
    if env_stderr() {
        eprintln!("libsock: {line}");
    }
    let sink = *sync::lock(&SINK);
    if let (Some((func, user_data)), Ok(text)) = (sink, CString::new(line)) {
        // SAFETY: the caller registered this callback for exactly this
        // call shape; the line is a valid C string for the call's duration.
        unsafe { func(text.as_ptr(), user_data.0) };
    }
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
