//! Exports for the blocking path: send, send_to, sendv, recv, recv_from.
//!
//! `*sent` / `*received` (when not NULL) are always written, on errors too:
//! the bytes this call moved (0 when it failed before moving any).

use std::ffi::{c_char, c_void};
use std::mem::size_of;
use std::sync::Arc;

use crate::address;
use crate::ffi::{c_str, out_buf, write_opt, MAX_LEN};
use crate::handle::sock_handle;
use crate::io::{self, Fast, FastOne};
use crate::panic::ffi_boundary;
use crate::socket::Socket;
use crate::status::{
    report, sock_status, Error, Result, SOCK_FAULT, SOCK_INVALID_ARGUMENT, SOCK_MESSAGE_SIZE,
    SOCK_NOT_SOCKET, SOCK_NO_BUFFER_SPACE, SOCK_OK,
};
use crate::sys::{self, sock_buf, Received, SOCK_MSG_NONE};
use crate::table;
use crate::trace;

/// Writes the count, traces the call and turns the outcome into the
/// status C sees.
fn finish(
    h: sock_handle,
    op: &str,
    outcome: (Result<()>, usize),
    count: *mut usize,
) -> sock_status {
    // SAFETY: `count` is NULL or points to a size_t (C's promise).
    unsafe { write_opt(count, outcome.1) };
    let status = match outcome.0 {
        Ok(()) => SOCK_OK,
        Err(e) => report(e),
    };
    trace::op(h, op, outcome.1, status);
    status
}

fn fail(status: sock_status) -> (Result<()>, usize) {
    (Err(Error::new(status)), 0)
}

/// Flags, handle and destination are checked here, after the pointers.
fn send_checked(
    h: sock_handle,
    iov: &[libc::iovec],
    total: usize,
    flags: i32,
    to: *const c_char,
) -> (Result<()>, usize) {
    let os_flags = match sys::send_flags(flags) {
        Ok(f) => f,
        Err(e) => return (Err(e), 0),
    };
    if to.is_null() {
        // No address to resolve: the fast path runs under the table's read
        // lock, with no reference taken; only a send that must wait does.
        let fast = table::with(h, |sock| {
            go_on(sock, io::send_fast(sock, iov, total, os_flags, None))
        });
        return match fast {
            None => fail(SOCK_NOT_SOCKET),
            Some(next) => finish_send(next, iov, total, os_flags),
        };
    }
    // Resolving the address may take long (a host name): not under the lock.
    let Some(sock) = table::lookup(h) else {
        return fail(SOCK_NOT_SOCKET);
    };
    // SAFETY: non-NULL, and C promises a NUL-terminated string.
    let to = match address::parse(unsafe { c_str(to) }, sock.family, sock.kind) {
        Ok(a) => a,
        Err(e) => return (Err(e), 0),
    };
    io::send(&sock, iov, total, os_flags, Some(&to))
}

/// A send that must go on waiting outside the table's lock.
struct Waiting {
    /// Its own reference to the socket.
    sock: Arc<Socket>,
    /// Bytes that went already.
    sent: usize,
    /// It holds the socket's turn (see `OpQueue::adopt_turn`).
    turn_taken: bool,
}

/// Where a fast path left a send: finished, or waiting.
enum Next {
    Done((Result<()>, usize)),
    Waiting(Waiting),
}

/// Turns a fast path's result into `Next` (under the table's lock).
#[inline(never)]
fn go_on(sock: &Arc<Socket>, fast: Fast) -> Next {
    match fast {
        Fast::Done(outcome) => Next::Done(outcome),
        Fast::Wait { sent, turn_taken } => Next::Waiting(Waiting {
            sock: sock.clone(),
            sent,
            turn_taken,
        }),
    }
}

/// `go_on` for `sock_send`'s short path, whose outcome must stay one
/// register wide; the allocation is only on the way to waiting or failing.
#[cold]
fn go_on_boxed(sock: &Arc<Socket>, fast: Fast) -> Box<Next> {
    Box::new(go_on(sock, fast))
}

/// Finishes a send after its fast path (outside the table's lock).
#[inline(never)]
fn finish_send(
    next: Next,
    iov: &[libc::iovec],
    total: usize,
    os_flags: i32,
) -> (Result<()>, usize) {
    match next {
        Next::Done(outcome) => outcome,
        Next::Waiting(w) => {
            io::send_slow(&w.sock, iov, total, os_flags, None, w.sent, w.turn_taken)
        }
    }
}

