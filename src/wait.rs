//! Waiting for a descriptor's readiness within a total time budget.
//!
//! Sockets are non-blocking inside the library; blocking mode is built
//! here with `poll(2)`. A timeout is a deadline fixed when the call starts,
//! so retries after short writes never restart the clock (.NET's
//! `SendTimeout` once ran two to three times too long because each partial
//! send restarted the kernel's timer).

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::status::{Error, Result, SOCK_TIMED_OUT};

/// When a blocking call must give up; `None` waits forever.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// A deadline `timeout_ms` from now; 0 means no deadline.
    pub fn after_ms(timeout_ms: u32) -> Deadline {
        if timeout_ms == 0 {
            Deadline(None)
        } else {
            Deadline(Some(
                Instant::now() + Duration::from_millis(timeout_ms.into()),
            ))
        }
    }

    /// No deadline: the call may wait for ever.
    pub fn is_forever(&self) -> bool {
        self.0.is_none()
    }

    /// Time left, `None` when unbounded; `Err(SOCK_TIMED_OUT)` once expired.
    pub fn remaining(&self) -> Result<Option<Duration>> {
        match self.0 {
            None => Ok(None),
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(d) if !d.is_zero() => Ok(Some(d)),
                _ => Err(Error::new(SOCK_TIMED_OUT)),
            },
        }
    }
}

/// Blocks until `fd` reports one of `events` (or an error/hang-up, which
/// the caller's next system call will report), or the deadline passes.
pub fn wait_fd(fd: RawFd, events: libc::c_short, deadline: Deadline) -> Result<()> {
    loop {
        let timeout_ms = match deadline.remaining()? {
            None => -1,
            // Round up so a sub-millisecond remainder still sleeps.
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc > 0 {
            return Ok(());
        }
        if rc < 0 {
            let err = Error::last_os_error();
            if err.errno != libc::EINTR {
                return Err(err);
            }
        }
        // Timed out (rc == 0) or interrupted: the loop re-checks the deadline.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_forever() {
        assert!(Deadline::after_ms(0).remaining().unwrap().is_none());
    }

    #[test]
    fn expired_deadline_is_timed_out() {
        let d = Deadline::after_ms(1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(d.remaining().unwrap_err().status, SOCK_TIMED_OUT);
    }

    #[test]
    fn wait_times_out_on_an_idle_pipe() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let e = wait_fd(fds[0], libc::POLLIN, Deadline::after_ms(20)).unwrap_err();
        assert_eq!(e.status, SOCK_TIMED_OUT);
        // SAFETY: both descriptors were opened above and are closed once.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
