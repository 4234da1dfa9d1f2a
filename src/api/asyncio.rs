//! Exports for the async path: sends and receives whose completion is
//! reported through a callback.

use std::ffi::c_void;

use crate::asyncio;
use crate::completion::{Callback, Notify, UserData, SOCK_OP_RECV, SOCK_OP_SEND};
use crate::ffi::{try_socket, write_opt, MAX_LEN};
use crate::handle::sock_handle;
use crate::panic::ffi_boundary;
use crate::queue::AddressOut;
use crate::status::{report, sock_status, SOCK_FAULT, SOCK_INVALID_ARGUMENT, SOCK_OK};
use crate::sys::{self, sock_buf, SOCK_MSG_NONE};
use crate::trace;

use super::io::gather_list;

/// Completion callback of `sock_send_async` / `sock_sendv_async`: `status`
/// is the operation's final status (SOCK_OK, SOCK_OPERATION_ABORTED,
/// SOCK_TIMED_OUT, SOCK_CONNECTION_RESET, ...) and `bytes_sent` the bytes of
/// this operation handed to the kernel, including those sent inside the
/// call. Runs exactly once per operation that returned SOCK_IO_PENDING, on
/// the socket's engine: an engine thread (the default engine, or one of
/// `sock_engine_new(n >= 1)`), or inside `sock_engine_poll` on the thread
/// that calls it (manual engine). It may run before `sock_send_async` has
/// returned to its caller. It may call any libsock function, including
/// `sock_send_async` and `sock_close` on `h`. It must not throw, longjmp or
/// end its thread (pthread_exit): a runtime that does so while shutting
/// down (as Python's does) must close its sockets — so every pending
/// callback runs with SOCK_OPERATION_ABORTED — before it exits.
pub type sock_send_callback = Option<
    unsafe extern "C" fn(
        h: sock_handle,
        status: sock_status,
        bytes_sent: usize,
        user_data: *mut c_void,
    ),
>;

/// Completion callback of `sock_recv_async`: `bytes_received` >= 1, or 0
/// with SOCK_OK at orderly end of stream. Runs as `sock_send_callback` does.
pub type sock_recv_callback = Option<
    unsafe extern "C" fn(
        h: sock_handle,
        status: sock_status,
        bytes_received: usize,
        user_data: *mut c_void,
    ),
>;

/// Submits a send of the iovecs (already checked) and writes `*sent_now`.
#[allow(clippy::too_many_arguments)]
fn submit_send(
    op: &'static str,
    h: sock_handle,
    iov: &[libc::iovec],
    total: usize,
    flags: i32,
    on_done: sock_send_callback,
    user_data: *mut c_void,
    sent_now: *mut usize,
) -> sock_status {
    let (status, sent) = match sys::send_flags(flags) {
        Err(e) => (report(e), 0),
        // Submission runs under the handle table's read lock, with no
        // reference to the socket taken (see `asyncio::submit`). A NULL
        // `on_done` is for queue engines only (checked under the lock).
        Ok(os_flags) => {
            let notify = on_done.map_or(Notify::None, Notify::Bytes);
            let callback = Callback::new(notify, SOCK_OP_SEND, user_data, op);
            asyncio::submit(h, |sock| {
                let req = asyncio::SendRequest {
                    iov,
                    total,
                    os_flags,
                    callback,
                };
                asyncio::send_async(sock, h, req)
            })
        }
    };
    // SAFETY: `sent_now` is NULL or points to a size_t (C's promise).
    unsafe { write_opt(sent_now, sent) };
    trace::op(h, op, sent, status);
    status
}