/// `sock_send`'s short path when it did not send everything (out of line,
/// to keep the short one short): finishes the send it started (`rest`), or
/// runs the general path where it did not try (`None`; that path also
/// reports a bad handle).
#[cold]
#[inline(never)]
fn send_not_sent(
    h: sock_handle,
    rest: Option<Box<Next>>,
    buf: *const c_void,
    len: usize,
    sent: *mut usize,
) -> sock_status {
    let one = &single(buf, len);
    let outcome = match rest {
        Some(rest) => finish_send(*rest, one, len, sys::SEND_FLAGS_NONE),
        None => send_checked(h, one, len, SOCK_MSG_NONE, std::ptr::null()),
    };
    finish(h, "send", outcome, sent)
}

/// One buffer as a one-segment gather list.
fn single(buf: *const c_void, len: usize) -> [libc::iovec; 1] {
    [libc::iovec {
        iov_base: buf.cast_mut(),
        iov_len: len,
    }]
}

/// Sends `len` bytes from `buf`.
///
/// Stream socket, blocking mode: returns only when all `len` bytes are in
/// the kernel's send buffer (short writes and EINTR are retried), on error,
/// or when SOCK_OPT_SEND_TIMEOUT_MS — one budget for the whole call —
/// expires: then SOCK_TIMED_OUT, with the bytes that did go in `*sent`.
/// Non-blocking mode: sends what fits now (`*sent < len` is success);
/// SOCK_WOULD_BLOCK with `*sent == 0` when nothing fits or another send
/// holds the socket. With a send timeout, the mode is read while the call
/// waits: a blocking send that another thread switches to non-blocking
/// returns at its next wait, SOCK_OK with the bytes that went so far
/// (`*sent < len`), or SOCK_WOULD_BLOCK if none did. With no timeout, a
/// blocking send on a connected stream that has to wait does so inside
/// send(2), as a raw blocking socket does (the descriptor's O_NONBLOCK is
/// cleared once, see `sock_fd`), and such a switch takes effect at the
/// next call; `sock_close` still wakes it.
/// Concurrent sends on one socket never interleave.
/// Datagram sockets send one datagram (needs `sock_connect` first).
/// `flags`: SOCK_MSG_NONE, SOCK_MSG_OOB, SOCK_MSG_DONT_ROUTE. `sent` may be
/// NULL; otherwise it always receives the bytes sent, also on error.
/// `len == 0`: a stream send of nothing succeeds; a datagram send emits an
/// empty datagram. Never raises SIGPIPE.
/// Errors: SOCK_FAULT (`buf` NULL), SOCK_INVALID_ARGUMENT (flags, `len` >
/// PTRDIFF_MAX), SOCK_NOT_SOCKET, SOCK_NOT_CONNECTED,
/// SOCK_DESTINATION_ADDRESS_REQUIRED, SOCK_MESSAGE_SIZE, SOCK_WOULD_BLOCK,
/// SOCK_TIMED_OUT, SOCK_SHUTDOWN, SOCK_CONNECTION_RESET,
/// SOCK_OPERATION_ABORTED (closed during the call), OS errors.
#[no_mangle]
pub extern "C" fn sock_send(
    h: sock_handle,
    buf: *const c_void,
    len: usize,
    flags: i32,
    sent: *mut usize,
) -> sock_status {
    ffi_boundary! {
        if flags == SOCK_MSG_NONE && !buf.is_null() && len <= MAX_LEN && len != 0 {
            // The common case on its own short path (see `send_fast_one`),
            // whose outcome fits in a register: anything but "all sent" or
            // "not tried" comes back boxed, off the hot path.
            let one = single(buf, len);
            match table::with(h, |sock| io::send_fast_one(sock, &one, go_on_boxed)) {
                Some(FastOne::Sent) => {}
                Some(FastOne::Other(rest)) => return send_not_sent(h, Some(rest), buf, len, sent),
                Some(FastOne::NotTried) | None => return send_not_sent(h, None, buf, len, sent),
            }
            // SAFETY: `sent` is NULL or points to a size_t (C's promise).
            unsafe { write_opt(sent, len) };
            trace::op(h, "send", len, SOCK_OK);
            return SOCK_OK;
        }
        let outcome = if buf.is_null() {
            fail(SOCK_FAULT)
        } else if len > MAX_LEN {
            fail(SOCK_INVALID_ARGUMENT)
        } else {
            send_checked(h, &single(buf, len), len, flags, std::ptr::null())
        };
        finish(h, "send", outcome, sent)
    }
}

