//! What an async operation reports when it completes: the caller's C
//! callback and `user_data`, and the completion record an engine loop
//! queues until it runs that callback.

use std::ffi::c_void;
use std::time::Instant;

use crate::handle::sock_handle;
use crate::status::sock_status;

/// The C completion callback of an async send or receive.
pub type CompletionFn = unsafe extern "C" fn(sock_handle, sock_status, usize, *mut c_void);

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
    pub func: CompletionFn,
    pub user_data: UserData,
    /// The operation's name in trace lines.
    pub op: &'static str,
    /// When it was submitted, recorded only while tracing is on.
    pub submitted: Option<Instant>,
}

/// A completion ready to be delivered: the callback and its arguments.
pub struct Completion {
    pub handle: sock_handle,
    pub callback: Callback,
    pub status: sock_status,
    pub bytes: usize,
}

impl Completion {
    /// Traces the completion and runs its callback (on the calling thread).
    pub fn run(self) {
        let cb = self.callback;
        crate::trace::completion(self.handle, cb.op, self.bytes, self.status, cb.submitted);
        // SAFETY: the caller gave us this function pointer for this
        // operation and promised it is callable with these arguments; a
        // completion is queued once per operation and run once, here.
        unsafe { (cb.func)(self.handle, self.status, self.bytes, cb.user_data.0) };
    }
}
