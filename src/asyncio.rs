//! The async path: submitting sends and receives (the three-way return),
//! moving pending ones on when their loop sees readiness, deadlines,
//! cancellation, and ending everything on close or engine free.
//!
//! Every function here holds the socket's queue lock while it touches the
//! queue or the kernel (all system calls are non-blocking), and hands
//! completions to the socket's *home* loop (`QueueState::home`) under that
//! lock, so callbacks of one socket run in submission order, on the engine
//! the socket belongs to when they complete. No callback runs here.
//!
//! Life-cycle rules that hold by construction:
//! - a submission and `sock_close` are ordered by the queue lock: close
//!   marks the queue closed under it, and every submission checks that
//!   under the same lock before it queues anything (`home_loop`);
//! - an operation is complete when a `QueueState` method hands it to the
//!   sink, and only then; `settle` runs after every change and removes what
//!   the socket no longer needs (its one timer entry);
//! - loops call in through [`HANDLER`] with the token (handle) they know
//!   the socket by, and a loop that is not the socket's home is ignored.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::address::{self, Target};
use crate::completion::{BytesFn, Callback, Completion, Notify, UserData, SOCK_OP_SEND};
use crate::engine::{self, Engine, Handler, Loop, Readiness};
use crate::fork;
use crate::handle::sock_handle;
use crate::io;
use crate::queue::{
    AcceptOp, AddressOut, ConnectOp, Home, QueueGuard, QueueState, RecvOp, Seg, SendOp, ShutdownOp,
};
use crate::socket::{Family, Kind, Socket, State};
use crate::status::{
    report, sock_status, Error, Result, SOCK_ALREADY_IN_PROGRESS, SOCK_FAULT, SOCK_HOST_NOT_FOUND,
    SOCK_INVALID_ARGUMENT, SOCK_IO_PENDING, SOCK_IS_CONNECTED, SOCK_MESSAGE_SIZE,
    SOCK_NOT_CONNECTED, SOCK_NOT_SOCKET, SOCK_NO_BUFFER_SPACE, SOCK_OK, SOCK_OPERATION_ABORTED,
    SOCK_OPERATION_NOT_SUPPORTED, SOCK_SHUTDOWN, SOCK_TIMED_OUT,
};
use crate::sys::{self, IOV_MAX};
use crate::table;

/// Internal status of a submission that needs the default engine while it
/// is not running: nothing was done, and `submit` starts the engine outside
/// every lock and runs the submission again. Never reaches C.
const NEEDS_DEFAULT_ENGINE: sock_status = i32::MIN;

/// Whether a submission's status asks for the default engine to be started
/// and the submission run again (nothing was done).
pub fn needs_default_engine(status: sock_status) -> bool {
    status == NEEDS_DEFAULT_ENGINE
}

/// What every loop calls for the sockets it serves.
pub struct SocketHandler;

/// The handler engines are created with.
pub static HANDLER: SocketHandler = SocketHandler;

impl Handler for SocketHandler {
    fn ready(&self, lp: &Loop, token: u64, readiness: Readiness) {
        let Some(sock) = table::lookup(token) else {
            return;
        };
        if readiness.writable {
            flush_sends(&sock, token, lp);
        }
        if readiness.readable {
            flush_recvs(&sock, token, lp, readiness.read_lasting);
            flush_accepts(&sock, token, lp);
        }
    }

    fn kicked(&self, lp: &Loop, token: u64) {
        if let Some(sock) = table::lookup(token) {
            flush_sends(&sock, token, lp);
        }
    }

    fn deadline(&self, lp: &Loop, token: u64, now: Instant) {
        if let Some(sock) = table::lookup(token) {
            expire(&sock, token, lp, now);
        }
    }

    fn engine_freed(&self, lp: &Loop, token: u64) {
        if let Some(sock) = table::lookup(token) {
            let mut q = sock.queue.lock();
            if is_home(&q, lp) {
                // The socket stays bound to the stopped loop, so its later
                // async calls fail with SOCK_OPERATION_ABORTED until
                // `sock_attach` gives it another engine.
                end_pending(&mut q, &sock, token, lp);
            }
        }
    }
}

// ---- the default engine ------------------------------------------------

/// The default engine, once started (a fork child's slot may hold its
/// parent's, which it never touches).
static DEFAULT: Mutex<Option<Arc<Engine>>> = Mutex::new(None);

/// The default engine if it is running in this process (never starts it).
fn default_engine_running() -> Option<Arc<Engine>> {
    DEFAULT
        .lock()
        .as_ref()
        .filter(|e| e.in_this_process())
        .cloned()
}

/// The engine async operations use when their socket was never attached:
/// started on first use, with one I/O thread, for the life of the process
/// (a fork child starts its own). Never call it with a socket's queue lock
/// or a table lock held: it may start a thread.
pub fn default_engine() -> Result<Arc<Engine>> {
    static HOOKS: std::sync::Once = std::sync::Once::new();
    HOOKS.call_once(|| {
        fork::register(
            fork::Rank::DefaultEngine,
            fork::Hooks {
                prepare: || std::mem::forget(DEFAULT.lock()),
                // SAFETY: `prepare` took the lock in this thread and forgot
                // its guard.
                parent: || unsafe { DEFAULT.force_unlock() },
                child: || fork::reset_mutex(&DEFAULT),
            },
        )
    });
    let mut slot = DEFAULT.lock();
    match slot.take() {
        Some(e) if e.in_this_process() => {
            *slot = Some(e.clone());
            return Ok(e);
        }
        // The parent's: its thread is not in this process and its
        // descriptors are shared with the parent; never touch it again.
        Some(e) => std::mem::forget(e),
        None => {}
    }
    let engine = Engine::new(engine::Kind::Default, 1, &HANDLER)?;
    *slot = Some(engine.clone());
    Ok(engine)
}

