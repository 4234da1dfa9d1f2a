//! The async path: submitting sends and receives (the three-way return),
//! flushing pending ones when the engine sees readiness, deadlines,
//! cancellation, and aborting everything on close, shutdown or engine free.
//!
//! Every function here holds the socket's queue lock while it touches the
//! queue or the kernel (all system calls are non-blocking), and hands
//! completions to the socket's engine loop under that lock, so callbacks
//! of one socket run in submission order. No callback runs here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{default_engine, Loop};
use crate::handle::sock_handle;
use crate::io::{self, IOV_MAX};
use crate::queue::{
    Callback, Completion, CompletionFn, QueueGuard, QueueState, RecvOp, Seg, SendOp, UserData,
};
use crate::socket::{Kind, Socket};
use crate::status::{
    report, sock_status, Error, Result, SOCK_INVALID_ARGUMENT, SOCK_IO_PENDING, SOCK_MESSAGE_SIZE,
    SOCK_OK, SOCK_OPERATION_ABORTED, SOCK_OPERATION_NOT_SUPPORTED, SOCK_TIMED_OUT,
};
use crate::trace;

/// The loop this socket's operations complete on, binding it to the
/// default engine on first use.
fn bound_loop(q: &mut QueueState) -> Result<Arc<Loop>> {
    if let Some(e) = engine_unusable(q) {
        return Err(e);
    }
    if let Some(lp) = &q.engine {
        return Ok(lp.clone());
    }
    let lp = default_engine()?.pick_loop();
    q.engine = Some(lp.clone());
    Ok(lp)
}

/// Why the socket's engine cannot take its async calls: it was freed
/// (`SOCK_OPERATION_ABORTED` until the socket is attached to another), or it
/// belongs to the parent of this fork child (`SOCK_OPERATION_NOT_SUPPORTED`).
fn engine_unusable(q: &QueueState) -> Option<Error> {
    let lp = q.engine.as_ref()?;
    if !lp.in_this_process() {
        Some(Error::new(SOCK_OPERATION_NOT_SUPPORTED))
    } else if lp.is_stopped() {
        Some(Error::new(SOCK_OPERATION_ABORTED))
    } else {
        None
    }
}

/// The bound loop, with the socket registered for readiness (once).
fn registered_loop(q: &mut QueueState, sock: &Socket, h: sock_handle) -> Result<Arc<Loop>> {
    let lp = bound_loop(q)?;
    if q.registered.is_none() {
        lp.register(sock.fd(), h)?;
        q.registered = Some(h);
    }
    Ok(lp)
}

/// The deadline of an operation going pending now (the clock is read only
/// when a timeout is set, never on the inline fast path).
fn deadline_after(timeout_ms: u32) -> Option<Instant> {
    (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms.into()))
}

/// Reports an operation that finished inside its call: `SOCK_OK` (no
/// callback), or — with inline completion turned off — through its
/// callback like a pending one.
fn finished_inline(
    q: &mut QueueState,
    sock: &Socket,
    h: sock_handle,
    callback: Callback,
    status: sock_status,
    bytes: usize,
) -> sock_status {
    if sock.options.inline_completion() {
        return status;
    }
    match bound_loop(q) {
        Ok(lp) => {
            lp.push(Completion {
                handle: h,
                callback,
                status,
                bytes,
            });
            SOCK_IO_PENDING
        }
        Err(e) => report(e),
    }
}

/// An async send as submitted: its segments, their total length, the OS
/// flags and the completion callback.
pub struct SendRequest<'a> {
    pub iov: &'a [libc::iovec],
    pub total: usize,
    pub os_flags: libc::c_int,
    pub callback: Callback,
}

