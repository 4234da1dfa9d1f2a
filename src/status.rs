//! Status codes (values equal Winsock / .NET `SocketError`), the Linux errno
//! mapping (as .NET maps errno on Linux), `sock_strerror`'s texts and the
//! thread's last OS error.

use std::cell::Cell;
use std::io;

/// Result of every libsock function. Values equal Winsock / .NET `SocketError`.
#[allow(non_camel_case_types)]
pub type sock_status = i32;

/// Success.
pub const SOCK_OK: sock_status = 0;
/// An OS error with no better mapping (see `sock_os_error`), or an internal error.
pub const SOCK_SOCKET_ERROR: sock_status = -1;
/// A pending operation was ended by close or shutdown of its socket or engine.
pub const SOCK_OPERATION_ABORTED: sock_status = 995;
/// Async operation accepted; its callback will run exactly once.
pub const SOCK_IO_PENDING: sock_status = 997;
/// A system call was interrupted.
pub const SOCK_INTERRUPTED: sock_status = 10004;
/// Permission denied (EACCES, EPERM).
pub const SOCK_ACCESS_DENIED: sock_status = 10013;
/// A required pointer is NULL.
pub const SOCK_FAULT: sock_status = 10014;
/// Bad flag, option, length, address text, or socket state.
pub const SOCK_INVALID_ARGUMENT: sock_status = 10022;
/// The process or system is out of descriptors.
pub const SOCK_TOO_MANY_OPEN_SOCKETS: sock_status = 10024;
/// A non-blocking call could make no progress.
pub const SOCK_WOULD_BLOCK: sock_status = 10035;
/// A non-blocking connect has started and is not finished yet.
pub const SOCK_IN_PROGRESS: sock_status = 10036;
/// A connect is already in progress on this socket.
pub const SOCK_ALREADY_IN_PROGRESS: sock_status = 10037;
/// Invalid, closed or stale handle.
pub const SOCK_NOT_SOCKET: sock_status = 10038;
/// `sock_send` on an unconnected datagram socket.
pub const SOCK_DESTINATION_ADDRESS_REQUIRED: sock_status = 10039;
/// Datagram larger than the protocol allows (nothing was sent), or a
/// received datagram was truncated to the buffer.
pub const SOCK_MESSAGE_SIZE: sock_status = 10040;
/// Wrong protocol type for the socket.
pub const SOCK_PROTOCOL_TYPE: sock_status = 10041;
/// The option is not supported by this socket's protocol.
pub const SOCK_PROTOCOL_OPTION: sock_status = 10042;
/// Protocol not supported.
pub const SOCK_PROTOCOL_NOT_SUPPORTED: sock_status = 10043;
/// Socket type not supported.
pub const SOCK_SOCKET_NOT_SUPPORTED: sock_status = 10044;
/// Operation not supported on this socket.
pub const SOCK_OPERATION_NOT_SUPPORTED: sock_status = 10045;
/// Protocol family not supported.
pub const SOCK_PROTOCOL_FAMILY_NOT_SUPPORTED: sock_status = 10046;
/// Address family not supported by this socket.
pub const SOCK_ADDRESS_FAMILY_NOT_SUPPORTED: sock_status = 10047;
/// The address is already in use.
pub const SOCK_ADDRESS_ALREADY_IN_USE: sock_status = 10048;
/// The address is not available on this machine (or the path does not exist).
pub const SOCK_ADDRESS_NOT_AVAILABLE: sock_status = 10049;
/// The network is down.
pub const SOCK_NETWORK_DOWN: sock_status = 10050;
/// The network is unreachable.
pub const SOCK_NETWORK_UNREACHABLE: sock_status = 10051;
/// The network dropped the connection on reset.
pub const SOCK_NETWORK_RESET: sock_status = 10052;
/// The connection was aborted locally.
pub const SOCK_CONNECTION_ABORTED: sock_status = 10053;
/// The peer reset the connection.
pub const SOCK_CONNECTION_RESET: sock_status = 10054;
/// No buffer space: the kernel is out of memory, or a caller's buffer is too small.
pub const SOCK_NO_BUFFER_SPACE: sock_status = 10055;
/// The socket is already connected.
pub const SOCK_IS_CONNECTED: sock_status = 10056;
/// A stream socket that is neither connected nor accepted.
pub const SOCK_NOT_CONNECTED: sock_status = 10057;
/// Sending after shutdown for sending (EPIPE).
pub const SOCK_SHUTDOWN: sock_status = 10058;
/// The send or receive timeout expired.
pub const SOCK_TIMED_OUT: sock_status = 10060;
/// The peer refused the connection.
pub const SOCK_CONNECTION_REFUSED: sock_status = 10061;
/// The host is down.
pub const SOCK_HOST_DOWN: sock_status = 10064;
/// No route to the host.
pub const SOCK_HOST_UNREACHABLE: sock_status = 10065;
/// The socket is shutting down (ESHUTDOWN).
pub const SOCK_DISCONNECTING: sock_status = 10101;
/// The host name did not resolve.
pub const SOCK_HOST_NOT_FOUND: sock_status = 11001;
/// Name resolution failed for now; try again.
pub const SOCK_TRY_AGAIN: sock_status = 11002;
/// The name resolved, but to no data of the requested kind.
pub const SOCK_NO_DATA: sock_status = 11004;