/// `sock_cleanup`: stops the default engine (its pending operations end
/// with SOCK_OPERATION_ABORTED, its thread is joined) and waits for the
/// name lookups under way. Its sockets bind to the next default engine.
pub fn cleanup() {
    let engine = DEFAULT.lock().take();
    match engine {
        Some(e) if e.in_this_process() => e.shut_down(),
        // A fork child never touches its parent's engine.
        Some(e) => std::mem::forget(e),
        None => {}
    }
    resolver::wait_idle();
}

// ---- submission --------------------------------------------------------

/// Runs a submission on the socket `h` names, under the handle table's
/// read lock (so it never takes a reference to the socket). When it needs
/// the default engine and that is not running, it did nothing: the engine
/// is started here, outside every lock, and the submission runs again.
pub fn submit(
    h: sock_handle,
    mut f: impl FnMut(&Arc<Socket>) -> (sock_status, usize),
) -> (sock_status, usize) {
    for _ in 0..3 {
        match table::with(h, &mut f) {
            None => return (SOCK_NOT_SOCKET, 0),
            Some((NEEDS_DEFAULT_ENGINE, _)) => {
                if let Err(e) = default_engine() {
                    return (report(e), 0);
                }
            }
            Some(outcome) => return outcome,
        }
    }
    // The default engine was started and stopped again twice meanwhile.
    (SOCK_OPERATION_ABORTED, 0)
}

/// `lp` is the socket's home loop.
fn is_home(q: &QueueState, lp: &Loop) -> bool {
    q.home.bound().is_some_and(|home| std::ptr::eq(&**home, lp))
}

/// Whether the socket may take a new operation: SOCK_NOT_SOCKET once
/// closed, SOCK_OPERATION_ABORTED when its engine was freed,
/// SOCK_OPERATION_NOT_SUPPORTED when it belongs to the parent of this fork
/// child. A socket not bound yet may.
fn check_open(q: &QueueState) -> Result<()> {
    match &q.home {
        Home::Closed => Err(Error::new(SOCK_NOT_SOCKET)),
        Home::Bound(lp) if !lp.in_this_process() => Err(Error::new(SOCK_OPERATION_NOT_SUPPORTED)),
        Home::Bound(lp) if lp.is_stopped() && !lp.rebinds() => {
            Err(Error::new(SOCK_OPERATION_ABORTED))
        }
        _ => Ok(()),
    }
}

/// The loop this socket's operations complete on, binding it to the
/// default engine on first use. Fails as `check_open`, and with
/// `NEEDS_DEFAULT_ENGINE` (nothing done) when the default engine is not
/// running — unless `may_start`, for a caller that can no longer undo what
/// it did (bytes went inline): then the engine starts here, under the
/// caller's locks, once per process at most.
fn home_loop(q: &mut QueueState, h: sock_handle, may_start: bool) -> Result<Arc<Loop>> {
    check_open(q)?;
    if let Home::Bound(lp) = &q.home {
        if !lp.is_stopped() {
            return Ok(lp.clone());
        }
        // The default engine was stopped (`sock_cleanup`): its loop ended
        // this socket's operations and closed its descriptors; bind anew.
        q.registered = false;
        q.timer_at = None;
        q.home = Home::Unbound;
    }
    let engine = match default_engine_running() {
        Some(engine) => engine,
        None if may_start => default_engine()?,
        None => return Err(Error::new(NEEDS_DEFAULT_ENGINE)),
    };
    let lp = engine.pick_loop();
    lp.join(h)?;
    q.home = Home::Bound(lp.clone());
    q.token = Some(h);
    Ok(lp)
}

/// The home loop, with the socket's descriptor registered with it (once).
fn registered_home(
    q: &mut QueueState,
    sock: &Socket,
    h: sock_handle,
    may_start: bool,
) -> Result<Arc<Loop>> {
    let lp = home_loop(q, h, may_start)?;
    if !q.registered {
        lp.register(sock.fd(), h)?;
        q.registered = true;
    }
    Ok(lp)
}

/// The deadline of an operation going pending now (the clock is read only
/// when a timeout is set, never on the inline fast path). It is fixed
/// here, with the timeout in force at submission.
fn deadline_after(timeout_ms: u32) -> Option<Instant> {
    (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms.into()))
}

/// Keeps the socket's one timer entry at or before the deadline of an
/// operation just queued (none: nothing to do).
fn arm_deadline(q: &mut QueueState, lp: &Loop, h: sock_handle, deadline: Option<Instant>) {
    let Some(at) = deadline else {
        return;
    };
    if q.timer_at.map_or(true, |t| at < t) {
        lp.set_timer(h, q.timer_at, Some(at));
        q.timer_at = Some(at);
    }
}

