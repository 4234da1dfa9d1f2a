"""The bridge between libsock's completion callbacks and Python callables.

Every async call registers an :class:`_Op` under a fresh integer token that
goes to C as ``user_data``. The op holds everything C may still touch or
call: the buffer export(s), the user's callable and the :class:`Socket`
(so dropping your last reference neither frees the payload nor closes the
socket while the operation is pending). One module-level ``CFUNCTYPE``
trampoline, alive for the life of the process, is passed as the C callback
for every operation; it pops the op (under a lock: it runs on an engine
thread while callers register from theirs), releases the buffers and calls
the user's callable. Exceptions from that callable never reach C: they go
to ``sys.unraisablehook`` (as for exceptions in ``__del__``).
"""

from __future__ import annotations

import atexit
import itertools
import sys
import threading
import time
import types
from typing import Any, Callable, Optional

from . import _lib
from .constants import status_of
from .errors import check


class Pending:
    """Returned by an async call that went pending (``SOCK_IO_PENDING``):
    the callback will run exactly once, later, on the socket's engine."""

    __slots__ = ()
    pending = True
    __match_args__ = ()

    def __repr__(self):
        return "PENDING"


#: The one :class:`Pending` instance.
PENDING = Pending()


class Completed:
    """Returned by an async call that finished inside the call (``SOCK_OK``):
    the callback is **not** called. ``value`` is the result the callback would
    have received: bytes sent (``send_async``) or the data (``recv_async``,
    ``b""`` at end of stream)."""

    __slots__ = ("value",)
    pending = False
    __match_args__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Completed) and other.value == self.value

    def __hash__(self):
        return hash((Completed, self.value))

    def __repr__(self):
        v = self.value
        if isinstance(v, (bytes, bytearray)) and len(v) > 32:
            v = f"<{len(v)} bytes>"
        return f"Completed({v!r})"


class _Op:
    __slots__ = ("kind", "sock", "callback", "pins", "buffer")

    def __init__(self, kind: str, sock: Any, callback: Callable, pins: list, buffer: Any = None):
        self.kind = kind          # "send" or "recv"
        self.sock = sock          # keeps the Socket (and its engine) alive
        self.callback = callback
        self.pins = pins          # buffer exports C reads from / writes to
        self.buffer = buffer      # recv: the bytearray received into

    def release(self):
        for pin in self.pins:
            pin.release()
        self.pins = ()


_lock = threading.RLock()
_ops: dict = {}
_tokens = itertools.count(1)      # 0 would reach Python as None
_local = threading.local()


def pending_count() -> int:
    """How many async operations are registered and not yet completed."""
    with _lock:
        return len(_ops)


def in_callback() -> bool:
    """True while the current thread runs a libsock completion callback."""
    return getattr(_local, "depth", 0) > 0


def register(op: _Op) -> int:
    token = next(_tokens)
    with _lock:
        _ops[token] = op
    return token


def unregister(token: int) -> None:
    """For a call that returned anything but SOCK_IO_PENDING: no callback will come."""
    with _lock:
        op = _ops.pop(token, None)
    if op is not None:
        op.release()


def report_unraisable(exc: BaseException, message: str, obj: Any) -> None:
    hook = getattr(sys, "unraisablehook", None)
    args = types.SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__,
                                 err_msg=message, object=obj)
    try:
        if hook is not None:
            hook(args)
            return
    except BaseException:
        pass
    try:
        sys.stderr.write(f"{message}: {exc!r}\n")
    except BaseException:
        pass


def _on_complete(handle, status, nbytes, user_data):
    # Runs on an engine thread (or inside Engine.poll); ctypes holds the GIL.
    def value(op):
        if op.kind == "recv":
            return (bytes(memoryview(op.buffer)[:nbytes]),)
        if op.kind == "recv_from":
            data, addr = op.buffer
            return ((bytes(memoryview(data)[:nbytes]), addr.value.decode()),)
        return (nbytes,)
    _run_callback(user_data, status, value)


#: The single C callback for every async operation, alive for the whole process.
TRAMPOLINE = _lib.CALLBACK(_on_complete)


