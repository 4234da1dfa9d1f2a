//! Exports for the async connection life cycle: connect, accept, graceful
//! end, and datagrams to and from any address. Each follows the three-way
//! return of `sock_send_async`: SOCK_OK (finished inside the call, no
//! callback), SOCK_IO_PENDING (the callback runs exactly once, later, on
//! the socket's engine), anything else (failed, no callback).

use std::ffi::{c_char, c_void};

use crate::address;
use crate::asyncio;
use crate::completion::{
    Callback, Notify, SOCK_OP_ACCEPT, SOCK_OP_CONNECT, SOCK_OP_RECV_FROM, SOCK_OP_SEND_TO,
    SOCK_OP_SHUTDOWN,
};
use crate::ffi::{c_str, try_non_null, write_opt, MAX_LEN};
use crate::handle::{sock_handle, SOCK_INVALID_HANDLE};
use crate::panic::ffi_boundary;
use crate::queue::AddressOut;
use crate::socket::Kind;
use crate::status::{
    report, sock_status, SOCK_FAULT, SOCK_INVALID_ARGUMENT, SOCK_NOT_SOCKET, SOCK_NO_BUFFER_SPACE,
};
use crate::sys;
use crate::table;
use crate::trace;

use super::asyncio::{recv_args, sock_recv_callback, sock_send_callback, submit_recv};

/// Completion callback of `sock_connect_async` and `sock_shutdown_async`:
/// the operation's final status (SOCK_OK, SOCK_CONNECTION_REFUSED,
/// SOCK_TIMED_OUT, SOCK_OPERATION_ABORTED, ...). Runs exactly once per
/// operation that returned SOCK_IO_PENDING, on the socket's engine: an
/// engine thread, or inside `sock_engine_poll` for a manual engine;
/// possibly before the submitting call returned. It may call any libsock
/// function, and must not throw, longjmp or end its thread.
pub type sock_status_callback =
    Option<unsafe extern "C" fn(h: sock_handle, status: sock_status, user_data: *mut c_void)>;

/// Completion callback of `sock_accept_async`: `accepted` is the new
/// connection's handle (the caller owns it and closes it), or
/// SOCK_INVALID_HANDLE when `status` is not SOCK_OK. Runs as
/// `sock_status_callback` does, on the listener's engine.
pub type sock_accept_callback = Option<
    unsafe extern "C" fn(
        listener: sock_handle,
        status: sock_status,
        accepted: sock_handle,
        user_data: *mut c_void,
    ),
>;

/// Connects `h` to `address` (text as for `sock_connect`) without blocking
/// the caller. A host name is looked up on a library thread (never the
/// caller's or an engine's); every resolved address of the socket's family
/// is tried in order until one connects, and when all fail `on_done` gets
/// the last one's status. A numeric address does no lookup; a connect that
/// finishes inside the call (a Unix socket, a datagram socket) returns
/// SOCK_OK and `on_done` is not called. SOCK_OPT_SEND_TIMEOUT_MS bounds the
/// whole connect (then SOCK_TIMED_OUT). Sends (`sock_send_async`,
/// `sock_sendv_async`) submitted while it is pending queue behind it and
/// leave in order once it succeeds, or complete with its error.
/// `sock_close` or engine free while connecting: SOCK_OPERATION_ABORTED.
/// `sock_cancel_sends` leaves a pending connect alone.
/// Errors (no callback): SOCK_FAULT (`address` or `on_done` NULL),
/// SOCK_NOT_SOCKET, SOCK_INVALID_ARGUMENT (malformed address, listening
/// socket), SOCK_ADDRESS_FAMILY_NOT_SUPPORTED, SOCK_IS_CONNECTED,
/// SOCK_ALREADY_IN_PROGRESS (a connect is under way), SOCK_CONNECTION_REFUSED
/// and other errors of an attempt that failed inside the call (every
/// address tried), SOCK_WOULD_BLOCK (a Unix listener's backlog is full),
/// SOCK_OPERATION_ABORTED (the socket's engine was freed), OS errors.
#[no_mangle]
pub extern "C" fn sock_connect_async(
    h: sock_handle,
    address: *const c_char,
    on_done: sock_status_callback,
    user_data: *mut c_void,
) -> sock_status {
    ffi_boundary! {
        try_non_null!(address);
        let Some(family) = table::with(h, |sock| sock.family) else {
            return SOCK_NOT_SOCKET;
        };
        // SAFETY: non-NULL, and C promises a NUL-terminated string.
        let target = match address::target(unsafe { c_str(address) }, family) {
            Ok(t) => t,
            Err(e) => return report(e),
        };
        let notify = on_done.map_or(Notify::None, Notify::Status);
        let cb = Callback::new(notify, SOCK_OP_CONNECT, user_data, "connect_async");
        let (status, _) = asyncio::submit(h, |sock| asyncio::connect_async(sock, h, &target, cb));
        trace::op(h, "connect_async", 0, status);
        status
    }
}

