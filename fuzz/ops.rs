//! Runs a byte string as a sequence of libsock API calls on loopback
//! sockets and checks the contract's invariants: every call returns a known
//! status, nothing crashes, and every operation that returned
//! SOCK_IO_PENDING gets its callback exactly once (and no other operation
//! gets one). Shared by the fuzz target and `tests/fuzz_regressions.rs`.

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sock::status::status_name;
use sock::*;

const SLOTS: usize = 8;
const MAX_CALLS: usize = 96;
const MAX_OPS: usize = 256;
const DATA_LEN: usize = 1 << 17;

static CALLBACKS: [AtomicU32; MAX_OPS] = [const { AtomicU32::new(0) }; MAX_OPS];

/// Send data and receive space that outlive every operation (never freed).
fn buffers() -> (*const u8, *mut u8) {
    static BUFS: OnceLock<(usize, usize)> = OnceLock::new();
    let (send, recv) = *BUFS.get_or_init(|| {
        let send: &'static mut [u8] = Vec::leak((0..DATA_LEN).map(|i| (i * 7) as u8).collect());
        let recv: &'static mut [u8] = Vec::leak(vec![0; DATA_LEN]);
        (send.as_ptr() as usize, recv.as_mut_ptr() as usize)
    });
    (send as *const u8, recv as *mut u8)
}

/// Operation `id`'s sender-address buffer, valid for ever (a pending
/// receive may write it until its callback).
fn address_buffer(id: usize) -> *mut c_char {
    static ADDRS: OnceLock<usize> = OnceLock::new();
    let base = *ADDRS.get_or_init(|| {
        let all: &'static mut [c_char] = Vec::leak(vec![0; MAX_OPS * SOCK_ADDRESS_MAX_LEN]);
        all.as_mut_ptr() as usize
    });
    (base as *mut c_char).wrapping_add(id * SOCK_ADDRESS_MAX_LEN)
}

unsafe extern "C" fn on_done(
    _: sock_handle,
    status: sock_status,
    _: usize,
    user_data: *mut c_void,
) {
    assert_ne!(
        status_name(status),
        "SOCK_UNKNOWN",
        "callback status {status}"
    );
    assert_ne!(status, SOCK_IO_PENDING);
    CALLBACKS[user_data as usize].fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn on_status(_: sock_handle, status: sock_status, user_data: *mut c_void) {
    // SAFETY: the same contract as `on_done`'s; it only counts.
    unsafe { on_done(0, status, 0, user_data) };
}

unsafe extern "C" fn on_accept(
    _: sock_handle,
    status: sock_status,
    accepted: sock_handle,
    user_data: *mut c_void,
) {
    assert_eq!(status == SOCK_OK, accepted != SOCK_INVALID_HANDLE);
    // The new connection is the program's: close it (allowed in a callback).
    sock_close(accepted);
    // SAFETY: as above.
    unsafe { on_done(0, status, 0, user_data) };
}

struct Run<'a> {
    data: &'a [u8],
    at: usize,
    slots: [sock_handle; SLOTS],
    engine: *mut sock_engine,
    /// Operation ids that returned SOCK_IO_PENDING.
    pending: Vec<usize>,
    next_op: usize,
    paths: Vec<String>,
}