/// Sends `len` bytes from `buf` to `address` ("host:port" text as in
/// `sock_bind`). On a datagram socket, one datagram to that address,
/// connected or not (one socket may reach many hosts). On a connected
/// stream socket the address is checked and then ignored, as Winsock does.
/// Otherwise as `sock_send`.
/// Errors: as `sock_send` (SOCK_FAULT also for `address` NULL), and the
/// address errors of `sock_bind`.
#[no_mangle]
pub extern "C" fn sock_send_to(
    h: sock_handle,
    buf: *const c_void,
    len: usize,
    flags: i32,
    address: *const c_char,
    sent: *mut usize,
) -> sock_status {
    ffi_boundary! {
        let outcome = if buf.is_null() || address.is_null() {
            fail(SOCK_FAULT)
        } else if len > MAX_LEN {
            fail(SOCK_INVALID_ARGUMENT)
        } else {
            send_checked(h, &single(buf, len), len, flags, address)
        };
        finish(h, "send_to", outcome, sent)
    }
}

/// Checks a C gather list and returns it as iovecs with its total length.
pub(crate) fn gather_list<'a>(
    bufs: *const sock_buf,
    count: usize,
) -> std::result::Result<(&'a [libc::iovec], usize), sock_status> {
    if count == 0 {
        return Ok((&[], 0));
    }
    if bufs.is_null() {
        return Err(SOCK_FAULT);
    }
    if count > MAX_LEN / size_of::<sock_buf>() {
        return Err(SOCK_INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL, and C promises `count` readable sock_buf entries;
    // sock_buf has the layout of iovec (asserted in io.rs).
    let iov = unsafe { std::slice::from_raw_parts(bufs.cast::<libc::iovec>(), count) };
    let mut total = 0usize;
    for seg in iov {
        if seg.iov_base.is_null() && seg.iov_len > 0 {
            return Err(SOCK_FAULT);
        }
        total = match total.checked_add(seg.iov_len) {
            Some(t) if t <= MAX_LEN => t,
            _ => return Err(SOCK_INVALID_ARGUMENT),
        };
    }
    Ok((iov, total))
}

/// Sends the `count` segments of `bufs` as one stream of bytes (stream
/// sockets; any count: more than IOV_MAX segments are sent in turns) or
/// as one datagram (datagram sockets; more than 1024 segments is
/// SOCK_MESSAGE_SIZE). The array may be reused as soon as the call
/// returns. Otherwise as `sock_send`.
/// Errors: as `sock_send`; SOCK_FAULT also for a segment with NULL `data`
/// and `len` > 0; SOCK_INVALID_ARGUMENT when the lengths add up past PTRDIFF_MAX.
#[no_mangle]
pub extern "C" fn sock_sendv(
    h: sock_handle,
    bufs: *const sock_buf,
    count: usize,
    flags: i32,
    sent: *mut usize,
) -> sock_status {
    ffi_boundary! {
        let outcome = match gather_list(bufs, count) {
            Ok((iov, total)) => send_checked(h, iov, total, flags, std::ptr::null()),
            Err(status) => fail(status),
        };
        finish(h, "sendv", outcome, sent)
    }
}

/// Receives into `buf` (`cap` bytes). Stream sockets: at least one byte,
/// or SOCK_OK with `*received == 0` at orderly end of stream. Datagram
/// sockets: one datagram; one longer than `cap` is cut to `cap` bytes and
/// the call returns SOCK_MESSAGE_SIZE. Blocking mode waits, at most
/// SOCK_OPT_RECV_TIMEOUT_MS (then SOCK_TIMED_OUT); non-blocking mode
/// returns SOCK_WOULD_BLOCK when nothing is there. `cap == 0` returns
/// SOCK_OK with 0 at once, receiving nothing. `flags`: SOCK_MSG_NONE,
/// SOCK_MSG_OOB, SOCK_MSG_PEEK. `received` may be NULL; otherwise it is
/// always written.
/// Errors: SOCK_FAULT (`buf` NULL), SOCK_INVALID_ARGUMENT (flags, `cap` >
/// PTRDIFF_MAX), SOCK_NOT_SOCKET, SOCK_NOT_CONNECTED, SOCK_WOULD_BLOCK,
/// SOCK_TIMED_OUT, SOCK_MESSAGE_SIZE, SOCK_CONNECTION_RESET,
/// SOCK_OPERATION_ABORTED (closed during the call), OS errors.
#[no_mangle]
pub extern "C" fn sock_recv(
    h: sock_handle,
    buf: *mut c_void,
    cap: usize,
    flags: i32,
    received: *mut usize,
) -> sock_status {
    ffi_boundary! {
        let outcome = if flags == SOCK_MSG_NONE && !buf.is_null() && cap != 0 && cap <= MAX_LEN {
            // The common case, without recv_checked's address handling.
            match table::lookup(h) {
                Some(sock) => {
                    outcome_of(io::recv(&sock, buf.cast(), cap, sys::RECV_FLAGS_NONE, None))
                }
                None => fail(SOCK_NOT_SOCKET),
            }
        } else {
            recv_checked(h, buf, cap, flags, std::ptr::null_mut(), 0)
        };
        finish(h, "recv", outcome, received)
    }
}

/// Receives as `sock_recv`, and writes the sender's address as text (and a
/// NUL) into `address` (`address_cap` bytes) when `address` is not NULL.
/// For a stream socket that is the peer's address. `address_cap` must hold
/// the longest address of the socket's family (SOCK_ADDRESS_MAX_LEN always
/// does), else SOCK_NO_BUFFER_SPACE before anything is received.
/// Errors: as `sock_recv`, and SOCK_NO_BUFFER_SPACE.
#[no_mangle]
pub extern "C" fn sock_recv_from(
    h: sock_handle,
    buf: *mut c_void,
    cap: usize,
    flags: i32,
    address: *mut c_char,
    address_cap: usize,
    received: *mut usize,
) -> sock_status {
    ffi_boundary! {
        let outcome = recv_checked(h, buf, cap, flags, address, address_cap);
        finish(h, "recv_from", outcome, received)
    }
}

fn recv_checked(
    h: sock_handle,
    buf: *mut c_void,
    cap: usize,
    flags: i32,
    address: *mut c_char,
    address_cap: usize,
) -> (Result<()>, usize) {
    if buf.is_null() {
        return fail(SOCK_FAULT);
    }
    if cap > MAX_LEN || (!address.is_null() && address_cap > MAX_LEN) {
        return fail(SOCK_INVALID_ARGUMENT);
    }
    let os_flags = match sys::recv_flags(flags) {
        Ok(f) => f,
        Err(e) => return (Err(e), 0),
    };
    let Some(sock) = table::lookup(h) else {
        return fail(SOCK_NOT_SOCKET);
    };
    let want_from = !address.is_null();
    if want_from && address_cap < address::max_text_len(sock.family) {
        return fail(SOCK_NO_BUFFER_SPACE);
    }
    if cap == 0 {
        // Nothing to receive into: not a wait, and not an end of stream.
        return (Ok(()), 0);
    }
    let mut sender = None;
    let r = match io::recv(
        &sock,
        buf.cast(),
        cap,
        os_flags,
        want_from.then_some(&mut sender),
    ) {
        Ok(r) => r,
        Err(e) => return (Err(e), 0),
    };
    if want_from {
        let from = sender.or_else(|| sock.os().peer_addr().ok());
        let text = from.map(|a| address::format(&a)).unwrap_or_default();
        // SAFETY: `address` is valid for `address_cap` bytes (C's promise).
        if address::copy_out(&text, unsafe { out_buf(address, address_cap) }).is_err() {
            return (Err(Error::new(SOCK_NO_BUFFER_SPACE)), r.len);
        }
    }
    outcome_of(Ok(r))
}

/// A receive's result as `finish` takes it: a datagram cut to the buffer
/// is SOCK_MESSAGE_SIZE, with the bytes kept.
fn outcome_of(r: Result<Received>) -> (Result<()>, usize) {
    match r {
        Ok(r) if r.truncated => (Err(Error::new(SOCK_MESSAGE_SIZE)), r.len),
        Ok(r) => (Ok(()), r.len),
        Err(e) => (Err(e), 0),
    }
}