/// `sock_send_async` / `sock_sendv_async`: tries the send inline when the
/// socket's queue is idle, and queues the rest. Returns the status and the
/// bytes sent inside the call.
pub fn send_async(sock: &Socket, h: sock_handle, req: SendRequest<'_>) -> (sock_status, usize) {
    if let Err(e) = io::check_can_send(sock, req.iov.len(), false) {
        return (report(e), 0);
    }
    let q = sock.queue.lock();
    if let Some(e) = engine_unusable(&q) {
        return (report(e), 0);
    }
    // The fast path: one system call, and usually that is all.
    let first = q
        .is_idle()
        .then(|| io::send_once(sock, io::first_window(req.iov), None, req.os_flags));
    after_first_try(q, sock, h, req, first)
}

/// `sock_send_async`'s common case on one short code path: one buffer, no
/// flags, a connected stream with an idle queue, inline completion on.
/// `None` when that does not hold (nothing was done: `send_async` decides);
/// otherwise the call's outcome, as `send_async` reports it.
#[inline]
pub fn send_async_one(
    sock: &Socket,
    h: sock_handle,
    one: &[libc::iovec; 1],
    func: CompletionFn,
    user_data: UserData,
) -> Option<(sock_status, usize)> {
    if !sock.options.inline_completion() {
        return None;
    }
    let len = one[0].iov_len;
    let (q, first) = io::first_send_one(sock, one, |q| engine_unusable(q).is_none())?;
    match first {
        Ok(n) if n == len => Some((SOCK_OK, n)),
        first => {
            let req = SendRequest {
                iov: one,
                total: len,
                os_flags: io::SEND_FLAGS_NONE,
                callback: Callback {
                    func,
                    user_data,
                    op: "send_async",
                    submitted: trace::now_if_enabled(),
                },
            };
            Some(after_first_try(q, sock, h, req, Some(first)))
        }
    }
}

/// The rest of an async send after its first `send` (`None`: the queue was
/// busy, nothing was tried): report an inline finish, or send what else
/// fits now and queue the remainder. Out of line, to keep the fast paths
/// short.
#[inline(never)]
fn after_first_try(
    mut q: QueueGuard<'_>,
    sock: &Socket,
    h: sock_handle,
    req: SendRequest<'_>,
    mut first: Option<Result<usize>>,
) -> (sock_status, usize) {
    let SendRequest {
        iov,
        total,
        os_flags,
        callback,
    } = req;
    while let Some(Err(e)) = &first {
        if e.errno != libc::EINTR {
            break;
        }
        first = Some(io::send_once(sock, io::first_window(iov), None, os_flags));
    }
    let mut sent = 0;
    match first {
        None => {}
        // A datagram goes whole or not at all.
        Some(Ok(n)) if n == total || sock.kind == Kind::Dgram => {
            return (finished_inline(&mut q, sock, h, callback, SOCK_OK, n), n);
        }
        Some(Ok(n)) => {
            // Part went: send what else fits now, without waiting.
            let (result, n) = io::send_all(sock, iov, total, n, os_flags, None);
            if let Err(e) = result {
                return (report(e), n);
            }
            if n == total {
                return (finished_inline(&mut q, sock, h, callback, SOCK_OK, n), n);
            }
            sent = n;
        }
        Some(Err(e)) if e.errno == libc::EAGAIN => {}
        Some(Err(e)) => return (report(sock.fail(e)), 0),
    }
    let lp = match registered_loop(&mut q, sock, h) {
        Ok(lp) => lp,
        Err(e) => return (report(e), sent),
    };
    let deadline = deadline_after(sock.options.send_timeout_ms());
    let op = SendOp::new(total, sent, os_flags, deadline, callback);
    q.push_send(op, iov);
    if let Some(at) = deadline {
        lp.add_timer(at, h);
    }
    (SOCK_IO_PENDING, sent)
}

