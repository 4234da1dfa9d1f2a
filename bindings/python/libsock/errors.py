"""Exceptions: every failed call raises :class:`SockError` (an ``OSError``).

Each exception carries

- ``status`` -- the ``sock_status`` code (``int``; Winsock / .NET value),
- ``name`` -- its C name, e.g. ``"SOCK_CONNECTION_REFUSED"``,
- ``strerror`` -- ``sock_strerror(status)``,
- ``sent`` -- for send calls, the bytes that did go out before the error
  (``None`` for other calls),
- ``os_error`` -- ``sock_os_error()`` read right after the failed call on the
  same thread: the errno behind it, for diagnostics (0 if none; it may
  belong to an earlier failure when the status did not come from the OS).

``errno`` is ``None``: a status is not a POSIX errno.

Common codes raise a subclass that also derives from Python's own exception
for that situation, so ``except ConnectionRefusedError`` or
``except TimeoutError`` work as with the ``socket`` module:

=============================  ==========================  ==========================
status                         class                       also a
=============================  ==========================  ==========================
SOCK_CONNECTION_REFUSED        ``ConnectionRefused``       ``ConnectionRefusedError``
SOCK_CONNECTION_RESET          ``ConnectionReset``         ``ConnectionResetError``
SOCK_CONNECTION_ABORTED        ``ConnectionAborted``       ``ConnectionAbortedError``
SOCK_SHUTDOWN                  ``Shutdown``                ``BrokenPipeError``
SOCK_TIMED_OUT                 ``SockTimeout``             ``TimeoutError``
SOCK_WOULD_BLOCK               ``WouldBlock``              ``BlockingIOError``
SOCK_IN_PROGRESS               ``InProgress``              ``BlockingIOError``
SOCK_INTERRUPTED               ``Interrupted``             ``InterruptedError``
SOCK_ACCESS_DENIED             ``AccessDenied``            ``PermissionError``
SOCK_INVALID_ARGUMENT          ``InvalidArgument``         ``ValueError``
SOCK_HOST_NOT_FOUND,
SOCK_TRY_AGAIN, SOCK_NO_DATA   ``HostNotFound``            ``socket.gaierror``
SOCK_NOT_SOCKET                ``NotSocket``               (closed or invalid handle)
SOCK_NOT_CONNECTED             ``NotConnected``
SOCK_OPERATION_ABORTED         ``OperationAborted``        (closed/cancelled while waiting)
SOCK_ADDRESS_ALREADY_IN_USE    ``AddressInUse``
=============================  ==========================  ==========================

Any other code raises plain :class:`SockError`.
"""

from __future__ import annotations

import socket as _pysocket
from typing import Optional

from . import _lib
from .constants import Status


def status_name(status: int) -> str:
    """The C name of a status code, e.g. ``"SOCK_TIMED_OUT"``; ``"SOCK_UNKNOWN_<n>"`` if unknown."""
    try:
        return Status(status).c_name
    except ValueError:
        return f"SOCK_UNKNOWN_{int(status)}"


class SockError(OSError):
    """A libsock call failed. See the module doc for the attributes."""

    def __init__(self, status: int, message: Optional[str] = None, *, sent: Optional[int] = None,
                 os_error: int = 0):
        status = int(status)
        text = _lib.strerror(status)
        name = status_name(status)
        if message is None:
            message = f"[{name} {status}] {text}"
            if sent is not None and status != Status.OK:
                message += f" ({sent} bytes sent)"
        super().__init__(message)
        self.status = status
        self.name = name
        self.strerror = text
        self.sent = sent
        self.os_error = os_error

    def __reduce__(self):
        return (_rebuild, (self.status, self.args[0] if self.args else None, self.sent, self.os_error))

    def __str__(self):
        return self.args[0] if self.args else self.name


def _rebuild(status, message, sent, os_error):
    return error_for(status, message, sent=sent, os_error=os_error)


class ConnectionRefused(SockError, ConnectionRefusedError):
    """SOCK_CONNECTION_REFUSED: nobody listens at the address."""


class ConnectionReset(SockError, ConnectionResetError):
    """SOCK_CONNECTION_RESET: the peer reset the connection."""


class ConnectionAborted(SockError, ConnectionAbortedError):
    """SOCK_CONNECTION_ABORTED: the connection was aborted locally."""


class Shutdown(SockError, BrokenPipeError):
    """SOCK_SHUTDOWN: sending after shutdown for sending (EPIPE)."""


class SockTimeout(SockError, TimeoutError):
    """SOCK_TIMED_OUT: the send/receive/connect timeout expired.

    For a send, ``sent`` holds the bytes that did go out.
    """


class WouldBlock(SockError, BlockingIOError):
    """SOCK_WOULD_BLOCK: a non-blocking call could make no progress."""


class InProgress(SockError, BlockingIOError):
    """SOCK_IN_PROGRESS: a non-blocking connect is under way."""


class Interrupted(SockError, InterruptedError):
    """SOCK_INTERRUPTED."""


class AccessDenied(SockError, PermissionError):
    """SOCK_ACCESS_DENIED."""


class InvalidArgument(SockError, ValueError):
    """SOCK_INVALID_ARGUMENT: bad flag, option, value, address text or socket state."""


class HostNotFound(SockError, _pysocket.gaierror):
    """SOCK_HOST_NOT_FOUND / SOCK_TRY_AGAIN / SOCK_NO_DATA: name resolution failed."""


class NotSocket(SockError):
    """SOCK_NOT_SOCKET: the handle is closed, stale or was never issued."""


class NotConnected(SockError):
    """SOCK_NOT_CONNECTED: a stream socket that is neither connected nor accepted."""


class OperationAborted(SockError):
    """SOCK_OPERATION_ABORTED: the socket (or its engine) was closed or cancelled meanwhile."""


class AddressInUse(SockError):
    """SOCK_ADDRESS_ALREADY_IN_USE."""


_CLASSES = {
    Status.CONNECTION_REFUSED: ConnectionRefused,
    Status.CONNECTION_RESET: ConnectionReset,
    Status.CONNECTION_ABORTED: ConnectionAborted,
    Status.SHUTDOWN: Shutdown,
    Status.TIMED_OUT: SockTimeout,
    Status.WOULD_BLOCK: WouldBlock,
    Status.IN_PROGRESS: InProgress,
    Status.INTERRUPTED: Interrupted,
    Status.ACCESS_DENIED: AccessDenied,
    Status.INVALID_ARGUMENT: InvalidArgument,
    Status.HOST_NOT_FOUND: HostNotFound,
    Status.TRY_AGAIN: HostNotFound,
    Status.NO_DATA: HostNotFound,
    Status.NOT_SOCKET: NotSocket,
    Status.NOT_CONNECTED: NotConnected,
    Status.OPERATION_ABORTED: OperationAborted,
    Status.ADDRESS_ALREADY_IN_USE: AddressInUse,
}


def error_for(status: int, message: Optional[str] = None, *, sent: Optional[int] = None,
              os_error: int = 0) -> SockError:
    """The exception (not raised) for a status code, e.g. a callback's ``status``."""
    cls = _CLASSES.get(int(status), SockError)
    return cls(status, message, sent=sent, os_error=os_error)


def check(status: int, *, sent: Optional[int] = None) -> None:
    """Raises the matching :class:`SockError` unless ``status`` is ``SOCK_OK``.

    Call it right after the C call, on the same thread (it reads ``sock_os_error()``).
    """
    if status != 0:
        raise error_for(status, sent=sent, os_error=_lib.os_error())
