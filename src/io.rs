//! The blocking path's policy: send-all over a gather list, datagram
//! sends, and receives, honouring the socket's blocking mode and timeouts
//! (the system calls themselves are `sys`'s).
//!
//! Every send holds the socket's turn (`queue`) for its whole duration, so
//! the bytes of concurrent calls never interleave; every system call uses
//! `MSG_NOSIGNAL` (no SIGPIPE) and `MSG_DONTWAIT` (waiting is done by
//! `Socket::wait`, within one deadline for the whole call). The one
//! exception: a blocking receive with no timeout on a connected stream
//! waits inside `recv` itself (`Socket::kernel_may_wait`).

use std::sync::Arc;

use socket2::SockAddr;

use crate::queue::{QueueGuard, QueueState};
use crate::socket::{Kind, Socket, State};
use crate::status::{
    Error, Result, SOCK_DESTINATION_ADDRESS_REQUIRED, SOCK_MESSAGE_SIZE, SOCK_NOT_CONNECTED,
    SOCK_WOULD_BLOCK,
};
use crate::sys::{
    first_window, recv_once, send_once, send_syscall, Received, Sender, IOV_MAX, SEND_FLAGS_NONE,
};
use crate::wait::Deadline;

/// Segments copied to the stack when a send resumes inside a segment.
const RESUME_WINDOW: usize = 64;

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
    match first_send(sock, bufs, to, os_flags, |_| Ok(())) {
        Ok((idle, Some(result))) => after_first_send(sock, idle, result, total),
        Ok((_busy, None)) => Fast::Wait {
            sent: 0,
            turn_taken: false,
        },
        Err(e) => Fast::Done((Err(e), 0)),
    }
}

/// The first send both general paths share (`send_fast` here and
/// `asyncio::send_async`): takes the queue lock, lets `prepare` refuse or
/// set up under it (the async path binds the socket's engine there), and
/// when nobody else sends or waits, makes one system call for the front of
/// the gather list. Returns the guard and that call's result (`None`: the
/// queue was busy, nothing was tried).
pub(crate) fn first_send<'a>(
    sock: &'a Socket,
    bufs: &[libc::iovec],
    to: Option<&SockAddr>,
    os_flags: libc::c_int,
    prepare: impl FnOnce(&mut QueueState) -> Result<()>,
) -> Result<(QueueGuard<'a>, Option<Result<usize>>)> {
    let mut q = sock.queue.lock();
    prepare(&mut q)?;
    let first = q
        .is_idle()
        .then(|| send_once(sock, first_window(bufs), to, os_flags));
    Ok((q, first))
}

/// The start both short paths share (`send_fast_one` and
/// `asyncio::send_async_one`): on a connected stream whose queue is idle
/// and passes `may_send`, the queue lock and one `send` of the non-empty
/// segment. When every byte went, the lock is released and `all_sent`
/// says what that means; otherwise the lock and the `send`'s result go to
/// `rest`, out of line. `None` when the send was not tried: nothing was
/// done. (Two continuations rather than a returned pair, so that the hot
/// path's outcome stays in registers.)
#[inline]
pub fn first_send_one<'a, R>(
    sock: &'a Socket,
    one: &[libc::iovec; 1],
    may_send: impl FnOnce(&QueueState) -> bool,
    all_sent: impl FnOnce() -> R,
    rest: impl FnOnce(QueueGuard<'a>, Result<usize>) -> R,
) -> Option<R> {
    let len = one[0].iov_len;
    if sock.kind != Kind::Stream || sock.state() != State::Connected || len == 0 {
        return None;
    }
    let idle = sock.queue.lock_if_idle()?;
    if !may_send(&idle) {
        return None;
    }
    let n = send_syscall(sock, one, None, SEND_FLAGS_NONE);
    if n >= 0 && n as usize == len {
        drop(idle);
        return Some(all_sent());
    }
    Some(rest(idle, short_send_result(sock, one[0], n)))
}

