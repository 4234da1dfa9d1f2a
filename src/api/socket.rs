//! Exports for a socket's life cycle, addresses and options.

use std::ffi::c_char;
use std::sync::Arc;

use crate::address;
use crate::asyncio;
use crate::ffi::{c_str, try_non_null, try_socket, try_status, write_address, write_opt, MAX_LEN};
use crate::handle::{sock_handle, SOCK_INVALID_HANDLE};
use crate::options;
use crate::panic::ffi_boundary;
use crate::socket::{Family, Kind, Socket, SOCK_SHUT_BOTH, SOCK_SHUT_SEND};
use crate::status::{
    report, sock_status, to_status, SOCK_FAULT, SOCK_INVALID_ARGUMENT, SOCK_NOT_SOCKET, SOCK_OK,
};
use crate::table;
use crate::trace;

/// Stores a new socket in the table and its handle in `*out`
/// (`SOCK_INVALID_HANDLE` on failure).
fn publish(op: &str, socket: crate::status::Result<Socket>, out: *mut sock_handle) -> sock_status {
    let result = socket.and_then(table::insert);
    let (status, h) = match result {
        Ok(h) => (SOCK_OK, h),
        Err(e) => (report(e), SOCK_INVALID_HANDLE),
    };
    // SAFETY: `out` was checked non-NULL by the caller and points to a sock_handle.
    unsafe { out.write(h) };
    trace::op(h, op, 0, status);
    status
}

/// Runs an export's body and traces its outcome.
fn traced(h: sock_handle, op: &str, body: impl FnOnce() -> sock_status) -> sock_status {
    let status = body();
    trace::op(h, op, 0, status);
    status
}

