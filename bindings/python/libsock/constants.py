"""The ``SOCK_*`` constants of ``include/sock.h``, as Python enums.

Each enum member is named like its C macro without the prefix:
``Status.CONNECTION_REFUSED`` is ``SOCK_CONNECTION_REFUSED``,
``Option.SEND_TIMEOUT_MS`` is ``SOCK_OPT_SEND_TIMEOUT_MS``. A test parses the
header and fails if any value here drifts from it (or the header gains a
value that is missing here).
"""

from __future__ import annotations

import enum

#: ``SOCK_INVALID_HANDLE``: the handle value that never names a socket.
INVALID_HANDLE = 0
#: ``SOCK_ADDRESS_MAX_LEN``: bytes that hold any address text and its NUL.
ADDRESS_MAX_LEN = 128
#: ``SOCK_ENGINE_MAX_THREADS``: most threads an :class:`~libsock.Engine` takes.
ENGINE_MAX_THREADS = 256
#: ``SOCK_LINGER_MS_MAX``: the largest ``Option.LINGER_MS`` (INT32_MAX seconds).
LINGER_MS_MAX = 2147483647000
#: ``SOCK_VERSION_MAJOR/MINOR/PATCH`` of the header this binding was written for.
VERSION_MAJOR = 0
VERSION_MINOR = 1
VERSION_PATCH = 0


class Status(enum.IntEnum):
    """``sock_status`` values (``SOCK_<name>``); equal to Winsock / .NET ``SocketError``."""

    OK = 0
    SOCKET_ERROR = -1
    OPERATION_ABORTED = 995
    IO_PENDING = 997
    INTERRUPTED = 10004
    ACCESS_DENIED = 10013
    FAULT = 10014
    INVALID_ARGUMENT = 10022
    TOO_MANY_OPEN_SOCKETS = 10024
    WOULD_BLOCK = 10035
    IN_PROGRESS = 10036
    ALREADY_IN_PROGRESS = 10037
    NOT_SOCKET = 10038
    DESTINATION_ADDRESS_REQUIRED = 10039
    MESSAGE_SIZE = 10040
    PROTOCOL_TYPE = 10041
    PROTOCOL_OPTION = 10042
    PROTOCOL_NOT_SUPPORTED = 10043
    SOCKET_NOT_SUPPORTED = 10044
    OPERATION_NOT_SUPPORTED = 10045
    PROTOCOL_FAMILY_NOT_SUPPORTED = 10046
    ADDRESS_FAMILY_NOT_SUPPORTED = 10047
    ADDRESS_ALREADY_IN_USE = 10048
    ADDRESS_NOT_AVAILABLE = 10049
    NETWORK_DOWN = 10050
    NETWORK_UNREACHABLE = 10051
    NETWORK_RESET = 10052
    CONNECTION_ABORTED = 10053
    CONNECTION_RESET = 10054
    NO_BUFFER_SPACE = 10055
    IS_CONNECTED = 10056
    NOT_CONNECTED = 10057
    SHUTDOWN = 10058
    TIMED_OUT = 10060
    CONNECTION_REFUSED = 10061
    HOST_DOWN = 10064
    HOST_UNREACHABLE = 10065
    DISCONNECTING = 10101
    HOST_NOT_FOUND = 11001
    TRY_AGAIN = 11002
    NO_DATA = 11004

    @property
    def c_name(self) -> str:
        """The C macro name, e.g. ``"SOCK_CONNECTION_REFUSED"``."""
        return "SOCK_" + self.name


class Family(enum.IntEnum):
    """``SOCK_FAMILY_*``: address family of :class:`~libsock.Socket`."""

    INET = 1
    INET6 = 2
    UNIX = 3


class Type(enum.IntEnum):
    """``SOCK_TYPE_*``: socket type."""

    STREAM = 1
    DGRAM = 2


class Shut(enum.IntEnum):
    """``SOCK_SHUT_*``: what :meth:`~libsock.Socket.shutdown` stops."""

    RECV = 0
    SEND = 1
    BOTH = 2


class Msg(enum.IntFlag):
    """``SOCK_MSG_*``: flags of send and receive calls."""

    NONE = 0
    OOB = 1
    PEEK = 2
    DONT_ROUTE = 4


class Option(enum.IntEnum):
    """``SOCK_OPT_*``: options of :meth:`~libsock.Socket.set_option` / ``get_option``."""

    BLOCKING = 1
    SEND_TIMEOUT_MS = 2
    RECV_TIMEOUT_MS = 3
    NO_DELAY = 4
    SEND_BUFFER_SIZE = 5
    RECV_BUFFER_SIZE = 6
    REUSE_ADDRESS = 7
    KEEP_ALIVE = 8
    BROADCAST = 9
    LINGER_MS = 10
    ASYNC_INLINE_COMPLETION = 11
    PENDING_SEND_BYTES = 12


class Op(enum.IntEnum):
    """``SOCK_OP_*``: ``sock_completion.operation``, what a queue engine's entry finished."""

    SEND = 1
    RECV = 2
    CONNECT = 3
    ACCEPT = 4
    SHUTDOWN = 5
    SEND_TO = 6
    RECV_FROM = 7


def status_of(value: int):
    """``Status(value)`` for a known code, else the plain ``int``."""
    try:
        return Status(value)
    except ValueError:
        return int(value)
