//! Trace lines: one per operation, with handle, operation, bytes, status,
//! and the latency of async completions; to the callback, and with
//! SOCK_TRACE=1 to stderr.

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sock::*;

mod common;
use common::pair;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe extern "C" fn collect(line: *const c_char, user_data: *mut c_void) {
    assert_eq!(user_data as usize, 0x5eed);
    // SAFETY: libsock passes a valid NUL-terminated line.
    let line = unsafe { CStr::from_ptr(line) }
        .to_string_lossy()
        .into_owned();
    LINES.lock().unwrap().push(line);
}

static DONE: Mutex<Option<(sock_status, usize)>> = Mutex::new(None);

unsafe extern "C" fn on_done(_: sock_handle, s: sock_status, n: usize, _: *mut c_void) {
    *DONE.lock().unwrap() = Some((s, n));
}

fn lines_of(h: sock_handle) -> Vec<String> {
    let tag = format!("h={h:#x} ");
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(&tag))
        .cloned()
        .collect()
}

#[test]
fn callback_gets_one_line_per_operation() {
    assert_eq!(
        sock_set_trace(Some(collect), 0x5eed as *mut c_void),
        SOCK_OK
    );
    let (c, a) = pair();
    let mut sent = 0;
    assert_eq!(
        sock_send(c, b"hello".as_ptr().cast(), 5, 0, &mut sent),
        SOCK_OK
    );
    // A send big enough to go pending; the reader drains it below.
    assert_eq!(sock_set_option(c, SOCK_OPT_SEND_BUFFER_SIZE, 4096), SOCK_OK);
    let big = vec![1u8; 2 << 20];
    let status = sock_send_async(
        c,
        big.as_ptr().cast(),
        big.len(),
        0,
        Some(on_done),
        std::ptr::null_mut(),
        &mut sent,
    );
    assert_eq!(status, SOCK_IO_PENDING);
    let mut buf = vec![0u8; 1 << 20];
    let (mut got, mut n) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while got < big.len() + 5 && Instant::now() < deadline {
        assert_eq!(
            sock_recv(a, buf.as_mut_ptr().cast(), buf.len(), 0, &mut n),
            SOCK_OK
        );
        got += n;
    }
    while DONE.lock().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(*DONE.lock().unwrap(), Some((SOCK_OK, big.len())));
    assert_eq!(sock_close(c), SOCK_OK);

    let lines = lines_of(c);
    let ops: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(
        ops,
        [
            "op=socket",
            "op=connect",
            "op=send",
            "op=send_async",
            "op=send_async.done",
            "op=close"
        ],
        "{lines:#?}"
    );
    assert_eq!(
        lines[2],
        format!("h={c:#x} op=send bytes=5 status=SOCK_OK(0)")
    );
    assert!(
        lines[3].ends_with("status=SOCK_IO_PENDING(997)"),
        "{}",
        lines[3]
    );
    let done = &lines[4];
    assert!(
        done.contains(&format!(
            "bytes={} status=SOCK_OK(0) latency_us=",
            big.len()
        )),
        "{done}"
    );
    let latency: u64 = done.rsplit('=').next().unwrap().parse().unwrap();
    assert!(latency > 0, "{done}");

    // Off: no more lines for this socket's operations.
    assert_eq!(sock_set_trace(None, std::ptr::null_mut()), SOCK_OK);
    let before = LINES.lock().unwrap().len();
    assert_eq!(sock_send(a, b"x".as_ptr().cast(), 1, 0, &mut sent), SOCK_OK);
    assert_eq!(sock_close(a), SOCK_OK);
    assert_eq!(LINES.lock().unwrap().len(), before);
}

/// Runs in a child process (see the test below) with SOCK_TRACE=1.
#[test]
fn child_traces_to_stderr() {
    if std::env::var_os("SOCK_TRACE_CHILD").is_none() {
        return;
    }
    let mut h = 0;
    assert_eq!(
        sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM, &mut h),
        SOCK_OK
    );
    assert_eq!(sock_close(h), SOCK_OK);
    assert_eq!(sock_close(h), SOCK_NOT_SOCKET);
}

#[test]
fn sock_trace_env_prints_to_stderr() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_traces_to_stderr",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SOCK_TRACE", "1")
        .env("SOCK_TRACE_CHILD", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("libsock: "))
        .collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].contains(" op=socket bytes=0 status=SOCK_OK(0)"),
        "{stderr}"
    );
    assert!(
        lines[1].contains(" op=close bytes=0 status=SOCK_OK(0)"),
        "{stderr}"
    );
    assert!(
        lines[2].contains(" op=close bytes=0 status=SOCK_NOT_SOCKET(10038)"),
        "{stderr}"
    );
}