/// Creates a socket. `family`: SOCK_FAMILY_INET, _INET6 or _UNIX; `type`:
/// SOCK_TYPE_STREAM or _DGRAM. The socket starts in blocking mode, with no
/// timeouts, close-on-exec. On success `*out` receives its handle; on any
/// error `*out` is set to SOCK_INVALID_HANDLE.
/// Errors: SOCK_FAULT (`out` NULL), SOCK_INVALID_ARGUMENT (unknown family or
/// type), SOCK_TOO_MANY_OPEN_SOCKETS, OS errors.
#[no_mangle]
pub extern "C" fn sock_socket(family: i32, r#type: i32, out: *mut sock_handle) -> sock_status {
    ffi_boundary! {
        try_non_null!(out);
        let opened = Family::from_c(family)
            .and_then(|f| Kind::from_c(r#type).map(|k| (f, k)))
            .and_then(|(f, k)| Socket::open(f, k));
        publish("socket", opened, out)
    }
}

/// Binds the socket to `address` ("127.0.0.1:0", "[::1]:8080",
/// "localhost:80", "unix:/path"; port 0 picks a free port).
/// Errors: SOCK_FAULT, SOCK_NOT_SOCKET, SOCK_INVALID_ARGUMENT (malformed
/// text), SOCK_ADDRESS_FAMILY_NOT_SUPPORTED (text of another family),
/// SOCK_HOST_NOT_FOUND / SOCK_TRY_AGAIN, SOCK_ADDRESS_ALREADY_IN_USE, OS errors.
#[no_mangle]
pub extern "C" fn sock_bind(h: sock_handle, address: *const c_char) -> sock_status {
    ffi_boundary! {
        traced(h, "bind", || {
            try_non_null!(address);
            let sock = try_socket!(h);
            // SAFETY: non-NULL, and C promises a NUL-terminated string.
            let addr = try_status!(address::parse(unsafe { c_str(address) }, sock.family, sock.kind));
            to_status(sock.bind(&addr))
        })
    }
}

/// Starts listening for connections on a bound (or unbound: ephemeral port)
/// stream socket. `backlog` >= 0; the kernel caps it.
/// Errors: SOCK_NOT_SOCKET, SOCK_INVALID_ARGUMENT (datagram socket, negative
/// backlog, connected socket), OS errors.
#[no_mangle]
pub extern "C" fn sock_listen(h: sock_handle, backlog: i32) -> sock_status {
    ffi_boundary! {
        traced(h, "listen", || {
            let sock = try_socket!(h);
            to_status(sock.listen(backlog))
        })
    }
}

/// Accepts a connection on a listening socket. Blocking mode waits, at
/// most SOCK_OPT_RECV_TIMEOUT_MS (then SOCK_TIMED_OUT); non-blocking mode
/// returns SOCK_WOULD_BLOCK when none is pending. The new socket's handle
/// goes to `*out` (SOCK_INVALID_HANDLE on error); it starts with default
/// options.
/// Errors: SOCK_FAULT, SOCK_NOT_SOCKET, SOCK_INVALID_ARGUMENT (not
/// listening, datagram socket), SOCK_WOULD_BLOCK, SOCK_TIMED_OUT,
/// SOCK_OPERATION_ABORTED (closed meanwhile), OS errors.
#[no_mangle]
pub extern "C" fn sock_accept(h: sock_handle, out: *mut sock_handle) -> sock_status {
    ffi_boundary! {
        try_non_null!(out);
        let Some(sock) = table::lookup(h) else {
            // SAFETY: checked non-NULL above.
            unsafe { out.write(SOCK_INVALID_HANDLE) };
            return SOCK_NOT_SOCKET;
        };
        publish("accept", sock.accept(), out)
    }
}

/// Connects to `address`. Stream sockets in blocking mode wait, at most
/// SOCK_OPT_SEND_TIMEOUT_MS (then SOCK_TIMED_OUT); in non-blocking mode a
/// connect under way returns SOCK_IN_PROGRESS: wait until `sock_fd` is
/// writable, then call again (SOCK_IS_CONNECTED means done) or just send.
/// Datagram sockets set their default destination.
/// Errors: SOCK_FAULT, SOCK_NOT_SOCKET, address errors as `sock_bind`,
/// SOCK_CONNECTION_REFUSED, SOCK_TIMED_OUT, SOCK_IN_PROGRESS,
/// SOCK_ALREADY_IN_PROGRESS, SOCK_IS_CONNECTED, OS errors.
#[no_mangle]
pub extern "C" fn sock_connect(h: sock_handle, address: *const c_char) -> sock_status {
    ffi_boundary! {
        traced(h, "connect", || {
            try_non_null!(address);
            let sock = try_socket!(h);
            // SAFETY: non-NULL, and C promises a NUL-terminated string.
            let addr = try_status!(address::parse(unsafe { c_str(address) }, sock.family, sock.kind));
            to_status(sock.connect(&addr))
        })
    }
}

/// Shuts down receiving (SOCK_SHUT_RECV), sending (SOCK_SHUT_SEND: the peer
/// sees end of stream; later sends fail with SOCK_SHUTDOWN) or both.
/// Shutting down sending completes pending async sends with
/// SOCK_OPERATION_ABORTED first. Shutting down receiving completes a
/// pending async receive as end of stream (SOCK_OK with 0 bytes), not as
/// aborted: that is what the kernel reports to it.
/// Errors: SOCK_NOT_SOCKET, SOCK_INVALID_ARGUMENT (unknown `how`),
/// SOCK_NOT_CONNECTED, OS errors.
#[no_mangle]
pub extern "C" fn sock_shutdown(h: sock_handle, how: i32) -> sock_status {
    ffi_boundary! {
        traced(h, "shutdown", || {
            let sock = try_socket!(h);
            if how == SOCK_SHUT_SEND || how == SOCK_SHUT_BOTH {
                asyncio::cancel_sends(&sock, h);
            }
            to_status(sock.shutdown(how))
        })
    }
}

/// Closes the socket. The handle is invalid from now on, forever. Calls
/// blocked on it in other threads return SOCK_OPERATION_ABORTED; the OS
/// descriptor is closed once the last of them has returned. A bound
/// "unix:" path is not unlinked.
///
/// Pending async operations: each completes exactly once with
/// SOCK_OPERATION_ABORTED (and, for sends, the bytes it did send). Their
/// callbacks run on the socket's engine as usual — possibly after this call
/// returned (a threaded engine's thread; a manual engine's next
/// `sock_engine_poll`), never inside it. When `sock_close` returns, the
/// library no longer reads or writes any data buffer of those operations,
/// but their `user_data` must stay valid until their callbacks ran. An
/// async call racing `sock_close` on another thread either is accepted
/// before the close (and then completes as above) or fails with
/// SOCK_NOT_SOCKET and no callback.
/// Errors: SOCK_NOT_SOCKET.
#[no_mangle]
pub extern "C" fn sock_close(h: sock_handle) -> sock_status {
    ffi_boundary! {
        traced(h, "close", || {
            let Some(sock) = table::lookup(h) else {
                return SOCK_NOT_SOCKET;
            };
            // Pending operations end now, each callback once, and no later
            // flush touches their buffers; from here on every submission on
            // the socket is refused (it checks under the same queue lock).
            asyncio::close(&sock, h);
            drop(sock);
            let Some(sock) = table::remove(h) else {
                // Another thread's close of the same handle won.
                return SOCK_NOT_SOCKET;
            };
            // Out of the table, nobody can take a new reference: the count only
            // falls, so "1" means no other thread is inside a call on it.
            sock.close(Arc::strong_count(&sock) > 1);
            SOCK_OK
        })
    }
}

/// Common part of the two address getters.
fn address_out(
    h: sock_handle,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
    which: fn(&socket2::Socket) -> std::io::Result<socket2::SockAddr>,
) -> sock_status {
    if buf.is_null() && cap > 0 {
        return SOCK_FAULT;
    }
    if cap > MAX_LEN {
        return SOCK_INVALID_ARGUMENT;
    }
    let sock = try_socket!(h);
    let addr = try_status!(which(sock.os()).map_err(crate::status::Error::from));
    // SAFETY: `buf` is valid for `cap` bytes (C's promise; NULL only with
    // cap 0), and `len` is NULL or valid.
    unsafe { write_address(&address::format(&addr), buf, cap, len) }
}

/// Writes the socket's local address as text (e.g. "127.0.0.1:40123",
/// "[::1]:80", "unix:/path") and a NUL into `buf` (`cap` bytes).
/// `*len` (if `len` is not NULL) receives the size of the text including
/// its NUL. If `cap` is too small nothing is written to `buf` and the call
/// returns SOCK_NO_BUFFER_SPACE with the size needed in `*len`
/// (`buf` NULL with `cap` 0 asks just for the size). SOCK_ADDRESS_MAX_LEN
/// always suffices.
/// Errors: SOCK_FAULT (`buf` NULL with `cap` > 0), SOCK_NOT_SOCKET,
/// SOCK_NO_BUFFER_SPACE, OS errors.
#[no_mangle]
pub extern "C" fn sock_local_address(
    h: sock_handle,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> sock_status {
    ffi_boundary! {
        address_out(h, buf, cap, len, socket2::Socket::local_addr)
    }
}

/// Writes the connected peer's address as text, as `sock_local_address`.
/// Errors: as `sock_local_address`, and SOCK_NOT_CONNECTED.
#[no_mangle]
pub extern "C" fn sock_peer_address(
    h: sock_handle,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> sock_status {
    ffi_boundary! {
        address_out(h, buf, cap, len, socket2::Socket::peer_addr)
    }
}

/// Sets a SOCK_OPT_* option. Booleans take 0 or 1; timeouts 0..INT32_MAX ms
/// (0 = wait forever); buffer sizes 1..INT32_MAX; LINGER_MS -1 (off) or
/// 0..SOCK_LINGER_MS_MAX. Every value `sock_get_option` reports is accepted
/// here and reads back the same (save and restore work).
/// Errors: SOCK_NOT_SOCKET, SOCK_INVALID_ARGUMENT (unknown option, value
/// out of range), SOCK_PROTOCOL_OPTION (option not for this protocol),
/// OS errors.
#[no_mangle]
pub extern "C" fn sock_set_option(h: sock_handle, option: i32, value: i64) -> sock_status {
    ffi_boundary! {
        let sock = try_socket!(h);
        to_status(options::set(&sock.options, sock.os(), option, value))
    }
}

/// Reads a SOCK_OPT_* option into `*value`.
/// Errors: SOCK_FAULT, SOCK_NOT_SOCKET, SOCK_INVALID_ARGUMENT (unknown
/// option), OS errors.
#[no_mangle]
pub extern "C" fn sock_get_option(h: sock_handle, option: i32, value: *mut i64) -> sock_status {
    ffi_boundary! {
        try_non_null!(value);
        let sock = try_socket!(h);
        let v = try_status!(options::get(&sock.options, sock.os(), option, || {
            sock.queue.lock().pending_send_bytes()
        }));
        // SAFETY: checked non-NULL above; C promises it points to an int64_t.
        unsafe { write_opt(value, v) };
        SOCK_OK
    }
}

/// The OS descriptor behind the handle, for raw options or for polling.
/// It stays owned by libsock: do not close it or change its O_NONBLOCK
/// flag; it is valid until `sock_close`. libsock implements blocking mode
/// itself and passes MSG_DONTWAIT on every call that must not wait; a
/// connected stream's descriptor is made blocking by its first untimed
/// blocking `sock_recv`, or untimed blocking send that has to wait, which
/// then wait inside recv(2) / send(2) as on a raw blocking socket. Pass
/// MSG_DONTWAIT if you do I/O on it yourself.
/// Errors: SOCK_FAULT, SOCK_NOT_SOCKET.
#[no_mangle]
pub extern "C" fn sock_fd(h: sock_handle, fd: *mut i32) -> sock_status {
    ffi_boundary! {
        try_non_null!(fd);
        let sock = try_socket!(h);
        // SAFETY: checked non-NULL above; C promises it points to an int32_t.
        unsafe { write_opt(fd, sock.fd()) };
        SOCK_OK
    }
}
