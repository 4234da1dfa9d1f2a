//! Fuzzes random sequences of libsock API calls on loopback sockets (see
//! `fuzz/ops.rs` for the interpreter and the invariants it checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../ops.rs"]
mod ops;

fuzz_target!(|data: &[u8]| ops::run(data));