impl Run<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn slot(&mut self) -> usize {
        self.byte() as usize % SLOTS
    }

    /// A handle: usually a slot's, sometimes 0 or garbage.
    fn handle(&mut self) -> sock_handle {
        match self.byte() {
            250 => 0,
            251 => u64::MAX,
            252 => 0x0000_0100_0000_0001,
            b => self.slots[b as usize % SLOTS],
        }
    }

    fn address(&mut self, h: sock_handle) -> CString {
        match self.byte() % 6 {
            0 => c"127.0.0.1:0".to_owned(),
            1 => c"[::1]:0".to_owned(),
            2 => {
                let path = format!("/tmp/sock-fuzz-{}-{}", std::process::id(), self.byte() % 4);
                let _ = std::fs::remove_file(&path);
                let c = CString::new(format!("unix:{path}")).unwrap();
                self.paths.push(path);
                c
            }
            3 => {
                // Another socket's address, if it has one.
                let mut buf = [0 as c_char; SOCK_ADDRESS_MAX_LEN];
                let other = self.slots[self.byte() as usize % SLOTS];
                let _ =
                    sock_local_address(other, buf.as_mut_ptr(), buf.len(), std::ptr::null_mut());
                // SAFETY: the buffer is NUL-terminated (zeroed, or written by libsock).
                unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_owned()
            }
            4 => {
                let _ = h;
                c"localhost:1".to_owned()
            }
            _ => {
                let n = self.byte() as usize % 24;
                let text: Vec<u8> = (0..n).map(|_| self.byte().max(1)).collect();
                CString::new(text).unwrap()
            }
        }
    }

    fn new_op(&mut self) -> Option<usize> {
        (self.next_op < MAX_OPS).then(|| {
            self.next_op += 1;
            self.next_op - 1
        })
    }

    /// Bounded timeouts on every new socket, so no blocking call hangs.
    fn adopt(&mut self, slot: usize, h: sock_handle) {
        let old = std::mem::replace(&mut self.slots[slot], h);
        if old != 0 && old != h {
            sock_close(old);
        }
        sock_set_option(h, SOCK_OPT_SEND_TIMEOUT_MS, 5);
        sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 5);
    }

    fn call(&mut self) -> sock_status {
        let (send_buf, recv_buf) = buffers();
        let mut n = 0usize;
        match self.byte() % 25 {
            0 => {
                let (family, ty, slot) =
                    (self.byte() as i32 % 5, self.byte() as i32 % 4, self.slot());
                let mut h = 0;
                let s = sock_socket(family, ty, &mut h);
                if s == SOCK_OK {
                    self.adopt(slot, h);
                }
                s
            }
            1 => {
                let h = self.handle();
                let a = self.address(h);
                sock_bind(h, a.as_ptr())
            }
            2 => {
                let h = self.handle();
                sock_listen(h, self.byte() as i8 as i32)
            }
            3 => {
                let h = self.handle();
                let a = self.address(h);
                sock_connect(h, a.as_ptr())
            }
            4 => {
                let (h, slot) = (self.handle(), self.slot());
                let mut out = 0;
                let s = sock_accept(h, &mut out);
                if s == SOCK_OK {
                    self.adopt(slot, out);
                }
                s
            }
            5 => {
                let (h, len, flags) = (self.handle(), self.u16() as usize, self.byte() as i32 % 9);
                sock_send(h, send_buf.cast(), len, flags, &mut n)
            }
            6 => {
                let (h, count) = (self.handle(), self.byte() as usize % 40);
                let bufs: Vec<sock_buf> = (0..count)
                    .map(|i| sock_buf {
                        data: send_buf.wrapping_add(i * 997).cast(),
                        len: self.byte() as usize * 13,
                    })
                    .collect();
                sock_sendv(h, bufs.as_ptr(), bufs.len(), 0, &mut n)
            }
            7 => {
                let h = self.handle();
                let a = self.address(h);
                sock_send_to(
                    h,
                    send_buf.cast(),
                    self.byte() as usize * 7,
                    0,
                    a.as_ptr(),
                    &mut n,
                )
            }
            8 => {
                let (h, cap, flags) = (self.handle(), self.u16() as usize, self.byte() as i32 % 4);
                sock_recv(h, recv_buf.cast(), cap, flags, &mut n)
            }
            9 => {
                let h = self.handle();
                let mut addr = [0 as c_char; SOCK_ADDRESS_MAX_LEN];
                let cap = self.byte() as usize % (SOCK_ADDRESS_MAX_LEN + 1);
                sock_recv_from(h, recv_buf.cast(), 512, 0, addr.as_mut_ptr(), cap, &mut n)
            }
            10..=12 => self.async_call(send_buf, recv_buf),
            13 => sock_cancel_sends(self.handle()),
            14 => {
                let h = self.handle();
                sock_shutdown(h, self.byte() as i32 % 4)
            }
            15 => {
                let slot = self.slot();
                sock_close(std::mem::take(&mut self.slots[slot]))
            }
            16 => {
                let (h, option) = (self.handle(), self.byte() as i32 % 14);
                let mut value = self.u16() as i16 as i64;
                match option {
                    // Keep every blocking call bounded, and close non-blocking.
                    SOCK_OPT_SEND_TIMEOUT_MS | SOCK_OPT_RECV_TIMEOUT_MS => {
                        value = value.rem_euclid(10) + 1
                    }
                    SOCK_OPT_LINGER_MS if value > 0 => value = -1,
                    _ => {}
                }
                sock_set_option(h, option, value)
            }
            17 => {
                let (h, option) = (self.handle(), self.byte() as i32 % 14);
                let mut value = 0;
                sock_get_option(h, option, &mut value)
            }
            18 => {
                let (h, cap) = (
                    self.handle(),
                    self.byte() as usize % (SOCK_ADDRESS_MAX_LEN + 1),
                );
                let mut buf = [0 as c_char; SOCK_ADDRESS_MAX_LEN];
                let mut len = 0;
                if self.byte() % 2 == 0 {
                    sock_local_address(h, buf.as_mut_ptr(), cap, &mut len)
                } else {
                    sock_peer_address(h, buf.as_mut_ptr(), cap, &mut len)
                }
            }
            19 if self.engine.is_null() => {
                sock_engine_new(self.byte() as u32 % 3, &mut self.engine)
            }
            20 => {
                let h = self.handle();
                let e = if self.byte() % 2 == 0 {
                    std::ptr::null_mut()
                } else {
                    self.engine
                };
                sock_attach(h, e)
            }
            21 if !self.engine.is_null() => sock_engine_poll(self.engine, 0, &mut n),
            23 => sock_cleanup(),
            22 if !self.engine.is_null() => {
                sock_engine_free(std::mem::replace(&mut self.engine, std::ptr::null_mut()))
            }
            _ => {
                let mut fd = 0;
                sock_fd(self.handle(), &mut fd)
            }
        }
    }

    fn async_call(&mut self, send_buf: *const u8, recv_buf: *mut u8) -> sock_status {
        let kind = self.byte() % 8;
        let (h, len, flags) = (
            self.handle(),
            self.u16() as usize * 2,
            self.byte() as i32 % 6,
        );
        let Some(id) = self.new_op() else {
            return SOCK_OK;
        };
        let user_data = id as *mut c_void;
        let mut n = 0;
        let s = match kind {
            0 => sock_send_async(
                h,
                send_buf.cast(),
                len,
                flags,
                Some(on_done),
                user_data,
                &mut n,
            ),
            1 => {
                let bufs = [
                    sock_buf {
                        data: send_buf.cast(),
                        len: len / 2,
                    },
                    sock_buf {
                        data: send_buf.wrapping_add(len / 2).cast(),
                        len: len / 3,
                    },
                ];
                sock_sendv_async(h, bufs.as_ptr(), 2, flags, Some(on_done), user_data, &mut n)
            }
            2 => sock_recv_async(
                h,
                recv_buf.cast(),
                len.min(DATA_LEN),
                flags % 4,
                Some(on_done),
                user_data,
                &mut n,
            ),
            3 => {
                let a = self.address(h);
                sock_connect_async(h, a.as_ptr(), Some(on_status), user_data)
            }
            4 => {
                let mut accepted = SOCK_INVALID_HANDLE;
                let s = sock_accept_async(h, Some(on_accept), user_data, &mut accepted);
                if s == SOCK_OK {
                    sock_close(accepted);
                }
                s
            }
            5 => sock_shutdown_async(h, Some(on_status), user_data),
            6 => {
                let a = self.address(h);
                sock_send_to_async(
                    h,
                    send_buf.cast(),
                    len.min(2048),
                    flags,
                    a.as_ptr(),
                    Some(on_done),
                    user_data,
                    &mut n,
                )
            }
            _ => sock_recv_from_async(
                h,
                recv_buf.cast(),
                len.min(DATA_LEN),
                flags % 4,
                address_buffer(id),
                SOCK_ADDRESS_MAX_LEN,
                Some(on_done),
                user_data,
                &mut n,
            ),
        };
        if s == SOCK_IO_PENDING {
            self.pending.push(id);
        }
        s
    }
}

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    for c in &CALLBACKS {
        c.store(0, Ordering::SeqCst);
    }
    let mut r = Run {
        data,
        at: 0,
        slots: [0; SLOTS],
        engine: std::ptr::null_mut(),
        pending: Vec::new(),
        next_op: 0,
        paths: Vec::new(),
    };
    for _ in 0..MAX_CALLS {
        if r.at >= data.len() {
            break;
        }
        let s = r.call();
        assert_ne!(status_name(s), "SOCK_UNKNOWN", "status {s}");
    }
    // Tear down: every pending operation must now complete exactly once.
    for h in r.slots {
        sock_close(h);
    }
    if !r.engine.is_null() {
        assert_eq!(sock_engine_free(r.engine), SOCK_OK);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while r
        .pending
        .iter()
        .any(|&id| CALLBACKS[id].load(Ordering::SeqCst) == 0)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(2));
    for (id, calls) in CALLBACKS.iter().enumerate().take(r.next_op) {
        let expected = u32::from(r.pending.contains(&id));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            expected,
            "operation {id}: callbacks"
        );
    }
    for p in &r.paths {
        let _ = std::fs::remove_file(p);
    }
}
