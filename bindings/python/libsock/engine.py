"""The :class:`Engine` class: who runs completion callbacks."""

from __future__ import annotations

import warnings
from ctypes import byref, c_int32, c_size_t, c_void_p

from . import _async
from ._lib import lib
from .errors import check


class Engine:
    """``sock_engine_new(threads)``.

    ``Engine()`` (``threads=0``) is a *manual* engine: callbacks of its
    sockets run only inside :meth:`poll`, on the thread that calls it. Its
    :meth:`fileno` is readable whenever ``poll`` has work, so it folds into a
    ``selectors``/``select`` loop. ``Engine(n)`` runs ``n`` I/O threads of
    its own. Move a socket to it with :meth:`attach` (the socket then keeps
    the engine alive). Use as a context manager or call :meth:`close`
    (``sock_engine_free``: pending operations complete with
    OPERATION_ABORTED first -- for a manual engine inside that call).
    """

    def __init__(self, threads: int = 0):
        self._ptr = None
        self.threads = int(threads)
        out = c_void_p()
        check(lib.sock_engine_new(self.threads, byref(out)))
        self._ptr = out.value

    @property
    def manual(self) -> bool:
        return self.threads == 0

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _pointer(self) -> int:
        if self._ptr is None:
            raise ValueError("operation on a closed Engine")
        return self._ptr

    def poll(self, timeout_ms: int = -1) -> int:
        """``sock_engine_poll`` (manual engines): waits up to ``timeout_ms``
        (0: not at all, -1: until there is work), runs the due callbacks on
        this thread and returns how many ran. The wait releases the GIL but
        is not interrupted by Ctrl-C; use a finite timeout in a loop if that
        matters."""
        done = c_size_t(0)
        check(lib.sock_engine_poll(self._pointer(), int(timeout_ms), byref(done)))
        return done.value

    def fileno(self) -> int:
        """``sock_engine_fd`` (manual engines): readable when :meth:`poll` has work. Owned by the engine."""
        fd = c_int32(-1)
        check(lib.sock_engine_fd(self._pointer(), byref(fd)))
        return fd.value

    def attach(self, sock) -> None:
        """``sock_attach(sock, self)``; same as ``sock.attach(engine)``."""
        sock.attach(self)

    def close(self) -> None:
        """``sock_engine_free``; idempotent."""
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            check(lib.sock_engine_free(ptr))

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_ptr", None) is None:
            return
        try:
            if _async.in_callback():
                # Freeing joins the engine's threads: never from a callback,
                # which may be running on one of them. Leak it instead.
                self._ptr = None
            else:
                self.close()
        except Exception:
            pass
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
        except Exception:
            pass

    def __repr__(self) -> str:
        kind = "manual" if self.manual else f"threads={self.threads}"
        state = "closed" if self.closed else "open"
        return f"<libsock.Engine {kind} {state}>"