/// `sock_recv_async`: receives inline when nothing is queued and data (or
/// end of stream) is there, else queues the receive.
pub fn recv_async(
    sock: &Socket,
    h: sock_handle,
    buf: *mut u8,
    cap: usize,
    os_flags: libc::c_int,
    callback: Callback,
) -> (sock_status, usize) {
    let mut q = sock.queue.lock();
    if let Some(e) = engine_unusable(&q) {
        return (report(e), 0);
    }
    if !q.has_recvs() {
        match io::recv_once(sock, buf, cap, os_flags, false) {
            Ok(r) => {
                let status = if r.truncated {
                    SOCK_MESSAGE_SIZE
                } else {
                    SOCK_OK
                };
                return (
                    finished_inline(&mut q, sock, h, callback, status, r.len),
                    r.len,
                );
            }
            Err(e) if e.errno == libc::EAGAIN || e.errno == libc::EINTR => {}
            Err(e) => return (report(e), 0),
        }
    }
    let lp = match registered_loop(&mut q, sock, h) {
        Ok(lp) => lp,
        Err(e) => return (report(e), 0),
    };
    let deadline = deadline_after(sock.options.recv_timeout_ms());
    q.push_recv(RecvOp {
        buf: Seg(libc::iovec {
            iov_base: buf.cast(),
            iov_len: cap,
        }),
        os_flags,
        deadline,
        callback,
    });
    if let Some(at) = deadline {
        lp.add_timer(at, h);
    }
    (SOCK_IO_PENDING, 0)
}

/// A sink that queues completions of socket `h` on loop `lp`.
fn sink_to(lp: &Loop, h: sock_handle) -> impl FnMut(Callback, sock_status, usize) + '_ {
    move |callback, status, bytes| {
        lp.push(Completion {
            handle: h,
            callback,
            status,
            bytes,
        })
    }
}

/// Hands pending sends to the kernel — several small ones per `writev` —
/// until the kernel is full or the queue reaches a blocking sender.
pub fn flush_sends(sock: &Socket, h: sock_handle, lp: &Loop) {
    let mut q = sock.queue.lock();
    if q.busy {
        // A blocking sender writes; it hands over to us when it is done.
        return;
    }
    let datagram = sock.kind == Kind::Dgram;
    let mut sink = sink_to(lp, h);
    let mut retrying = false;
    loop {
        let max_bytes = q.pacing.batch_bytes();
        let Some((iov, flags)) = q.front_batch(datagram, IOV_MAX, max_bytes) else {
            break;
        };
        let offered: usize = iov.iter().map(|seg| seg.iov_len).sum();
        match io::send_once(sock, iov, None, flags) {
            Ok(n) if datagram => q.consume_datagram(n, &mut sink),
            Ok(n) => {
                q.consume(n, &mut sink);
                q.pacing.took(n, offered);
                if retrying {
                    q.pacing.retried(n);
                }
                // After a short write, call again only while that pays
                // (see FlushPacing); else wait for writability.
                retrying = n < offered;
                if retrying && !q.pacing.retry_now() {
                    break;
                }
            }
            Err(e) if e.errno == libc::EINTR => {}
            Err(e) if e.errno == libc::EAGAIN => {
                if retrying {
                    q.pacing.retried(0);
                }
                break;
            }
            Err(e) => {
                let status = sock.fail(e).status;
                q.drain_sends(status, &mut sink);
                break;
            }
        }
    }
    sock.queue.wake_waiter(&q);
}

/// Completes pending receives with whatever arrived, in order.
pub fn flush_recvs(sock: &Socket, h: sock_handle, lp: &Loop) {
    let mut q = sock.queue.lock();
    let mut sink = sink_to(lp, h);
    while let Some(op) = q.front_recv() {
        let (buf, cap, flags) = (
            op.buf.0.iov_base.cast::<u8>(),
            op.buf.0.iov_len,
            op.os_flags,
        );
        match io::recv_once(sock, buf, cap, flags, false) {
            Ok(r) => {
                if let Some(op) = q.pop_recv() {
                    let status = if r.truncated {
                        SOCK_MESSAGE_SIZE
                    } else {
                        SOCK_OK
                    };
                    sink(op.callback, status, r.len);
                }
            }
            Err(e) if e.errno == libc::EINTR => {}
            Err(e) if e.errno == libc::EAGAIN => break,
            Err(e) => {
                q.drain_recvs(e.status, &mut sink);
                break;
            }
        }
    }
}

