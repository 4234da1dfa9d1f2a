"""libsock for Python: a ctypes binding of the libsock C API (``include/sock.h``).

Quick tour::

    import libsock

    with libsock.create_connection("127.0.0.1:9000", timeout=5) as s:
        s.send(b"hello")                 # blocks until every byte is in the kernel
        r = s.send_async(big, lambda status, sent: print(status, sent))
        if r.pending: ...                # callback runs once, on the engine thread
        else: print("done inline:", r.value)   # Completed: callback NOT called
        reply = s.recv(4096)             # b"" at end of stream

Errors raise :class:`SockError` (an ``OSError``) with ``.status`` and ``.name``.
"""

from . import _lib
from ._async import PENDING, Completed, Pending, pending_count, set_trace
from .constants import (ADDRESS_MAX_LEN, ENGINE_MAX_THREADS, INVALID_HANDLE, LINGER_MS_MAX, VERSION_MAJOR,
                        VERSION_MINOR, VERSION_PATCH, Family, Msg, Option, Shut, Status, Type)
from .engine import Engine
from .errors import (AccessDenied, AddressInUse, ConnectionAborted, ConnectionRefused, ConnectionReset,
                     HostNotFound, InProgress, Interrupted, InvalidArgument, NotConnected, NotSocket,
                     OperationAborted, Shutdown, SockError, SockTimeout, WouldBlock, error_for, status_name)
from .socket import Socket, create_connection, create_server, family_for

__version__ = "0.1.0"

version = _lib.version
strerror = _lib.strerror
os_error = _lib.os_error

__all__ = [
    "Socket", "Engine", "create_connection", "create_server", "family_for",
    "Completed", "Pending", "PENDING", "pending_count", "set_trace",
    "Status", "Family", "Type", "Shut", "Msg", "Option",
    "ADDRESS_MAX_LEN", "ENGINE_MAX_THREADS", "INVALID_HANDLE", "LINGER_MS_MAX", "VERSION_MAJOR", "VERSION_MINOR",
    "VERSION_PATCH",
    "SockError", "SockTimeout", "WouldBlock", "InProgress", "ConnectionRefused", "ConnectionReset",
    "ConnectionAborted", "Shutdown", "Interrupted", "AccessDenied", "InvalidArgument", "HostNotFound",
    "NotSocket", "NotConnected", "OperationAborted", "AddressInUse", "error_for", "status_name",
    "version", "strerror", "os_error",
]