/// After any change to the queue: wakes the blocking sender whose turn it
/// is, and drops the timer entry once nothing is pending (a completed
/// operation leaves nothing behind).
fn settle(q: &mut QueueState, sock: &Socket, h: sock_handle, lp: &Loop) {
    sock.queue.wake_waiter(q);
    if q.timer_at.is_some() && !q.has_pending() {
        lp.set_timer(h, q.timer_at.take(), None);
    }
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
    // Bound before the operation started (see `bind_if_no_inline`).
    match home_loop(q, h, true) {
        Ok(lp) => {
            lp.push(Completion::new(h, callback, status, bytes));
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

/// A NULL callback is for queue engines only: on any other engine (and on
/// a socket not bound yet, which binds to the default engine) it is
/// SOCK_FAULT, before anything is done. On a queue engine a callback, if
/// given, is never called: the completion becomes an entry.
fn check_notify(q: &QueueState, callback: &Callback) -> Result<()> {
    if matches!(callback.notify, Notify::None) && !q.home.bound().is_some_and(|lp| lp.is_queue()) {
        return Err(Error::new(SOCK_FAULT));
    }
    Ok(())
}

/// Sends are refused at once after `sock_shutdown_async` was accepted.
fn check_send_open(q: &QueueState) -> Result<()> {
    if q.send_shut {
        return Err(Error::new(SOCK_SHUTDOWN));
    }
    Ok(())
}

/// With inline completion off, an operation reports through its callback
/// even when it finishes inside the call: bind the socket before it starts.
fn bind_if_no_inline(q: &mut QueueState, sock: &Socket, h: sock_handle) -> Result<()> {
    check_open(q)?;
    if !sock.options.inline_completion() {
        home_loop(q, h, false)?;
    }
    Ok(())
}

/// `sock_send_async` / `sock_sendv_async`: tries the send inline when the
/// queue is idle, and queues the rest. Returns the status and the bytes
/// sent inside the call.
pub fn send_async(sock: &Socket, h: sock_handle, req: SendRequest<'_>) -> (sock_status, usize) {
    if let Err(e) = io::check_can_send(sock, req.iov.len(), false) {
        return (report(e), 0);
    }
    let bound = io::first_send(sock, req.iov, None, req.os_flags, |q| {
        check_notify(q, &req.callback)?;
        check_send_open(q)?;
        // Checked again under the queue lock, where a connect ends: one
        // that failed since the check above leaves the socket unconnected.
        io::check_can_send(sock, req.iov.len(), false)?;
        bind_if_no_inline(q, sock, h)
    });
    match bound {
        Ok((q, first)) => after_first_try(q, sock, h, req, first),
        Err(e) => (report(e), 0),
    }
}

/// `sock_send_async`'s common case on one short code path: one buffer, no
/// flags, an open connected stream (bound to a usable engine, or not bound
/// yet) with an idle queue, inline completion on. `None` when that does not
/// hold, or when the default engine must be started first (nothing was
/// done: `send_async` decides); otherwise the call's outcome, as
/// `send_async` reports it.
#[inline]
pub fn send_async_one(
    sock: &Socket,
    h: sock_handle,
    one: &[libc::iovec; 1],
    func: BytesFn,
    user_data: UserData,
) -> Option<(sock_status, usize)> {
    if !sock.options.inline_completion() {
        return None;
    }
    let len = one[0].iov_len;
    let may_send = |q: &QueueState| match &q.home {
        Home::Unbound => true,
        Home::Bound(lp) => lp.in_this_process() && !lp.is_stopped(),
        Home::Closed => false,
    };
    let rest = move |q, first| send_async_rest(q, sock, h, one, func, user_data, first);
    io::first_send_one(sock, one, may_send, || Some((SOCK_OK, len)), rest)?
}

/// `send_async_one` when its `send` did not take every byte: the rest of
/// the send as `after_first_try` does it (out of line, as is rare).
#[cold]
#[inline(never)]
fn send_async_rest(
    q: QueueGuard<'_>,
    sock: &Socket,
    h: sock_handle,
    one: &[libc::iovec; 1],
    func: BytesFn,
    user_data: UserData,
    first: Result<usize>,
) -> Option<(sock_status, usize)> {
    let req = SendRequest {
        iov: one,
        total: one[0].iov_len,
        os_flags: sys::SEND_FLAGS_NONE,
        callback: Callback::new(Notify::Bytes(func), SOCK_OP_SEND, user_data.0, "send_async"),
    };
    match after_first_try(q, sock, h, req, Some(first)) {
        (NEEDS_DEFAULT_ENGINE, _) => None,
        outcome => Some(outcome),
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
    first: Option<Result<usize>>,
) -> (sock_status, usize) {
    let SendRequest {
        iov,
        total,
        os_flags,
        callback,
    } = req;
    let mut sent = 0;
    match first {
        None => {}
        // A datagram goes whole or not at all.
        Some(Ok(n)) if n == total || sock.kind == Kind::Dgram => {
            return (finished_inline(&mut q, sock, h, callback, SOCK_OK, n), n);
        }
        Some(Ok(n)) => {
            // Part went: send what else fits now, without waiting.
            let (result, n) = io::send_all(sock, iov, total, n, os_flags, io::RoomWait::Never);
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
    // Bytes that went cannot be taken back: with some gone, the default
    // engine starts here if it must, and a failure reports what went.
    let lp = match registered_home(&mut q, sock, h, sent > 0) {
        Ok(lp) => lp,
        Err(e) => return (report(e), sent),
    };
    let deadline = deadline_after(sock.options.send_timeout_ms());
    q.push_send(SendOp::new(total, sent, os_flags, deadline, callback), iov);
    arm_deadline(&mut q, &lp, h, deadline);
    (SOCK_IO_PENDING, sent)
}

/// What one receive got, as its callback reports it: the status (a cut
/// datagram is SOCK_MESSAGE_SIZE) after the sender's address, when asked
/// for, was written to the caller's buffer.
fn received(
    sock: &Socket,
    r: sys::Received,
    from: Option<AddressOut>,
    sender: sys::Sender,
) -> sock_status {
    if let Some(out) = from {
        let peer = sender.or_else(|| sock.os().peer_addr().ok());
        let text = peer.map(|a| address::format(&a)).unwrap_or_default();
        // SAFETY: the caller keeps `out.buf` valid for `out.cap` bytes
        // until the operation completes (checked non-NULL, and `cap` large
        // enough for any address of the family, at submission).
        let buf = unsafe { crate::ffi::out_buf(out.buf, out.cap) };
        if address::copy_out(&text, buf).is_err() {
            return SOCK_NO_BUFFER_SPACE;
        }
    }
    if r.truncated {
        SOCK_MESSAGE_SIZE
    } else {
        SOCK_OK
    }
}

/// `sock_recv_async` / `sock_recv_from_async`: receives inline when
/// nothing is queued and data (or end of stream) is there, else queues the
/// receive. `cap` >= 1 (checked at the boundary); `from`: where the
/// sender's address goes.
pub fn recv_async(
    sock: &Socket,
    h: sock_handle,
    buf: *mut u8,
    cap: usize,
    os_flags: libc::c_int,
    from: Option<AddressOut>,
    callback: Callback,
) -> (sock_status, usize) {
    let mut q = sock.queue.lock();
    if let Err(e) = check_notify(&q, &callback).and_then(|()| bind_if_no_inline(&mut q, sock, h)) {
        return (report(e), 0);
    }
    if !q.has_recvs() && !read_would_find_nothing(&q) {
        let mut sender = None;
        let got = sys::recv_once(
            sock,
            buf,
            cap,
            os_flags,
            from.is_some().then_some(&mut sender),
        );
        note_read(&mut q, sock, os_flags, &got, cap);
        match got {
            Ok(r) => {
                let n = r.len;
                let status = received(sock, r, from, sender);
                return (finished_inline(&mut q, sock, h, callback, status, n), n);
            }
            Err(e) if e.errno == libc::EAGAIN => {}
            Err(e) => return (report(e), 0),
        }
    }
    // Nothing was received: binding may ask `submit` to start the engine.
    let lp = match registered_home(&mut q, sock, h, false) {
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
        from,
        deadline,
        callback,
    });
    arm_deadline(&mut q, &lp, h, deadline);
    (SOCK_IO_PENDING, 0)
}

// ---- moving pending operations on (called by the home loop) -------------

/// A sink that queues completions of socket `h` on loop `lp`.
fn sink_to(lp: &Loop, h: sock_handle) -> impl FnMut(Callback, sock_status, usize) + '_ {
    move |callback, status, bytes| lp.push(Completion::new(h, callback, status, bytes))
}

/// Hands pending sends to the kernel — several small ones per `writev` —
/// until the kernel is full or the queue reaches a blocking sender.
fn flush_sends(sock: &Socket, h: sock_handle, lp: &Loop) {
    let mut q = sock.queue.lock();
    if q.turn_taken || !is_home(&q, lp) {
        // A blocking sender writes (it hands over to us when it is done),
        // or the socket has left this loop.
        return;
    }
    let datagram = sock.kind == Kind::Dgram;
    let mut sink = sink_to(lp, h);
    let mut retrying = false;
    loop {
        // A connect or a graceful shutdown at the front goes first.
        if let Some(op) = q.front_connect() {
            match connect_progress(sock, op) {
                Progress::Pending => break,
                Progress::Connected => q.complete_connect(SOCK_OK, &mut sink),
                Progress::Failed(status) => {
                    q.complete_connect(status, &mut sink);
                    q.drain_sends(status, &mut sink);
                    break;
                }
            }
            continue;
        }
        if q.shutdown_at_front() {
            let status = match sock.os().shutdown(std::net::Shutdown::Write) {
                Ok(()) => SOCK_OK,
                Err(e) => sock.fail(Error::from(e)).status,
            };
            q.complete_shutdown(status, &mut sink);
            continue;
        }
        let max_bytes = q.pacing.batch_bytes();
        let Some((iov, flags, to)) = q.front_batch(datagram, IOV_MAX, max_bytes) else {
            break;
        };
        let offered: usize = iov.iter().map(|seg| seg.iov_len).sum();
        match sys::send_once(sock, iov, to, flags) {
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
            Err(e) if e.errno == libc::EAGAIN => {
                if retrying {
                    q.pacing.retried(0);
                }
                break;
            }
            // A datagram the kernel refuses fails alone; the ones behind
            // it go on.
            Err(e) if datagram => {
                let status = sock.fail(e).status;
                q.complete_front_send(status, Some(0), &mut sink);
            }
            // A stream's error is the connection's: every send ends with it.
            Err(e) => {
                let status = sock.fail(e).status;
                q.drain_sends(status, &mut sink);
                break;
            }
        }
    }
    settle(&mut q, sock, h, lp);
}

/// A receive submitted now on the socket's own loop thread (in a callback)
/// may skip its inline `recv`: a read since the last event found the
/// buffer empty, and the loop, registered for the socket's events, will
/// see any byte that arrives once this callback returns. Elsewhere (another
/// thread, an unregistered socket) the receive always tries inline.
fn read_would_find_nothing(q: &QueueState) -> bool {
    q.reads.drained() && q.registered && matches!(&q.home, Home::Bound(lp) if lp.on_this_thread())
}

/// Records what a read showed about the receive buffer (`ReadState`): TCP
/// only, and plain reads only (a peek leaves the bytes, and urgent data is
/// apart from the stream).
fn note_read(
    q: &mut QueueState,
    sock: &Socket,
    os_flags: libc::c_int,
    got: &Result<sys::Received>,
    cap: usize,
) {
    let tcp = sock.kind == Kind::Stream && sock.family != Family::Unix;
    if !tcp || os_flags & (libc::MSG_PEEK | libc::MSG_OOB) != 0 {
        return;
    }
    match got {
        Ok(r) => q.reads.read(Some(r.len), cap),
        Err(e) if e.errno == libc::EAGAIN => q.reads.read(None, cap),
        Err(_) => {}
    }
}

/// Completes pending receives with whatever arrived, in order, after a
/// readable event (`read_lasting`: see `engine::Readiness`).
fn flush_recvs(sock: &Socket, h: sock_handle, lp: &Loop, read_lasting: bool) {
    let mut q = sock.queue.lock();
    if !is_home(&q, lp) {
        return;
    }
    q.reads.event(read_lasting);
    let mut sink = sink_to(lp, h);
    while let Some(op) = q.front_recv() {
        let (buf, cap, flags, from) = (
            op.buf.0.iov_base.cast::<u8>(),
            op.buf.0.iov_len,
            op.os_flags,
            op.from,
        );
        let mut sender = None;
        let got = sys::recv_once(sock, buf, cap, flags, from.is_some().then_some(&mut sender));
        note_read(&mut q, sock, flags, &got, cap);
        match got {
            Ok(r) => {
                if let Some(op) = q.pop_recv() {
                    let n = r.len;
                    sink(op.callback, received(sock, r, from, sender), n);
                }
                if q.reads.drained() {
                    // The next receive would find nothing: wait for the
                    // next event.
                    break;
                }
            }
            Err(e) if e.errno == libc::EAGAIN => break,
            Err(e) => {
                q.drain_recvs(e.status, &mut sink);
                break;
            }
        }
    }
    settle(&mut q, sock, h, lp);
}

/// Completes the socket's operations whose deadline passed with
/// `SOCK_TIMED_OUT`; those queued behind them go on, and the socket's timer
/// entry moves to the earliest deadline left.
fn expire(sock: &Socket, h: sock_handle, lp: &Loop, now: Instant) {
    let mut q = sock.queue.lock();
    if !is_home(&q, lp) {
        return;
    }
    let (next, connect_expired) = q.expire(now, SOCK_TIMED_OUT, &mut sink_to(lp, h));
    if connect_expired {
        // Give the attempt up in the kernel too.
        sock.disconnect();
    }
    lp.set_timer(h, q.timer_at, next);
    q.timer_at = next;
    settle(&mut q, sock, h, lp);
    if !q.turn_taken && q.send_at_front() {
        // The expired front may have left a send that can go now.
        lp.kick(h);
    }
}

// ---- ending operations: cancel, close, engine free ----------------------

/// `sock_cancel_sends`: completes every pending send with
/// `SOCK_OPERATION_ABORTED` and its partial count.
pub fn cancel_sends(sock: &Socket, h: sock_handle) {
    let mut q = sock.queue.lock();
    if forget_parents(&mut q) {
        return;
    }
    if let Some(lp) = q.home.bound().cloned() {
        q.drain_sends(SOCK_OPERATION_ABORTED, &mut sink_to(&lp, h));
        settle(&mut q, sock, h, &lp);
    }
}

/// In a fork child, operations pending in the parent's loop are the
/// parent's: the child forgets them (their callbacks run in the parent)
/// and leaves the parent's epoll set, eventfd and timers alone.
fn forget_parents(q: &mut QueueState) -> bool {
    if q.home.bound().is_some_and(|lp| !lp.in_this_process()) {
        q.drain_sends(SOCK_OPERATION_ABORTED, &mut |_, _, _| {});
        q.drain_recvs(SOCK_OPERATION_ABORTED, &mut |_, _, _| {});
        q.home = Home::Unbound;
        q.token = None;
        q.registered = false;
        q.timer_at = None;
        return true;
    }
    false
}

/// Ends every pending operation of the socket with
/// `SOCK_OPERATION_ABORTED` (callbacks on its home `lp`), takes the socket
/// out of `lp`'s poller and drops its timer entry. Once the queue lock is
/// released, no operation of the socket touches its buffer again. Returns
/// whether a send ended with bytes that never reached the kernel.
fn end_pending(q: &mut QueueState, sock: &Socket, h: sock_handle, lp: &Loop) -> bool {
    let mut sink = sink_to(lp, h);
    if q.drain_connect(SOCK_OPERATION_ABORTED, &mut sink) {
        // Give the attempt up in the kernel too: the socket may connect
        // again later.
        sock.disconnect();
    }
    let unsent = q.drain_sends(SOCK_OPERATION_ABORTED, &mut sink);
    q.drain_recvs(SOCK_OPERATION_ABORTED, &mut sink);
    q.drain_accepts(SOCK_OPERATION_ABORTED, &mut sink);
    if std::mem::take(&mut q.registered) {
        lp.deregister(sock.fd());
    }
    settle(q, sock, h, lp);
    unsent
}

/// Close, before the handle leaves the table: marks the queue closed (no
/// submission queues anything from now on), ends every pending operation
/// with `SOCK_OPERATION_ABORTED` and takes the socket out of its loop.
/// When that discarded bytes of a stream that never reached the kernel,
/// `Socket::close` (once the handle is out of the table, so no call racing
/// the close sees it disconnected) resets the connection, so the peer
/// cannot take the truncated stream for a complete one.
pub fn close(sock: &Socket, h: sock_handle) {
    let mut q = sock.queue.lock();
    forget_parents(&mut q);
    if let Home::Bound(lp) = std::mem::replace(&mut q.home, Home::Closed) {
        if end_pending(&mut q, sock, h, &lp) && sock.kind == Kind::Stream {
            sock.reset_when_closed();
        }
        lp.leave(h, q.timer_at.take());
        q.token = None;
    }
}

/// `sock_attach`: binds a socket with nothing pending to `lp`.
pub fn attach(sock: &Socket, h: sock_handle, lp: Arc<Loop>) -> Result<()> {
    let mut q = sock.queue.lock();
    if matches!(q.home, Home::Closed) {
        return Err(Error::new(SOCK_NOT_SOCKET));
    }
    if !lp.in_this_process() {
        return Err(Error::new(SOCK_OPERATION_NOT_SUPPORTED));
    }
    forget_parents(&mut q);
    if q.has_pending() || lp.is_stopped() {
        return Err(Error::new(SOCK_INVALID_ARGUMENT));
    }
    if let Home::Bound(old) = std::mem::take(&mut q.home) {
        if std::mem::take(&mut q.registered) {
            old.deregister(sock.fd());
        }
        old.leave(h, q.timer_at.take());
    }
    lp.join(h)?;
    q.home = Home::Bound(lp);
    q.token = Some(h);
    Ok(())
}

// ---- connect ---------------------------------------------------------------

/// How a pending connect stands.
enum Progress {
    Pending,
    Connected,
    /// Every address failed; the last one's status.
    Failed(sock_status),
}

/// Starts connecting to the next address of `op`, until one connects or
/// is under way; the socket's state follows.
fn connect_next(sock: &Socket, op: &mut ConnectOp) -> Progress {
    while let Some(addr) = op.addrs.pop_front() {
        match sock.os().connect(&addr) {
            Ok(()) => {
                sock.set_state(State::Connected);
                return Progress::Connected;
            }
            Err(e) => {
                let err = Error::from(e);
                if err.errno == libc::EINPROGRESS {
                    sock.set_state(State::Connecting);
                    return Progress::Pending;
                }
                op.last_error = Some(err.status);
            }
        }
    }
    sock.set_state(State::Fresh);
    Progress::Failed(op.last_error.unwrap_or(SOCK_HOST_NOT_FOUND))
}

/// Where the pending connect at the front got to: still under way (or the
/// name still being looked up), connected, or failed on this address —
/// then the next one is tried.
fn connect_progress(sock: &Socket, op: &mut ConnectOp) -> Progress {
    if op.lookup.is_some() {
        return Progress::Pending;
    }
    let failed = match sock.os().take_error() {
        Ok(Some(e)) => Error::from(e),
        Ok(None) => match sock.os().peer_addr() {
            Ok(_) => {
                sock.set_state(State::Connected);
                return Progress::Connected;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return Progress::Pending,
            Err(e) => Error::from(e),
        },
        Err(e) => Error::from(e),
    };
    op.last_error = Some(failed.status);
    connect_next(sock, op)
}

/// Numbers name lookups, so an answer finds its own connect.
static NEXT_LOOKUP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `sock_connect_async`: connects to `target`'s addresses in order. A
/// numeric address is tried inside the call (a Unix socket may connect at
/// once: SOCK_OK); a host name is looked up on a thread of its own, never
/// the caller's or an engine's. Sends submitted meanwhile queue behind it.
pub fn connect_async(
    sock: &Socket,
    h: sock_handle,
    target: &Target,
    callback: Callback,
) -> (sock_status, usize) {
    let mut q = sock.queue.lock();
    if let Err(e) = check_open(&q).and_then(|()| check_notify(&q, &callback)) {
        return (report(e), 0);
    }
    match sock.state() {
        State::Connected if sock.kind == Kind::Stream => return (SOCK_IS_CONNECTED, 0),
        State::Connecting => return (SOCK_ALREADY_IN_PROGRESS, 0),
        State::Listening => return (SOCK_INVALID_ARGUMENT, 0),
        _ => {}
    }
    // Bound before anything starts: binding may ask `submit` to start the
    // default engine and run this again.
    let lp = match registered_home(&mut q, sock, h, false) {
        Ok(lp) => lp,
        Err(e) => return (report(e), 0),
    };
    let mut op = ConnectOp {
        addrs: Default::default(),
        lookup: None,
        last_error: None,
        deadline: deadline_after(sock.options.send_timeout_ms()),
        callback,
    };
    match target {
        Target::Addrs(addrs) => {
            op.addrs = addrs.iter().cloned().collect();
            match connect_next(sock, &mut op) {
                Progress::Connected => {
                    return (finished_inline(&mut q, sock, h, callback, SOCK_OK, 0), 0)
                }
                Progress::Failed(status) => return (status, 0),
                Progress::Pending => {}
            }
        }
        Target::Lookup(host, port) => {
            let id = NEXT_LOOKUP.fetch_add(1, Ordering::Relaxed);
            let (host, port, family, kind) = (host.clone(), *port, sock.family, sock.kind);
            let spawned = resolver::spawn(move || {
                let answer = address::resolve_all(&host, port, family, kind);
                resolved(h, id, answer);
            });
            if let Err(e) = spawned {
                return (report(e), 0);
            }
            op.lookup = Some(id);
            sock.set_state(State::Connecting);
        }
    }
    let deadline = op.deadline;
    q.push_connect(op);
    arm_deadline(&mut q, &lp, h, deadline);
    (SOCK_IO_PENDING, 0)
}

/// A name lookup's answer for the connect it was made for (if that is
/// still pending: close, a deadline or engine free may have ended it).
fn resolved(h: sock_handle, id: u64, answer: Result<Vec<socket2::SockAddr>>) {
    let Some(sock) = table::lookup(h) else {
        return;
    };
    let mut q = sock.queue.lock();
    let Some(lp) = q.home.bound().cloned() else {
        return;
    };
    let Some(op) = q.front_connect().filter(|op| op.lookup == Some(id)) else {
        return;
    };
    op.lookup = None;
    let progress = match answer {
        Ok(addrs) => {
            op.addrs = addrs.into();
            connect_next(&sock, op)
        }
        Err(e) => {
            sock.set_state(State::Fresh);
            Progress::Failed(e.status)
        }
    };
    let mut sink = sink_to(&lp, h);
    match progress {
        Progress::Pending => {}
        Progress::Connected => {
            q.complete_connect(SOCK_OK, &mut sink);
            // Sends queued behind the connect may go now.
            lp.kick(h);
        }
        Progress::Failed(status) => {
            q.complete_connect(status, &mut sink);
            q.drain_sends(status, &mut sink);
        }
    }
    settle(&mut q, &sock, h, &lp);
}

/// The threads that look host names up for `sock_connect_async`: one per
/// lookup, counted so that the library knows when none is left.
pub(crate) mod resolver {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::status::Result;

    static RUNNING: AtomicUsize = AtomicUsize::new(0);

    /// Runs `lookup` on a new thread.
    pub fn spawn(lookup: impl FnOnce() + Send + 'static) -> Result<()> {
        RUNNING.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new()
            .name("sock-resolver".into())
            .spawn(move || {
                lookup();
                RUNNING.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            return Err(e.into());
        }
        Ok(())
    }

    /// Waits until no lookup is under way.
    pub fn wait_idle() {
        while RUNNING.load(Ordering::Acquire) > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

// ---- graceful end ----------------------------------------------------------

/// `sock_shutdown_async`: shuts the sending side once every pending send
/// went (at once when none is pending). Sends submitted after it fail
/// with SOCK_SHUTDOWN at once.
pub fn shutdown_async(sock: &Socket, h: sock_handle, callback: Callback) -> (sock_status, usize) {
    let mut q = sock.queue.lock();
    if let Err(e) = check_open(&q)
        .and_then(|()| check_notify(&q, &callback))
        .and_then(|()| bind_if_no_inline(&mut q, sock, h))
    {
        return (report(e), 0);
    }
    if !matches!(sock.state(), State::Connected | State::Connecting) {
        return (SOCK_NOT_CONNECTED, 0);
    }
    if q.is_idle() {
        let status = match sock.os().shutdown(std::net::Shutdown::Write) {
            Ok(()) => SOCK_OK,
            Err(e) => return (report(sock.fail(Error::from(e))), 0),
        };
        q.send_shut = true;
        return (finished_inline(&mut q, sock, h, callback, status, 0), 0);
    }
    if let Err(e) = registered_home(&mut q, sock, h, false) {
        return (report(e), 0);
    }
    q.push_shutdown(ShutdownOp { callback });
    (SOCK_IO_PENDING, 0)
}

// ---- accept ----------------------------------------------------------------

/// The work an accepted connection does on the loop's thread before its
/// callback: it enters the handle table (never under a queue lock) and is
/// bound to `lp`, the listener's loop.
fn adopt(accepted: Socket, lp: Option<Arc<Loop>>) -> (sock_status, sock_handle) {
    let h = match table::insert(accepted) {
        Ok(h) => h,
        Err(e) => return (report(e), crate::handle::SOCK_INVALID_HANDLE),
    };
    if let (Some(lp), Some(sock)) = (lp, table::lookup(h)) {
        let mut q = sock.queue.lock();
        if matches!(q.home, Home::Unbound) && lp.join(h).is_ok() {
            q.home = Home::Bound(lp);
            q.token = Some(h);
        }
    }
    (SOCK_OK, h)
}

/// `sock_accept_async`: SOCK_OK with the new handle when a connection was
/// waiting and no accept is pending, else queued (accepts complete in
/// submission order). Call it with no lock held: the accepted socket
/// enters the handle table.
pub fn accept_async(
    sock: &Socket,
    h: sock_handle,
    callback: Callback,
) -> (sock_status, sock_handle) {
    let mut q = sock.queue.lock();
    if let Err(e) = check_open(&q)
        .and_then(|()| check_notify(&q, &callback))
        .and_then(|()| bind_if_no_inline(&mut q, sock, h))
    {
        return (report(e), 0);
    }
    if sock.kind != Kind::Stream || sock.state() != State::Listening {
        return (SOCK_INVALID_ARGUMENT, 0);
    }
    if !q.has_accepts() {
        match sock.accept_now() {
            Ok(accepted) => {
                let home = q.home.bound().cloned();
                if sock.options.inline_completion() {
                    drop(q);
                    return adopt(accepted, home);
                }
                let Some(lp) = home else {
                    // Bound by `bind_if_no_inline`.
                    return (SOCK_OPERATION_ABORTED, 0);
                };
                let at = lp.clone();
                lp.push(Completion {
                    deferred: Some(Box::new(move || adopt(accepted, Some(at)))),
                    ..Completion::new(h, callback, SOCK_OK, 0)
                });
                return (SOCK_IO_PENDING, 0);
            }
            Err(e) if e.errno == libc::EAGAIN => {}
            Err(e) => return (report(e), 0),
        }
    }
    let lp = match registered_home(&mut q, sock, h, false) {
        Ok(lp) => lp,
        Err(e) => return (report(e), 0),
    };
    let deadline = deadline_after(sock.options.recv_timeout_ms());
    q.push_accept(AcceptOp { deadline, callback });
    arm_deadline(&mut q, &lp, h, deadline);
    (SOCK_IO_PENDING, 0)
}

/// Completes pending accepts with the connections that arrived, in order.
/// Out of descriptors, the front accept completes with
/// SOCK_TOO_MANY_OPEN_SOCKETS and the flush stops: the listener is
/// edge-triggered, so the loop looks again only when a new connection
/// arrives, and never spins on one it cannot serve.
fn flush_accepts(sock: &Socket, h: sock_handle, lp: &Loop) {
    let mut q = sock.queue.lock();
    if !is_home(&q, lp) || !q.has_accepts() {
        return;
    }
    let home = q.home.bound().cloned();
    let mut sink = sink_to(lp, h);
    while q.has_accepts() {
        match sock.accept_now() {
            Ok(accepted) => {
                if let Some(op) = q.pop_accept() {
                    let at = home.clone();
                    lp.push(Completion {
                        deferred: Some(Box::new(move || adopt(accepted, at))),
                        ..Completion::new(h, op.callback, SOCK_OK, 0)
                    });
                }
            }
            Err(e) if e.errno == libc::EAGAIN => break,
            Err(e) => {
                if let Some(op) = q.pop_accept() {
                    sink(op.callback, e.status, 0);
                }
                break;
            }
        }
    }
    settle(&mut q, sock, h, lp);
}

// ---- datagrams -------------------------------------------------------------

/// `sock_send_to_async` on a datagram socket: one datagram to `to`, whole
/// or not at all, sent inside the call when nothing is queued, else queued
/// with its destination.
pub fn send_to_async(
    sock: &Socket,
    h: sock_handle,
    req: SendRequest<'_>,
    to: &socket2::SockAddr,
) -> (sock_status, usize) {
    if let Err(e) = io::check_can_send(sock, req.iov.len(), true) {
        return (report(e), 0);
    }
    let bound = io::first_send(sock, req.iov, Some(to), req.os_flags, |q| {
        check_notify(q, &req.callback)?;
        check_send_open(q)?;
        bind_if_no_inline(q, sock, h)
    });
    let (mut q, first) = match bound {
        Ok(x) => x,
        Err(e) => return (report(e), 0),
    };
    match first {
        Some(Ok(n)) => {
            return (
                finished_inline(&mut q, sock, h, req.callback, SOCK_OK, n),
                n,
            )
        }
        Some(Err(e)) if e.errno != libc::EAGAIN => return (report(sock.fail(e)), 0),
        _ => {}
    }
    let lp = match registered_home(&mut q, sock, h, false) {
        Ok(lp) => lp,
        Err(e) => return (report(e), 0),
    };
    let deadline = deadline_after(sock.options.send_timeout_ms());
    let mut op = SendOp::new(req.total, 0, req.os_flags, deadline, req.callback);
    op.to = Some(Box::new(to.clone()));
    q.push_send(op, req.iov);
    arm_deadline(&mut q, &lp, h, deadline);
    (SOCK_IO_PENDING, 0)
}