/// One status: its value, C name, `sock_strerror` text (NUL-terminated)
/// and the Linux errnos that map to it (as .NET maps errno on Linux).
struct StatusRow {
    status: sock_status,
    name: &'static str,
    text: &'static str,
    errnos: &'static [i32],
}

const fn row(
    status: sock_status,
    name: &'static str,
    text: &'static str,
    errnos: &'static [i32],
) -> StatusRow {
    StatusRow {
        status,
        name,
        text,
        errnos,
    }
}

/// Every status, by value: the one table the name, the text and the errno
/// mapping all come from.
const STATUSES: &[StatusRow] = &[
    row(
        SOCK_SOCKET_ERROR,
        "SOCK_SOCKET_ERROR",
        "socket error (see sock_os_error)\0",
        &[],
    ),
    row(SOCK_OK, "SOCK_OK", "success\0", &[]),
    row(
        SOCK_OPERATION_ABORTED,
        "SOCK_OPERATION_ABORTED",
        "operation aborted by close, shutdown or cancel\0",
        &[libc::EBADF, libc::ECANCELED],
    ),
    row(
        SOCK_IO_PENDING,
        "SOCK_IO_PENDING",
        "operation pending; its callback will run\0",
        &[],
    ),
    row(
        SOCK_INTERRUPTED,
        "SOCK_INTERRUPTED",
        "interrupted system call\0",
        &[libc::EINTR],
    ),
    row(
        SOCK_ACCESS_DENIED,
        "SOCK_ACCESS_DENIED",
        "permission denied\0",
        &[libc::EACCES, libc::EPERM],
    ),
    row(
        SOCK_FAULT,
        "SOCK_FAULT",
        "a required pointer is NULL\0",
        &[libc::EFAULT],
    ),
    row(
        SOCK_INVALID_ARGUMENT,
        "SOCK_INVALID_ARGUMENT",
        "invalid argument\0",
        &[libc::EINVAL],
    ),
    row(
        SOCK_TOO_MANY_OPEN_SOCKETS,
        "SOCK_TOO_MANY_OPEN_SOCKETS",
        "too many open sockets\0",
        &[libc::EMFILE, libc::ENFILE],
    ),
    row(
        SOCK_WOULD_BLOCK,
        "SOCK_WOULD_BLOCK",
        "operation would block\0",
        &[libc::EAGAIN],
    ),
    row(
        SOCK_IN_PROGRESS,
        "SOCK_IN_PROGRESS",
        "operation now in progress\0",
        &[libc::EINPROGRESS],
    ),
    row(
        SOCK_ALREADY_IN_PROGRESS,
        "SOCK_ALREADY_IN_PROGRESS",
        "operation already in progress\0",
        &[libc::EALREADY],
    ),
    row(
        SOCK_NOT_SOCKET,
        "SOCK_NOT_SOCKET",
        "not a socket: invalid, closed or stale handle\0",
        &[libc::ENOTSOCK],
    ),
    row(
        SOCK_DESTINATION_ADDRESS_REQUIRED,
        "SOCK_DESTINATION_ADDRESS_REQUIRED",
        "destination address required\0",
        &[libc::EDESTADDRREQ],
    ),
    row(
        SOCK_MESSAGE_SIZE,
        "SOCK_MESSAGE_SIZE",
        "message too long\0",
        &[libc::EMSGSIZE],
    ),
    row(
        SOCK_PROTOCOL_TYPE,
        "SOCK_PROTOCOL_TYPE",
        "protocol wrong type for socket\0",
        &[libc::EPROTOTYPE],
    ),
    row(
        SOCK_PROTOCOL_OPTION,
        "SOCK_PROTOCOL_OPTION",
        "option not supported by protocol\0",
        &[libc::ENOPROTOOPT],
    ),
    row(
        SOCK_PROTOCOL_NOT_SUPPORTED,
        "SOCK_PROTOCOL_NOT_SUPPORTED",
        "protocol not supported\0",
        &[libc::EPROTONOSUPPORT],
    ),
    row(
        SOCK_SOCKET_NOT_SUPPORTED,
        "SOCK_SOCKET_NOT_SUPPORTED",
        "socket type not supported\0",
        &[libc::ESOCKTNOSUPPORT],
    ),
    row(
        SOCK_OPERATION_NOT_SUPPORTED,
        "SOCK_OPERATION_NOT_SUPPORTED",
        "operation not supported\0",
        &[libc::EOPNOTSUPP],
    ),
    row(
        SOCK_PROTOCOL_FAMILY_NOT_SUPPORTED,
        "SOCK_PROTOCOL_FAMILY_NOT_SUPPORTED",
        "protocol family not supported\0",
        &[libc::EPFNOSUPPORT],
    ),
    row(
        SOCK_ADDRESS_FAMILY_NOT_SUPPORTED,
        "SOCK_ADDRESS_FAMILY_NOT_SUPPORTED",
        "address family not supported\0",
        &[libc::EAFNOSUPPORT],
    ),
    row(
        SOCK_ADDRESS_ALREADY_IN_USE,
        "SOCK_ADDRESS_ALREADY_IN_USE",
        "address already in use\0",
        &[libc::EADDRINUSE],
    ),
    row(
        SOCK_ADDRESS_NOT_AVAILABLE,
        "SOCK_ADDRESS_NOT_AVAILABLE",
        "address not available\0",
        &[libc::EADDRNOTAVAIL, libc::ENOENT],
    ),
    row(
        SOCK_NETWORK_DOWN,
        "SOCK_NETWORK_DOWN",
        "network is down\0",
        &[libc::ENETDOWN],
    ),
    row(
        SOCK_NETWORK_UNREACHABLE,
        "SOCK_NETWORK_UNREACHABLE",
        "network is unreachable\0",
        &[libc::ENETUNREACH],
    ),
    row(
        SOCK_NETWORK_RESET,
        "SOCK_NETWORK_RESET",
        "network dropped connection on reset\0",
        &[libc::ENETRESET],
    ),
    row(
        SOCK_CONNECTION_ABORTED,
        "SOCK_CONNECTION_ABORTED",
        "connection aborted\0",
        &[libc::ECONNABORTED],
    ),
    row(
        SOCK_CONNECTION_RESET,
        "SOCK_CONNECTION_RESET",
        "connection reset by peer\0",
        &[libc::ECONNRESET],
    ),
    row(
        SOCK_NO_BUFFER_SPACE,
        "SOCK_NO_BUFFER_SPACE",
        "no buffer space available\0",
        &[libc::ENOBUFS],
    ),
    row(
        SOCK_IS_CONNECTED,
        "SOCK_IS_CONNECTED",
        "socket is already connected\0",
        &[libc::EISCONN],
    ),
    row(
        SOCK_NOT_CONNECTED,
        "SOCK_NOT_CONNECTED",
        "socket is not connected\0",
        &[libc::ENOTCONN],
    ),
    row(
        SOCK_SHUTDOWN,
        "SOCK_SHUTDOWN",
        "socket is shut down for sending\0",
        &[libc::EPIPE],
    ),
    row(
        SOCK_TIMED_OUT,
        "SOCK_TIMED_OUT",
        "timed out\0",
        &[libc::ETIMEDOUT],
    ),
    row(
        SOCK_CONNECTION_REFUSED,
        "SOCK_CONNECTION_REFUSED",
        "connection refused\0",
        &[libc::ECONNREFUSED],
    ),
    row(
        SOCK_HOST_DOWN,
        "SOCK_HOST_DOWN",
        "host is down\0",
        &[libc::EHOSTDOWN],
    ),
    row(
        SOCK_HOST_UNREACHABLE,
        "SOCK_HOST_UNREACHABLE",
        "no route to host\0",
        &[libc::EHOSTUNREACH],
    ),
    row(
        SOCK_DISCONNECTING,
        "SOCK_DISCONNECTING",
        "socket is disconnecting\0",
        &[libc::ESHUTDOWN],
    ),
    row(
        SOCK_HOST_NOT_FOUND,
        "SOCK_HOST_NOT_FOUND",
        "host not found\0",
        &[],
    ),
    row(
        SOCK_TRY_AGAIN,
        "SOCK_TRY_AGAIN",
        "name resolution failed for now; try again\0",
        &[],
    ),
    row(
        SOCK_NO_DATA,
        "SOCK_NO_DATA",
        "name has no data of the requested kind\0",
        &[libc::ENODATA],
    ),
];

