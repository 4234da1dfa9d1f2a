//! Exports for engines: who runs completion callbacks.

use std::sync::{Arc, Once};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::asyncio;
use crate::engine::{self, Engine, Kind};
use crate::ffi::MAX_LEN;
use crate::ffi::{try_non_null, try_socket, try_status, write_opt};
use crate::fork;
use crate::handle::sock_handle;
use crate::panic::ffi_boundary;
use crate::port::sock_completion;
use crate::status::{
    report, sock_status, SOCK_ALREADY_IN_PROGRESS, SOCK_FAULT, SOCK_INVALID_ARGUMENT, SOCK_OK,
    SOCK_OPERATION_ABORTED, SOCK_OPERATION_NOT_SUPPORTED,
};

/// An engine: the thread(s) — or, for a manual engine, the calls to
/// `sock_engine_poll` — that run completion callbacks. Opaque.
pub struct sock_engine {
    _private: [u8; 0],
}

/// Engines handed out and not yet freed; a pointer C passes in is used only
/// if it is one of these.
static LIVE: Mutex<Vec<Arc<Engine>>> = Mutex::new(Vec::new());

/// Queue engines freed while entries still wait in their port: the program
/// dequeues those (the pointer stays valid until it has).
static DRAINING: Mutex<Vec<Arc<Engine>>> = Mutex::new(Vec::new());

/// The live engines, locked; the first use registers the fork hooks that
/// keep this lock free in a fork child.
fn live_engines() -> MutexGuard<'static, Vec<Arc<Engine>>> {
    static HOOKS: Once = Once::new();
    HOOKS.call_once(|| {
        fork::register(
            fork::Rank::LiveEngines,
            fork::Hooks {
                prepare: || std::mem::forget(LIVE.lock()),
                // SAFETY: `prepare` took the lock in this thread and forgot
                // its guard.
                parent: || unsafe { LIVE.force_unlock() },
                child: || fork::reset_mutex(&LIVE),
            },
        )
    });
    LIVE.lock()
}

fn live(e: *const sock_engine) -> Option<Arc<Engine>> {
    live_engines()
        .iter()
        .find(|x| std::ptr::eq(Arc::as_ptr(x).cast(), e))
        .cloned()
}

/// Creates an engine. `threads` >= 1: that many I/O threads, each running
/// the callbacks of the sockets it serves. `threads` == 0: a manual engine
/// that runs callbacks only inside `sock_engine_poll`, on the calling
/// thread. `*out` receives the engine (NULL on error).
///
/// Fork: an engine belongs to the process that created it. In a fork child,
/// blocking calls work on inherited sockets and the default engine starts
/// anew; the parent's engines give SOCK_OPERATION_NOT_SUPPORTED
/// (`sock_engine_free` just forgets them), and so do async calls on sockets
/// bound to them until `sock_attach` binds them to an engine of the child.
/// Operations pending at the fork complete in the parent only. Another
/// thread may be inside any libsock call at the fork (an engine thread
/// always is): the library takes its locks around fork(2), so no lock is
/// left held in the child, and the child forgets the parent's blocking
/// senders. What a child may do with inherited sockets: blocking calls,
/// options, `sock_close` (which neither waits for nor completes the
/// parent's pending operations), `sock_attach` to an engine of its own and
/// async calls after that; and anything with sockets and engines it makes
/// itself.
/// Errors: SOCK_FAULT (`out` NULL), SOCK_INVALID_ARGUMENT (`threads` >
/// SOCK_ENGINE_MAX_THREADS), OS errors.
#[no_mangle]
pub extern "C" fn sock_engine_new(threads: u32, out: *mut *mut sock_engine) -> sock_status {
    ffi_boundary! {
        try_non_null!(out);
        // SAFETY: checked non-NULL; C promises it points to a pointer.
        unsafe { out.write(std::ptr::null_mut()) };
        let kind = if threads == 0 { Kind::Manual } else { Kind::Threaded };
        let engine = try_status!(Engine::new(kind, threads, &asyncio::HANDLER));
        let ptr = Arc::as_ptr(&engine).cast_mut().cast::<sock_engine>();
        live_engines().push(engine);
        // SAFETY: as above.
        unsafe { out.write(ptr) };
        SOCK_OK
    }
}

