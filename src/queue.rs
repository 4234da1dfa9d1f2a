//! A socket's operation queues: the one place that decides whose bytes go
//! next, and which operations are still pending.
//!
//! Senders of every kind share one FIFO of entries: a blocking sender
//! waiting for its turn, or a pending async send. Whoever writes to the
//! kernel — a blocking sender holding the *turn* (`turn_taken`), an async send
//! completing inline, or the engine flushing pending sends — does so in
//! that order, so the bytes of two operations never interleave. The
//! segments of pending async sends live in one ring (`segs`), so the engine
//! can hand several small operations to one `writev`; each pending
//! operation itself is a small fixed record in the entry ring. Pending
//! async receives have a FIFO of their own.
//!
//! This module holds the data structures and their bookkeeping only; the
//! system calls are made by `io` (blocking path) and `asyncio` (async path).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
#[cfg(loom)]
use std::sync::PoisonError;
use std::time::{Duration, Instant};

// The queue's locks are parking_lot's: no poisoning to check, and an
// inlined uncontended path (with the handle table's `RwLock`, also
// parking_lot's, a 64-byte `sock_send` runs 32 fewer instructions than with
// std's locks). Under `--cfg loom` they come from loom, so the loom model
// (tests/loom_queue.rs) explores this very code's interleavings.
#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
use parking_lot::{Condvar, Mutex, MutexGuard};

use socket2::SockAddr;

use crate::completion::Callback;
use crate::engine::Loop;
use crate::pacing::FlushPacing;
use crate::status::{
    sock_status, Error, Result, SOCK_OK, SOCK_OPERATION_ABORTED, SOCK_WOULD_BLOCK,
};
use crate::wait::Deadline;

/// A segment of a pending send (a copy of the caller's `sock_buf`; the
/// bytes stay the caller's).
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Seg(pub libc::iovec);
// SAFETY: a Seg points into a caller's buffer that the contract keeps valid
// until the operation completes; only the thread holding the queue lock
// reads through it.
unsafe impl Send for Seg {}

/// A pending async send.
pub struct SendOp {
    pub total: usize,
    pub sent: usize,
    /// Segments of this operation still in `segs`.
    segs_left: usize,
    pub os_flags: libc::c_int,
    /// The destination of a datagram sent with `sock_send_to_async`.
    pub to: Option<Box<SockAddr>>,
    pub deadline: Option<Instant>,
    pub callback: Callback,
}

impl SendOp {
    /// A send of `total` bytes of which `sent` already went inline.
    pub fn new(
        total: usize,
        sent: usize,
        os_flags: libc::c_int,
        deadline: Option<Instant>,
        callback: Callback,
    ) -> SendOp {
        SendOp {
            total,
            sent,
            segs_left: 0,
            os_flags,
            to: None,
            deadline,
            callback,
        }
    }
}

/// Where a pending `sock_recv_from_async` writes the sender's address
/// text: the caller's buffer, valid until the callback.
#[derive(Clone, Copy)]
pub struct AddressOut {
    pub buf: *mut std::ffi::c_char,
    pub cap: usize,
}
// SAFETY: the buffer is the caller's, kept valid until the operation
// completes; only the thread holding the queue lock writes through it.
unsafe impl Send for AddressOut {}

/// A pending async receive into a caller's buffer.
pub struct RecvOp {
    pub buf: Seg,
    pub os_flags: libc::c_int,
    /// `sock_recv_from_async`: where the sender's address goes.
    pub from: Option<AddressOut>,
    pub deadline: Option<Instant>,
    pub callback: Callback,
}

/// A pending connect: sends submitted meanwhile queue behind it.
pub struct ConnectOp {
    /// Addresses still to try, in order (none yet while the name is being
    /// looked up).
    pub addrs: VecDeque<SockAddr>,
    /// The name lookup under way (its number, to match its answer).
    pub lookup: Option<u64>,
    /// The last attempt's error, reported when every address failed.
    pub last_error: Option<sock_status>,
    pub deadline: Option<Instant>,
    pub callback: Callback,
}

/// A pending `sock_shutdown_async`: the sending side is shut once every
/// send before it went.
pub struct ShutdownOp {
    pub callback: Callback,
}

/// A pending `sock_accept_async`.
pub struct AcceptOp {
    pub deadline: Option<Instant>,
    pub callback: Callback,
}