/// errno -> status for errnos below `ERRNO_LIMIT`, built from `STATUSES`
/// at compile time (any other errno is `SOCK_SOCKET_ERROR`).
const ERRNO_LIMIT: usize = 256;
static ERRNO_STATUS: [sock_status; ERRNO_LIMIT] = {
    let mut map = [SOCK_SOCKET_ERROR; ERRNO_LIMIT];
    let mut i = 0;
    while i < STATUSES.len() {
        let mut k = 0;
        while k < STATUSES[i].errnos.len() {
            map[STATUSES[i].errnos[k] as usize] = STATUSES[i].status;
            k += 1;
        }
        i += 1;
    }
    map
};

fn row_of(status: sock_status) -> Option<&'static StatusRow> {
    STATUSES
        .binary_search_by_key(&status, |r| r.status)
        .ok()
        .map(|i| &STATUSES[i])
}

/// Maps a Linux errno to a status as .NET maps it on Linux.
pub fn status_from_errno(errno: i32) -> sock_status {
    usize::try_from(errno)
        .ok()
        .and_then(|e| ERRNO_STATUS.get(e).copied())
        .unwrap_or(SOCK_SOCKET_ERROR)
}

/// The C name of a status code ("SOCK_TIMED_OUT"), or "SOCK_UNKNOWN".
pub fn status_name(status: sock_status) -> &'static str {
    row_of(status).map_or("SOCK_UNKNOWN", |r| r.name)
}