/// Frees an engine. New operations on its sockets are refused at once.
/// A callback of the engine that is running on another thread is waited
/// for; then every pending operation of its sockets completes with
/// SOCK_OPERATION_ABORTED, each callback once, in submission order per
/// socket, on one thread: the engine's threads, or for a manual engine
/// this call. A thread waiting in `sock_engine_poll` on it returns
/// SOCK_OPERATION_ABORTED. Then its threads are joined and its descriptors
/// closed. Its sockets stay open, but their later async calls fail with
/// SOCK_OPERATION_ABORTED until `sock_attach` gives them another engine
/// (NULL: the default one).
///
/// Called from one of the engine's own callbacks, it returns before the
/// remaining aborted callbacks have run: they run on that thread after the
/// current callback returns (for a manual engine, inside the same
/// `sock_engine_poll`, after the callbacks already due), still in order.
/// Errors: SOCK_FAULT (`e` NULL), SOCK_INVALID_ARGUMENT (not a live engine).
#[no_mangle]
pub extern "C" fn sock_engine_free(e: *mut sock_engine) -> sock_status {
    ffi_boundary! {
        try_non_null!(e);
        let engine = {
            let mut engines = live_engines();
            let Some(i) = engines.iter().position(|x| std::ptr::eq(Arc::as_ptr(x).cast(), e)) else {
                return SOCK_INVALID_ARGUMENT;
            };
            engines.swap_remove(i)
        };
        if engine.in_this_process() {
            let queue = engine.port().is_some();
            if queue {
                // Dequeuers find it while it is being freed, and after.
                DRAINING.lock().push(engine.clone());
            }
            engine.shut_down();
            if queue && engine.port().is_some_and(|port| port.len() == 0) {
                DRAINING.lock().retain(|x| !Arc::ptr_eq(x, &engine));
            }
        } else {
            // A fork child freeing its parent's engine: its threads are not
            // here and its descriptors are shared; forget it untouched.
            std::mem::forget(engine);
        }
        SOCK_OK
    }
}

/// Runs a manual engine: moves its sockets' pending operations on as they
/// become ready and runs the callbacks that are due, on this thread,
/// waiting up to `timeout_ms` (0: not at all; -1: for ever) until at least
/// one callback ran. `*completed` (if not NULL) receives how many ran (0
/// when the time ran out).
/// Errors: SOCK_FAULT (`e` NULL), SOCK_INVALID_ARGUMENT (not a live manual
/// engine, `timeout_ms` < -1), SOCK_ALREADY_IN_PROGRESS (another thread is
/// polling it, or a callback called this), SOCK_OPERATION_ABORTED (the
/// engine was freed while this call waited or ran: `*completed` still
/// counts the callbacks it ran; do not pass `e` again).
#[no_mangle]
pub extern "C" fn sock_engine_poll(
    e: *mut sock_engine,
    timeout_ms: i32,
    completed: *mut usize,
) -> sock_status {
    ffi_boundary! {
        // SAFETY: NULL or a size_t (C's promise).
        unsafe { write_opt(completed, 0) };
        try_non_null!(e);
        let timeout = match timeout_ms {
            -1 => None,
            t if t >= 0 => Some(Duration::from_millis(t as u64)),
            _ => return SOCK_INVALID_ARGUMENT,
        };
        let Some(engine) = live(e) else { return SOCK_INVALID_ARGUMENT };
        if !engine.in_this_process() {
            return SOCK_OPERATION_NOT_SUPPORTED;
        }
        let Some(lp) = engine.manual_loop() else { return SOCK_INVALID_ARGUMENT };
        // A readiness that ran no callback (a socket became writable with
        // nothing to send) is not the work a waiting poll waits for: wait
        // on until a callback ran, the timeout passed or the engine went.
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let (result, ran) = loop {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let (result, ran) = lp.run_once(left);
            if ran > 0 || result.is_err() || left.is_some_and(|l| l.is_zero()) {
                break (result, ran);
            }
        };
        // SAFETY: NULL or a size_t (C's promise).
        unsafe { write_opt(completed, ran) };
        match result {
            Ok(()) => SOCK_OK,
            Err(err) => report(err),
        }
    }
}

