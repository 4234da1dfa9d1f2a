//! The panic boundary: no Rust panic ever unwinds into C.
//!
//! Every export wraps its body in [`ffi_boundary!`], which catches a panic
//! and returns the fallback of the function's return type
//! (`SOCK_SOCKET_ERROR` for a status). No lock inside the library stays
//! poisoned: the handle table's and the queues' are parking_lot's, which
//! have none, and the others ignore it (see `crate::sync`), so the library
//! stays usable afterwards.

use std::ffi::c_char;

use crate::status::{sock_status, SOCK_SOCKET_ERROR};

/// The value an export returns when its body panicked.
pub trait PanicFallback {
    fn panic_fallback() -> Self;
}

impl PanicFallback for sock_status {
    fn panic_fallback() -> Self {
        SOCK_SOCKET_ERROR
    }
}

impl PanicFallback for *const c_char {
    fn panic_fallback() -> Self {
        c"libsock: internal error".as_ptr()
    }
}

/// Runs an export's body, turning a panic into its return type's fallback.
macro_rules! ffi_boundary {
    ($($body:tt)*) => {{
        let result = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| {
            #[cfg(test)]
            $crate::panic::maybe_injected_panic();
            $($body)*
        }));
        match result {
            Ok(value) => value,
            Err(_) => $crate::panic::PanicFallback::panic_fallback(),
        }
    }};
}
pub(crate) use ffi_boundary;

#[cfg(test)]
thread_local! {
    static INJECT_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Test hook: makes the next export called on this thread panic inside its
/// boundary.
#[cfg(test)]
pub fn inject_panic_once() {
    INJECT_PANIC.with(|c| c.set(true));
}

#[cfg(test)]
pub fn maybe_injected_panic() {
    if INJECT_PANIC.with(|c| c.replace(false)) {
        panic!("injected panic (test)");
    }
}
