//! The handle table: owns every open socket and names each one by a
//! generation-checked `sock_handle` (see `handle`).
//!
//! Slots live in [`SHARDS`] shards, each behind its own `RwLock`, so lookups
//! from many threads take a shared lock on one of many shards and never
//! serialize on one global lock. A slot whose generation would wrap is
//! retired for good instead of reused.
//!
//! Around a fork the table takes every shard's lock, then every socket's
//! queue lock (the library's lock order), so no thread of the parent holds
//! one of them in the child; the child also drops the blocking senders'
//! turns and places in line, whose threads it does not have.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use parking_lot::RwLock;

use crate::fork;
use crate::handle::{pack, sock_handle, unpack, INDEX_BITS, MAX_GENERATION};
use crate::socket::Socket;
use crate::status::{Error, Result, SOCK_TOO_MANY_OPEN_SOCKETS};

const SHARDS: usize = 64;
const SLOTS_PER_SHARD: usize = (1 << INDEX_BITS) / SHARDS;

struct Slot {
    /// The handle of the slot's socket, or of its last one (0: never
    /// used): a lookup compares it whole, generation and index at once.
    handle: sock_handle,
    socket: Option<Arc<Socket>>,
}

struct Shard {
    slots: Vec<Slot>,
    /// Free slot numbers, reused oldest first so generations advance evenly.
    free: VecDeque<usize>,
}

/// One shard per cache line, so lookups on different shards never share one.
#[repr(align(64))]
struct PaddedShard(RwLock<Shard>);

/// The shards, in static storage: a lookup reaches its shard with no
/// initialisation check and no pointer to follow.
static TABLE: [PaddedShard; SHARDS] = [const {
    PaddedShard(RwLock::new(Shard {
        slots: Vec::new(),
        free: VecDeque::new(),
    }))
}; SHARDS];

/// Where the next insert starts looking, spreading sockets over the shards.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn shard(shard_no: usize) -> &'static RwLock<Shard> {
    &TABLE[shard_no].0
}

/// Splits a handle into (shard, slot within shard).
fn locate(h: sock_handle) -> (usize, usize) {
    let (index, _generation) = unpack(h);
    (index % SHARDS, index / SHARDS)
}

/// A slot's generation: how many sockets it has held.
fn generation(slot: &Slot) -> u64 {
    unpack(slot.handle).1
}

/// Stores `socket` in the table and returns its new handle.
pub fn insert(socket: Socket) -> Result<sock_handle> {
    static HOOKS: Once = Once::new();
    HOOKS.call_once(|| {
        fork::register(
            fork::Rank::Table,
            fork::Hooks {
                prepare: lock_for_fork,
                parent: || unlock_after_fork(false),
                child: || unlock_after_fork(true),
            },
        )
    });
    let socket = Arc::new(socket);
    let start = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
    for k in 0..SHARDS {
        let shard_no = (start + k) % SHARDS;
        let mut shard = shard(shard_no).write();
        let slot_no = match shard.free.pop_front() {
            Some(n) => n,
            None if shard.slots.len() < SLOTS_PER_SHARD => {
                shard.slots.push(Slot {
                    handle: 0,
                    socket: None,
                });
                shard.slots.len() - 1
            }
            None => continue,
        };
        let slot = &mut shard.slots[slot_no];
        slot.handle = pack(slot_no * SHARDS + shard_no, generation(slot) + 1);
        slot.socket = Some(socket);
        return Ok(slot.handle);
    }
    Err(Error::new(SOCK_TOO_MANY_OPEN_SOCKETS))
}

/// The socket a handle names, or `None` for 0, closed, stale or never-issued handles.
pub fn lookup(h: sock_handle) -> Option<Arc<Socket>> {
    let (shard_no, slot_no) = locate(h);
    let shard = shard(shard_no).read();
    let slot = shard.slots.get(slot_no)?;
    if slot.handle != h {
        return None;
    }
    slot.socket.clone()
}