/// The descriptor of a manual or queue engine, for the program's own
/// epoll/poll/select loop: a manual engine's is readable whenever
/// `sock_engine_poll` has work; a queue engine's exactly while entries wait
/// for `sock_engine_dequeue`. Owned by the engine: do not close it or read
/// from it.
/// Errors: SOCK_FAULT, SOCK_INVALID_ARGUMENT (not a live manual or queue
/// engine).
#[no_mangle]
pub extern "C" fn sock_engine_fd(e: *mut sock_engine, fd: *mut i32) -> sock_status {
    ffi_boundary! {
        try_non_null!(e);
        try_non_null!(fd);
        let Some(engine) = live(e) else { return SOCK_INVALID_ARGUMENT };
        if !engine.in_this_process() {
            return SOCK_OPERATION_NOT_SUPPORTED;
        }
        let raw = match (engine.manual_loop(), engine.port()) {
            (Some(lp), _) => lp.fd(),
            (None, Some(port)) => port.fd(),
            (None, None) => return SOCK_INVALID_ARGUMENT,
        };
        // SAFETY: checked non-NULL; C promises it points to an int32_t.
        unsafe { fd.write(raw) };
        SOCK_OK
    }
}

/// Makes engine `e` (NULL: the default engine, started on first use with
/// one I/O thread) run the callbacks of socket `h` from now on, and own the
/// deadlines of its later operations. The socket must have no pending
/// async operation (callbacks of completed ones that have not run yet
/// still run on the old engine).
/// Errors: SOCK_NOT_SOCKET, SOCK_INVALID_ARGUMENT (not a live engine, or
/// operations pending), SOCK_OPERATION_NOT_SUPPORTED (in a fork child, an
/// engine of the parent), OS errors.
#[no_mangle]
pub extern "C" fn sock_attach(h: sock_handle, e: *mut sock_engine) -> sock_status {
    ffi_boundary! {
        let engine = if e.is_null() {
            try_status!(asyncio::default_engine())
        } else {
            match live(e) {
                Some(engine) => engine,
                None => return SOCK_INVALID_ARGUMENT,
            }
        };
        let sock = try_socket!(h);
        match asyncio::attach(&sock, h, engine.pick_loop()) {
            Ok(()) => SOCK_OK,
            Err(err) => report(err),
        }
    }
}

/// Creates a queue engine: completions of its sockets' operations are not
/// reported by callbacks but queued as entries for the program to take
/// with `sock_engine_dequeue` (as on a Windows completion port). The
/// engine's one I/O thread moves operations on and queues entries; no
/// thread of the library ever calls into the program for it. Every rule of
/// async operations holds with "callback" read as "entry": exactly one per
/// operation that returned SOCK_IO_PENDING, one socket's entries in
/// submission order, and close, cancel, deadlines and engine free produce
/// entries. Attach sockets with `sock_attach`; their async calls then take
/// a NULL callback (a non-NULL one is never called: the entry is queued
/// all the same). `sock_engine_fd` is readable while entries wait. (A
/// trace callback set with `sock_set_trace` is the one exception: it gets
/// the completion lines on the engine's thread, as for any engine.)
/// `*out` receives the engine (NULL on error).
/// Errors: SOCK_FAULT (`out` NULL), OS errors.
#[no_mangle]
pub extern "C" fn sock_engine_new_queue(out: *mut *mut sock_engine) -> sock_status {
    ffi_boundary! {
        try_non_null!(out);
        // SAFETY: checked non-NULL; C promises it points to a pointer.
        unsafe { out.write(std::ptr::null_mut()) };
        let engine = try_status!(Engine::new(Kind::Queue, 1, &asyncio::HANDLER));
        let ptr = Arc::as_ptr(&engine).cast_mut().cast::<sock_engine>();
        live_engines().push(engine);
        // SAFETY: as above.
        unsafe { out.write(ptr) };
        SOCK_OK
    }
}

/// A queue engine, live or freed with entries left.
fn queue_engine(e: *const sock_engine) -> Option<Arc<Engine>> {
    let found = live(e).or_else(|| {
        DRAINING
            .lock()
            .iter()
            .find(|x| std::ptr::eq(Arc::as_ptr(x).cast(), e))
            .cloned()
    })?;
    found.port().is_some().then_some(found)
}

