//! A socket's send queue: the one place that decides whose bytes go next.
//!
//! Every sender — a blocking `sock_send` now, the async engine later —
//! must hold the socket's *turn* while it hands bytes to the kernel, so
//! the bytes of two calls never interleave. Waiting blocking senders form a
//! FIFO, so they go in call order. A non-blocking sender that finds the
//! turn taken gets `SOCK_WOULD_BLOCK` at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use crate::status::{Error, Result, SOCK_OPERATION_ABORTED, SOCK_WOULD_BLOCK};
use crate::sync;
use crate::wait::Deadline;

#[derive(Default)]
struct QueueState {
    /// Some sender holds the turn.
    busy: bool,
    /// Tickets of blocked senders, in arrival order.
    waiters: VecDeque<u64>,
    next_ticket: u64,
}

/// The per-socket send queue.
#[derive(Default)]
pub struct SendQueue {
    state: Mutex<QueueState>,
    turn_free: Condvar,
}

/// The right to send on a socket; released on drop.
pub struct Turn<'a> {
    queue: &'a SendQueue,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut st = sync::lock(&self.queue.state);
        st.busy = false;
        if !st.waiters.is_empty() {
            self.queue.turn_free.notify_all();
        }
    }
}

impl SendQueue {
    /// Takes the turn if nobody holds it or waits for it.
    pub fn try_acquire(&self) -> Result<Turn<'_>> {
        let mut st = sync::lock(&self.state);
        if st.busy || !st.waiters.is_empty() {
            return Err(Error::new(SOCK_WOULD_BLOCK));
        }
        st.busy = true;
        Ok(Turn { queue: self })
    }

    /// Waits, in FIFO order, for the turn until `deadline`; gives up with
    /// `SOCK_OPERATION_ABORTED` once `closed` is set.
    pub fn acquire(&self, deadline: Deadline, closed: &AtomicBool) -> Result<Turn<'_>> {
        let mut st = sync::lock(&self.state);
        if !st.busy && st.waiters.is_empty() {
            st.busy = true;
            return Ok(Turn { queue: self });
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiters.push_back(ticket);
        loop {
            let give_up = if closed.load(Ordering::Acquire) {
                Some(Error::new(SOCK_OPERATION_ABORTED))
            } else {
                deadline.remaining().err()
            };
            if let Some(err) = give_up {
                st.waiters.retain(|&t| t != ticket);
                // The next waiter may have been queued behind us.
                self.turn_free.notify_all();
                return Err(err);
            }
            if !st.busy && st.waiters.front() == Some(&ticket) {
                st.waiters.pop_front();
                st.busy = true;
                return Ok(Turn { queue: self });
            }
            let timeout = deadline.remaining().ok().flatten();
            st = sync::wait(&self.turn_free, st, timeout);
        }
    }

    /// Wakes every waiting sender (used by close, so they see `closed`).
    pub fn wake_all(&self) {
        let _st = sync::lock(&self.state);
        self.turn_free.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::SOCK_TIMED_OUT;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn try_acquire_fails_while_held() {
        let q = SendQueue::default();
        let t = q.try_acquire().unwrap();
        assert_eq!(q.try_acquire().err().unwrap().status, SOCK_WOULD_BLOCK);
        drop(t);
        assert!(q.try_acquire().is_ok());
    }

    #[test]
    fn waiter_times_out_and_does_not_block_the_line() {
        let q = SendQueue::default();
        let closed = AtomicBool::new(false);
        let held = q.try_acquire().unwrap();
        let e = q.acquire(Deadline::after_ms(10), &closed).err().unwrap();
        assert_eq!(e.status, SOCK_TIMED_OUT);
        drop(held);
        assert!(q.try_acquire().is_ok());
    }

    #[test]
    fn waiters_get_the_turn_in_arrival_order() {
        let q = Arc::new(SendQueue::default());
        let closed = Arc::new(AtomicBool::new(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = q.try_acquire().unwrap();
        let mut threads = Vec::new();
        for i in 0..4 {
            let (q2, closed, order) = (q.clone(), closed.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _t = q2.acquire(Deadline::after_ms(0), &closed).unwrap();
                order.lock().unwrap().push(i);
            }));
            // Let thread i queue before thread i + 1.
            while q.state.lock().unwrap().waiters.len() < i + 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn close_aborts_waiters() {
        let q = Arc::new(SendQueue::default());
        let closed = Arc::new(AtomicBool::new(false));
        let held = q.try_acquire().unwrap();
        let (q2, c2) = (q.clone(), closed.clone());
        let t = std::thread::spawn(move || q2.acquire(Deadline::after_ms(0), &c2).err().unwrap());
        while q.state.lock().unwrap().waiters.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        closed.store(true, Ordering::Release);
        q.wake_all();
        assert_eq!(t.join().unwrap().status, SOCK_OPERATION_ABORTED);
        drop(held);
    }
}
