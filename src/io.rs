//! Blocking-path I/O: send-all over a gather list, datagram sends, and
//! receives, honouring the socket's blocking mode and timeouts.
//!
//! Every send holds the socket's turn (`queue`) for its whole duration, so
//! the bytes of concurrent calls never interleave; every system call uses
//! `MSG_NOSIGNAL` (no SIGPIPE) and `MSG_DONTWAIT` (waiting is done by
//! `Socket::wait`, within one deadline for the whole call). The one
//! exception: a blocking receive with no timeout on a connected stream
//! waits inside `recv` itself (`Socket::kernel_may_wait`).

use std::ffi::c_void;

use socket2::SockAddr;

use crate::queue::{QueueGuard, QueueState};
use crate::socket::{Kind, Socket, State};
use crate::status::{
    Error, Result, SOCK_DESTINATION_ADDRESS_REQUIRED, SOCK_INVALID_ARGUMENT, SOCK_MESSAGE_SIZE,
    SOCK_NOT_CONNECTED, SOCK_OPERATION_ABORTED, SOCK_WOULD_BLOCK,
};
use crate::wait::Deadline;

/// No flags.
pub const SOCK_MSG_NONE: i32 = 0;
/// Out-of-band data (MSG_OOB); send and receive.
pub const SOCK_MSG_OOB: i32 = 1;
/// Receive only: look at the data without consuming it (MSG_PEEK).
pub const SOCK_MSG_PEEK: i32 = 2;
/// Send only: bypass routing, send to directly connected hosts (MSG_DONTROUTE).
pub const SOCK_MSG_DONT_ROUTE: i32 = 4;

/// One segment of a gather list: `len` bytes at `data`. Same layout as `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct sock_buf {
    /// The bytes; may be NULL only when `len` is 0.
    pub data: *const c_void,
    /// Number of bytes at `data`.
    pub len: usize,
}

// `sock_buf` arrays are handed to the kernel as `iovec` arrays.
const _: () = assert!(std::mem::size_of::<sock_buf>() == std::mem::size_of::<libc::iovec>());
const _: () = assert!(std::mem::align_of::<sock_buf>() == std::mem::align_of::<libc::iovec>());

/// Linux's limit on segments per `sendmsg` (UIO_MAXIOV).
pub(crate) const IOV_MAX: usize = 1024;
/// Segments copied to the stack when a send resumes inside a segment.
const RESUME_WINDOW: usize = 64;

/// Validates `sock_send` flags and turns them into OS flags.
pub fn send_flags(flags: i32) -> Result<libc::c_int> {
    if flags & !(SOCK_MSG_OOB | SOCK_MSG_DONT_ROUTE) != 0 {
        return Err(Error::new(SOCK_INVALID_ARGUMENT));
    }
    let mut os = SEND_FLAGS_NONE;
    if flags & SOCK_MSG_OOB != 0 {
        os |= libc::MSG_OOB;
    }
    if flags & SOCK_MSG_DONT_ROUTE != 0 {
        os |= libc::MSG_DONTROUTE;
    }
    Ok(os)
}

/// The OS flags of a send with `SOCK_MSG_NONE`.
pub(crate) const SEND_FLAGS_NONE: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;

/// Validates `sock_recv` flags and turns them into OS flags.
pub fn recv_flags(flags: i32) -> Result<libc::c_int> {
    if flags & !(SOCK_MSG_OOB | SOCK_MSG_PEEK) != 0 {
        return Err(Error::new(SOCK_INVALID_ARGUMENT));
    }
    let mut os = libc::MSG_DONTWAIT;
    if flags & SOCK_MSG_OOB != 0 {
        os |= libc::MSG_OOB;
    }
    if flags & SOCK_MSG_PEEK != 0 {
        os |= libc::MSG_PEEK;
    }
    Ok(os)
}