enum Entry {
    /// A blocking sender waiting for its turn (its ticket).
    Waiter(u64),
    Send(SendOp),
    Connect(Box<ConnectOp>),
    Shutdown(ShutdownOp),
}

impl Entry {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Entry::Send(op) => op.deadline,
            Entry::Connect(op) => op.deadline,
            Entry::Waiter(_) | Entry::Shutdown(_) => None,
        }
    }
}

/// A socket's place among the engines.
#[derive(Default)]
pub enum Home {
    /// No async operation yet: bound to the default engine on first use,
    /// or to another by `sock_attach`.
    #[default]
    Unbound,
    /// The engine loop its operations complete on (possibly stopped: its
    /// engine was freed).
    Bound(Arc<Loop>),
    /// `sock_close` ended its operations: nothing new may queue.
    Closed,
}

impl Home {
    /// The bound loop, if any.
    pub fn bound(&self) -> Option<&Arc<Loop>> {
        match self {
            Home::Bound(lp) => Some(lp),
            _ => None,
        }
    }
}

/// Everything behind a socket's queue lock.
#[derive(Default)]
pub struct QueueState {
    /// A blocking sender holds the turn and writes outside the lock.
    pub turn_taken: bool,
    entries: VecDeque<Entry>,
    /// How many of `entries` are pending operations (the rest are waiters).
    entry_ops: usize,
    segs: VecDeque<Seg>,
    pending_send_bytes: usize,
    next_ticket: u64,
    recvs: VecDeque<RecvOp>,
    accepts: VecDeque<AcceptOp>,
    /// `sock_shutdown_async` was accepted: later sends fail at once.
    pub send_shut: bool,
    /// Where this socket's async operations complete (every completion
    /// goes to the bound loop), or that `sock_close` ended them.
    pub home: Home,
    /// The handle this socket is known by in `home` (its loop token).
    pub token: Option<u64>,
    /// The descriptor is registered with `home`'s poller.
    pub registered: bool,
    /// The one timer entry this socket has in `home` (its earliest
    /// deadline, or later than that after expiry moved it on).
    pub timer_at: Option<Instant>,
    /// How the engine's flush adapts to what the kernel takes.
    pub pacing: FlushPacing,
    /// What reads have shown about the receive buffer since the last event.
    pub reads: ReadState,
}

/// What a TCP socket's reads have shown about its receive buffer since
/// its last readable event, so that a receive submitted from its loop
/// right after one that emptied the buffer waits for the next event
/// instead of making a `recv` that would only say EAGAIN (libuv reads once
/// per readiness for the same reason). Edge-triggered readiness makes
/// this safe: any byte that arrives after the buffer was seen empty brings
/// a new event, which clears `drained`.
#[derive(Default, Debug)]
pub struct ReadState {
    /// A read since the last event found the buffer empty: EAGAIN, or
    /// fewer bytes than it asked for (a TCP read stops short only when the
    /// buffer runs out, at end of stream, or at an urgent mark).
    drained: bool,
    /// An event showed end of stream, an error or urgent data, after which
    /// a short read proves nothing: never cleared.
    lasting: bool,
}

impl ReadState {
    /// A readable event arrived (`read_lasting`: see
    /// `engine::Readiness`).
    pub fn event(&mut self, read_lasting: bool) {
        self.drained = false;
        self.lasting |= read_lasting;
    }

    /// A plain read (no peek, no urgent data) of `cap` bytes got `got`
    /// bytes, or `None`: EAGAIN.
    pub fn read(&mut self, got: Option<usize>, cap: usize) {
        self.drained = match got {
            None => true,
            Some(n) => n > 0 && n < cap && !self.lasting,
        };
    }

    /// A read now would find the buffer empty, as far as reads showed.
    pub fn drained(&self) -> bool {
        self.drained
    }
}

/// The queue lock, held.
pub type QueueGuard<'a> = MutexGuard<'a, QueueState>;

/// Where completions go while the queue lock is held.
pub type CompletionSink<'a> = &'a mut dyn FnMut(Callback, sock_status, usize);

impl QueueState {
    /// No sender writes and nothing waits: a new operation may go inline.
    pub fn is_idle(&self) -> bool {
        !self.turn_taken && self.entries.is_empty()
    }

    pub fn pending_send_bytes(&self) -> usize {
        self.pending_send_bytes
    }

    /// Any operation is pending: a send, connect, shutdown, receive or accept.
    pub fn has_pending(&self) -> bool {
        self.entry_ops > 0 || !self.recvs.is_empty() || !self.accepts.is_empty()
    }

