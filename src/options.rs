//! Socket options (`SOCK_OPT_*`): the library's own (blocking mode,
//! timeouts) and thin pass-throughs to the OS option of the same name.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use crate::status::{Error, Result, SOCK_INVALID_ARGUMENT};

/// 1 (default): calls wait; 0: calls that cannot progress return `SOCK_WOULD_BLOCK`.
pub const SOCK_OPT_BLOCKING: i32 = 1;
/// Total time budget of one blocking send or connect, in ms; 0 (default) waits forever.
pub const SOCK_OPT_SEND_TIMEOUT_MS: i32 = 2;
/// Total time budget of one blocking receive or accept, in ms; 0 (default) waits forever.
pub const SOCK_OPT_RECV_TIMEOUT_MS: i32 = 3;
/// TCP_NODELAY: 1 disables Nagle's algorithm (TCP only).
pub const SOCK_OPT_NO_DELAY: i32 = 4;
/// SO_SNDBUF in bytes (Linux reports back twice the value set).
pub const SOCK_OPT_SEND_BUFFER_SIZE: i32 = 5;
/// SO_RCVBUF in bytes (Linux reports back twice the value set).
pub const SOCK_OPT_RECV_BUFFER_SIZE: i32 = 6;
/// SO_REUSEADDR: 0 or 1.
pub const SOCK_OPT_REUSE_ADDRESS: i32 = 7;
/// SO_KEEPALIVE: 0 or 1.
pub const SOCK_OPT_KEEP_ALIVE: i32 = 8;
/// SO_BROADCAST: 0 or 1 (datagram sockets).
pub const SOCK_OPT_BROADCAST: i32 = 9;
/// SO_LINGER in ms, rounded up to whole seconds; -1 (default) turns it off,
/// 0 makes close reset the connection. Set accepts -1 and
/// 0..SOCK_LINGER_MS_MAX; get reports whole seconds times 1000, a value set
/// accepts back unchanged.
pub const SOCK_OPT_LINGER_MS: i32 = 10;

/// The largest `SOCK_OPT_LINGER_MS`: INT32_MAX seconds (SO_LINGER counts
/// whole seconds in an int).
pub const SOCK_LINGER_MS_MAX: i64 = 2_147_483_647_000;

/// 1 (default): an async operation that finishes inside its call returns
/// SOCK_OK and its callback is not called; 0: it returns SOCK_IO_PENDING
/// and reports through its callback like any other (one code path).
pub const SOCK_OPT_ASYNC_INLINE_COMPLETION: i32 = 11;
/// Read-only: bytes queued by async sends and not yet handed to the kernel.
pub const SOCK_OPT_PENDING_SEND_BYTES: i32 = 12;

/// The options the library implements itself.
pub struct Options {
    blocking: AtomicBool,
    inline_completion: AtomicBool,
    send_timeout_ms: AtomicU32,
    recv_timeout_ms: AtomicU32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            blocking: AtomicBool::new(true),
            inline_completion: AtomicBool::new(true),
            send_timeout_ms: AtomicU32::new(0),
            recv_timeout_ms: AtomicU32::new(0),
        }
    }
}

impl Options {
    pub fn blocking(&self) -> bool {
        self.blocking.load(Ordering::Relaxed)
    }

    pub fn inline_completion(&self) -> bool {
        self.inline_completion.load(Ordering::Relaxed)
    }

    pub fn send_timeout_ms(&self) -> u32 {
        self.send_timeout_ms.load(Ordering::Relaxed)
    }

    pub fn recv_timeout_ms(&self) -> u32 {
        self.recv_timeout_ms.load(Ordering::Relaxed)
    }
}

fn invalid() -> Error {
    Error::new(SOCK_INVALID_ARGUMENT)
}

fn as_bool(value: i64) -> Result<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(invalid()),
    }
}

fn as_timeout(value: i64) -> Result<u32> {
    if (0..=i64::from(i32::MAX)).contains(&value) {
        Ok(value as u32)
    } else {
        Err(invalid())
    }
}

