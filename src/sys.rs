//! The system-call primitives every path shares: one `send`/`sendmsg`
//! and one `recv`/`recvmsg`, never waiting (`MSG_DONTWAIT` unless the
//! caller clears it), never raising SIGPIPE (`MSG_NOSIGNAL`), with `EINTR`
//! retried inside; and the C flags and gather-list type they translate.
//! Policy (waiting, turns, queues) lives in `io` and `asyncio`.

use std::ffi::c_void;

use socket2::SockAddr;

use crate::socket::{Kind, Socket};
use crate::status::{Error, Result, SOCK_INVALID_ARGUMENT, SOCK_OPERATION_ABORTED};

/// No flags.
pub const SOCK_MSG_NONE: i32 = 0;
/// Out-of-band data (MSG_OOB); send and receive.
pub const SOCK_MSG_OOB: i32 = 1;
/// Receive only: look at the data without consuming it (MSG_PEEK).
pub const SOCK_MSG_PEEK: i32 = 2;
/// Send only: bypass routing, send to directly connected hosts (MSG_DONTROUTE).
pub const SOCK_MSG_DONT_ROUTE: i32 = 4;

/// One segment of a gather list: `len` bytes at `data`. Same layout as `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct sock_buf {
    /// The bytes; may be NULL only when `len` is 0.
    pub data: *const c_void,
    /// Number of bytes at `data`.
    pub len: usize,
}

// `sock_buf` arrays are handed to the kernel as `iovec` arrays.
const _: () = assert!(std::mem::size_of::<sock_buf>() == std::mem::size_of::<libc::iovec>());
const _: () = assert!(std::mem::align_of::<sock_buf>() == std::mem::align_of::<libc::iovec>());

/// Linux's limit on segments per `sendmsg` (UIO_MAXIOV).
pub(crate) const IOV_MAX: usize = 1024;
/// Validates `sock_send` flags and turns them into OS flags.
pub fn send_flags(flags: i32) -> Result<libc::c_int> {
    if flags & !(SOCK_MSG_OOB | SOCK_MSG_DONT_ROUTE) != 0 {
        return Err(Error::new(SOCK_INVALID_ARGUMENT));
    }
    let mut os = SEND_FLAGS_NONE;
    if flags & SOCK_MSG_OOB != 0 {
        os |= libc::MSG_OOB;
    }
    if flags & SOCK_MSG_DONT_ROUTE != 0 {
        os |= libc::MSG_DONTROUTE;
    }
    Ok(os)
}

/// The OS flags of a send with `SOCK_MSG_NONE`.
pub(crate) const SEND_FLAGS_NONE: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;

/// `sock_recv`'s SOCK_MSG_NONE as OS flags.
pub(crate) const RECV_FLAGS_NONE: libc::c_int = libc::MSG_DONTWAIT;

/// Validates `sock_recv` flags and turns them into OS flags.
pub fn recv_flags(flags: i32) -> Result<libc::c_int> {
    if flags & !(SOCK_MSG_OOB | SOCK_MSG_PEEK) != 0 {
        return Err(Error::new(SOCK_INVALID_ARGUMENT));
    }
    let mut os = RECV_FLAGS_NONE;
    if flags & SOCK_MSG_OOB != 0 {
        os |= libc::MSG_OOB;
    }
    if flags & SOCK_MSG_PEEK != 0 {
        os |= libc::MSG_PEEK;
    }
    Ok(os)
}

/// One send system call: `send` for the common single-segment case,
/// `sendmsg` otherwise. `EINTR` is retried here; `EAGAIN` comes back as an
/// error with that errno.
#[inline]
pub(crate) fn send_once(
    sock: &Socket,
    iov: &[libc::iovec],
    to: Option<&SockAddr>,
    flags: libc::c_int,
) -> Result<usize> {
    loop {
        let n = send_syscall(sock, iov, to, flags);
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = Error::last_os_error();
        if err.errno != libc::EINTR {
            return Err(err);
        }
    }
}