    /// The front entry is a pending send (the engine has work).
    pub fn send_at_front(&self) -> bool {
        matches!(self.entries.front(), Some(Entry::Send(_)))
    }

    /// A blocking sender writes (holds the turn) or waits for its turn.
    pub fn blocking_send_in_progress(&self) -> bool {
        self.turn_taken || self.entries.iter().any(|e| matches!(e, Entry::Waiter(_)))
    }

    /// The front entry is a blocking sender waiting for its turn.
    pub fn waiter_at_front(&self) -> bool {
        matches!(self.entries.front(), Some(Entry::Waiter(_)))
    }

    /// Queues an async send whose first `op.sent` bytes already went.
    pub fn push_send(&mut self, mut op: SendOp, iov: &[libc::iovec]) {
        let mut skip = op.sent;
        let before = self.segs.len();
        for seg in iov {
            // Skip what already went, and empty segments.
            if skip >= seg.iov_len {
                skip -= seg.iov_len;
                continue;
            }
            // SAFETY: skip < iov_len here (or both are 0), so the advanced
            // pointer stays inside the caller's segment.
            let base = unsafe { seg.iov_base.cast::<u8>().add(skip) };
            self.segs.push_back(Seg(libc::iovec {
                iov_base: base.cast(),
                iov_len: seg.iov_len - skip,
            }));
            skip = 0;
        }
        op.segs_left = self.segs.len() - before;
        self.pending_send_bytes += op.total - op.sent;
        self.entry_ops += 1;
        self.entries.push_back(Entry::Send(op));
    }

    /// The segments of the pending sends at the front that one system call
    /// may carry: consecutive operations with the same flags (streams), or
    /// the first operation alone with its destination (datagrams), at most
    /// `max_segs` segments, and no further operation once `max_bytes` are
    /// in. `None` when no send is at the front.
    pub fn front_batch(
        &mut self,
        datagram: bool,
        max_segs: usize,
        max_bytes: usize,
    ) -> Option<(&[libc::iovec], libc::c_int, Option<&SockAddr>)> {
        let Some(Entry::Send(first)) = self.entries.front() else {
            return None;
        };
        let flags = first.os_flags;
        let (mut count, mut bytes) = (0, 0);
        for entry in &self.entries {
            match entry {
                Entry::Send(op)
                    if op.os_flags == flags && count < max_segs && bytes < max_bytes =>
                {
                    count += op.segs_left;
                    bytes += op.total - op.sent;
                    if datagram {
                        break;
                    }
                }
                _ => break,
            }
        }
        let count = count.min(max_segs);
        let to = first.to.as_deref().map(|a| a as *const SockAddr);
        let segs = &self.segs.make_contiguous()[..count];
        // SAFETY: Seg is repr(transparent) over iovec, so `count` Segs are
        // `count` iovecs.
        let iov = unsafe { std::slice::from_raw_parts(segs.as_ptr().cast::<libc::iovec>(), count) };
        // SAFETY: `to` points into the front operation's box, which stays
        // in the queue (unmoved: boxed) while `self` is borrowed.
        Some((iov, flags, to.map(|a| unsafe { &*a })))
    }

    /// Accounts `n` bytes the kernel took from the front sends, completing
    /// each operation that is now fully sent (and empty ones) in order.
    pub fn consume(&mut self, mut n: usize, sink: CompletionSink) {
        self.pending_send_bytes -= n;
        while let Some(Entry::Send(op)) = self.entries.front_mut() {
            while op.segs_left > 0 {
                let Some(seg) = self.segs.front_mut() else {
                    break;
                };
                let take = n.min(seg.0.iov_len);
                // SAFETY: take <= iov_len, so the pointer stays inside (or
                // one past) the caller's segment.
                seg.0.iov_base = unsafe { seg.0.iov_base.cast::<u8>().add(take) }.cast();
                seg.0.iov_len -= take;
                n -= take;
                op.sent += take;
                if seg.0.iov_len > 0 {
                    break;
                }
                self.segs.pop_front();
                op.segs_left -= 1;
            }
            if op.segs_left > 0 {
                break;
            }
            if let Some(Entry::Send(op)) = self.entries.pop_front() {
                self.entry_ops -= 1;
                sink(op.callback, SOCK_OK, op.sent);
            }
        }
        debug_assert_eq!(n, 0, "the kernel took more than was queued");
    }

