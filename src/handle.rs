//! Socket handles: the `sock_handle` type C sees, and how a handle packs a
//! slot of the handle table (`table`) with that slot's generation.
//!
//! A handle packs a slot index (low 24 bits) and that slot's generation
//! (high 40 bits, starting at 1, so no handle is 0). Closing a socket bumps
//! its slot's generation, so the old handle never matches again.

/// Names one socket inside the library; not a file descriptor. 0 is never valid.
#[allow(non_camel_case_types)]
pub type sock_handle = u64;

/// The handle value that never names a socket.
pub const SOCK_INVALID_HANDLE: sock_handle = 0;

pub(crate) const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// The largest generation a slot may reach.
pub(crate) const MAX_GENERATION: u64 = (1 << (64 - INDEX_BITS)) - 1;

/// The handle of slot `index` at `generation`.
pub(crate) fn pack(index: usize, generation: u64) -> sock_handle {
    (generation << INDEX_BITS) | index as u64
}

/// Splits a handle into (slot index, generation).
pub(crate) fn unpack(h: sock_handle) -> (usize, u64) {
    ((h & INDEX_MASK) as usize, h >> INDEX_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_pack_and_unpack() {
        let h = pack(5 * 64 + 7, 42);
        assert_eq!(unpack(h), (5 * 64 + 7, 42));
        assert_ne!(pack(0, 1), 0);
    }
}