/// Sends `len` bytes from `buf` without blocking the caller. Three outcomes:
///
/// - SOCK_OK: finished inside the call; every byte is in the kernel,
///   `*sent_now == len`, and `on_done` is NOT called.
/// - SOCK_IO_PENDING: accepted; the rest goes in the background and
///   `on_done` runs exactly once, later (possibly before this call returns,
///   on an engine thread: set up what it needs first), with the total bytes
///   of the operation.
/// - any other status: failed; `on_done` is not called and nothing of this
///   operation is queued. Part of the bytes may have gone inside the call
///   before the failure (a reset, or the default engine that could not
///   start when the rest had to be queued): `*sent_now` says how many.
///
/// `buf` must stay valid until `on_done` runs (or the call returns anything
/// but SOCK_IO_PENDING); libsock never copies the payload. Operations on one
/// socket leave in submission order, never interleaved with each other or
/// with `sock_send`, and their callbacks run in that order.
/// SOCK_OPT_SEND_TIMEOUT_MS bounds how long the operation may stay pending
/// (then SOCK_TIMED_OUT with its partial count; later operations go on);
/// the deadline is fixed at submission, with the timeout in force then.
/// `sock_close`, `sock_shutdown` (sending) and `sock_cancel_sends` complete
/// pending operations with SOCK_OPERATION_ABORTED. With
/// SOCK_OPT_ASYNC_INLINE_COMPLETION set to 0, an operation that finishes
/// inside the call returns SOCK_IO_PENDING and reports through `on_done`.
///
/// Inline completion is common, so a callback that starts the next send
/// must loop on SOCK_OK rather than recurse:
///
/// ```c
/// static void on_sent(sock_handle h, sock_status s, size_t n, void *ud) {
///     struct job *job = ud;
///     (void)n;
///     while (s == SOCK_OK && job_next(job))        // finished inline: go on here
///         s = sock_send_async(h, job->buf, job->len, SOCK_MSG_NONE,
///                             on_sent, job, NULL);
///     if (s != SOCK_OK && s != SOCK_IO_PENDING)    // SOCK_IO_PENDING: on_sent runs again
///         job_failed(job, s);
/// }
/// ```
///
/// Errors: SOCK_FAULT (`buf` or `on_done` NULL), SOCK_INVALID_ARGUMENT
/// (flags, `len` > PTRDIFF_MAX), SOCK_NOT_SOCKET, SOCK_NOT_CONNECTED,
/// SOCK_DESTINATION_ADDRESS_REQUIRED, SOCK_CONNECTION_RESET, SOCK_SHUTDOWN,
/// SOCK_OPERATION_ABORTED (the socket's engine was freed),
/// SOCK_OPERATION_NOT_SUPPORTED (in a fork child, the socket is bound to an
/// engine of the parent: see `sock_engine_new`), OS errors.
#[no_mangle]
pub extern "C" fn sock_send_async(
    h: sock_handle,
    buf: *const c_void,
    len: usize,
    flags: i32,
    on_done: sock_send_callback,
    user_data: *mut c_void,
    sent_now: *mut usize,
) -> sock_status {
    ffi_boundary! {
        if buf.is_null() {
            // SAFETY: NULL or a size_t (C's promise).
            unsafe { write_opt(sent_now, 0) };
            return SOCK_FAULT;
        }
        if len > MAX_LEN {
            // SAFETY: NULL or a size_t (C's promise).
            unsafe { write_opt(sent_now, 0) };
            return SOCK_INVALID_ARGUMENT;
        }
        let iov = [libc::iovec { iov_base: buf.cast_mut(), iov_len: len }];
        if let (Some(func), SOCK_MSG_NONE) = (on_done, flags) {
            // The common case on its own short path (see `send_async_one`);
            // it runs under the handle table's read lock, as `submit_send`.
            let fast = crate::table::with(h, |sock| {
                asyncio::send_async_one(sock, h, &iov, func, UserData(user_data))
            });
            if let Some(Some((status, sent))) = fast {
                // SAFETY: `sent_now` is NULL or points to a size_t (C's promise).
                unsafe { write_opt(sent_now, sent) };
                trace::op(h, "send_async", sent, status);
                return status;
            }
        }
        submit_send("send_async", h, &iov, len, flags, on_done, user_data, sent_now)
    }
}

/// Sends the `count` segments of `bufs` without blocking, as
/// `sock_send_async`. The `bufs` array itself may be reused as soon as the
/// call returns; the bytes it points to must stay valid until `on_done`.
/// Errors: as `sock_send_async`; SOCK_FAULT also for `bufs` NULL with
/// `count` > 0 or a segment with NULL `data` and `len` > 0.
#[no_mangle]
pub extern "C" fn sock_sendv_async(
    h: sock_handle,
    bufs: *const sock_buf,
    count: usize,
    flags: i32,
    on_done: sock_send_callback,
    user_data: *mut c_void,
    sent_now: *mut usize,
) -> sock_status {
    ffi_boundary! {
        match gather_list(bufs, count) {
            Ok((iov, total)) => {
                submit_send("sendv_async", h, iov, total, flags, on_done, user_data, sent_now)
            }
            Err(status) => {
                // SAFETY: NULL or a size_t (C's promise).
                unsafe { write_opt(sent_now, 0) };
                status
            }
        }
    }
}