/// Runs `f` on the socket a handle names while its shard is read-locked,
/// without taking a reference to it: for the short, never-waiting fast
/// paths only (an insert or close on the same shard waits meanwhile). `f`
/// gets the `Arc` so it can clone it to go on after the lock. `None` for 0,
/// closed, stale or never-issued handles.
#[inline]
pub fn with<R>(h: sock_handle, f: impl FnOnce(&Arc<Socket>) -> R) -> Option<R> {
    let (shard_no, slot_no) = locate(h);
    let shard = shard(shard_no).read();
    let slot = shard.slots.get(slot_no)?;
    if slot.handle != h {
        return None;
    }
    slot.socket.as_ref().map(f)
}

/// Removes a handle from the table and returns its socket; the handle is
/// invalid from here on. `None` when the handle was not valid.
pub fn remove(h: sock_handle) -> Option<Arc<Socket>> {
    let (shard_no, slot_no) = locate(h);
    let mut shard = shard(shard_no).write();
    let slot = shard.slots.get_mut(slot_no)?;
    if slot.handle != h {
        return None;
    }
    let socket = slot.socket.take()?;
    // The next user of this slot gets generation + 1; a slot whose
    // generations are used up is never handed out again.
    if generation(slot) < MAX_GENERATION {
        shard.free.push_back(slot_no);
    }
    Some(socket)
}

/// Every socket of a shard whose write lock this thread holds (taken by
/// `lock_for_fork`, its guard forgotten).
fn sockets_of_locked(shard_no: usize) -> impl Iterator<Item = &'static Arc<Socket>> {
    // SAFETY: the caller holds this shard's write lock (taken in
    // `lock_for_fork`, released in `unlock_after_fork`), so nothing else
    // reads or writes the shard meanwhile.
    let shard = unsafe { &*shard(shard_no).data_ptr() };
    shard.slots.iter().filter_map(|slot| slot.socket.as_ref())
}

/// Before a fork: every shard's write lock, then every socket's queue lock.
fn lock_for_fork() {
    for shard_no in 0..SHARDS {
        std::mem::forget(shard(shard_no).write());
    }
    for shard_no in 0..SHARDS {
        for sock in sockets_of_locked(shard_no) {
            sock.queue.lock_for_fork();
        }
    }
}

/// After a fork: the locks `lock_for_fork` took, released (in the child
/// after each queue forgot the parent's blocking senders).
fn unlock_after_fork(in_child: bool) {
    for shard_no in 0..SHARDS {
        for sock in sockets_of_locked(shard_no) {
            sock.queue.unlock_after_fork(in_child);
        }
    }
    for shard_no in 0..SHARDS {
        if in_child {
            fork::reset_rwlock(shard(shard_no));
        } else {
            // SAFETY: `lock_for_fork` took this write lock in this thread
            // and forgot its guard.
            unsafe { shard(shard_no).force_unlock_write() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::SOCK_INVALID_HANDLE;
    use crate::socket::{Family, Kind};

    fn new_socket() -> Socket {
        Socket::open(Family::Inet, Kind::Dgram).expect("socket")
    }

    #[test]
    fn zero_and_never_issued_handles_are_not_found() {
        assert!(lookup(SOCK_INVALID_HANDLE).is_none());
        assert!(lookup(0xdead_beef_0000_0001).is_none());
        assert!(lookup(u64::MAX).is_none());
        assert!(remove(0).is_none());
    }

    #[test]
    fn removed_handle_stays_invalid_after_slot_reuse() {
        let h1 = insert(new_socket()).unwrap();
        assert_ne!(h1, 0);
        assert!(lookup(h1).is_some());
        assert!(remove(h1).is_some());
        assert!(lookup(h1).is_none());
        assert!(remove(h1).is_none());
        // Reuse many slots; none of the new handles may equal the old one.
        let mut fresh = Vec::new();
        for _ in 0..(SHARDS * 3) {
            let h = insert(new_socket()).unwrap();
            assert_ne!(h, h1);
            fresh.push(h);
        }
        assert!(lookup(h1).is_none());
        for h in fresh {
            assert!(remove(h).is_some());
        }
    }

    #[test]
    fn many_threads_insert_lookup_remove() {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..200 {
                        let h = insert(new_socket()).unwrap();
                        assert!(lookup(h).is_some());
                        assert!(remove(h).is_some());
                        assert!(lookup(h).is_none());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