/// One send system call: `send` for the common single-segment case,
/// `sendmsg` otherwise. `EINTR` is retried here; `EAGAIN` comes back as an
/// error with that errno.
#[inline]
pub(crate) fn send_once(
    sock: &Socket,
    iov: &[libc::iovec],
    to: Option<&SockAddr>,
    flags: libc::c_int,
) -> Result<usize> {
    loop {
        match send_syscall(sock, iov, to, flags) {
            Err(e) if e.errno == libc::EINTR => continue,
            result => return result,
        }
    }
}

#[inline]
fn send_syscall(
    sock: &Socket,
    iov: &[libc::iovec],
    to: Option<&SockAddr>,
    flags: libc::c_int,
) -> Result<usize> {
    let n = if let ([one], None) = (iov, to) {
        // SAFETY: the segment describes `iov_len` readable bytes (checked
        // by the caller at the ABI boundary).
        unsafe { libc::send(sock.fd(), one.iov_base, one.iov_len, flags) }
    } else {
        // SAFETY: msghdr is plain old data; all-zero means "no fields set".
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        if let Some(addr) = to {
            msg.msg_name = addr.as_ptr() as *mut c_void;
            msg.msg_namelen = addr.len();
        }
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len();
        // SAFETY: `msg` points at the caller's valid segments and address,
        // which outlive the call; the kernel only reads them.
        unsafe { libc::sendmsg(sock.fd(), &msg, flags) }
    };
    if n < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sends the gather list `bufs` (`total` bytes) on `sock`, to `to` when
/// given (datagram sockets). Returns the outcome and the bytes handed to
/// the kernel, which is meaningful on error too.
pub fn send(
    sock: &Socket,
    bufs: &[libc::iovec],
    total: usize,
    os_flags: libc::c_int,
    to: Option<&SockAddr>,
) -> (Result<()>, usize) {
    match send_fast(sock, bufs, total, os_flags, to) {
        Fast::Done(outcome) => outcome,
        Fast::Wait { sent, turn_taken } => {
            send_slow(sock, bufs, total, os_flags, to, sent, turn_taken)
        }
    }
}

/// What the fast path of a send got to.
pub enum Fast {
    /// Finished (or failed) without waiting.
    Done((Result<()>, usize)),
    /// Must wait: `sent` bytes went already; with `turn_taken` the caller
    /// holds the socket's turn (see `OpQueue::adopt_turn`).
    Wait { sent: usize, turn_taken: bool },
}

/// The fast path of a send, which never waits and takes no reference to
/// the socket: when nobody else sends, it tries it all at once, one system
/// call under the queue lock, and takes the turn only when it must wait.
pub fn send_fast(
    sock: &Socket,
    bufs: &[libc::iovec],
    total: usize,
    os_flags: libc::c_int,
    to: Option<&SockAddr>,
) -> Fast {
    if let Err(e) = check_can_send(sock, bufs.len(), to.is_some()) {
        return Fast::Done((Err(e), 0));
    }
    if sock.kind == Kind::Stream && total == 0 {
        return Fast::Done((Ok(()), 0));
    }
    // A stream's destination is its peer: `sock_send_to`'s address is
    // checked by the caller and then ignored, as Winsock does.
    let to = if sock.kind == Kind::Stream { None } else { to };
    let Some(idle) = sock.queue.lock_if_idle() else {
        return Fast::Wait {
            sent: 0,
            turn_taken: false,
        };
    };
    let result = send_once(sock, first_window(bufs), to, os_flags);
    after_first_send(sock, idle, result, total)
}

/// What `send_fast_one` got to.
pub enum FastOne<T = Fast> {
    /// Every byte went.
    Sent,
    /// Nothing was done: the general `send_fast` must run.
    NotTried,
    /// Anything else, as `send_fast` reports it (or what the caller made
    /// of that, see `map`).
    Other(T),
}

impl<T> FastOne<T> {
    /// Transforms the `Other` case, keeping the other two.
    #[inline]
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> FastOne<U> {
        match self {
            FastOne::Sent => FastOne::Sent,
            FastOne::NotTried => FastOne::NotTried,
            FastOne::Other(t) => FastOne::Other(f(t)),
        }
    }
}

/// The start both short paths share (`send_fast_one` and
/// `asyncio::send_async_one`): on a connected stream whose queue is idle
/// and passes `may_send`, the queue lock and one `send` of the non-empty
/// segment. `None` when that does not hold: nothing was done.
#[inline]
pub fn first_send_one<'a>(
    sock: &'a Socket,
    one: &[libc::iovec; 1],
    may_send: impl FnOnce(&QueueState) -> bool,
) -> Option<(QueueGuard<'a>, Result<usize>)> {
    if sock.kind != Kind::Stream || sock.state() != State::Connected || one[0].iov_len == 0 {
        return None;
    }
    let idle = sock.queue.lock_if_idle()?;
    if !may_send(&idle) {
        return None;
    }
    let result = send_once(sock, one, None, SEND_FLAGS_NONE);
    Some((idle, result))
}