fn as_buffer_size(value: i64) -> Result<usize> {
    if (1..=i64::from(i32::MAX)).contains(&value) {
        Ok(value as usize)
    } else {
        Err(invalid())
    }
}

/// Sets `option`, in the library's `options` or on the OS socket `os`;
/// unknown options and out-of-range values are `SOCK_INVALID_ARGUMENT`.
pub fn set(options: &Options, os: &socket2::Socket, option: i32, value: i64) -> Result<()> {
    match option {
        SOCK_OPT_BLOCKING => options.blocking.store(as_bool(value)?, Ordering::Relaxed),
        SOCK_OPT_SEND_TIMEOUT_MS => options
            .send_timeout_ms
            .store(as_timeout(value)?, Ordering::Relaxed),
        SOCK_OPT_RECV_TIMEOUT_MS => options
            .recv_timeout_ms
            .store(as_timeout(value)?, Ordering::Relaxed),
        SOCK_OPT_ASYNC_INLINE_COMPLETION => options
            .inline_completion
            .store(as_bool(value)?, Ordering::Relaxed),
        SOCK_OPT_NO_DELAY => os.set_tcp_nodelay(as_bool(value)?)?,
        SOCK_OPT_SEND_BUFFER_SIZE => os.set_send_buffer_size(as_buffer_size(value)?)?,
        SOCK_OPT_RECV_BUFFER_SIZE => os.set_recv_buffer_size(as_buffer_size(value)?)?,
        SOCK_OPT_REUSE_ADDRESS => os.set_reuse_address(as_bool(value)?)?,
        SOCK_OPT_KEEP_ALIVE => os.set_keepalive(as_bool(value)?)?,
        SOCK_OPT_BROADCAST => os.set_broadcast(as_bool(value)?)?,
        SOCK_OPT_LINGER_MS => {
            let linger = match value {
                -1 => None,
                0..=SOCK_LINGER_MS_MAX => Some(Duration::from_secs((value as u64).div_ceil(1000))),
                _ => return Err(invalid()),
            };
            os.set_linger(linger)?
        }
        _ => return Err(invalid()),
    }
    Ok(())
}