/// The text `sock_strerror` returns for `status`, NUL-terminated.
pub fn status_text(status: sock_status) -> &'static str {
    row_of(status).map_or("unknown status code\0", |r| r.text)
}

/// An error inside the library: a status, and the OS errno behind it if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub status: sock_status,
    pub errno: i32,
}

impl Error {
    /// An error decided by the library itself, with no OS errno behind it.
    pub const fn new(status: sock_status) -> Error {
        Error { status, errno: 0 }
    }

    /// An error from an OS call's errno.
    pub fn from_errno(errno: i32) -> Error {
        Error {
            status: status_from_errno(errno),
            errno,
        }
    }

    /// The calling thread's current `errno`.
    pub fn last_os_error() -> Error {
        Error::from_errno(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(errno) => Error::from_errno(errno),
            None => Error::new(SOCK_SOCKET_ERROR),
        }
    }
}

/// The library's internal result type.
pub type Result<T> = std::result::Result<T, Error>;

thread_local! {
    static LAST_OS_ERROR: Cell<i32> = const { Cell::new(0) };
}

/// Records `err`'s errno (if it has one) as this thread's last OS error and
/// returns its status: the one way an internal error leaves through the ABI.
pub fn report(err: Error) -> sock_status {
    if err.errno != 0 {
        LAST_OS_ERROR.with(|c| c.set(err.errno));
    }
    err.status
}

/// Turns an internal result into the status C sees.
pub fn to_status(r: Result<()>) -> sock_status {
    match r {
        Ok(()) => SOCK_OK,
        Err(e) => report(e),
    }
}