/// Takes up to `max` completion entries of queue engine `e` into `out`
/// (oldest first), waiting up to `timeout_ms` (0: not at all; -1: until one
/// arrives) while there are none. `*count` (if not NULL) receives how many
/// were written; 0 with SOCK_OK means the wait timed out. Any number of
/// threads may dequeue at once (each entry goes to one of them; a program
/// that handles one socket's entries on several threads orders them
/// itself). An accept's entry carries the new handle, which the program
/// owns from then on.
///
/// After `sock_engine_free(e)` the entries of the operations it ended can
/// still be taken: `e` stays valid for this call until none is left, and
/// then (and for a thread that was waiting) the call returns
/// SOCK_OPERATION_ABORTED with `*count` 0; after that `e` is invalid.
/// Errors: SOCK_FAULT (`e` NULL, `out` NULL with `max` > 0),
/// SOCK_INVALID_ARGUMENT (not a queue engine, `timeout_ms` < -1, `max` too
/// large), SOCK_OPERATION_ABORTED (the engine was freed and is drained),
/// SOCK_OPERATION_NOT_SUPPORTED (an engine of the parent of this fork child).
#[no_mangle]
pub extern "C" fn sock_engine_dequeue(
    e: *mut sock_engine,
    out: *mut sock_completion,
    max: usize,
    timeout_ms: i32,
    count: *mut usize,
) -> sock_status {
    ffi_boundary! {
        // SAFETY: NULL or a size_t (C's promise).
        unsafe { write_opt(count, 0) };
        try_non_null!(e);
        if out.is_null() && max > 0 {
            return SOCK_FAULT;
        }
        if max > MAX_LEN / std::mem::size_of::<sock_completion>() {
            return SOCK_INVALID_ARGUMENT;
        }
        let timeout = match timeout_ms {
            -1 => None,
            t if t >= 0 => Some(Duration::from_millis(t as u64)),
            _ => return SOCK_INVALID_ARGUMENT,
        };
        let Some(engine) = queue_engine(e) else { return SOCK_INVALID_ARGUMENT };
        if !engine.in_this_process() {
            return SOCK_OPERATION_NOT_SUPPORTED;
        }
        let Some(port) = engine.port() else { return SOCK_INVALID_ARGUMENT };
        let out: &mut [sock_completion] = if max == 0 {
            &mut []
        } else {
            // SAFETY: non-NULL (checked), and C promises `max` writable
            // entries; sock_completion is plain data, every bit pattern of
            // its fields is overwritten before it is read.
            unsafe { std::slice::from_raw_parts_mut(out, max) }
        };
        let n = port.dequeue(out, timeout, || engine.is_finished());
        // SAFETY: as above.
        unsafe { write_opt(count, n) };
        if n == 0 && engine.is_finished() {
            // Freed and drained: forget it.
            DRAINING.lock().retain(|x| !Arc::ptr_eq(x, &engine));
            return SOCK_OPERATION_ABORTED;
        }
        SOCK_OK
    }
}

/// The `WSACleanup` of libsock: stops the default engine. Every operation
/// pending on it completes with SOCK_OPERATION_ABORTED (each callback once,
/// on the engine's thread, as on close), then its thread is joined and its
/// descriptors closed; the call returns when no thread of the library
/// remains but those of engines the program made (host-name lookups under
/// way are waited for). No callback of the default engine starts after it
/// returned. The library stays usable: the default engine starts again on
/// next use, and sockets that were bound to it bind to the new one.
/// Engines made with `sock_engine_new` / `sock_engine_new_queue` are the
/// program's and are left alone: free them with `sock_engine_free`.
/// Call it before a runtime with its own threads (Mono, the JVM, Node)
/// exits, if a callback of the default engine ever ran.
/// Errors: SOCK_ALREADY_IN_PROGRESS (called from a callback, or from inside
/// `sock_engine_poll`: the engine thread cannot join itself).
#[no_mangle]
pub extern "C" fn sock_cleanup() -> sock_status {
    ffi_boundary! {
        if engine::on_a_loop() {
            return SOCK_ALREADY_IN_PROGRESS;
        }
        asyncio::cleanup();
        SOCK_OK
    }
}