/// `sock_send`'s common case on one short code path: one segment, no
/// flags, a connected stream nobody else is writing to.
#[inline]
pub fn send_fast_one(sock: &Socket, one: &[libc::iovec; 1]) -> FastOne {
    let len = one[0].iov_len;
    match first_send_one(sock, one, |_| true) {
        None => FastOne::NotTried,
        Some((_, Ok(n))) if n == len => FastOne::Sent,
        Some((idle, result)) => FastOne::Other(after_first_send(sock, idle, result, len)),
    }
}

/// What a fast path does after its first system call: report, or keep the
/// turn to wait. Out of line, to keep `send_fast_one` short.
#[inline(never)]
fn after_first_send(
    sock: &Socket,
    idle: QueueGuard<'_>,
    result: Result<usize>,
    total: usize,
) -> Fast {
    let sent = match result {
        Ok(n) if n == total || sock.kind == Kind::Dgram => return Fast::Done((Ok(()), n)),
        Ok(n) => n,
        Err(e) if e.errno == libc::EAGAIN => 0,
        Err(e) => return Fast::Done((Err(sock.fail(e)), 0)),
    };
    sock.queue.keep_turn(idle);
    Fast::Wait {
        sent,
        turn_taken: true,
    }
}

/// The rest of a send that must wait, in blocking or non-blocking mode,
/// after `send_fast`.
pub fn send_slow(
    sock: &Socket,
    bufs: &[libc::iovec],
    total: usize,
    os_flags: libc::c_int,
    to: Option<&SockAddr>,
    sent: usize,
    turn_taken: bool,
) -> (Result<()>, usize) {
    let to = if sock.kind == Kind::Stream { None } else { to };
    let deadline = Deadline::after_ms(sock.options.send_timeout_ms());
    let turn = if turn_taken {
        Ok(sock.queue.adopt_turn())
    } else if sock.options.blocking() {
        sock.queue.acquire(deadline, sock.closed_flag())
    } else {
        sock.queue.try_acquire()
    };
    let _turn = match turn {
        Ok(t) => t,
        Err(e) => return (Err(e), 0),
    };
    match sock.kind {
        Kind::Stream => send_all(sock, bufs, total, sent, os_flags, Some(deadline)),
        Kind::Dgram => match send_datagram(sock, bufs, to, os_flags, deadline) {
            Ok(n) => (Ok(()), n),
            Err(e) => (Err(e), 0),
        },
    }
}

/// Whether `sock` may send now: a stream must be connected (or
/// connecting), a datagram needs a destination and at most IOV_MAX segments.
pub(crate) fn check_can_send(sock: &Socket, segments: usize, has_destination: bool) -> Result<()> {
    match sock.kind {
        Kind::Stream if !matches!(sock.state(), State::Connected | State::Connecting) => {
            Err(Error::new(SOCK_NOT_CONNECTED))
        }
        Kind::Dgram if !has_destination && sock.state() != State::Connected => {
            Err(Error::new(SOCK_DESTINATION_ADDRESS_REQUIRED))
        }
        Kind::Dgram if segments > IOV_MAX => Err(Error::new(SOCK_MESSAGE_SIZE)),
        _ => Ok(()),
    }
}