/// This thread's last recorded OS errno, 0 if none.
pub fn last_os_error() -> i32 {
    LAST_OS_ERROR.with(|c| c.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per errno of appendix A, each checked on its own.
    macro_rules! errno_rows {
        ($($name:ident: $errno:expr => $status:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    assert_eq!(status_from_errno($errno), $status);
                }
            )*
        };
    }

    errno_rows! {
        ebadf: libc::EBADF => 995;
        ecanceled: libc::ECANCELED => 995;
        eintr: libc::EINTR => 10004;
        eacces: libc::EACCES => 10013;
        eperm: libc::EPERM => 10013;
        efault: libc::EFAULT => 10014;
        einval: libc::EINVAL => 10022;
        emfile: libc::EMFILE => 10024;
        enfile: libc::ENFILE => 10024;
        eagain: libc::EAGAIN => 10035;
        ewouldblock: libc::EWOULDBLOCK => 10035;
        einprogress: libc::EINPROGRESS => 10036;
        ealready: libc::EALREADY => 10037;
        enotsock: libc::ENOTSOCK => 10038;
        edestaddrreq: libc::EDESTADDRREQ => 10039;
        emsgsize: libc::EMSGSIZE => 10040;
        eprototype: libc::EPROTOTYPE => 10041;
        enoprotoopt: libc::ENOPROTOOPT => 10042;
        eprotonosupport: libc::EPROTONOSUPPORT => 10043;
        esocktnosupport: libc::ESOCKTNOSUPPORT => 10044;
        eopnotsupp: libc::EOPNOTSUPP => 10045;
        epfnosupport: libc::EPFNOSUPPORT => 10046;
        eafnosupport: libc::EAFNOSUPPORT => 10047;
        eaddrinuse: libc::EADDRINUSE => 10048;
        eaddrnotavail: libc::EADDRNOTAVAIL => 10049;
        enoent: libc::ENOENT => 10049;
        enetdown: libc::ENETDOWN => 10050;
        enetunreach: libc::ENETUNREACH => 10051;
        enetreset: libc::ENETRESET => 10052;
        econnaborted: libc::ECONNABORTED => 10053;
        econnreset: libc::ECONNRESET => 10054;
        enobufs: libc::ENOBUFS => 10055;
        eisconn: libc::EISCONN => 10056;
        enotconn: libc::ENOTCONN => 10057;
        epipe: libc::EPIPE => 10058;
        etimedout: libc::ETIMEDOUT => 10060;
        econnrefused: libc::ECONNREFUSED => 10061;
        ehostdown: libc::EHOSTDOWN => 10064;
        ehostunreach: libc::EHOSTUNREACH => 10065;
        eshutdown: libc::ESHUTDOWN => 10101;
        enodata: libc::ENODATA => 11004;
        other_errno: libc::EIO => -1;
        zero_errno: 0 => -1;
    }

    #[test]
    fn every_text_is_nul_terminated_and_unknown_codes_have_one() {
        for s in [
            -1,
            0,
            995,
            997,
            10004,
            10022,
            10038,
            10060,
            11001,
            11004,
            12345,
            i32::MIN,
        ] {
            let t = status_text(s);
            assert!(t.ends_with('\0') && t.len() > 1, "{s}");
            assert_eq!(t.find('\0'), Some(t.len() - 1));
        }
        assert_eq!(status_text(42), "unknown status code\0");
    }

    #[test]
    fn every_known_code_has_its_c_name() {
        for (code, name) in [
            (0, "SOCK_OK"),
            (-1, "SOCK_SOCKET_ERROR"),
            (10060, "SOCK_TIMED_OUT"),
            (11004, "SOCK_NO_DATA"),
            (997, "SOCK_IO_PENDING"),
        ] {
            assert_eq!(status_name(code), name);
        }
        assert_eq!(status_name(1234), "SOCK_UNKNOWN");
        // Every code with a text of its own has a name of its own.
        for code in -1..12000 {
            assert_eq!(
                status_text(code) == "unknown status code\0",
                status_name(code) == "SOCK_UNKNOWN",
                "{code}"
            );
        }
    }

    #[test]
    fn the_table_is_sorted_unique_and_maps_each_errno_once() {
        for pair in STATUSES.windows(2) {
            assert!(pair[0].status < pair[1].status, "{}", pair[1].name);
        }
        let mut seen = std::collections::HashSet::new();
        for r in STATUSES {
            for &e in r.errnos {
                assert!((e as usize) < ERRNO_LIMIT && seen.insert(e), "errno {e}");
            }
        }
        assert_eq!(status_from_errno(-5), SOCK_SOCKET_ERROR);
        assert_eq!(status_from_errno(100_000), SOCK_SOCKET_ERROR);
    }

    #[test]
    fn report_records_errno_per_thread() {
        assert_eq!(
            report(Error::from_errno(libc::ECONNRESET)),
            SOCK_CONNECTION_RESET
        );
        assert_eq!(last_os_error(), libc::ECONNRESET);
        std::thread::spawn(|| assert_eq!(last_os_error(), 0))
            .join()
            .unwrap();
        // A library-decided error keeps the last OS errno.
        assert_eq!(report(Error::new(SOCK_FAULT)), SOCK_FAULT);
        assert_eq!(last_os_error(), libc::ECONNRESET);
    }
}
