"""Loads ``libsock`` and declares the prototype of every function used.

Search order:

1. ``$LIBSOCK_PATH`` (a path to the shared library);
2. ``ctypes.util.find_library("sock")`` (an installed ``libsock.so``);
3. ``target/release/libsock.so`` of the source tree this package sits in
   (``bindings/python/libsock/`` -> the repository root), for in-tree use.

Types follow ``include/sock.h``: ``sock_handle`` is ``c_uint64``,
``sock_status`` ``c_int32``, ``size_t`` ``c_size_t``; the engine is an opaque
pointer (``c_void_p``). ``lib`` is the raw ``ctypes.CDLL``: calls through it
release the GIL, so blocking calls do not stall other Python threads, and
callbacks re-acquire it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from ctypes import POINTER, c_char_p, c_int32, c_int64, c_size_t, c_uint32, c_uint64, c_void_p
from pathlib import Path

handle_t = c_uint64
status_t = c_int32
engine_p = c_void_p

#: ``sock_send_callback`` / ``sock_recv_callback``:
#: ``void (*)(sock_handle, sock_status, size_t, void *user_data)``.
CALLBACK = ctypes.CFUNCTYPE(None, handle_t, status_t, c_size_t, c_void_p)
#: ``sock_trace_callback``: ``void (*)(const char *line, void *user_data)``.
TRACE_CALLBACK = ctypes.CFUNCTYPE(None, c_char_p, c_void_p)
#: ``sock_status_callback``: ``void (*)(sock_handle, sock_status, void *user_data)``.
STATUS_CALLBACK = ctypes.CFUNCTYPE(None, handle_t, status_t, c_void_p)
#: ``sock_accept_callback``: ``void (*)(sock_handle listener, sock_status, sock_handle accepted, void *user_data)``.
ACCEPT_CALLBACK = ctypes.CFUNCTYPE(None, handle_t, status_t, handle_t, c_void_p)


class sock_buf(ctypes.Structure):
    """``struct sock_buf { const void *data; size_t len; }``."""

    _fields_ = [("data", c_void_p), ("len", c_size_t)]


class sock_completion(ctypes.Structure):
    """``struct sock_completion``: one entry of a queue engine (``sock_engine_dequeue``)."""

    _fields_ = [("handle", handle_t), ("operation", c_int32), ("status", status_t), ("bytes", c_size_t),
                ("accepted", handle_t), ("user_data", c_void_p)]


def _candidates():
    env = os.environ.get("LIBSOCK_PATH")
    if env:
        yield env
        return  # an explicit choice is not second-guessed
    found = ctypes.util.find_library("sock")
    if found:
        yield found
    root = Path(__file__).resolve().parents[3]
    names = {"darwin": "libsock.dylib", "win32": "sock.dll"}
    name = names.get(sys.platform, "libsock.so")
    for profile in ("release", "debug"):
        path = root / "target" / profile / name
        if path.exists():
            yield str(path)


def _load() -> ctypes.CDLL:
    errors = []
    for candidate in _candidates():
        try:
            return ctypes.CDLL(candidate)
        except OSError as e:
            errors.append(f"{candidate}: {e}")
    detail = "; ".join(errors) or "no candidate found"
    raise ImportError(
        "libsock: cannot load the shared library (set LIBSOCK_PATH, install libsock, "
        f"or run `cargo build --release` in the source tree): {detail}"
    )


lib = _load()
#: Where the library was loaded from.
path = getattr(lib, "_name", None)

_size_p = POINTER(c_size_t)

_PROTOTYPES = {
    # name: (restype, argtypes)
    "sock_version": (c_char_p, []),
    "sock_version_number": (c_uint32, []),
    "sock_strerror": (c_char_p, [status_t]),
    "sock_os_error": (c_int32, []),
    "sock_set_trace": (status_t, [TRACE_CALLBACK, c_void_p]),
    "sock_socket": (status_t, [c_int32, c_int32, POINTER(handle_t)]),
    "sock_bind": (status_t, [handle_t, c_char_p]),
    "sock_listen": (status_t, [handle_t, c_int32]),
    "sock_accept": (status_t, [handle_t, POINTER(handle_t)]),
    "sock_connect": (status_t, [handle_t, c_char_p]),
    "sock_shutdown": (status_t, [handle_t, c_int32]),
    "sock_close": (status_t, [handle_t]),
    "sock_local_address": (status_t, [handle_t, c_char_p, c_size_t, _size_p]),
    "sock_peer_address": (status_t, [handle_t, c_char_p, c_size_t, _size_p]),
    "sock_set_option": (status_t, [handle_t, c_int32, c_int64]),
    "sock_get_option": (status_t, [handle_t, c_int32, POINTER(c_int64)]),
    "sock_fd": (status_t, [handle_t, POINTER(c_int32)]),
    "sock_send": (status_t, [handle_t, c_void_p, c_size_t, c_int32, _size_p]),
    "sock_send_to": (status_t, [handle_t, c_void_p, c_size_t, c_int32, c_char_p, _size_p]),
    "sock_sendv": (status_t, [handle_t, POINTER(sock_buf), c_size_t, c_int32, _size_p]),
    "sock_recv": (status_t, [handle_t, c_void_p, c_size_t, c_int32, _size_p]),
    "sock_recv_from": (status_t, [handle_t, c_void_p, c_size_t, c_int32, c_char_p, c_size_t, _size_p]),
    "sock_send_async": (status_t, [handle_t, c_void_p, c_size_t, c_int32, CALLBACK, c_void_p, _size_p]),
    "sock_sendv_async": (status_t, [handle_t, POINTER(sock_buf), c_size_t, c_int32, CALLBACK, c_void_p, _size_p]),
    "sock_recv_async": (status_t, [handle_t, c_void_p, c_size_t, c_int32, CALLBACK, c_void_p, _size_p]),
    "sock_cancel_sends": (status_t, [handle_t]),
    "sock_engine_new": (status_t, [c_uint32, POINTER(engine_p)]),
    "sock_engine_free": (status_t, [engine_p]),
    "sock_engine_poll": (status_t, [engine_p, c_int32, _size_p]),
    "sock_engine_fd": (status_t, [engine_p, POINTER(c_int32)]),
    "sock_attach": (status_t, [handle_t, engine_p]),
    "sock_connect_async": (status_t, [handle_t, c_char_p, STATUS_CALLBACK, c_void_p]),
    "sock_accept_async": (status_t, [handle_t, ACCEPT_CALLBACK, c_void_p, POINTER(handle_t)]),
    "sock_shutdown_async": (status_t, [handle_t, STATUS_CALLBACK, c_void_p]),
    "sock_send_to_async": (status_t, [handle_t, c_void_p, c_size_t, c_int32, c_char_p, CALLBACK, c_void_p, _size_p]),
    "sock_recv_from_async": (status_t, [handle_t, c_void_p, c_size_t, c_int32, c_char_p, c_size_t, CALLBACK,
                                        c_void_p, _size_p]),
    "sock_engine_new_queue": (status_t, [POINTER(engine_p)]),
    "sock_engine_dequeue": (status_t, [engine_p, POINTER(sock_completion), c_size_t, c_int32, _size_p]),
    "sock_cleanup": (status_t, []),
}

for _name, (_restype, _argtypes) in _PROTOTYPES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes
del _name, _restype, _argtypes, _fn

def version() -> str:
    """``sock_version()``: the loaded library's ``"MAJOR.MINOR.PATCH"``."""
    return lib.sock_version().decode()


def strerror(status: int) -> str:
    """``sock_strerror(status)``: a short English text, never empty."""
    return lib.sock_strerror(int(status)).decode("utf-8", "replace")


def os_error() -> int:
    """``sock_os_error()``: errno of this thread's last failed OS call in libsock (0 if none)."""
    return lib.sock_os_error()