    /// Completes the front datagram send: the kernel took it whole (`n` bytes).
    pub fn consume_datagram(&mut self, n: usize, sink: CompletionSink) {
        self.complete_front_send(SOCK_OK, Some(n), sink);
    }

    /// Completes the front send alone with `status` (a datagram the kernel
    /// refused: the ones behind it go on), with `bytes` or its partial count.
    pub fn complete_front_send(
        &mut self,
        status: sock_status,
        bytes: Option<usize>,
        sink: CompletionSink,
    ) {
        if let Some(Entry::Send(_)) = self.entries.front() {
            if let Some(Entry::Send(op)) = self.entries.pop_front() {
                self.segs.drain(..op.segs_left);
                self.pending_send_bytes -= op.total - op.sent;
                self.entry_ops -= 1;
                sink(op.callback, status, bytes.unwrap_or(op.sent));
            }
        }
    }

    /// Completes every pending send and shutdown with `status` (sends with
    /// their partial counts), in submission order; a pending connect and
    /// blocking waiters stay queued. Returns whether a send ended with
    /// bytes that never reached the kernel.
    pub fn drain_sends(&mut self, status: sock_status, sink: CompletionSink) -> bool {
        let mut unsent = false;
        let mut ended = 0;
        let mut shutdown_ended = false;
        self.entries.retain(|entry| match entry {
            Entry::Send(op) => {
                unsent |= op.sent < op.total;
                sink(op.callback, status, op.sent);
                ended += 1;
                false
            }
            Entry::Shutdown(op) => {
                sink(op.callback, status, 0);
                ended += 1;
                // It never shut anything: sending may go on.
                shutdown_ended = true;
                false
            }
            Entry::Waiter(_) | Entry::Connect(_) => true,
        });
        self.entry_ops -= ended;
        if shutdown_ended {
            self.send_shut = false;
        }
        self.segs.clear();
        self.pending_send_bytes = 0;
        unsent
    }