fn send_datagram(
    sock: &Socket,
    bufs: &[libc::iovec],
    to: Option<&SockAddr>,
    os_flags: libc::c_int,
    deadline: Deadline,
) -> Result<usize> {
    loop {
        match send_once(sock, bufs, to, os_flags) {
            Ok(n) => return Ok(n),
            Err(e) if e.errno == libc::EAGAIN => sock.wait(libc::POLLOUT, deadline)?,
            Err(e) => return Err(sock.fail(e)),
        }
    }
}

/// Stream send-all: retries short writes and EINTR, waits for room within
/// the deadline, and in non-blocking mode stops when the kernel is full.
/// With no deadline at all (`None`, the async path's inline attempt) it
/// never waits: it returns `Ok` with what went once the kernel is full.
/// `total` is the gather list's length and `sent` what already went.
pub(crate) fn send_all(
    sock: &Socket,
    bufs: &[libc::iovec],
    total: usize,
    mut sent: usize,
    os_flags: libc::c_int,
    deadline: Option<Deadline>,
) -> (Result<()>, usize) {
    let (mut index, mut offset) = advance(bufs, 0, 0, sent);
    loop {
        while index < bufs.len() && offset == bufs[index].iov_len {
            index += 1;
            offset = 0;
        }
        if index == bufs.len() {
            return (Ok(()), sent);
        }
        let result = if offset == 0 {
            let end = bufs.len().min(index + IOV_MAX);
            send_once(sock, &bufs[index..end], None, os_flags)
        } else {
            // Resume inside a segment: a short window of copied segments,
            // the first one advanced past what already went.
            let mut window = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; RESUME_WINDOW];
            let count = (bufs.len() - index).min(RESUME_WINDOW);
            window[..count].copy_from_slice(&bufs[index..index + count]);
            // SAFETY: offset < iov_len, so the advanced pointer stays inside
            // the caller's segment.
            window[0].iov_base = unsafe { window[0].iov_base.cast::<u8>().add(offset) }.cast();
            window[0].iov_len -= offset;
            send_once(sock, &window[..count], None, os_flags)
        };
        match result {
            Ok(n) => {
                sent += n;
                if sent == total {
                    return (Ok(()), sent);
                }
                (index, offset) = advance(bufs, index, offset, n);
            }
            Err(e) if e.errno == libc::EAGAIN => match deadline {
                None => return (Ok(()), sent),
                Some(deadline) => match sock.wait(libc::POLLOUT, deadline) {
                    Ok(()) => {}
                    // Non-blocking mode: what fit is a success.
                    Err(e) if e.status == SOCK_WOULD_BLOCK && sent > 0 => return (Ok(()), sent),
                    Err(e) => return (Err(e), sent),
                },
            },
            Err(e) => return (Err(sock.fail(e)), sent),
        }
    }
}

/// The segments one system call may take from the front of a gather list.
pub(crate) fn first_window(bufs: &[libc::iovec]) -> &[libc::iovec] {
    &bufs[..bufs.len().min(IOV_MAX)]
}

/// The cursor (segment, offset in it) `n` bytes past (`index`, `offset`).
fn advance(
    bufs: &[libc::iovec],
    mut index: usize,
    mut offset: usize,
    mut n: usize,
) -> (usize, usize) {
    while n > 0 {
        let left = bufs[index].iov_len - offset;
        if n < left {
            return (index, offset + n);
        }
        n -= left;
        index += 1;
        offset = 0;
    }
    (index, offset)
}

