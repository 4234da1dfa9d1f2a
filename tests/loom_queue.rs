//! A loom model of the per-socket operation queue (`src/queue.rs`, built
//! with loom's Mutex and Condvar under `--cfg loom`): threads play a
//! blocking sender, an async submitter, the engine's flusher and
//! `sock_close`, calling the queue exactly as `io.rs` and `asyncio.rs` do,
//! with the kernel reduced to a "write" that must never overlap another.
//! loom explores their interleavings and checks: writers never overlap,
//! every operation completes exactly once, nobody deadlocks, and the queue
//! ends idle. Two more models: `sock_close` racing receive submissions
//! (an accepted receive completes once, a refused one never), and engine
//! free racing a poll that runs a callback (callbacks never overlap and run
//! in order). Each keeps a deliberately broken variant that loom must
//! catch (`*_is_caught`).
//!
//! Run: RUSTFLAGS="--cfg loom" cargo test --release --test loom_queue
//! (`make test-loom`).
#![cfg(loom)]

use std::ffi::c_void;

use loom::sync::atomic::{AtomicBool as LoomBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use sock::completion::{Callback, Notify, UserData, SOCK_OP_SEND};
use sock::handle::sock_handle;
use sock::queue::{Home, OpQueue, RecvOp, Seg, SendOp};
use sock::status::{sock_status, SOCK_OK, SOCK_OPERATION_ABORTED};
use sock::wait::Deadline;

const OPS: usize = 3;

struct Model {
    queue: OpQueue,
    /// Threads inside a kernel write right now.
    writing: AtomicUsize,
    /// Completions (inline or by callback) per operation.
    done: [AtomicUsize; OPS],
    closed: std::sync::atomic::AtomicBool,
    aborted: LoomBool,
}

unsafe extern "C" fn unused(_: sock_handle, _: sock_status, _: usize, _: *mut c_void) {}

fn callback(id: usize) -> Callback {
    Callback {
        notify: Notify::Bytes(unused),
        kind: SOCK_OP_SEND,
        user_data: UserData(id as *mut c_void),
        op: "model",
        submitted: None,
    }
}

fn segment(len: usize) -> libc::iovec {
    // The model never dereferences segments; any non-null base will do.
    libc::iovec {
        iov_base: 0x1000 as *mut c_void,
        iov_len: len,
    }
}

impl Model {
    fn new() -> Arc<Model> {
        Arc::new(Model {
            queue: OpQueue::default(),
            writing: AtomicUsize::new(0),
            done: std::array::from_fn(|_| AtomicUsize::new(0)),
            closed: std::sync::atomic::AtomicBool::new(false),
            aborted: LoomBool::new(false),
        })
    }

    /// A kernel write: no other writer may be inside one.
    fn write(&self) {
        assert_eq!(
            self.writing.fetch_add(1, Ordering::SeqCst),
            0,
            "two writers at once"
        );
        thread::yield_now();
        self.writing.fetch_sub(1, Ordering::SeqCst);
    }

    fn complete(&self, id: usize, status: sock_status) {
        if status == SOCK_OPERATION_ABORTED {
            self.aborted.store(true, Ordering::SeqCst);
        }
        self.done[id].fetch_add(1, Ordering::SeqCst);
    }

    /// `sock_send_async`: inline under the lock when idle, else queued.
    fn submit(&self, id: usize, len: usize) {
        let mut q = self.queue.lock();
        if q.is_idle() {
            self.write();
            self.complete(id, SOCK_OK);
            return;
        }
        q.push_send(SendOp::new(len, 0, 0, None, callback(id)), &[segment(len)]);
    }

    /// The engine's flush: writes the front sends, `chunk` bytes a time.
    fn flush(&self, chunk: usize) {
        let mut q = self.queue.lock();
        if q.turn_taken {
            return;
        }
        while let Some((iov, _, _)) = q.front_batch(false, 1024, usize::MAX) {
            let n = iov.iter().map(|s| s.iov_len).sum::<usize>().min(chunk);
            self.write();
            q.consume(n, &mut |cb, status, _| {
                self.complete(cb.user_data.0 as usize, status)
            });
        }
        self.queue.wake_waiter(&q);
    }

    /// A blocking `sock_send` that has to wait for room: it takes the turn
    /// (directly when idle, else behind the queue) and writes outside the lock.
    fn blocking_send(&self) {
        let turn = match self.queue.lock_if_idle() {
            Some(idle) => {
                self.queue.keep_turn(idle);
                self.queue.adopt_turn()
            }
            None => match self.queue.acquire(Deadline::after_ms(0), &self.closed) {
                Ok(turn) => turn,
                Err(_) => return,
            },
        };
        self.write();
        drop(turn);
        // Releasing the turn with a send at the front kicks the engine
        // (`OpQueue::after_release`), whose next iteration flushes; the
        // model has no engine thread, so the releasing thread flushes.
        if self.queue.lock().send_at_front() {
            self.flush(usize::MAX);
        }
    }

    /// `sock_close` / `sock_cancel_sends`: every pending send ends aborted.
    fn close(&self) {
        let mut q = self.queue.lock();
        q.drain_sends(SOCK_OPERATION_ABORTED, &mut |cb, status, _| {
            self.complete(cb.user_data.0 as usize, status)
        });
        self.queue.wake_waiter(&q);
    }

    /// After the threads: what the engine's next wake-up would do, then the
    /// invariants.
    fn finish(&self, ops: usize) {
        self.flush(usize::MAX);
        for (id, done) in self.done.iter().enumerate().take(ops) {
            assert_eq!(
                done.load(Ordering::SeqCst),
                1,
                "operation {id} completed once"
            );
        }
        let q = self.queue.lock();
        assert!(q.is_idle(), "queue ends idle");
        assert_eq!(q.pending_send_bytes(), 0);
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(5);
    builder.check(f);
}

#[test]
fn blocking_sender_async_submitter_and_flusher() {
    model(|| {
        let m = Model::new();
        let (a, b) = (m.clone(), m.clone());
        let t1 = thread::spawn(move || a.blocking_send());
        let t2 = thread::spawn(move || {
            b.submit(0, 8);
            b.flush(3);
        });
        m.submit(1, 4);
        t1.join().unwrap();
        t2.join().unwrap();
        m.finish(2);
    });
}

#[test]
fn close_races_flush_and_submit() {
    model(|| {
        let m = Model::new();
        // Two sends already pending behind a blocking writer's turn.
        {
            let turn = m.queue.try_acquire().unwrap();
            m.submit(0, 8);
            m.submit(1, 8);
            drop(turn);
        }
        let (a, b) = (m.clone(), m.clone());
        let t1 = thread::spawn(move || a.flush(5));
        let t2 = thread::spawn(move || b.close());
        m.submit(2, 4);
        t1.join().unwrap();
        t2.join().unwrap();
        m.finish(3);
    });
}

#[test]
fn two_blocking_senders_and_a_submitter_take_turns() {
    model(|| {
        let m = Model::new();
        let (a, b) = (m.clone(), m.clone());
        let t1 = thread::spawn(move || a.blocking_send());
        let t2 = thread::spawn(move || b.blocking_send());
        m.submit(0, 4);
        m.flush(2);
        t1.join().unwrap();
        t2.join().unwrap();
        m.finish(1);
        let _ = m.aborted.load(Ordering::SeqCst);
    });
}

// ---- close racing a receive submission ---------------------------------

fn recv_op(id: usize) -> RecvOp {
    RecvOp {
        buf: Seg(segment(1)),
        os_flags: 0,
        from: None,
        deadline: None,
        callback: callback(id),
    }
}

/// `sock_recv_async` as `asyncio::recv_async` submits: the closed check
/// and the queueing under one hold of the queue lock. Returns whether the
/// operation was accepted (then it must complete exactly once).
fn submit_recv(m: &Model, id: usize) -> bool {
    let mut q = m.queue.lock();
    if matches!(q.home, Home::Closed) {
        return false;
    }
    q.push_recv(recv_op(id));
    true
}

/// The receive path as it was before close and submission were ordered by
/// the queue lock: the socket looked up (and found open) first, the queue
/// locked later. Kept to show the model catches it.
fn submit_recv_unordered(m: &Model, id: usize) -> bool {
    let open = !matches!(m.queue.lock().home, Home::Closed);
    if !open {
        return false;
    }
    m.queue.lock().push_recv(recv_op(id));
    true
}

/// `sock_close` as `asyncio::close` does it: closed, then every pending
/// receive ends aborted, under one hold of the lock.
fn close_recvs(m: &Model) {
    let mut q = m.queue.lock();
    q.home = Home::Closed;
    q.drain_recvs(SOCK_OPERATION_ABORTED, &mut |cb, status, _| {
        m.complete(cb.user_data.0 as usize, status)
    });
}

fn close_races_receive(submit: fn(&Model, usize) -> bool) {
    model(move || {
        let m = Model::new();
        let a = m.clone();
        let t = thread::spawn(move || [submit(&a, 0), submit(&a, 1)]);
        close_recvs(&m);
        let accepted = t.join().unwrap();
        for (id, accepted) in accepted.into_iter().enumerate() {
            let done = m.done[id].load(Ordering::SeqCst);
            assert_eq!(
                done,
                usize::from(accepted),
                "receive {id}: accepted {accepted}, completed {done} times"
            );
        }
        assert!(
            !m.queue.lock().has_recvs(),
            "nothing stays queued on a closed socket"
        );
    });
}

#[test]
fn close_races_receive_submission() {
    close_races_receive(submit_recv);
}

#[test]
#[should_panic(expected = "completed 0 times")]
fn close_races_unordered_receive_submission_is_caught() {
    close_races_receive(submit_recv_unordered);
}

// ---- engine free racing a poll that runs a callback --------------------
//
// The protocol of `engine::Engine::shut_down` for a manual engine, with
// loom's primitives (the engine's own locks are std's): the polling thread
// holds the poller while it runs callbacks; the freeing thread marks the
// loop stopped, takes the poller (waiting for a running callback to
// return), ends the members' operations (their completions queue behind
// those already queued) and runs the queue itself. Checked: no two
// callbacks of the socket run at once, and they run once each, in order.

struct EngineModel {
    poller: loom::sync::Mutex<()>,
    completions: loom::sync::Mutex<std::collections::VecDeque<usize>>,
    /// Operations still pending on the socket (ended by the free).
    pending: loom::sync::Mutex<Vec<usize>>,
    stopped: LoomBool,
    running: AtomicUsize,
    ran: loom::sync::Mutex<Vec<usize>>,
}

impl EngineModel {
    fn run_completions(&self) {
        loop {
            let Some(id) = self.completions.lock().unwrap().pop_front() else {
                return;
            };
            assert_eq!(
                self.running.fetch_add(1, Ordering::SeqCst),
                0,
                "two callbacks at once"
            );
            thread::yield_now();
            self.ran.lock().unwrap().push(id);
            self.running.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// One `sock_engine_poll`: refused while another holds the poller.
    fn poll(&self) {
        let Ok(_poller) = self.poller.try_lock() else {
            return;
        };
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        self.run_completions();
    }

    fn end_members(&self) {
        let ended: Vec<usize> = self.pending.lock().unwrap().drain(..).collect();
        self.completions.lock().unwrap().extend(ended);
    }

    fn free(&self, wait_for_poller: bool) {
        self.stopped.store(true, Ordering::SeqCst);
        let _poller = wait_for_poller.then(|| self.poller.lock().unwrap());
        self.end_members();
        self.run_completions();
    }
}

fn free_races_poll(wait_for_poller: bool) {
    model(move || {
        let e = Arc::new(EngineModel {
            poller: loom::sync::Mutex::new(()),
            // Operation 0 completed and waits for its callback; 1 and 2
            // are pending.
            completions: loom::sync::Mutex::new([0].into_iter().collect()),
            pending: loom::sync::Mutex::new(vec![1, 2]),
            stopped: LoomBool::new(false),
            running: AtomicUsize::new(0),
            ran: loom::sync::Mutex::new(Vec::new()),
        });
        let poller = e.clone();
        let t = thread::spawn(move || poller.poll());
        e.free(wait_for_poller);
        t.join().unwrap();
        assert_eq!(*e.ran.lock().unwrap(), vec![0, 1, 2], "once each, in order");
    });
}

#[test]
fn engine_free_races_poll_and_callback() {
    free_races_poll(true);
}

#[test]
#[should_panic]
fn engine_free_that_does_not_wait_for_the_poller_is_caught() {
    free_races_poll(false);
}
