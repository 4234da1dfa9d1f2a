//! How the engine's flush of one socket adapts to what the kernel takes
//! (per-socket state, kept under the socket's queue lock).

/// How the engine's flush of one socket adapts to what the kernel takes.
///
/// **Retrying after a short write.** A short write means the send buffer
/// filled, but the peer may free room while the call returns; with many
/// lagging sockets such a retry often takes more bytes, while the kernel
/// reports writability only once about a third of the buffer is free. On a
/// socket whose peer has not freed anything that fast, the retry is one
/// more system call that returns `EAGAIN`. So the flush retries until
/// `MISSES_BEFORE_WAITING` retries in a row took nothing, and then only on
/// every `PROBE_EVERY`th short write, to notice when retrying pays again.
///
/// **Batch size.** The kernel copies in the whole segment list of every
/// `writev` (allocating it when there are more than 8), however little it
/// takes. After a short write the flush offers at most twice what was
/// taken (at least `MIN_BATCH` bytes), and doubles that limit after each
/// call that took everything offered.
#[derive(Default)]
pub struct FlushPacing {
    misses: u8,
    shorts: u8,
    /// Bytes to offer per call; 0: no limit.
    batch: usize,
}

impl FlushPacing {
    const MISSES_BEFORE_WAITING: u8 = 4;
    const PROBE_EVERY: u8 = 8;
    const MIN_BATCH: usize = 64 * 1024;

    /// A write came back short: should the flush call again now?
    pub fn retry_now(&mut self) -> bool {
        self.shorts = self.shorts.wrapping_add(1);
        self.misses < Self::MISSES_BEFORE_WAITING || self.shorts % Self::PROBE_EVERY == 0
    }

    /// The retry after a short write took `n` bytes (0: `EAGAIN`).
    pub fn retried(&mut self, n: usize) {
        self.misses = if n == 0 {
            self.misses.saturating_add(1)
        } else {
            0
        };
    }

    /// At most how many bytes the next call should offer.
    pub fn batch_bytes(&self) -> usize {
        if self.batch == 0 {
            usize::MAX
        } else {
            self.batch
        }
    }

    /// The kernel took `n` of the `offered` bytes.
    pub fn took(&mut self, n: usize, offered: usize) {
        self.batch = if n < offered {
            n.saturating_mul(2).max(Self::MIN_BATCH)
        } else {
            self.batch.saturating_mul(2)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_retries_back_off_when_retries_take_nothing_and_probe() {
        let mut r = FlushPacing::default();
        // Retries that take bytes keep the flush retrying.
        for _ in 0..20 {
            assert!(r.retry_now());
            r.retried(100);
        }
        // Four retries in a row that take nothing: then it waits instead,
        for _ in 0..4 {
            assert!(r.retry_now());
            r.retried(0);
        }
        let decisions: Vec<bool> = (0..16).map(|_| r.retry_now()).collect();
        // but probes on every 8th short write (the counter is at 24).
        let probes: Vec<usize> = (0..16).filter(|&i| decisions[i]).collect();
        assert_eq!(probes, vec![7, 15]);
        // A probe that takes bytes turns retrying back on.
        r.retried(1);
        assert!(r.retry_now());
        assert!(r.retry_now());
    }

    #[test]
    fn flush_batch_follows_what_the_kernel_takes() {
        let mut p = FlushPacing::default();
        assert_eq!(
            p.batch_bytes(),
            usize::MAX,
            "no limit before any short write"
        );
        p.took(20_000, 1 << 20);
        assert_eq!(
            p.batch_bytes(),
            64 * 1024,
            "twice what went, at least 64 KiB"
        );
        p.took(50_000, 64 * 1024);
        assert_eq!(p.batch_bytes(), 100_000);
        p.took(100_000, 100_000);
        assert_eq!(
            p.batch_bytes(),
            200_000,
            "doubles after a call that took all"
        );
    }
}
