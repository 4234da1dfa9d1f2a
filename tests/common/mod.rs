//! Helpers shared by the integration tests.

use std::ffi::{c_char, CStr};

use sock::*;

/// A connected TCP pair on loopback, made through the C API: (client, accepted).
pub fn pair() -> (sock_handle, sock_handle) {
    let (mut l, mut c, mut a) = (0, 0, 0);
    assert_eq!(
        sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &mut l),
        SOCK_OK
    );
    assert_eq!(sock_bind(l, c"127.0.0.1:0".as_ptr()), SOCK_OK);
    assert_eq!(sock_listen(l, 1), SOCK_OK);
    let mut addr = [0 as c_char; SOCK_ADDRESS_MAX_LEN];
    let rc = sock_local_address(l, addr.as_mut_ptr(), addr.len(), std::ptr::null_mut());
    assert_eq!(rc, SOCK_OK);
    // SAFETY: sock_local_address wrote a NUL-terminated string.
    assert!(unsafe { CStr::from_ptr(addr.as_ptr()) }
        .to_bytes()
        .starts_with(b"127.0.0.1:"));
    assert_eq!(
        sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &mut c),
        SOCK_OK
    );
    assert_eq!(sock_connect(c, addr.as_ptr()), SOCK_OK);
    assert_eq!(sock_accept(l, &mut a), SOCK_OK);
    assert_eq!(sock_close(l), SOCK_OK);
    (c, a)
}
