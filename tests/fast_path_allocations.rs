//! The synchronous fast path allocates nothing: with an empty queue and
//! room in the kernel, `sock_send_async` (and `sock_send`) is one `send`
//! system call and no heap allocation.
//!
//! A counting global allocator counts allocations made by this test's own
//! thread while the gate is open (the test harness's threads are ignored).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use sock::*;

mod common;
use common::pair;

struct Counting;

thread_local! {
    /// Allocations by this thread while counting, or None when not counting.
    static ALLOCATIONS: Cell<Option<usize>> = const { Cell::new(None) };
}

fn count() {
    // try_with: the thread-local may already be gone while a thread exits.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get().map(|n| n + 1)));
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations this thread makes while running `f`.
fn allocations_in(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|c| c.set(Some(0)));
    f();
    ALLOCATIONS.with(|c| c.replace(None)).unwrap_or(0)
}

static CALLBACKS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn on_done(_: sock_handle, _: sock_status, _: usize, _: *mut c_void) {
    CALLBACKS.fetch_add(1, Ordering::Relaxed);
}

const CALLS: usize = 1000;

#[test]
fn the_counter_sees_allocations() {
    let n = allocations_in(|| drop(std::hint::black_box(Box::new([0u8; 64]))));
    assert_eq!(n, 1);
}

#[test]
fn inline_async_sends_allocate_nothing() {
    let (c, a) = pair();
    let msg = [7u8; 64];
    let mut statuses = [0; CALLS];
    let mut sent_total = 0;
    // Warm up once outside the gate (lazy statics of the OS and runtime).
    let mut sent = 0;
    sock_send_async(
        c,
        msg.as_ptr().cast(),
        64,
        0,
        Some(on_done),
        std::ptr::null_mut(),
        &mut sent,
    );
    let n = allocations_in(|| {
        for status in statuses.iter_mut() {
            let mut sent = 0;
            *status = sock_send_async(
                c,
                msg.as_ptr().cast(),
                msg.len(),
                SOCK_MSG_NONE,
                Some(on_done),
                std::ptr::null_mut(),
                &mut sent,
            );
            sent_total += sent;
        }
    });
    // 64 KiB fits the loopback buffers, so every call finished inline.
    assert!(statuses.iter().all(|&s| s == SOCK_OK), "{statuses:?}");
    assert_eq!(sent_total, CALLS * 64);
    assert_eq!(
        CALLBACKS.load(Ordering::Relaxed),
        0,
        "inline completions call no callback"
    );
    assert_eq!(
        n, 0,
        "{n} allocations in {CALLS} inline sock_send_async calls"
    );
    let mut pending = -1;
    assert_eq!(
        sock_get_option(c, SOCK_OPT_PENDING_SEND_BYTES, &mut pending),
        SOCK_OK
    );
    assert_eq!(pending, 0);
    sock_close(c);
    sock_close(a);
}

#[test]
fn blocking_sends_allocate_nothing() {
    let (c, a) = pair();
    let msg = [9u8; 64];
    let mut ok = 0;
    let mut sent = 0;
    sock_send(c, msg.as_ptr().cast(), 64, 0, &mut sent);
    let n = allocations_in(|| {
        for _ in 0..CALLS {
            if sock_send(c, msg.as_ptr().cast(), msg.len(), SOCK_MSG_NONE, &mut sent) == SOCK_OK {
                ok += 1;
            }
        }
    });
    assert_eq!(ok, CALLS);
    assert_eq!(n, 0, "{n} allocations in {CALLS} sock_send calls");
    sock_close(c);
    sock_close(a);
}