    /// Ends a pending connect with `status`; sends behind it stay.
    /// Returns whether there was one.
    pub fn drain_connect(&mut self, status: sock_status, sink: CompletionSink) -> bool {
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| matches!(e, Entry::Connect(_)))
        {
            if let Some(Entry::Connect(op)) = self.entries.remove(i) {
                self.entry_ops -= 1;
                sink(op.callback, status, 0);
                return true;
            }
        }
        false
    }

    /// Completes every pending accept with `status` (no handle).
    pub fn drain_accepts(&mut self, status: sock_status, sink: CompletionSink) {
        for op in self.accepts.drain(..) {
            sink(op.callback, status, 0);
        }
    }

    /// Completes every pending receive with `status` and no bytes.
    pub fn drain_recvs(&mut self, status: sock_status, sink: CompletionSink) {
        for op in self.recvs.drain(..) {
            sink(op.callback, status, 0);
        }
    }

    /// Completes the operations whose deadline is at or before `now` with
    /// `timed_out`; the rest go on, except that a connect that timed out
    /// takes the sends queued behind it with it. Returns the earliest
    /// deadline left and whether a connect timed out.
    pub fn expire(
        &mut self,
        now: Instant,
        timed_out: sock_status,
        sink: CompletionSink,
    ) -> (Option<Instant>, bool) {
        let mut seg_index = 0;
        let mut i = 0;
        let mut connect_expired = false;
        while i < self.entries.len() {
            let expired = self.entries[i].deadline().is_some_and(|d| d <= now);
            if !expired {
                if let Entry::Send(op) = &self.entries[i] {
                    seg_index += op.segs_left;
                }
                i += 1;
                continue;
            }
            match self.entries.remove(i) {
                Some(Entry::Send(op)) => {
                    self.segs.drain(seg_index..seg_index + op.segs_left);
                    self.pending_send_bytes -= op.total - op.sent;
                    self.entry_ops -= 1;
                    sink(op.callback, timed_out, op.sent);
                }
                Some(Entry::Connect(op)) => {
                    self.entry_ops -= 1;
                    sink(op.callback, timed_out, 0);
                    connect_expired = true;
                }
                _ => {}
            }
        }
        if connect_expired {
            self.drain_sends(timed_out, sink);
        }
        self.recvs.retain(|op| {
            let expired = op.deadline.is_some_and(|d| d <= now);
            if expired {
                sink(op.callback, timed_out, 0);
            }
            !expired
        });
        self.accepts.retain(|op| {
            let expired = op.deadline.is_some_and(|d| d <= now);
            if expired {
                sink(op.callback, timed_out, 0);
            }
            !expired
        });
        let next = self
            .entries
            .iter()
            .filter_map(Entry::deadline)
            .chain(self.recvs.iter().filter_map(|op| op.deadline))
            .chain(self.accepts.iter().filter_map(|op| op.deadline))
            .min();
        (next, connect_expired)
    }

    /// Queues a connect (the socket's first entry: nothing can be sent
    /// before it).
    pub fn push_connect(&mut self, op: ConnectOp) {
        self.entry_ops += 1;
        self.entries.push_back(Entry::Connect(Box::new(op)));
    }

    /// The pending connect, when it is at the front.
    pub fn front_connect(&mut self) -> Option<&mut ConnectOp> {
        match self.entries.front_mut() {
            Some(Entry::Connect(op)) => Some(op),
            _ => None,
        }
    }

    /// Completes the connect at the front with `status`.
    pub fn complete_connect(&mut self, status: sock_status, sink: CompletionSink) {
        if let Some(Entry::Connect(_)) = self.entries.front() {
            if let Some(Entry::Connect(op)) = self.entries.pop_front() {
                self.entry_ops -= 1;
                sink(op.callback, status, 0);
            }
        }
    }

    /// Queues a graceful shutdown behind every pending send.
    pub fn push_shutdown(&mut self, op: ShutdownOp) {
        self.entry_ops += 1;
        self.send_shut = true;
        self.entries.push_back(Entry::Shutdown(op));
    }

    /// A shutdown is at the front: every send before it went.
    pub fn shutdown_at_front(&self) -> bool {
        matches!(self.entries.front(), Some(Entry::Shutdown(_)))
    }

    /// Completes the shutdown at the front with `status`.
    pub fn complete_shutdown(&mut self, status: sock_status, sink: CompletionSink) {
        if let Some(Entry::Shutdown(_)) = self.entries.front() {
            if let Some(Entry::Shutdown(op)) = self.entries.pop_front() {
                self.entry_ops -= 1;
                sink(op.callback, status, 0);
            }
        }
    }

    pub fn push_accept(&mut self, op: AcceptOp) {
        self.accepts.push_back(op);
    }

    pub fn has_accepts(&self) -> bool {
        !self.accepts.is_empty()
    }

    pub fn pop_accept(&mut self) -> Option<AcceptOp> {
        self.accepts.pop_front()
    }

    pub fn push_recv(&mut self, op: RecvOp) {
        self.recvs.push_back(op);
    }

    pub fn has_recvs(&self) -> bool {
        !self.recvs.is_empty()
    }

    pub fn front_recv(&self) -> Option<&RecvOp> {
        self.recvs.front()
    }

    pub fn pop_recv(&mut self) -> Option<RecvOp> {
        self.recvs.pop_front()
    }
}

/// A socket's queues and the condition blocking senders wait on.
pub struct OpQueue {
    state: Mutex<QueueState>,
    turn_free: Condvar,
}

impl Default for OpQueue {
    fn default() -> OpQueue {
        OpQueue {
            state: Mutex::new(QueueState::default()),
            turn_free: Condvar::new(),
        }
    }
}

/// A blocking sender's right to write; released on drop.
pub struct Turn<'a> {
    queue: &'a OpQueue,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut st = self.queue.lock();
        st.turn_taken = false;
        self.queue.after_release(&mut st);
    }
}