/// What one receive got.
pub struct Received {
    pub len: usize,
    /// The datagram was longer than the buffer; `len` bytes of it were kept.
    pub truncated: bool,
    /// The sender's address, when asked for and known.
    pub from: Option<SockAddr>,
}

/// Receives into `buf` (`cap` bytes), waiting per the blocking mode and
/// the receive timeout. `want_from` asks for the sender's address.
pub fn recv(
    sock: &Socket,
    buf: *mut u8,
    cap: usize,
    os_flags: libc::c_int,
    want_from: bool,
) -> Result<Received> {
    let timeout_ms = sock.options.recv_timeout_ms();
    let deadline = Deadline::after_ms(timeout_ms);
    // Blocking mode with no timeout: let the kernel wait inside `recv` (an
    // EAGAIN, should the descriptor be non-blocking after all, still goes
    // to `poll` below). OOB data is never waited for.
    let os_flags = if timeout_ms == 0
        && os_flags & libc::MSG_OOB == 0
        && sock.options.blocking()
        && sock.kernel_may_wait()
    {
        os_flags & !libc::MSG_DONTWAIT
    } else {
        os_flags
    };
    loop {
        match recv_once(sock, buf, cap, os_flags, want_from) {
            Ok(r) => return Ok(r),
            Err(e) if e.errno == libc::EAGAIN => sock.wait(libc::POLLIN, deadline)?,
            Err(e) => return Err(e),
        }
    }
}

/// One receive system call (`EINTR` retried here): EAGAIN comes back as an
/// error with that errno. An end of stream caused by `sock_close` is
/// reported as `SOCK_OPERATION_ABORTED`.
pub(crate) fn recv_once(
    sock: &Socket,
    buf: *mut u8,
    cap: usize,
    os_flags: libc::c_int,
    want_from: bool,
) -> Result<Received> {
    loop {
        let result = if sock.kind == Kind::Stream && !want_from {
            // SAFETY: the caller checked `buf` is valid for `cap` bytes of writes.
            let n = unsafe { libc::recv(sock.fd(), buf.cast(), cap, os_flags) };
            if n < 0 {
                Err(Error::last_os_error())
            } else {
                Ok(Received {
                    len: n as usize,
                    truncated: false,
                    from: None,
                })
            }
        } else {
            recv_msg(sock, buf, cap, os_flags)
        };
        return match result {
            Ok(r) if r.len == 0 && cap > 0 && sock.kind == Kind::Stream => {
                // An end of stream caused by our own close, or after a reset
                // that another call already reported, is not an orderly end.
                if sock.is_closed() {
                    Err(Error::new(SOCK_OPERATION_ABORTED))
                } else if let Some(e) = sock.broken_error() {
                    Err(e)
                } else {
                    Ok(r)
                }
            }
            Ok(r) => Ok(r),
            Err(e) if e.errno == libc::EINTR => continue,
            Err(e) if e.errno == libc::EAGAIN => Err(e),
            Err(e) => Err(sock.fail(e)),
        };
    }
}

fn recv_msg(sock: &Socket, buf: *mut u8, cap: usize, os_flags: libc::c_int) -> Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: cap,
    };
    // SAFETY: msghdr is plain old data; all-zero means "no fields set".
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: try_init hands us storage for any socket address and its
    // length; recvmsg writes at most that many bytes and reports the
    // length it wrote, which we pass back.
    let result = unsafe {
        SockAddr::try_init(|storage, len| {
            msg.msg_name = storage.cast();
            msg.msg_namelen = *len;
            let n = libc::recvmsg(sock.fd(), &mut msg, os_flags);
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            *len = msg.msg_namelen;
            Ok(n as usize)
        })
    };
    let (len, from) = result.map_err(Error::from)?;
    Ok(Received {
        len,
        truncated: sock.kind == Kind::Dgram && msg.msg_flags & libc::MSG_TRUNC != 0,
        from: (from.len() > 0).then_some(from),
    })
}