/// Accepts a connection on listening socket `listener` without blocking.
/// SOCK_OK: a connection was waiting (and no accept was pending): its
/// handle is in `*accepted_now` and `on_done` is not called. Otherwise
/// SOCK_IO_PENDING: `on_done` gets the new handle when one arrives. Several
/// accepts may be outstanding; they complete in submission order. The
/// accepted socket is bound to the listener's engine, close-on-exec, in
/// blocking mode with default options (as from `sock_accept`).
/// SOCK_OPT_RECV_TIMEOUT_MS bounds how long an accept stays pending (then
/// SOCK_TIMED_OUT). Out of descriptors, a pending accept completes with
/// SOCK_TOO_MANY_OPEN_SOCKETS, and the engine looks at the listener again
/// only when a new connection arrives (it never spins). Loop on SOCK_OK, as
/// for sends, rather than recursing from the callback. `sock_close` of the
/// listener or engine free: SOCK_OPERATION_ABORTED; `sock_cancel_sends`
/// leaves accepts alone.
/// Errors (no callback; `*accepted_now` = SOCK_INVALID_HANDLE): SOCK_FAULT
/// (`on_done` or `accepted_now` NULL), SOCK_NOT_SOCKET, SOCK_INVALID_ARGUMENT (not a
/// listening stream socket), SOCK_TOO_MANY_OPEN_SOCKETS,
/// SOCK_OPERATION_ABORTED (the listener's engine was freed), OS errors.
#[no_mangle]
pub extern "C" fn sock_accept_async(
    listener: sock_handle,
    on_done: sock_accept_callback,
    user_data: *mut c_void,
    accepted_now: *mut sock_handle,
) -> sock_status {
    ffi_boundary! {
        try_non_null!(accepted_now);
        // SAFETY: checked non-NULL; C promises it points to a sock_handle.
        unsafe { accepted_now.write(SOCK_INVALID_HANDLE) };
        let notify = on_done.map_or(Notify::None, Notify::Accept);
        let cb = Callback::new(notify, SOCK_OP_ACCEPT, user_data, "accept_async");
        // Not under the table's lock: an accepted socket enters the table.
        let mut outcome = (SOCK_NOT_SOCKET, SOCK_INVALID_HANDLE);
        for _ in 0..3 {
            let Some(sock) = table::lookup(listener) else { break };
            outcome = asyncio::accept_async(&sock, listener, cb);
            if !asyncio::needs_default_engine(outcome.0) {
                break;
            }
            if let Err(e) = asyncio::default_engine() {
                outcome = (report(e), SOCK_INVALID_HANDLE);
                break;
            }
        }
        let (status, accepted) = outcome;
        // SAFETY: as above.
        unsafe { accepted_now.write(accepted) };
        trace::op(listener, "accept_async", 0, status);
        status
    }
}

/// Ends the sending side gracefully without blocking: waits behind every
/// pending send, then shuts sending down (the peer reads every byte, then
/// end of stream) and reports SOCK_OK, or the error that ended the sends.
/// SOCK_OK inside the call (no callback) when nothing was pending. Sends
/// submitted after it fail at once with SOCK_SHUTDOWN. The graceful way to
/// close a connection is this, then `sock_close` in its callback (a
/// `sock_close` that discards unsent data resets the connection instead).
/// `sock_cancel_sends` and `sock_shutdown(SOCK_SHUT_SEND)` end a pending
/// one with SOCK_OPERATION_ABORTED, as they end sends.
/// Errors (no callback): SOCK_FAULT (`on_done` NULL), SOCK_NOT_SOCKET,
/// SOCK_NOT_CONNECTED, SOCK_OPERATION_ABORTED (the socket's engine was
/// freed), OS errors.
#[no_mangle]
pub extern "C" fn sock_shutdown_async(
    h: sock_handle,
    on_done: sock_status_callback,
    user_data: *mut c_void,
) -> sock_status {
    ffi_boundary! {
        let notify = on_done.map_or(Notify::None, Notify::Status);
        let cb = Callback::new(notify, SOCK_OP_SHUTDOWN, user_data, "shutdown_async");
        let (status, _) = asyncio::submit(h, |sock| asyncio::shutdown_async(sock, h, cb));
        trace::op(h, "shutdown_async", 0, status);
        status
    }
}

