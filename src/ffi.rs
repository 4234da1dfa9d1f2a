//! Argument checks for the `extern "C"` functions: each returns the
//! contract's status before any work is done.

/// Returns `SOCK_FAULT` from the enclosing export when `$ptr` is NULL.
macro_rules! try_non_null {
    ($ptr:expr) => {
        if $ptr.is_null() {
            return $crate::status::SOCK_FAULT;
        }
    };
}
pub(crate) use try_non_null;

/// Looks a handle up in the table, returning `SOCK_NOT_SOCKET` from the
/// enclosing export when it is zero, closed, stale or never issued.
macro_rules! try_socket {
    ($handle:expr) => {
        match $crate::table::lookup($handle) {
            Some(sock) => sock,
            None => return $crate::status::SOCK_NOT_SOCKET,
        }
    };
}
pub(crate) use try_socket;

/// Evaluates an internal `Result`, returning its status (and recording its
/// errno) from the enclosing export on error.
macro_rules! try_status {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(err) => return $crate::status::report(err),
        }
    };
}
pub(crate) use try_status;

/// Writes `value` through `ptr` when `ptr` is not NULL.
///
/// # Safety
/// `ptr` is NULL or valid for a write of `T`.
pub unsafe fn write_opt<T>(ptr: *mut T, value: T) {
    if !ptr.is_null() {
        // SAFETY: non-NULL, and the caller promises it is valid for writes.
        unsafe { ptr.write(value) };
    }
}

/// Largest length a C buffer may have: Rust slices cannot exceed `isize::MAX`.
pub const MAX_LEN: usize = isize::MAX as usize;

/// Borrows a C string.
///
/// # Safety
/// `ptr` is non-NULL and points to a NUL-terminated string that outlives `'a`.
pub unsafe fn c_str<'a>(ptr: *const std::ffi::c_char) -> &'a std::ffi::CStr {
    // SAFETY: guaranteed by the caller.
    unsafe { std::ffi::CStr::from_ptr(ptr) }
}

/// A caller's output buffer of `cap` bytes (possibly uninitialised).
///
/// # Safety
/// `cap == 0`, or `ptr` is non-NULL and valid for `cap` bytes of writes,
/// with `cap <= MAX_LEN`.
pub unsafe fn out_buf<'a>(
    ptr: *mut std::ffi::c_char,
    cap: usize,
) -> &'a mut [std::mem::MaybeUninit<u8>] {
    if cap == 0 {
        return &mut [];
    }
    // SAFETY: guaranteed by the caller; MaybeUninit<u8> needs no initialisation.
    unsafe { std::slice::from_raw_parts_mut(ptr.cast(), cap) }
}

/// Writes address `text` (and NUL) to a caller's buffer: `SOCK_OK` and the
/// size written, or `SOCK_NO_BUFFER_SPACE` and the size needed, into `*len`.
///
/// # Safety
/// As for [`out_buf`]; `len` is NULL or valid for a write.
pub unsafe fn write_address(
    text: &[u8],
    buf: *mut std::ffi::c_char,
    cap: usize,
    len: *mut usize,
) -> crate::status::sock_status {
    // SAFETY: guaranteed by the caller.
    let out = unsafe { out_buf(buf, cap) };
    let (status, size) = match crate::address::copy_out(text, out) {
        Ok(written) => (crate::status::SOCK_OK, written),
        Err(needed) => (crate::status::SOCK_NO_BUFFER_SPACE, needed),
    };
    // SAFETY: guaranteed by the caller.
    unsafe { write_opt(len, size) };
    status
}