/// The result of `first_send_one`'s `send` when it did not take every
/// byte, as `send_once` gives it: errno read first, `EINTR` retried.
#[cold]
#[inline(never)]
fn short_send_result(sock: &Socket, one: libc::iovec, n: isize) -> Result<usize> {
    if n >= 0 {
        return Ok(n as usize);
    }
    match Error::last_os_error() {
        e if e.errno == libc::EINTR => send_once(sock, &[one], None, SEND_FLAGS_NONE),
        e => Err(e),
    }
}

/// What `send_fast_one` got to.
pub enum FastOne<T> {
    /// Every byte went.
    Sent,
    /// Nothing was done: the general `send_fast` must run.
    NotTried,
    /// Anything else, as `send_fast` reports it (or what the caller made
    /// of that).
    Other(T),
}

/// `sock_send`'s common case on one short code path: one segment, no
/// flags, a connected stream nobody else is writing to. Anything but
/// `Sent` and `NotTried` goes through `other` (off the hot path), so that
/// the hot path's outcome fits in registers.
#[inline]
pub fn send_fast_one<T>(
    sock: &Arc<Socket>,
    one: &[libc::iovec; 1],
    other: impl FnOnce(&Arc<Socket>, Fast) -> T,
) -> FastOne<T> {
    let first = first_send_one(
        sock,
        one,
        |_| true,
        || FastOne::Sent,
        |idle, result| {
            let fast = after_first_send(sock, idle, result, one[0].iov_len);
            FastOne::Other(other(sock, fast))
        },
    );
    first.unwrap_or(FastOne::NotTried)
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
        Kind::Stream => send_all(sock, bufs, total, sent, os_flags, RoomWait::Until(deadline)),
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

/// Whether `send_all` may wait for room in the kernel.
pub(crate) enum RoomWait {
    /// Never: once the kernel is full, report what went (the async path's
    /// inline attempt).
    Never,
    /// As the socket's mode allows, until the deadline.
    Until(Deadline),
}

/// Stream send-all: retries short writes, waits for room as `wait` allows,
/// and in non-blocking mode stops when the kernel is full. `total` is the
/// gather list's length and `sent` what already went.
pub(crate) fn send_all(
    sock: &Socket,
    bufs: &[libc::iovec],
    total: usize,
    mut sent: usize,
    os_flags: libc::c_int,
    wait: RoomWait,
) -> (Result<()>, usize) {
    let (mut index, mut offset) = advance(bufs, 0, 0, sent);
    // Blocking mode with no timeout on a connected stream: after the first
    // EAGAIN the kernel waits inside `send` itself (one system call, as a
    // raw blocking send makes, instead of send, poll, send). `close` wakes
    // it with the same shutdown that wakes `poll`.
    let mut os_flags = os_flags;
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
            Err(e) if e.errno == libc::EAGAIN => match wait {
                RoomWait::Never => return (Ok(()), sent),
                RoomWait::Until(deadline)
                    if os_flags & libc::MSG_DONTWAIT != 0
                        && os_flags & libc::MSG_OOB == 0
                        && deadline.is_forever()
                        && sock.options.blocking()
                        && sock.kernel_may_wait() =>
                {
                    os_flags &= !libc::MSG_DONTWAIT;
                }
                RoomWait::Until(deadline) => match sock.wait(libc::POLLOUT, deadline) {
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

/// Receives into `buf` (`cap` bytes), waiting per the blocking mode and
/// the receive timeout. `sender`, when given, receives the sender's
/// address.
#[inline]
pub fn recv(
    sock: &Socket,
    buf: *mut u8,
    cap: usize,
    os_flags: libc::c_int,
    mut sender: Option<&mut Sender>,
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
        match recv_once(sock, buf, cap, os_flags, sender.as_deref_mut()) {
            Ok(r) => return Ok(r),
            Err(e) if e.errno == libc::EAGAIN => sock.wait(libc::POLLIN, deadline)?,
            Err(e) => return Err(e),
        }
    }
}