def _run_callback(user_data, status, args=lambda op: ()):
    """Pops the operation of `user_data` and calls its callback with the
    status and `args(op)`; nothing may escape into C."""
    try:
        with _lock:
            op = _ops.pop(user_data or 0, None)
        if op is None:
            return
        extra = args(op)
        op.release()
        callback = op.callback
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            callback(status_of(status), *extra)
        except BaseException as exc:
            report_unraisable(exc, f"Exception ignored in libsock completion callback {callback!r}",
                              callback)
        finally:
            _local.depth -= 1
    except BaseException as exc:  # pragma: no cover - defensive
        report_unraisable(exc, "Exception ignored in libsock completion trampoline", None)


def _on_status(handle, status, user_data):
    _run_callback(user_data, status)


def _on_accept(listener, status, accepted, user_data):
    # The new connection becomes a Socket of the listener's kind, owned by
    # the callback (closed by its finalizer if the callback drops it).
    _run_callback(user_data, status, lambda op: (op.sock._accepted(accepted) if accepted else None,))


#: The C callbacks of connect/shutdown and of accept.
STATUS_TRAMPOLINE = _lib.STATUS_CALLBACK(_on_status)
ACCEPT_TRAMPOLINE = _lib.ACCEPT_CALLBACK(_on_accept)


# --- tracing -----------------------------------------------------------------

_trace_fn: Optional[Callable[[str], Any]] = None


def _on_trace(line, user_data):
    fn = _trace_fn
    if fn is None:
        return
    try:
        fn(line.decode("utf-8", "replace"))
    except BaseException as exc:
        report_unraisable(exc, f"Exception ignored in libsock trace callback {fn!r}", fn)


_TRACE_TRAMPOLINE = _lib.TRACE_CALLBACK(_on_trace)

#: The code of the Python functions C calls: a thread with one of these on
#: its stack is inside a libsock callback.
_TRAMPOLINE_CODES = (_on_complete.__code__, _on_trace.__code__, _on_status.__code__,
                     _on_accept.__code__)


def set_trace(fn: Optional[Callable[[str], Any]]) -> None:
    """Calls ``fn(line)`` with one text line per libsock operation (``None``: off).

    ``fn`` may run on any thread, engine threads included. This returns once
    the previous function is not running on any other thread. Called from
    inside ``fn``, it raises :class:`SockError` (``ALREADY_IN_PROGRESS``) and
    changes nothing.
    """
    global _trace_fn
    if fn is not None and not callable(fn):
        raise TypeError("set_trace() needs a callable or None")
    previous, _trace_fn = _trace_fn, fn
    if fn is None:
        status = _lib.lib.sock_set_trace(_lib.TRACE_CALLBACK(), None)
    else:
        status = _lib.lib.sock_set_trace(_TRACE_TRAMPOLINE, None)
    if status != 0:
        _trace_fn = previous
        check(status)


# --- interpreter exit ----------------------------------------------------------

def _threads_in_callbacks() -> bool:
    """Whether another thread is inside a libsock callback (its stack holds a
    frame of a trampoline). An op leaves ``_ops`` when its callback *starts*,
    so ``_ops`` alone misses a callback still running (one that sleeps or
    prints gives the GIL away). Once a trampoline's frame is gone, its thread
    runs only ctypes' C epilogue, which keeps the GIL until it is done with
    Python for good: seen from a thread that holds the GIL, no frame means
    out."""
    me = threading.get_ident()
    for tid, frame in sys._current_frames().items():
        if tid == me:
            continue
        while frame is not None:
            if frame.f_code in _TRAMPOLINE_CODES:
                return True
            frame = frame.f_back
    return False


def _drain_at_exit(timeout: float = 2.0) -> None:
    """Before the interpreter finalizes, make sure no engine thread will call
    into Python any more (in a finalizing interpreter such a thread is ended
    with pthread_exit, which aborts the process when it unwinds through the
    engine's frames): sockets that still have pending operations are closed
    (their callbacks run now, with SOCK_OPERATION_ABORTED), then we wait until
    those callbacks have run and returned. Tracing is switched off."""
    if _trace_fn is not None:
        set_trace(None)
    with _lock:
        socks = {id(op.sock): op.sock for op in _ops.values()}
    for s in socks.values():
        try:
            s.close()
        except BaseException:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _lock:
            # Manual engines run callbacks only inside poll/free: not waited for.
            waiting = any(op.sock._threaded_engine() for op in _ops.values())
        if not waiting and not _threads_in_callbacks():
            return
        time.sleep(0.005)


atexit.register(_drain_at_exit)
