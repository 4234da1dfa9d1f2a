//! A completion port: where a queue engine puts its completions for the
//! program to dequeue (Windows' completion ports, io_uring's completion
//! queue), instead of calling back into the program.
//!
//! Entries are appended in the order their loop completed them, so one
//! socket's entries stay in submission order. Any number of threads may
//! wait in `dequeue` at once. An eventfd is readable exactly while entries
//! wait, for a program's own poll loop (asyncio's `add_reader`, Node).

use std::collections::VecDeque;
use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::completion::{Completion, UserData};
use crate::handle::sock_handle;
use crate::status::{sock_status, Error, Result};

/// One finished operation, as `sock_engine_dequeue` hands it out.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct sock_completion {
    /// The socket the operation was submitted on (the listener for accepts).
    pub handle: sock_handle,
    /// What it was: SOCK_OP_SEND, SOCK_OP_RECV, ...
    pub operation: i32,
    /// Its final status, as a callback would get it.
    pub status: sock_status,
    /// Bytes sent or received (0 for connect, accept, shutdown).
    pub bytes: usize,
    /// The new connection of an accept (owned by the program from now on);
    /// SOCK_INVALID_HANDLE otherwise.
    pub accepted: sock_handle,
    /// The `user_data` the operation was submitted with, untouched.
    pub user_data: *mut c_void,
}

/// An entry as kept in the port.
struct Entry {
    handle: sock_handle,
    operation: i32,
    status: sock_status,
    bytes: usize,
    accepted: sock_handle,
    user_data: UserData,
}

/// The port of a queue engine.
pub struct Port {
    entries: Mutex<VecDeque<Entry>>,
    arrived: Condvar,
    /// Readable while `entries` is not empty.
    signal: OwnedFd,
}

impl Port {
    pub fn new() -> Result<Port> {
        // SAFETY: plain eventfd(2); the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last_os_error());
        }
        Ok(Port {
            entries: Mutex::new(VecDeque::new()),
            arrived: Condvar::new(),
            // SAFETY: eventfd returned a new descriptor nothing else owns.
            signal: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The descriptor that is readable while entries wait.
    pub fn fd(&self) -> RawFd {
        self.signal.as_raw_fd()
    }

    fn raise(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one` to our eventfd (a full counter
        // only means it is readable already).
        unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    fn lower(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into `value` from our eventfd (EAGAIN when
        // it was not raised is fine).
        unsafe { libc::read(self.fd(), (&mut value as *mut u64).cast(), 8) };
    }

    /// Does a completion's deferred work (an accepted connection enters
    /// the table) and queues its entry. Never calls into the program.
    pub fn deliver(&self, mut c: Completion) {
        let (status, accepted) = c.settle();
        crate::trace::completion(
            c.handle,
            c.callback.op,
            c.bytes,
            status,
            c.callback.submitted,
        );
        let entry = Entry {
            handle: c.handle,
            operation: c.callback.kind,
            status,
            bytes: c.bytes,
            accepted,
            user_data: c.callback.user_data,
        };
        let mut entries = self.entries.lock();
        entries.push_back(entry);
        if entries.len() == 1 {
            self.raise();
        }
        self.arrived.notify_one();
    }

    /// Moves up to `out.len()` entries into `out`, oldest first, waiting up
    /// to `timeout` (None: until one arrives) while there are none. Returns
    /// how many; 0 when the wait timed out, or at once when `stop` says so.
    pub fn dequeue(
        &self,
        out: &mut [sock_completion],
        timeout: Option<Duration>,
        stop: impl Fn() -> bool,
    ) -> usize {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut entries = self.entries.lock();
        while entries.is_empty() && !stop() {
            match deadline {
                None => self.arrived.wait(&mut entries),
                Some(at) => {
                    if self.arrived.wait_until(&mut entries, at).timed_out() {
                        break;
                    }
                }
            }
        }
        let n = out.len().min(entries.len());
        for (slot, e) in out.iter_mut().zip(entries.drain(..n)) {
            *slot = sock_completion {
                handle: e.handle,
                operation: e.operation,
                status: e.status,
                bytes: e.bytes,
                accepted: e.accepted,
                user_data: e.user_data.0,
            };
        }
        if entries.is_empty() {
            self.lower();
        } else {
            // More wait: another dequeuer may take them.
            self.arrived.notify_one();
        }
        n
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Wakes every thread waiting in `dequeue` (to look at `stop`).
    pub fn wake_all(&self) {
        let _entries = self.entries.lock();
        self.arrived.notify_all();
    }
}