/// Sends one datagram of `len` bytes from `buf` to `address` without
/// blocking, with the three outcomes of `sock_send_async`. On a datagram
/// socket, connected or not, it goes whole or not at all; one that cannot
/// go fails alone (its callback gets the error) and those queued behind it
/// go on. A host name in `address` is resolved inside the call (use a
/// numeric address to never wait). On a connected stream socket the
/// address is checked and then ignored, as `sock_send_to` does.
/// Errors: as `sock_send_async` (SOCK_FAULT also for `address` NULL), the
/// address errors of `sock_bind`, SOCK_MESSAGE_SIZE.
#[no_mangle]
pub extern "C" fn sock_send_to_async(
    h: sock_handle,
    buf: *const c_void,
    len: usize,
    flags: i32,
    address: *const c_char,
    on_done: sock_send_callback,
    user_data: *mut c_void,
    sent_now: *mut usize,
) -> sock_status {
    ffi_boundary! {
        // SAFETY: NULL or a size_t (C's promise).
        unsafe { write_opt(sent_now, 0) };
        if buf.is_null() || address.is_null() {
            return SOCK_FAULT;
        }
        if len > MAX_LEN {
            return SOCK_INVALID_ARGUMENT;
        }
        let os_flags = match sys::send_flags(flags) {
            Ok(f) => f,
            Err(e) => return report(e),
        };
        let Some((family, kind)) = table::with(h, |sock| (sock.family, sock.kind)) else {
            return SOCK_NOT_SOCKET;
        };
        // Resolved before any lock is taken.
        // SAFETY: non-NULL, and C promises a NUL-terminated string.
        let to = match address::parse(unsafe { c_str(address) }, family, kind) {
            Ok(a) => a,
            Err(e) => return report(e),
        };
        let iov = [libc::iovec { iov_base: buf.cast_mut(), iov_len: len }];
        let notify = on_done.map_or(Notify::None, Notify::Bytes);
        let cb = Callback::new(notify, SOCK_OP_SEND_TO, user_data, "send_to_async");
        let (status, sent) = asyncio::submit(h, |sock| {
            let req = asyncio::SendRequest { iov: &iov, total: len, os_flags, callback: cb };
            match sock.kind {
                Kind::Dgram => asyncio::send_to_async(sock, h, req, &to),
                Kind::Stream => asyncio::send_async(sock, h, req),
            }
        });
        // SAFETY: NULL or a size_t (C's promise).
        unsafe { write_opt(sent_now, sent) };
        trace::op(h, "send_to_async", sent, status);
        status
    }
}

/// Receives one datagram (or, on a stream, at least one byte) into `buf`
/// without blocking, as `sock_recv_async`, and writes the sender's address
/// as text (and a NUL) into `address` when it is not NULL; for a stream
/// that is the peer's address. `address` and `buf` stay the caller's until
/// the callback. `address_cap` must hold the longest address of the
/// socket's family (SOCK_ADDRESS_MAX_LEN always does).
/// Errors: as `sock_recv_async`, and SOCK_NO_BUFFER_SPACE (`address_cap`
/// too small; nothing received).
#[no_mangle]
pub extern "C" fn sock_recv_from_async(
    h: sock_handle,
    buf: *mut c_void,
    cap: usize,
    flags: i32,
    address: *mut c_char,
    address_cap: usize,
    on_done: sock_recv_callback,
    user_data: *mut c_void,
    received_now: *mut usize,
) -> sock_status {
    ffi_boundary! {
        let os_flags = match recv_args(buf, cap, flags, received_now) {
            Ok(f) => f,
            Err(status) => return status,
        };
        if address_cap > MAX_LEN {
            return SOCK_INVALID_ARGUMENT;
        }
        let Some(family) = table::with(h, |sock| sock.family) else {
            return SOCK_NOT_SOCKET;
        };
        let from = if address.is_null() {
            None
        } else if address_cap < address::max_text_len(family) {
            return SOCK_NO_BUFFER_SPACE;
        } else {
            Some(AddressOut { buf: address, cap: address_cap })
        };
        let notify = on_done.map_or(Notify::None, Notify::Bytes);
        let cb = Callback::new(notify, SOCK_OP_RECV_FROM, user_data, "recv_from_async");
        submit_recv(h, buf, cap, os_flags, from, cb, received_now)
    }
}
