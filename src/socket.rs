//! One socket inside the library: the OS socket, what kind it is, its
//! connection state, its options and its send queue; and its life cycle
//! (create, bind, listen, accept, connect, shutdown, close).
//!
//! The OS descriptor is always non-blocking (and close-on-exec); the
//! library implements blocking mode itself (see `wait`). The descriptor is
//! closed when the last reference to the `Socket` drops, so an operation
//! still running on another thread when `sock_close` is called never
//! touches a descriptor number that the OS has reused.

use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::time::Duration;

use socket2::{Domain, SockAddr, Type};

use crate::options::Options;
use crate::queue::OpQueue;
use crate::status::{
    Error, Result, SOCK_INVALID_ARGUMENT, SOCK_IN_PROGRESS, SOCK_IS_CONNECTED, SOCK_NOT_CONNECTED,
    SOCK_OPERATION_ABORTED, SOCK_WOULD_BLOCK,
};
use crate::wait::{wait_fd, Deadline};

/// `sock_socket` family: IPv4.
pub const SOCK_FAMILY_INET: i32 = 1;
/// `sock_socket` family: IPv6 (dual stack: IPv4 addresses map to ::ffff:a.b.c.d).
pub const SOCK_FAMILY_INET6: i32 = 2;
/// `sock_socket` family: Unix domain ("unix:/path" addresses).
pub const SOCK_FAMILY_UNIX: i32 = 3;
/// `sock_socket` type: a byte stream (TCP for IP families).
pub const SOCK_TYPE_STREAM: i32 = 1;
/// `sock_socket` type: datagrams (UDP for IP families).
pub const SOCK_TYPE_DGRAM: i32 = 2;
/// `sock_shutdown` how: no more receiving.
pub const SOCK_SHUT_RECV: i32 = 0;
/// `sock_shutdown` how: no more sending (the peer sees end of stream).
pub const SOCK_SHUT_SEND: i32 = 1;
/// `sock_shutdown` how: both.
pub const SOCK_SHUT_BOTH: i32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
    Unix,
}

impl Family {
    pub fn from_c(value: i32) -> Result<Family> {
        match value {
            SOCK_FAMILY_INET => Ok(Family::Inet),
            SOCK_FAMILY_INET6 => Ok(Family::Inet6),
            SOCK_FAMILY_UNIX => Ok(Family::Unix),
            _ => Err(Error::new(SOCK_INVALID_ARGUMENT)),
        }
    }

    pub fn os_domain(self) -> libc::c_int {
        match self {
            Family::Inet => libc::AF_INET,
            Family::Inet6 => libc::AF_INET6,
            Family::Unix => libc::AF_UNIX,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stream,
    Dgram,
}

impl Kind {
    pub fn from_c(value: i32) -> Result<Kind> {
        match value {
            SOCK_TYPE_STREAM => Ok(Kind::Stream),
            SOCK_TYPE_DGRAM => Ok(Kind::Dgram),
            _ => Err(Error::new(SOCK_INVALID_ARGUMENT)),
        }
    }

    pub fn os_type(self) -> libc::c_int {
        match self {
            Kind::Stream => libc::SOCK_STREAM,
            Kind::Dgram => libc::SOCK_DGRAM,
        }
    }
}

/// Where a socket is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Fresh = 0,
    Listening = 1,
    Connecting = 2,
    Connected = 3,
}

pub struct Socket {
    os: socket2::Socket,
    pub family: Family,
    pub kind: Kind,
    state: AtomicU8,
    closed: AtomicBool,
    /// The descriptor's O_NONBLOCK is cleared (see `kernel_may_wait`).
    fd_blocking: AtomicBool,
    /// errno of the first connection-breaking error (0: none); see `fail`.
    broken: AtomicI32,
    /// Closing dropped unsent bytes: the stream is to be reset, not ended.
    reset_on_close: AtomicBool,
    pub options: Options,
    pub queue: OpQueue,
}

impl Socket {
    fn from_os(os: socket2::Socket, family: Family, kind: Kind, state: State) -> Socket {
        Socket {
            os,
            family,
            kind,
            state: AtomicU8::new(state as u8),
            closed: AtomicBool::new(false),
            fd_blocking: AtomicBool::new(false),
            broken: AtomicI32::new(0),
            reset_on_close: AtomicBool::new(false),
            options: Options::default(),
            queue: OpQueue::default(),
        }
    }

    /// A new non-blocking, close-on-exec OS socket.
    pub fn open(family: Family, kind: Kind) -> Result<Socket> {
        let ty = Type::from(kind.os_type()).nonblocking();
        let os = socket2::Socket::new(Domain::from(family.os_domain()), ty, None)?;
        Ok(Socket::from_os(os, family, kind, State::Fresh))
    }

    pub fn fd(&self) -> RawFd {
        self.os.as_raw_fd()
    }

    pub fn os(&self) -> &socket2::Socket {
        &self.os
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            1 => State::Listening,
            2 => State::Connecting,
            3 => State::Connected,
            _ => State::Fresh,
        }
    }

