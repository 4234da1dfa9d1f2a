//! What an async operation reports when it completes: the caller's C
//! callback and `user_data`, and the completion record an engine loop
//! queues until it runs that callback.

use std::ffi::c_void;
use std::time::Instant;

use crate::handle::{sock_handle, SOCK_INVALID_HANDLE};
use crate::status::sock_status;

/// The C callback of a send or receive: handle, status, bytes, user_data.
pub type BytesFn = unsafe extern "C" fn(sock_handle, sock_status, usize, *mut c_void);
/// The C callback of a connect or graceful shutdown: handle, status, user_data.
pub type StatusFn = unsafe extern "C" fn(sock_handle, sock_status, *mut c_void);
/// The C callback of an accept: listener, status, accepted handle, user_data.
pub type AcceptFn = unsafe extern "C" fn(sock_handle, sock_status, sock_handle, *mut c_void);

/// `sock_completion.operation`: `sock_send_async` or `sock_sendv_async`.
pub const SOCK_OP_SEND: i32 = 1;
/// `sock_completion.operation`: `sock_recv_async`.
pub const SOCK_OP_RECV: i32 = 2;
/// `sock_completion.operation`: `sock_connect_async`.
pub const SOCK_OP_CONNECT: i32 = 3;
/// `sock_completion.operation`: `sock_accept_async` (`accepted` holds the
/// new handle).
pub const SOCK_OP_ACCEPT: i32 = 4;
/// `sock_completion.operation`: `sock_shutdown_async`.
pub const SOCK_OP_SHUTDOWN: i32 = 5;
/// `sock_completion.operation`: `sock_send_to_async`.
pub const SOCK_OP_SEND_TO: i32 = 6;
/// `sock_completion.operation`: `sock_recv_from_async`.
pub const SOCK_OP_RECV_FROM: i32 = 7;

/// Which C callback an operation reports through.
#[derive(Clone, Copy)]
pub enum Notify {
    Bytes(BytesFn),
    Status(StatusFn),
    Accept(AcceptFn),
    /// No function: an entry in a queue engine's completion port.
    None,
}

impl Notify {
    /// Whether this fits an engine that does (`queue`) or does not queue
    /// completions: a queue engine takes no function, any other engine one.
    pub fn fits(&self, queue: bool) -> bool {
        matches!(self, Notify::None) == queue
    }
}

/// A caller's `user_data`, passed back untouched on whatever thread runs
/// the callback.
#[derive(Clone, Copy)]
pub struct UserData(pub *mut c_void);
// SAFETY: the library never dereferences it; it only hands it back to the
// caller's callback, which the contract says may run on an engine thread.
unsafe impl Send for UserData {}

/// Who to call when an operation completes.
#[derive(Clone, Copy)]
pub struct Callback {
    pub notify: Notify,
    /// The operation (SOCK_OP_*), for completion entries.
    pub kind: i32,
    pub user_data: UserData,
    /// The operation's name in trace lines.
    pub op: &'static str,
    /// When it was submitted, recorded only while tracing is on.
    pub submitted: Option<Instant>,
}

/// Work a completion does on the loop's thread, with no lock held, just
/// before its callback: an accepted connection enters the handle table
/// there (never under a socket's queue lock). Gives the status and the
/// accepted handle to report.
pub type Deferred = Box<dyn FnOnce() -> (sock_status, sock_handle) + Send>;

impl Callback {
    /// Who to call for a new operation of `kind` (SOCK_OP_*), named `op`
    /// in trace lines.
    pub fn new(notify: Notify, kind: i32, user_data: *mut c_void, op: &'static str) -> Callback {
        Callback {
            notify,
            kind,
            user_data: UserData(user_data),
            op,
            submitted: crate::trace::now_if_enabled(),
        }
    }
}

/// A completion ready to be delivered: the callback and its arguments.
pub struct Completion {
    pub handle: sock_handle,
    pub callback: Callback,
    pub status: sock_status,
    pub bytes: usize,
    pub deferred: Option<Deferred>,
}

impl Completion {
    /// A completion with no deferred work.
    pub fn new(handle: sock_handle, callback: Callback, status: sock_status, bytes: usize) -> Self {
        Completion {
            handle,
            callback,
            status,
            bytes,
            deferred: None,
        }
    }

    /// Does the deferred work, if any: the status and accepted handle to
    /// report.
    pub fn settle(&mut self) -> (sock_status, sock_handle) {
        match self.deferred.take() {
            Some(work) => work(),
            None => (self.status, SOCK_INVALID_HANDLE),
        }
    }

    /// Does the deferred work, traces the completion and runs its callback
    /// (on the calling thread).
    pub fn run(mut self) {
        let (status, accepted) = self.settle();
        let cb = self.callback;
        crate::trace::completion(self.handle, cb.op, self.bytes, status, cb.submitted);
        let ud = cb.user_data.0;
        // SAFETY: the caller gave us this function pointer for this
        // operation and promised it is callable with these arguments; a
        // completion is queued once per operation and run once, here.
        unsafe {
            match cb.notify {
                Notify::Bytes(f) => f(self.handle, status, self.bytes, ud),
                Notify::Status(f) => f(self.handle, status, ud),
                Notify::Accept(f) => f(self.handle, status, accepted, ud),
                // Submission refuses this on an engine that runs callbacks.
                Notify::None => {}
            }
        }
    }
}
