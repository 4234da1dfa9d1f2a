//! The handle table: owns every open socket and names each one by a
//! generation-checked `sock_handle`.
//!
//! A handle packs a slot index (low 24 bits) and that slot's generation
//! (high 40 bits, starting at 1, so no handle is 0). Closing a socket bumps
//! its slot's generation, so the old handle never matches again; a slot
//! whose generation would wrap is retired for good instead of reused.
//! Slots live in [`SHARDS`] shards, each behind its own `RwLock`, so lookups
//! from many threads take a shared lock on one of many shards and never
//! serialize on one global lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::socket::Socket;
use crate::status::{Error, Result, SOCK_TOO_MANY_OPEN_SOCKETS};

/// Names one socket inside the library; not a file descriptor. 0 is never valid.
#[allow(non_camel_case_types)]
pub type sock_handle = u64;

/// The handle value that never names a socket.
pub const SOCK_INVALID_HANDLE: sock_handle = 0;

const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const MAX_GENERATION: u64 = (1 << (64 - INDEX_BITS)) - 1;
const SHARDS: usize = 64;
const SLOTS_PER_SHARD: usize = (1 << INDEX_BITS) / SHARDS;

struct Slot {
    generation: u64,
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

fn pack(index: usize, generation: u64) -> sock_handle {
    (generation << INDEX_BITS) | index as u64
}

/// Splits a handle into (shard, slot within shard, generation).
fn unpack(h: sock_handle) -> (usize, usize, u64) {
    let index = (h & INDEX_MASK) as usize;
    (index % SHARDS, index / SHARDS, h >> INDEX_BITS)
}

/// Stores `socket` in the table and returns its new handle.
pub fn insert(socket: Socket) -> Result<sock_handle> {
    let socket = Arc::new(socket);
    let start = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
    for k in 0..SHARDS {
        let shard_no = (start + k) % SHARDS;
        let mut shard = shard(shard_no).write();
        let slot_no = match shard.free.pop_front() {
            Some(n) => n,
            None if shard.slots.len() < SLOTS_PER_SHARD => {
                shard.slots.push(Slot {
                    generation: 0,
                    socket: None,
                });
                shard.slots.len() - 1
            }
            None => continue,
        };
        let slot = &mut shard.slots[slot_no];
        slot.generation += 1;
        slot.socket = Some(socket);
        return Ok(pack(slot_no * SHARDS + shard_no, slot.generation));
    }
    Err(Error::new(SOCK_TOO_MANY_OPEN_SOCKETS))
}

/// The socket a handle names, or `None` for 0, closed, stale or never-issued handles.
pub fn lookup(h: sock_handle) -> Option<Arc<Socket>> {
    let (shard_no, slot_no, generation) = unpack(h);
    let shard = shard(shard_no).read();
    let slot = shard.slots.get(slot_no)?;
    if slot.generation != generation {
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
    let (shard_no, slot_no, generation) = unpack(h);
    let shard = shard(shard_no).read();
    let slot = shard.slots.get(slot_no)?;
    if slot.generation != generation {
        return None;
    }
    slot.socket.as_ref().map(f)
}

/// Removes a handle from the table and returns its socket; the handle is
/// invalid from here on. `None` when the handle was not valid.
pub fn remove(h: sock_handle) -> Option<Arc<Socket>> {
    let (shard_no, slot_no, generation) = unpack(h);
    let mut shard = shard(shard_no).write();
    let slot = shard.slots.get_mut(slot_no)?;
    if slot.generation != generation {
        return None;
    }
    let socket = slot.socket.take()?;
    // The next user of this slot gets generation + 1; a slot whose
    // generations are used up is never handed out again.
    if slot.generation < MAX_GENERATION {
        shard.free.push_back(slot_no);
    }
    Some(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn handles_pack_and_unpack() {
        let h = pack(5 * SHARDS + 7, 42);
        assert_eq!(unpack(h), (7, 5, 42));
        assert_ne!(pack(0, 1), 0);
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
