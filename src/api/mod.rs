//! The `extern "C"` surface. Each export checks its pointers, integers and
//! handle first, runs inside the panic boundary, and calls safe Rust in
//! the other modules.
//!
//! Exports are `extern "C" fn`, not `unsafe extern "C" fn`: C cannot see the
//! difference, and every pointer is checked here before use, so clippy's
//! `not_unsafe_ptr_arg_deref` is allowed for this module.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod asyncio;
mod connection;
mod engine;
mod info;
mod io;
mod socket;

pub use asyncio::*;
pub use connection::*;
pub use engine::*;
pub use info::*;
pub use io::*;
pub use socket::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panic::inject_panic_once;
    use crate::status::*;
    use crate::{handle::SOCK_INVALID_HANDLE, SOCK_FAMILY_INET, SOCK_TYPE_STREAM};

    #[test]
    fn a_panic_inside_an_export_is_socket_error_and_the_library_still_works() {
        let mut h = 12345;
        inject_panic_once();
        assert_eq!(
            sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &mut h),
            SOCK_SOCKET_ERROR
        );
        // The panic left no handle behind and nothing poisoned.
        assert_eq!(
            sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &mut h),
            SOCK_OK
        );
        assert_ne!(h, SOCK_INVALID_HANDLE);
        inject_panic_once();
        assert!(!sock_strerror(SOCK_OK).is_null());
        inject_panic_once();
        assert_eq!(sock_close(h), SOCK_SOCKET_ERROR);
        assert_eq!(sock_close(h), SOCK_OK);
        assert_eq!(sock_close(h), SOCK_NOT_SOCKET);
    }
}