/// Completes the socket's operations whose deadline passed with
/// `SOCK_TIMED_OUT`; those queued behind them go on.
pub fn expire(sock: &Socket, h: sock_handle, lp: &Loop, now: Instant) {
    let mut q = sock.queue.lock();
    let mut sink = sink_to(lp, h);
    q.expire(now, SOCK_TIMED_OUT, &mut sink);
    sock.queue.wake_waiter(&q);
    if !q.busy && q.send_at_front() {
        // The expired front may have left a send that can go now.
        lp.kick(h);
    }
}

/// `sock_cancel_sends`: completes every pending send with
/// `SOCK_OPERATION_ABORTED` and its partial count.
pub fn cancel_sends(sock: &Socket, h: sock_handle) {
    let mut q = sock.queue.lock();
    if forget_parents(&mut q) {
        return;
    }
    if let Some(lp) = q.engine.clone() {
        q.drain_sends(SOCK_OPERATION_ABORTED, &mut sink_to(&lp, h));
    }
    sock.queue.wake_waiter(&q);
}

/// In a fork child, operations pending in the parent's loop are the
/// parent's: the child forgets them (their callbacks run in the parent)
/// and leaves the parent's epoll set and eventfd alone.
fn forget_parents(q: &mut QueueState) -> bool {
    if q.engine.as_ref().is_some_and(|lp| !lp.in_this_process()) {
        q.drain_sends(SOCK_OPERATION_ABORTED, &mut |_, _, _| {});
        q.drain_recvs(SOCK_OPERATION_ABORTED, &mut |_, _, _| {});
        q.registered = None;
        q.engine = None;
        return true;
    }
    false
}

/// Ends every pending operation of the socket with
/// `SOCK_OPERATION_ABORTED` (callbacks on `lp`) and takes the socket out of
/// `lp`'s poller. Once the queue lock is released, no operation of the
/// socket touches its buffer again.
fn abort_pending(q: &mut QueueState, sock: &Socket, h: sock_handle, lp: &Loop) {
    let mut sink = sink_to(lp, h);
    q.drain_sends(SOCK_OPERATION_ABORTED, &mut sink);
    q.drain_recvs(SOCK_OPERATION_ABORTED, &mut sink);
    if q.registered.take().is_some() {
        lp.deregister(sock.fd(), h);
    }
    sock.queue.wake_waiter(q);
}

/// Close: every pending operation ends with `SOCK_OPERATION_ABORTED` and
/// the socket leaves its loop.
pub fn abort_all(sock: &Socket, h: sock_handle) {
    let mut q = sock.queue.lock();
    if forget_parents(&mut q) {
        return;
    }
    if let Some(lp) = q.engine.clone() {
        abort_pending(&mut q, sock, h, &lp);
    }
}

/// Engine free: as `abort_all`, but the socket stays bound to the stopped
/// loop, so its later async calls fail with `SOCK_OPERATION_ABORTED`.
pub fn detach(sock: &Socket, h: sock_handle, lp: &Loop) {
    abort_pending(&mut sock.queue.lock(), sock, h, lp);
}

/// `sock_attach`: binds an idle socket to another engine's loop.
pub fn attach(sock: &Socket, lp: Arc<Loop>) -> Result<()> {
    let mut q = sock.queue.lock();
    if !lp.in_this_process() {
        return Err(Error::new(SOCK_OPERATION_NOT_SUPPORTED));
    }
    forget_parents(&mut q);
    if q.has_pending() {
        return Err(Error::new(SOCK_INVALID_ARGUMENT));
    }
    if lp.is_stopped() {
        return Err(Error::new(SOCK_INVALID_ARGUMENT));
    }
    let registered = q.registered.take();
    if let (Some(old), Some(h)) = (&q.engine, registered) {
        old.deregister(sock.fd(), h);
    }
    q.engine = Some(lp);
    Ok(())
}