/// Reads `option` from the library's `options` or the OS socket `os`;
/// `pending_send_bytes` is asked only for `SOCK_OPT_PENDING_SEND_BYTES`.
pub fn get(
    options: &Options,
    os: &socket2::Socket,
    option: i32,
    pending_send_bytes: impl FnOnce() -> usize,
) -> Result<i64> {
    Ok(match option {
        SOCK_OPT_BLOCKING => options.blocking().into(),
        SOCK_OPT_SEND_TIMEOUT_MS => options.send_timeout_ms().into(),
        SOCK_OPT_RECV_TIMEOUT_MS => options.recv_timeout_ms().into(),
        SOCK_OPT_ASYNC_INLINE_COMPLETION => options.inline_completion().into(),
        SOCK_OPT_PENDING_SEND_BYTES => pending_send_bytes() as i64,
        SOCK_OPT_NO_DELAY => os.tcp_nodelay()?.into(),
        SOCK_OPT_SEND_BUFFER_SIZE => os.send_buffer_size()? as i64,
        SOCK_OPT_RECV_BUFFER_SIZE => os.recv_buffer_size()? as i64,
        SOCK_OPT_REUSE_ADDRESS => os.reuse_address()?.into(),
        SOCK_OPT_KEEP_ALIVE => os.keepalive()?.into(),
        SOCK_OPT_BROADCAST => os.broadcast()?.into(),
        SOCK_OPT_LINGER_MS => match os.linger()? {
            None => -1,
            Some(d) => (d.as_secs() * 1000) as i64,
        },
        _ => return Err(invalid()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh TCP socket and default options, as a new `Socket` has.
    fn fresh() -> (Options, socket2::Socket) {
        let os = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        (Options::default(), os)
    }

    fn set(s: &(Options, socket2::Socket), option: i32, value: i64) -> Result<()> {
        super::set(&s.0, &s.1, option, value)
    }

    fn get(s: &(Options, socket2::Socket), option: i32) -> Result<i64> {
        super::get(&s.0, &s.1, option, || 0)
    }

    #[test]
    fn library_options_round_trip_and_validate() {
        let s = fresh();
        assert_eq!(get(&s, SOCK_OPT_BLOCKING).unwrap(), 1);
        set(&s, SOCK_OPT_BLOCKING, 0).unwrap();
        assert_eq!(get(&s, SOCK_OPT_BLOCKING).unwrap(), 0);
        assert_eq!(
            set(&s, SOCK_OPT_BLOCKING, 2).unwrap_err().status,
            SOCK_INVALID_ARGUMENT
        );
        set(&s, SOCK_OPT_SEND_TIMEOUT_MS, 250).unwrap();
        assert_eq!(get(&s, SOCK_OPT_SEND_TIMEOUT_MS).unwrap(), 250);
        for bad in [-1, i64::from(i32::MAX) + 1, i64::MIN] {
            assert!(set(&s, SOCK_OPT_RECV_TIMEOUT_MS, bad).is_err());
        }
        assert!(set(&s, 0, 1).is_err());
        assert_eq!(get(&s, SOCK_OPT_ASYNC_INLINE_COMPLETION).unwrap(), 1);
        set(&s, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0).unwrap();
        assert_eq!(get(&s, SOCK_OPT_ASYNC_INLINE_COMPLETION).unwrap(), 0);
        assert_eq!(get(&s, SOCK_OPT_PENDING_SEND_BYTES).unwrap(), 0);
        // Read-only.
        assert_eq!(
            set(&s, SOCK_OPT_PENDING_SEND_BYTES, 0).unwrap_err().status,
            SOCK_INVALID_ARGUMENT
        );
        assert!(get(&s, 999).is_err());
    }

    #[test]
    fn os_options_round_trip() {
        let s = fresh();
        for opt in [
            SOCK_OPT_NO_DELAY,
            SOCK_OPT_REUSE_ADDRESS,
            SOCK_OPT_KEEP_ALIVE,
        ] {
            set(&s, opt, 1).unwrap();
            assert_eq!(get(&s, opt).unwrap(), 1, "option {opt}");
            set(&s, opt, 0).unwrap();
            assert_eq!(get(&s, opt).unwrap(), 0, "option {opt}");
        }
        set(&s, SOCK_OPT_LINGER_MS, 1500).unwrap();
        assert_eq!(get(&s, SOCK_OPT_LINGER_MS).unwrap(), 2000);
        set(&s, SOCK_OPT_LINGER_MS, -1).unwrap();
        assert_eq!(get(&s, SOCK_OPT_LINGER_MS).unwrap(), -1);
        // Whatever get reports, set takes back unchanged.
        for v in [
            0,
            1,
            999,
            1000,
            1001,
            i64::from(i32::MAX),
            SOCK_LINGER_MS_MAX,
        ] {
            set(&s, SOCK_OPT_LINGER_MS, v).unwrap();
            let got = get(&s, SOCK_OPT_LINGER_MS).unwrap();
            set(&s, SOCK_OPT_LINGER_MS, got).unwrap();
            assert_eq!(get(&s, SOCK_OPT_LINGER_MS).unwrap(), got, "linger {v}");
        }
        assert!(set(&s, SOCK_OPT_LINGER_MS, SOCK_LINGER_MS_MAX + 1).is_err());
        assert!(set(&s, SOCK_OPT_LINGER_MS, -2).is_err());
        set(&s, SOCK_OPT_SEND_BUFFER_SIZE, 65536).unwrap();
        assert!(get(&s, SOCK_OPT_SEND_BUFFER_SIZE).unwrap() >= 65536);
        assert!(set(&s, SOCK_OPT_SEND_BUFFER_SIZE, 0).is_err());
    }
}
