//! Library-wide exports: version, status texts, the thread's last OS error.

use std::ffi::{c_char, c_void};

use crate::panic::{ffi_boundary, PanicFallback};
use crate::status::{self, sock_status};
use crate::trace::{self, sock_trace_callback};

/// Major version of this header; equals the first number of `sock_version()`.
pub const SOCK_VERSION_MAJOR: u32 = 0;
/// Minor version of this header.
pub const SOCK_VERSION_MINOR: u32 = 1;
/// Patch version of this header.
pub const SOCK_VERSION_PATCH: u32 = 0;
/// The header's version as one number, 0xMMmmpp: (major << 16) |
/// (minor << 8) | patch, as libuv's UV_VERSION_HEX; compare it with
/// `sock_version_number()` to check at run time which library was loaded.
pub const SOCK_VERSION_HEX: u32 =
    (SOCK_VERSION_MAJOR << 16) | (SOCK_VERSION_MINOR << 8) | SOCK_VERSION_PATCH;

/// The library's version, "MAJOR.MINOR.PATCH" (equal to the
/// SOCK_VERSION_* macros of the header it was built with).
/// Ownership: a static string owned by the library, never NULL; do not free.
/// Errors: none.
#[no_mangle]
pub extern "C" fn sock_version() -> *const c_char {
    ffi_boundary! {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    }
}

/// The library's version as one number, 0xMMmmpp: (major << 16) |
/// (minor << 8) | patch, equal to SOCK_VERSION_HEX of the header it was
/// built with. A program built against 0.x can require the same 0.x
/// (`sock_version_number() >> 8 == SOCK_VERSION_HEX >> 8`), since each 0.x
/// minor release may change the ABI (its SONAME is libsock.so.0.MINOR).
/// Errors: none.
#[no_mangle]
pub extern "C" fn sock_version_number() -> u32 {
    ffi_boundary! {
        SOCK_VERSION_HEX
    }
}

/// `sock_version_number`'s panic fallback (its body cannot panic): the
/// version itself, the one right answer.
impl PanicFallback for u32 {
    fn panic_fallback() -> Self {
        SOCK_VERSION_HEX
    }
}

/// A short English text for a status code (unknown codes get "unknown
/// status code").
/// Ownership: a static string owned by the library, never NULL; do not free.
/// Errors: none.
#[no_mangle]
pub extern "C" fn sock_strerror(status: sock_status) -> *const c_char {
    ffi_boundary! {
        status::status_text(status).as_ptr().cast()
    }
}

/// The errno of this thread's last failed OS call inside libsock, 0 if none;
/// for diagnostics next to a status such as `SOCK_SOCKET_ERROR`. Calls that
/// succeed leave it unchanged.
/// Errors: none (this returns an errno, not a status).
#[no_mangle]
pub extern "C" fn sock_os_error() -> i32 {
    ffi_boundary! {
        status::last_os_error()
    }
}

/// Sends one line per operation (handle, operation, bytes, status; for
/// async operations the time from submission to completion) to `cb`, with
/// `user_data`; NULL turns the callback off. With `SOCK_TRACE=1` in the
/// environment the same lines also go to stderr. `cb` may run on any
/// thread, including engine threads. Off, tracing costs one branch.
/// Returns once no call of the previous callback is running on any thread
/// (it waits for those in progress), so the previous `user_data` may be
/// freed then. Do not call it while holding a lock that the callback takes.
/// Errors: SOCK_ALREADY_IN_PROGRESS when called from inside the trace
/// callback (nothing changes).
#[no_mangle]
pub extern "C" fn sock_set_trace(cb: sock_trace_callback, user_data: *mut c_void) -> sock_status {
    ffi_boundary! {
        trace::set(cb, user_data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn version_matches_cargo_and_header_macros() {
        // SAFETY: sock_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(sock_version()) }.to_str().unwrap();
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        let expected = format!("{SOCK_VERSION_MAJOR}.{SOCK_VERSION_MINOR}.{SOCK_VERSION_PATCH}");
        assert_eq!(v, expected);
    }

    #[test]
    fn version_number_matches_cargo_and_hex_macro() {
        let part = |s: &str| s.parse::<u32>().expect("Cargo version part is a number");
        let hex = (part(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
            | (part(env!("CARGO_PKG_VERSION_MINOR")) << 8)
            | part(env!("CARGO_PKG_VERSION_PATCH"));
        assert_eq!(SOCK_VERSION_HEX, hex);
        assert_eq!(sock_version_number(), hex);
        assert_eq!(
            format!("0x{hex:06x}"),
            format!(
                "0x{:02x}{:02x}{:02x}",
                SOCK_VERSION_MAJOR, SOCK_VERSION_MINOR, SOCK_VERSION_PATCH
            )
        );
    }

    #[test]
    fn strerror_is_never_null() {
        for s in [0, -1, 10038, 777, i32::MAX] {
            assert!(!sock_strerror(s).is_null());
        }
    }
}