    pub(crate) fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn closed_flag(&self) -> &AtomicBool {
        &self.closed
    }

    /// The error to report for a failed call: `SOCK_OPERATION_ABORTED` when
    /// the socket was closed under it, else the call's own error. A stream's
    /// first connection-breaking error (reset, abort, timeout, unreachable)
    /// is remembered: the kernel reports it to one call only, and the next
    /// sees just EPIPE or an end of stream, so those report it again.
    pub fn fail(&self, err: Error) -> Error {
        if self.is_closed() {
            return Error::new(SOCK_OPERATION_ABORTED);
        }
        if self.kind == Kind::Stream {
            match err.errno {
                libc::ECONNRESET
                | libc::ECONNABORTED
                | libc::ETIMEDOUT
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::EHOSTDOWN => {
                    let _ = self.broken.compare_exchange(
                        0,
                        err.errno,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                libc::EPIPE => return self.broken_error().unwrap_or(err),
                _ => {}
            }
        }
        err
    }

    /// The connection-breaking error this stream saw, if any.
    pub fn broken_error(&self) -> Option<Error> {
        match self.broken.load(Ordering::Acquire) {
            0 => None,
            errno => Some(Error::from_errno(errno)),
        }
    }

    /// Blocks (as the socket's mode allows) until `events` or the deadline.
    /// In non-blocking mode it returns `SOCK_WOULD_BLOCK` at once.
    pub fn wait(&self, events: libc::c_short, deadline: Deadline) -> Result<()> {
        if !self.options.blocking() {
            return Err(Error::new(SOCK_WOULD_BLOCK));
        }
        wait_fd(self.fd(), events, deadline).map_err(|e| self.fail(e))?;
        if self.is_closed() {
            return Err(Error::new(SOCK_OPERATION_ABORTED));
        }
        Ok(())
    }

    /// Whether a blocking receive on this socket may wait inside `recv`
    /// itself: one system call, as a plain blocking `recv` makes, instead
    /// of `recv`, `poll`, `recv`. Only a connected stream qualifies; on the
    /// first call its descriptor's O_NONBLOCK is cleared, once. That changes
    /// nothing else: every other system call on a connected stream either
    /// passes MSG_DONTWAIT or cannot wait, and `close` still wakes a waiting
    /// `recv` (with `shutdown`, as it wakes `poll`).
    #[inline]
    pub fn kernel_may_wait(&self) -> bool {
        if self.kind != Kind::Stream || self.state() != State::Connected {
            return false;
        }
        self.fd_blocking.load(Ordering::Relaxed) || self.clear_nonblocking()
    }

    /// `kernel_may_wait`'s first time on a socket: clears O_NONBLOCK.
    #[cold]
    #[inline(never)]
    fn clear_nonblocking(&self) -> bool {
        let cleared = self.os.set_nonblocking(false).is_ok();
        if cleared {
            self.fd_blocking.store(true, Ordering::Relaxed);
        }
        cleared
    }

    pub fn bind(&self, addr: &SockAddr) -> Result<()> {
        Ok(self.os.bind(addr)?)
    }

    pub fn listen(&self, backlog: i32) -> Result<()> {
        if self.kind != Kind::Stream || backlog < 0 {
            return Err(Error::new(SOCK_INVALID_ARGUMENT));
        }
        self.os.listen(backlog)?;
        self.set_state(State::Listening);
        Ok(())
    }

    /// One accept that never waits (`EINTR` and a connection aborted
    /// before it was accepted are retried): `EAGAIN` comes back as an error
    /// with that errno. The new socket is close-on-exec, in blocking mode
    /// with default options, as `sock_accept` makes it.
    pub(crate) fn accept_now(&self) -> Result<Socket> {
        loop {
            // SAFETY: a plain accept4 on our descriptor; NULL address
            // pointers are allowed and ask for no peer address.
            let fd = unsafe {
                libc::accept4(
                    self.fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                )
            };
            if fd >= 0 {
                // SAFETY: accept4 returned a new descriptor that nothing else owns.
                let os = unsafe { socket2::Socket::from_raw_fd(fd) };
                return Ok(Socket::from_os(
                    os,
                    self.family,
                    self.kind,
                    State::Connected,
                ));
            }
            let err = Error::last_os_error();
            match err.errno {
                libc::EINTR | libc::ECONNABORTED => continue,
                _ => return Err(err),
            }
        }
    }

    /// Ends the connection abortively: the peer gets a reset (RST), not an
    /// end of stream, and threads blocked on the socket wake up. For a
    /// close that discards data the peer would otherwise take for a
    /// complete stream.
    pub(crate) fn reset(&self) {
        let _ = self.os.set_linger(Some(Duration::ZERO));
        self.disconnect();
    }

    /// `sock_close` ended a send whose bytes did not all reach the kernel:
    /// `close` resets the stream instead of ending it.
    pub(crate) fn reset_when_closed(&self) {
        self.reset_on_close.store(true, Ordering::Release);
    }

    /// Dissolves the socket's association (an attempt to connect that is
    /// given up, or `reset`), so it may connect again.
    pub(crate) fn disconnect(&self) {
        // SAFETY: an all-zero sockaddr with family AF_UNSPEC; connect(2)
        // with it dissolves the association (TCP: sends a reset).
        unsafe {
            let mut addr: libc::sockaddr = std::mem::zeroed();
            addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
            libc::connect(
                self.fd(),
                &addr,
                std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
            );
        }
        self.set_state(State::Fresh);
    }

    /// Accepts one connection; waits per the blocking mode and the receive timeout.
    pub fn accept(&self) -> Result<Socket> {
        if self.kind != Kind::Stream {
            return Err(Error::new(SOCK_INVALID_ARGUMENT));
        }
        let deadline = Deadline::after_ms(self.options.recv_timeout_ms());
        loop {
            match self.accept_now() {
                Err(e) if e.errno == libc::EAGAIN => self.wait(libc::POLLIN, deadline)?,
                Err(e) => return Err(self.fail(e)),
                accepted => return accepted,
            }
        }
    }

    /// Connects; in blocking mode waits up to the send timeout, in
    /// non-blocking mode returns `SOCK_IN_PROGRESS` for a connect under way.
    pub fn connect(&self, addr: &SockAddr) -> Result<()> {
        let stream = self.kind == Kind::Stream;
        if stream && self.state() == State::Connected {
            return Err(Error::new(SOCK_IS_CONNECTED));
        }
        let deadline = Deadline::after_ms(self.options.send_timeout_ms());
        let mut backoff = Duration::from_millis(1);
        loop {
            let was_connecting = self.state() == State::Connecting;
            let err = match self.os.connect(addr) {
                Ok(()) => {
                    self.set_state(State::Connected);
                    // On a non-blocking descriptor the first connect after
                    // an earlier one finished returns 0; report it as the
                    // blocking socket APIs do.
                    if stream && was_connecting {
                        return Err(Error::new(SOCK_IS_CONNECTED));
                    }
                    return Ok(());
                }
                Err(e) => Error::from(e),
            };
            match err.errno {
                libc::EINTR if self.kind == Kind::Dgram => continue,
                libc::EINPROGRESS | libc::EINTR => {
                    self.set_state(State::Connecting);
                    if !self.options.blocking() {
                        return Err(Error::new(SOCK_IN_PROGRESS));
                    }
                    self.wait(libc::POLLOUT, deadline)?;
                    return match self.os.take_error()? {
                        None => {
                            self.set_state(State::Connected);
                            Ok(())
                        }
                        Some(e) => Err(self.fail(Error::from(e))),
                    };
                }
                libc::EISCONN => {
                    // A non-blocking connect finished since the last call.
                    if self.state() == State::Connecting {
                        self.set_state(State::Connected);
                    }
                    return Err(err);
                }
                // A Unix listener's backlog is full: retry until the deadline.
                libc::EAGAIN if self.family == Family::Unix && self.options.blocking() => {
                    let left = deadline.remaining().map_err(|e| self.fail(e))?;
                    std::thread::sleep(left.map_or(backoff, |l| l.min(backoff)));
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                    if self.is_closed() {
                        return Err(Error::new(SOCK_OPERATION_ABORTED));
                    }
                }
                _ => return Err(self.fail(err)),
            }
        }
    }

    pub fn shutdown(&self, how: i32) -> Result<()> {
        let how = match how {
            SOCK_SHUT_RECV => std::net::Shutdown::Read,
            SOCK_SHUT_SEND => std::net::Shutdown::Write,
            SOCK_SHUT_BOTH => std::net::Shutdown::Both,
            _ => return Err(Error::new(SOCK_INVALID_ARGUMENT)),
        };
        // The kernel marks even an unconnected socket shut down while it
        // returns ENOTCONN (later receives would read an end of stream);
        // Winsock and .NET refuse it outright, and so do we.
        if !matches!(self.state(), State::Connected | State::Connecting) {
            return Err(Error::new(SOCK_NOT_CONNECTED));
        }
        Ok(self.os.shutdown(how)?)
    }

    /// Marks the socket closed (its handle is already out of the table) and
    /// wakes every thread blocked on it, so each returns
    /// `SOCK_OPERATION_ABORTED`. `in_use` says whether other threads hold
    /// it; if not, dropping the last reference simply closes the descriptor.
    /// A blocking send still in progress will not finish: its stream is
    /// reset rather than ended, so the peer cannot take it for complete.
    pub fn close(&self, in_use: bool) {
        self.closed.store(true, Ordering::Release);
        if self.reset_on_close.load(Ordering::Acquire) {
            self.reset();
        }
        if in_use {
            // Wakes threads in poll/send/recv/accept on this descriptor;
            // the descriptor itself is closed when the last user lets go.
            let sending = self.queue.lock().blocking_send_in_progress();
            if sending && self.kind == Kind::Stream {
                self.reset();
            }
            let _ = self.os.shutdown(std::net::Shutdown::Both);
            self.queue.wake_all();
        }
    }
}