/// The system call itself: its return value, errno set when negative
/// (`EINTR` is not retried; `send_once` does that).
#[inline]
pub(crate) fn send_syscall(
    sock: &Socket,
    iov: &[libc::iovec],
    to: Option<&SockAddr>,
    flags: libc::c_int,
) -> isize {
    if let ([one], None) = (iov, to) {
        // SAFETY: the segment describes `iov_len` readable bytes (checked
        // by the caller at the ABI boundary).
        unsafe { libc::send(sock.fd(), one.iov_base, one.iov_len, flags) }
    } else {
        // SAFETY: msghdr is plain old data; all-zero means "no fields set".
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        if let Some(addr) = to {
            msg.msg_name = addr.as_ptr() as *mut c_void;
            msg.msg_namelen = addr.len();
        }
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len();
        // SAFETY: `msg` points at the caller's valid segments and address,
        // which outlive the call; the kernel only reads them.
        unsafe { libc::sendmsg(sock.fd(), &msg, flags) }
    }
}

/// The segments one system call may take from the front of a gather list.
pub(crate) fn first_window(bufs: &[libc::iovec]) -> &[libc::iovec] {
    &bufs[..bufs.len().min(IOV_MAX)]
}

/// What one receive got.
/// (Small enough to come back in registers: the sender's address, when
/// wanted, goes to the caller's `Sender` instead.)
pub struct Received {
    pub len: usize,
    /// The datagram was longer than the buffer; `len` bytes of it were kept.
    pub truncated: bool,
}

/// Where a receive puts the sender's address (`None` when not known).
pub type Sender = Option<SockAddr>;

/// One receive system call (`EINTR` retried here): EAGAIN comes back as an
/// error with that errno. An end of stream caused by `sock_close` is
/// reported as `SOCK_OPERATION_ABORTED`. `sender`, when given, receives
/// the sender's address.
#[inline]
pub(crate) fn recv_once(
    sock: &Socket,
    buf: *mut u8,
    cap: usize,
    os_flags: libc::c_int,
    mut sender: Option<&mut Sender>,
) -> Result<Received> {
    loop {
        let result = if sock.kind == Kind::Stream && sender.is_none() {
            // SAFETY: the caller checked `buf` is valid for `cap` bytes of writes.
            let n = unsafe { libc::recv(sock.fd(), buf.cast(), cap, os_flags) };
            if n < 0 {
                Err(Error::last_os_error())
            } else {
                Ok(Received {
                    len: n as usize,
                    truncated: false,
                })
            }
        } else {
            recv_msg(sock, buf, cap, os_flags, sender.as_deref_mut())
        };
        return match result {
            Ok(r) if r.len == 0 && cap > 0 && sock.kind == Kind::Stream => {
                // An end of stream caused by our own close, or after a reset
                // that another call already reported, is not an orderly end.
                if sock.is_closed() {
                    Err(Error::new(SOCK_OPERATION_ABORTED))
                } else if let Some(e) = sock.broken_error() {
                    Err(e)
                } else {
                    Ok(r)
                }
            }
            Ok(r) => Ok(r),
            Err(e) if e.errno == libc::EINTR => continue,
            Err(e) if e.errno == libc::EAGAIN => Err(e),
            Err(e) => Err(sock.fail(e)),
        };
    }
}

/// The receive that needs `recvmsg`: a datagram, or a sender's address.
/// Out of line, to keep a plain stream receive short.
#[inline(never)]
fn recv_msg(
    sock: &Socket,
    buf: *mut u8,
    cap: usize,
    os_flags: libc::c_int,
    sender: Option<&mut Sender>,
) -> Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: cap,
    };
    // SAFETY: msghdr is plain old data; all-zero means "no fields set".
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let len = match sender {
        None => {
            // SAFETY: `msg` points at one segment the caller checked is
            // valid for `cap` bytes of writes, and at no address.
            let n = unsafe { libc::recvmsg(sock.fd(), &mut msg, os_flags) };
            if n < 0 {
                return Err(Error::last_os_error());
            }
            n as usize
        }
        Some(out) => {
            // SAFETY: try_init hands us storage for any socket address and
            // its length; recvmsg writes at most that many bytes and
            // reports the length it wrote, which we pass back.
            let result = unsafe {
                SockAddr::try_init(|storage, len| {
                    msg.msg_name = storage.cast();
                    msg.msg_namelen = *len;
                    let n = libc::recvmsg(sock.fd(), &mut msg, os_flags);
                    if n < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    *len = msg.msg_namelen;
                    Ok(n as usize)
                })
            };
            let (len, from) = result.map_err(Error::from)?;
            *out = (from.len() > 0).then_some(from);
            len
        }
    };
    Ok(Received {
        len,
        truncated: sock.kind == Kind::Dgram && msg.msg_flags & libc::MSG_TRUNC != 0,
    })
}
