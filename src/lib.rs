//! libsock: a Winsock/.NET-style socket handle API for C.
//!
//! The C header `include/sock.h` is generated from this crate by cbindgen.
//! Module map (docs/design.md has the ownership table and the data path):
//! `api` (the `extern "C"` surface), `handle` and `table` (handles and the
//! table that owns every socket), `socket` and `options` (one socket),
//! `sys` (system-call primitives), `io` (the blocking path), `queue` (a
//! socket's pending operations), `asyncio` (the async path and the default
//! engine), `completion` (callbacks and completion records), `engine`
//! (loops that wait for readiness and run callbacks), `pacing`, `wait`
//! (deadlines), `fork`, `trace`, `status`, and `panic` and `ffi` (the ABI
//! boundary's helpers).
#![allow(non_camel_case_types)]

mod ffi;
mod fork;
mod panic;
mod sync;

pub(crate) mod address;
pub mod api;
pub(crate) mod asyncio;
pub mod completion;
pub(crate) mod engine;
pub mod handle;
pub(crate) mod io;
pub(crate) mod options;
pub(crate) mod pacing;
pub(crate) mod port;
pub mod queue;
pub(crate) mod socket;
pub mod status;
pub(crate) mod sys;
pub(crate) mod table;
pub(crate) mod trace;
pub mod wait;

pub use address::SOCK_ADDRESS_MAX_LEN;
pub use api::*;
pub use handle::{sock_handle, SOCK_INVALID_HANDLE};
pub use options::*;
pub use socket::{
    SOCK_FAMILY_INET, SOCK_FAMILY_INET6, SOCK_FAMILY_UNIX, SOCK_SHUT_BOTH, SOCK_SHUT_RECV,
    SOCK_SHUT_SEND, SOCK_TYPE_DGRAM, SOCK_TYPE_STREAM,
};
pub use status::*;
pub use sys::{sock_buf, SOCK_MSG_DONT_ROUTE, SOCK_MSG_NONE, SOCK_MSG_OOB, SOCK_MSG_PEEK};