impl OpQueue {
    // A panic caught at the ABI boundary must not leave the socket
    // unusable: parking_lot's lock has no poisoning, loom's is ignored.
    #[cfg(not(loom))]
    #[inline]
    pub fn lock(&self) -> QueueGuard<'_> {
        self.state.lock()
    }

    #[cfg(loom)]
    pub fn lock(&self) -> QueueGuard<'_> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the socket on after a writer let go: wakes the next blocking
    /// sender, or asks the engine to flush pending async sends.
    pub fn after_release(&self, st: &mut QueueState) {
        if st.waiter_at_front() {
            self.turn_free.notify_all();
        } else if st.send_at_front() {
            if let (Some(home), Some(token)) = (st.home.bound(), st.token) {
                home.kick(token);
            }
        }
    }

    /// The locked queue, if nobody writes or waits: the caller may write
    /// under the lock (non-blocking system calls only), then release it, or
    /// keep going with `keep_turn`.
    #[inline]
    pub fn lock_if_idle(&self) -> Option<QueueGuard<'_>> {
        let st = self.lock();
        st.is_idle().then_some(st)
    }

    /// Turns the lock of an idle queue into the turn, for a sender that must
    /// wait for room; the caller then holds the turn and must `adopt_turn`
    /// it (and so release it) before it returns.
    pub fn keep_turn(&self, mut idle: QueueGuard<'_>) {
        idle.turn_taken = true;
    }

    /// The turn a `keep_turn` took, as a guard that releases it.
    pub fn adopt_turn(&self) -> Turn<'_> {
        debug_assert!(self.lock().turn_taken, "adopt_turn without keep_turn");
        Turn { queue: self }
    }

    /// Takes the turn if nobody writes or waits (non-blocking mode).
    pub fn try_acquire(&self) -> Result<Turn<'_>> {
        let mut st = self.lock();
        if !st.is_idle() {
            return Err(Error::new(SOCK_WOULD_BLOCK));
        }
        st.turn_taken = true;
        Ok(Turn { queue: self })
    }

    /// Waits, behind every earlier entry, for the turn until `deadline`;
    /// gives up with `SOCK_OPERATION_ABORTED` once `closed` is set.
    pub fn acquire(&self, deadline: Deadline, closed: &AtomicBool) -> Result<Turn<'_>> {
        let mut st = self.lock();
        if st.is_idle() {
            st.turn_taken = true;
            return Ok(Turn { queue: self });
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.entries.push_back(Entry::Waiter(ticket));
        loop {
            let give_up = if closed.load(Ordering::Acquire) {
                Some(Error::new(SOCK_OPERATION_ABORTED))
            } else {
                deadline.remaining().err()
            };
            if let Some(err) = give_up {
                st.entries
                    .retain(|e| !matches!(e, Entry::Waiter(t) if *t == ticket));
                // Whoever was queued behind us may go now.
                if !st.turn_taken {
                    self.after_release(&mut st);
                }
                return Err(err);
            }
            if !st.turn_taken
                && matches!(st.entries.front(), Some(Entry::Waiter(t)) if *t == ticket)
            {
                st.entries.pop_front();
                st.turn_taken = true;
                return Ok(Turn { queue: self });
            }
            let timeout = deadline.remaining().ok().flatten();
            st = self.wait_turn(st, timeout);
        }
    }

    /// Waits for a change of turn, for at most `timeout` when given.
    #[cfg(not(loom))]
    fn wait_turn<'a>(&self, mut st: QueueGuard<'a>, timeout: Option<Duration>) -> QueueGuard<'a> {
        match timeout {
            None => self.turn_free.wait(&mut st),
            Some(d) => {
                self.turn_free.wait_for(&mut st, d);
            }
        }
        st
    }

    /// loom does not model time: a timed wait is a wait.
    #[cfg(loom)]
    fn wait_turn<'a>(&self, st: QueueGuard<'a>, _timeout: Option<Duration>) -> QueueGuard<'a> {
        self.turn_free
            .wait(st)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the blocking sender at the front of the queue, if the turn is free.
    pub fn wake_waiter(&self, st: &QueueState) {
        if !st.turn_taken && st.waiter_at_front() {
            self.turn_free.notify_all();
        }
    }

    /// Wakes every waiting blocking sender (close: they see `closed`).
    pub fn wake_all(&self) {
        let _st = self.lock();
        self.turn_free.notify_all();
    }

    /// Before a fork (with the handle table's locks held): takes the lock,
    /// so no other thread of the parent holds it in the child.
    #[cfg(not(loom))]
    pub fn lock_for_fork(&self) {
        std::mem::forget(self.state.lock());
    }

    /// After a fork: releases the lock `lock_for_fork` took. In the child,
    /// first forgets the blocking senders of the parent, which do not exist
    /// there: the turn one of them held, and the places others had in line.
    #[cfg(not(loom))]
    pub fn unlock_after_fork(&self, in_child: bool) {
        if in_child {
            // SAFETY: this thread holds the lock (taken by `lock_for_fork`,
            // its guard forgotten), so nothing else touches the state.
            let st = unsafe { &mut *self.state.data_ptr() };
            st.turn_taken = false;
            st.entries.retain(|e| !matches!(e, Entry::Waiter(_)));
            crate::fork::reset_condvar(&self.turn_free);
            crate::fork::reset_mutex(&self.state);
            return;
        }
        // SAFETY: `lock_for_fork` took the lock in this thread and forgot
        // its guard.
        unsafe { self.state.force_unlock() };
    }

    /// The loom model never forks (loom's lock cannot be released
    /// without its guard).
    #[cfg(loom)]
    pub fn lock_for_fork(&self) {}

    #[cfg(loom)]
    pub fn unlock_after_fork(&self, _in_child: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::SOCK_TIMED_OUT;
    use std::time::Duration;

    use crate::completion::UserData;
    use std::ffi::c_void;

    unsafe extern "C" fn never(
        _: crate::handle::sock_handle,
        _: sock_status,
        _: usize,
        _: *mut c_void,
    ) {
    }

    /// A callback record whose user_data carries an operation number.
    fn cb(id: usize) -> Callback {
        Callback {
            notify: crate::completion::Notify::Bytes(never),
            kind: crate::completion::SOCK_OP_SEND,
            user_data: UserData(id as *mut c_void),
            op: "test",
            submitted: None,
        }
    }

    fn iov(buf: &[u8]) -> libc::iovec {
        libc::iovec {
            iov_base: buf.as_ptr() as *mut c_void,
            iov_len: buf.len(),
        }
    }

    type Log = Vec<(usize, sock_status, usize)>;

    fn record(log: &mut Log) -> impl FnMut(Callback, sock_status, usize) + '_ {
        |c, s, n| log.push((c.user_data.0 as usize, s, n))
    }

    #[test]
    fn consume_completes_operations_in_order_with_exact_counts() {
        let (a, b, c) = ([1u8; 10], [2u8; 5], [3u8; 7]);
        let mut q = QueueState::default();
        q.push_send(SendOp::new(15, 0, 0, None, cb(1)), &[iov(&a), iov(&b)]);
        q.push_send(SendOp::new(0, 0, 0, None, cb(2)), &[]);
        q.push_send(SendOp::new(7, 3, 0, None, cb(3)), &[iov(&c)]);
        assert_eq!(q.pending_send_bytes(), 15 + 4);
        let (batch, _, _) = q.front_batch(false, IOV_MAX_FOR_TEST, usize::MAX).unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch[2].iov_len, 4, "the 3 bytes sent inline are skipped");
        let mut log = Log::new();
        q.consume(12, &mut record(&mut log));
        assert!(log.is_empty());
        q.consume(3, &mut record(&mut log));
        // Operation 1 is done, and the empty operation 2 right behind it.
        assert_eq!(log, vec![(1, SOCK_OK, 15), (2, SOCK_OK, 0)]);
        q.consume(4, &mut record(&mut log));
        assert_eq!(log[2], (3, SOCK_OK, 7));
        assert_eq!(q.pending_send_bytes(), 0);
        assert!(q.is_idle());
    }

    const IOV_MAX_FOR_TEST: usize = 1024;

    #[test]
    fn batches_stop_at_flag_changes_and_datagram_boundaries() {
        let a = [0u8; 4];
        let mut q = QueueState::default();
        q.push_send(SendOp::new(4, 0, 0, None, cb(1)), &[iov(&a)]);
        q.push_send(SendOp::new(4, 0, 0, None, cb(2)), &[iov(&a)]);
        q.push_send(SendOp::new(4, 0, libc::MSG_OOB, None, cb(3)), &[iov(&a)]);
        assert_eq!(
            q.front_batch(false, IOV_MAX_FOR_TEST, usize::MAX)
                .unwrap()
                .0
                .len(),
            2
        );
        assert_eq!(
            q.front_batch(true, IOV_MAX_FOR_TEST, usize::MAX)
                .unwrap()
                .0
                .len(),
            1
        );
        assert_eq!(q.front_batch(false, 1, usize::MAX).unwrap().0.len(), 1);
    }

    #[test]
    fn expiry_removes_only_expired_operations_and_their_segments() {
        let (a, b, c) = ([1u8; 4], [2u8; 4], [3u8; 4]);
        let now = Instant::now();
        let past = Some(now - Duration::from_millis(1));
        let later = Some(now + Duration::from_secs(60));
        let mut q = QueueState::default();
        q.push_send(SendOp::new(4, 1, 0, later, cb(1)), &[iov(&a)]);
        q.push_send(SendOp::new(4, 0, 0, past, cb(2)), &[iov(&b)]);
        q.push_send(SendOp::new(4, 0, 0, None, cb(3)), &[iov(&c)]);
        let mut log = Log::new();
        let (next, _) = q.expire(now, SOCK_TIMED_OUT, &mut record(&mut log));
        assert_eq!(log, vec![(2, SOCK_TIMED_OUT, 0)]);
        assert_eq!(next, later);
        let (batch, _, _) = q.front_batch(false, IOV_MAX_FOR_TEST, usize::MAX).unwrap();
        // Operation 1's remaining 3 bytes, then operation 3's: b is gone.
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1].iov_base as *const u8, c.as_ptr());
        assert_eq!(q.pending_send_bytes(), 3 + 4);
    }

    #[test]
    fn drain_reports_partial_counts_and_keeps_waiters() {
        let a = [0u8; 8];
        let q = OpQueue::default();
        let closed = AtomicBool::new(false);
        let turn = q.try_acquire().unwrap();
        q.lock()
            .push_send(SendOp::new(8, 2, 0, None, cb(1)), &[iov(&a)]);
        q.lock().entries.push_back(Entry::Waiter(99));
        q.lock()
            .push_send(SendOp::new(8, 0, 0, None, cb(2)), &[iov(&a)]);
        let mut log = Log::new();
        q.lock()
            .drain_sends(SOCK_OPERATION_ABORTED, &mut record(&mut log));
        assert_eq!(
            log,
            vec![
                (1, SOCK_OPERATION_ABORTED, 2),
                (2, SOCK_OPERATION_ABORTED, 0)
            ]
        );
        assert!(q.lock().waiter_at_front());
        q.lock().entries.clear();
        drop(turn);
        assert!(q.acquire(Deadline::after_ms(0), &closed).is_ok());
    }

    #[test]
    fn try_acquire_fails_while_held_or_while_sends_pend() {
        let q = OpQueue::default();
        let t = q.try_acquire().unwrap();
        assert_eq!(q.try_acquire().err().unwrap().status, SOCK_WOULD_BLOCK);
        drop(t);
        let a = [0u8; 1];
        q.lock()
            .push_send(SendOp::new(1, 0, 0, None, cb(1)), &[iov(&a)]);
        assert_eq!(q.try_acquire().err().unwrap().status, SOCK_WOULD_BLOCK);
    }

    #[test]
    fn waiter_times_out_and_does_not_block_the_line() {
        let q = OpQueue::default();
        let closed = AtomicBool::new(false);
        let held = q.try_acquire().unwrap();
        let e = q.acquire(Deadline::after_ms(10), &closed).err().unwrap();
        assert_eq!(e.status, SOCK_TIMED_OUT);
        drop(held);
        assert!(q.try_acquire().is_ok());
    }

    #[test]
    fn waiters_get_the_turn_in_arrival_order() {
        let q = Arc::new(OpQueue::default());
        let closed = Arc::new(AtomicBool::new(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = q.try_acquire().unwrap();
        let mut threads = Vec::new();
        for i in 0..4 {
            let (q2, closed, order) = (q.clone(), closed.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _t = q2.acquire(Deadline::after_ms(0), &closed).unwrap();
                order.lock().push(i);
            }));
            // Let thread i queue before thread i + 1.
            while q.lock().entries.len() < i + 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn close_aborts_waiters() {
        let q = Arc::new(OpQueue::default());
        let closed = Arc::new(AtomicBool::new(false));
        let held = q.try_acquire().unwrap();
        let (q2, c2) = (q.clone(), closed.clone());
        let t = std::thread::spawn(move || q2.acquire(Deadline::after_ms(0), &c2).err().unwrap());
        while q.lock().entries.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        closed.store(true, Ordering::Release);
        q.wake_all();
        assert_eq!(t.join().unwrap().status, SOCK_OPERATION_ABORTED);
        drop(held);
    }

    #[test]
    fn batches_stop_adding_operations_once_max_bytes_are_in() {
        let a = [0u8; 10];
        let mut q = QueueState::default();
        for id in 0..4 {
            q.push_send(
                SendOp::new(10, 0, 0, None, cb(id)),
                &[iov(&a[..5]), iov(&a[5..])],
            );
        }
        assert_eq!(
            q.front_batch(false, IOV_MAX_FOR_TEST, 15).unwrap().0.len(),
            4
        );
        assert_eq!(
            q.front_batch(false, IOV_MAX_FOR_TEST, 1).unwrap().0.len(),
            2
        );
        assert_eq!(
            q.front_batch(false, IOV_MAX_FOR_TEST, 40).unwrap().0.len(),
            8
        );
    }
}