/// Receives into `buf` (`cap` bytes) without blocking, with the three
/// outcomes of `sock_send_async`: SOCK_OK (data or end of stream was there:
/// `*received_now` bytes, 0 meaning end of stream; no callback),
/// SOCK_IO_PENDING (`on_done` runs exactly once when at least one byte, or
/// end of stream, arrived), or an error (no callback). `buf` stays the
/// caller's and must stay valid until `on_done`. Pending receives complete
/// in submission order; SOCK_OPT_RECV_TIMEOUT_MS bounds how long one may
/// stay pending (then SOCK_TIMED_OUT; the deadline is fixed at
/// submission). A datagram longer than `cap` is cut and reported with
/// SOCK_MESSAGE_SIZE. `cap` must be at least 1: a receive of 0 bytes could
/// not be told from end of stream, so it is refused. `flags`:
/// SOCK_MSG_NONE, SOCK_MSG_OOB (urgent data must be there already: with
/// none, the call fails at once with SOCK_INVALID_ARGUMENT, as recv(2)
/// reports EINVAL), SOCK_MSG_PEEK. `sock_shutdown(SOCK_SHUT_RECV)`
/// completes a pending receive as end of stream (SOCK_OK, 0 bytes).
/// Errors: SOCK_FAULT (`buf` or `on_done` NULL), SOCK_INVALID_ARGUMENT
/// (flags, `cap` 0 or > PTRDIFF_MAX, OOB data not there), SOCK_NOT_SOCKET
/// (also when `sock_close` on another thread won the race),
/// SOCK_NOT_CONNECTED, SOCK_CONNECTION_RESET, SOCK_OPERATION_ABORTED (the
/// socket's engine was freed), OS errors.
#[no_mangle]
pub extern "C" fn sock_recv_async(
    h: sock_handle,
    buf: *mut c_void,
    cap: usize,
    flags: i32,
    on_done: sock_recv_callback,
    user_data: *mut c_void,
    received_now: *mut usize,
) -> sock_status {
    ffi_boundary! {
        let os_flags = match recv_args(buf, cap, flags, received_now) {
            Ok(f) => f,
            Err(status) => return status,
        };
        let notify = on_done.map_or(Notify::None, Notify::Bytes);
        let callback = Callback::new(notify, SOCK_OP_RECV, user_data, "recv_async");
        submit_recv(h, buf, cap, os_flags, None, callback, received_now)
    }
}

/// What every async receive does before it looks at the handle: writes 0
/// to `*received_now` (when not NULL), and checks `buf` not NULL
/// (SOCK_FAULT), `cap` from 1 to PTRDIFF_MAX (0 could only complete with 0
/// bytes, which means end of stream) and `flags` (SOCK_INVALID_ARGUMENT).
/// Returns the OS's flags.
pub(super) fn recv_args(
    buf: *mut c_void,
    cap: usize,
    flags: i32,
    received_now: *mut usize,
) -> Result<libc::c_int, sock_status> {
    // SAFETY: NULL or a size_t (C's promise).
    unsafe { write_opt(received_now, 0) };
    if buf.is_null() {
        return Err(SOCK_FAULT);
    }
    if cap == 0 || cap > MAX_LEN {
        return Err(SOCK_INVALID_ARGUMENT);
    }
    sys::recv_flags(flags).map_err(report)
}

/// Submits a receive whose arguments `recv_args` checked, and writes
/// `*received_now`.
pub(super) fn submit_recv(
    h: sock_handle,
    buf: *mut c_void,
    cap: usize,
    os_flags: libc::c_int,
    from: Option<AddressOut>,
    callback: Callback,
    received_now: *mut usize,
) -> sock_status {
    let (status, n) = asyncio::submit(h, |sock| {
        asyncio::recv_async(sock, h, buf.cast(), cap, os_flags, from, callback)
    });
    trace::op(h, callback.op, n, status);
    // SAFETY: NULL or a size_t (C's promise).
    unsafe { write_opt(received_now, n) };
    status
}

/// Completes every pending async send of `h` with SOCK_OPERATION_ABORTED
/// and the bytes each did send (callbacks run on the engine as usual);
/// the socket stays open. Pending receives are untouched.
/// Errors: SOCK_NOT_SOCKET.
#[no_mangle]
pub extern "C" fn sock_cancel_sends(h: sock_handle) -> sock_status {
    ffi_boundary! {
        let sock = try_socket!(h);
        asyncio::cancel_sends(&sock, h);
        SOCK_OK
    }
}
