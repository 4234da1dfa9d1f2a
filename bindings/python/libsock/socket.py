"""The :class:`Socket` class: one libsock handle."""

from __future__ import annotations

import math
import warnings
from ctypes import byref, c_int32, c_int64, c_size_t, create_string_buffer
from typing import Any, Callable, Iterable, Optional, Tuple, Union

from . import _async
from ._async import PENDING, Completed, Pending
from ._buffer import Pin
from ._lib import handle_t, lib, sock_buf
from .constants import ADDRESS_MAX_LEN, Family, Msg, Option, Shut, Status, Type
from .errors import check

Address = Union[str, bytes, Tuple[str, int]]
AsyncResult = Union[Completed, Pending]

_FAMILIES = {"inet": Family.INET, "ipv4": Family.INET, "inet6": Family.INET6, "ipv6": Family.INET6,
             "unix": Family.UNIX}
_TYPES = {"stream": Type.STREAM, "tcp": Type.STREAM, "dgram": Type.DGRAM, "datagram": Type.DGRAM,
          "udp": Type.DGRAM}
_SHUTS = {"recv": Shut.RECV, "read": Shut.RECV, "send": Shut.SEND, "write": Shut.SEND, "both": Shut.BOTH}


def _enum(value, table: dict, enum_type, what: str):
    if isinstance(value, str):
        try:
            return table[value.lower()]
        except KeyError:
            raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(table)}") from None
    try:
        return enum_type(int(value))
    except ValueError:
        return int(value)  # libsock validates it (SOCK_INVALID_ARGUMENT)


def _address(address: Address) -> bytes:
    """Address text for C: ``"127.0.0.1:80"``, ``"[::1]:80"``, ``"unix:/p"`` or a ``(host, port)`` tuple."""
    if isinstance(address, bytes):
        return address
    if isinstance(address, str):
        return address.encode()
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], int(address[1])
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{port}".encode()
    raise TypeError(f"address must be 'host:port' text or a (host, port) tuple, not {address!r}")


def family_for(address: Address) -> Family:
    """The family an address needs: ``unix:`` -> UNIX, ``[v6]`` or a v6 tuple -> INET6, else INET."""
    text = _address(address).decode()
    if text.startswith("unix:"):
        return Family.UNIX
    if text.startswith("["):
        return Family.INET6
    return Family.INET


def _ms(seconds: Optional[float], what: str) -> int:
    if seconds is None:
        return 0
    if seconds <= 0:
        raise ValueError(f"{what} must be > 0 seconds, or None to wait forever "
                         "(use blocking=False for non-blocking calls)")
    return max(1, math.ceil(seconds * 1000))


class Socket:
    """A libsock socket handle.

    ``Socket(family="inet", type="stream")``; family ``"inet"``, ``"inet6"``,
    ``"unix"`` (or :class:`Family`), type ``"stream"``/``"dgram"`` (or
    :class:`Type`). Use it as a context manager, or call :meth:`close`.
    Every method raises :class:`~libsock.SockError` (a subclass per common
    status) when the C call fails. Methods may be called from any thread;
    blocking ones release the GIL.
    """

    def __init__(self, family: Union[str, int] = "inet", type: Union[str, int] = "stream"):
        self._closed = True
        self._handle = 0
        self._engine = None
        self.family = _enum(family, _FAMILIES, Family, "family")
        self.type = _enum(type, _TYPES, Type, "type")
        out = handle_t(0)
        check(lib.sock_socket(int(self.family), int(self.type), byref(out)))
        self._handle = out.value
        self._closed = False

    @classmethod
    def _adopt(cls, handle: int, family, type) -> "Socket":
        self = cls.__new__(cls)
        self._handle = handle
        self._closed = False
        self._engine = None
        self.family = family
        self.type = type
        return self

    # --- life cycle --------------------------------------------------------

    @property
    def handle(self) -> int:
        """The raw ``sock_handle`` (stays the same after close; libsock then rejects it)."""
        return self._handle

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """``sock_close``. Idempotent. Pending async operations complete with
        ``Status.OPERATION_ABORTED`` (their callbacks still run, once)."""
        if self._closed:
            return
        self._closed = True
        status = lib.sock_close(self._handle)
        if status != Status.NOT_SOCKET:  # already closed behind our back: nothing to do
            check(status)

    def __enter__(self) -> "Socket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_closed", True):
            return
        try:
            self.close()
        except Exception:
            pass
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
        except Exception:
            pass

    def __repr__(self) -> str:
        fam = self.family.name.lower() if isinstance(self.family, Family) else self.family
        typ = self.type.name.lower() if isinstance(self.type, Type) else self.type
        state = "closed" if self._closed else "open"
        return f"<libsock.Socket handle={self._handle:#x} {fam} {typ} {state}>"

    def fileno(self) -> int:
        """``sock_fd``: the OS descriptor, owned by libsock (do not close it or
        change its O_NONBLOCK flag). Useful for ``select``/``selectors``."""
        fd = c_int32(-1)
        check(lib.sock_fd(self._handle, byref(fd)))
        return fd.value

    def bind(self, address: Address) -> None:
        """``sock_bind``: ``"127.0.0.1:0"``, ``"[::1]:8080"``, ``"unix:/path"`` or ``(host, port)``."""
        check(lib.sock_bind(self._handle, _address(address)))

    def listen(self, backlog: int = 128) -> None:
        check(lib.sock_listen(self._handle, int(backlog)))

    def accept(self) -> "Socket":
        """``sock_accept``: the new connection (waits per blocking mode and recv timeout)."""
        out = handle_t(0)
        check(lib.sock_accept(self._handle, byref(out)))
        return Socket._adopt(out.value, self.family, self.type)

    def connect(self, address: Address) -> None:
        """``sock_connect`` (blocking mode waits at most :attr:`send_timeout`)."""
        check(lib.sock_connect(self._handle, _address(address)))

    def shutdown(self, how: Union[str, int] = "send") -> None:
        """``sock_shutdown``: ``"recv"``, ``"send"`` (peer sees end of stream) or ``"both"``, or :class:`Shut`."""
        check(lib.sock_shutdown(self._handle, int(_enum(how, _SHUTS, Shut, "shutdown mode"))))

    def _address_of(self, fn) -> str:
        buf = create_string_buffer(ADDRESS_MAX_LEN)
        n = c_size_t(0)
        status = fn(self._handle, buf, ADDRESS_MAX_LEN, byref(n))
        if status == Status.NO_BUFFER_SPACE:
            buf = create_string_buffer(n.value)
            status = fn(self._handle, buf, n.value, byref(n))
        check(status)
        return buf.value.decode()

    @property
    def local_address(self) -> str:
        """``sock_local_address``, e.g. ``"127.0.0.1:40123"``."""
        return self._address_of(lib.sock_local_address)

    @property
    def peer_address(self) -> str:
        """``sock_peer_address`` (raises NotConnected if none)."""
        return self._address_of(lib.sock_peer_address)

    # --- options -------------------------------------------------------------

    def set_option(self, option: Union[Option, int], value: int) -> None:
        """``sock_set_option``, e.g. ``sock.set_option(Option.SEND_TIMEOUT_MS, 200)``."""
        check(lib.sock_set_option(self._handle, int(option), int(value)))

    def get_option(self, option: Union[Option, int]) -> int:
        value = c_int64(0)
        check(lib.sock_get_option(self._handle, int(option), byref(value)))
        return value.value

    def _flag(option, doc):
        def get(self) -> bool:
            return bool(self.get_option(option))

        def set(self, value: bool) -> None:
            self.set_option(option, 1 if value else 0)
        return property(get, set, doc=doc)

    def _int(option, doc, readonly=False):
        def get(self) -> int:
            return self.get_option(option)

        def set(self, value: int) -> None:
            self.set_option(option, value)
        return property(get, None if readonly else set, doc=doc)

    def _timeout(option, doc):
        def get(self) -> Optional[float]:
            ms = self.get_option(option)
            return None if ms == 0 else ms / 1000.0

        def set(self, seconds: Optional[float]) -> None:
            self.set_option(option, _ms(seconds, option.name.lower()))
        return property(get, set, doc=doc)

    blocking = _flag(Option.BLOCKING, "SOCK_OPT_BLOCKING: True (default) waits; False makes calls that "
                                      "cannot progress raise WouldBlock.")
    send_timeout = _timeout(Option.SEND_TIMEOUT_MS, "SOCK_OPT_SEND_TIMEOUT_MS in seconds (None: wait forever, "
                                                    "the default); one budget for a whole send or connect, "
                                                    "and for how long an async send may stay pending.")
    recv_timeout = _timeout(Option.RECV_TIMEOUT_MS, "SOCK_OPT_RECV_TIMEOUT_MS in seconds (None: forever); "
                                                    "bounds recv, accept and pending recv_async.")
    no_delay = _flag(Option.NO_DELAY, "TCP_NODELAY.")
    reuse_address = _flag(Option.REUSE_ADDRESS, "SO_REUSEADDR.")
    keep_alive = _flag(Option.KEEP_ALIVE, "SO_KEEPALIVE.")
    broadcast = _flag(Option.BROADCAST, "SO_BROADCAST (datagram sockets).")
    send_buffer_size = _int(Option.SEND_BUFFER_SIZE, "SO_SNDBUF (Linux reports twice the value set).")
    recv_buffer_size = _int(Option.RECV_BUFFER_SIZE, "SO_RCVBUF (Linux reports twice the value set).")
    async_inline_completion = _flag(Option.ASYNC_INLINE_COMPLETION,
                                    "True (default): an async call that finishes inside the call returns "
                                    "Completed and its callback is not called; False: it returns PENDING "
                                    "and reports through the callback (one code path).")
    pending_send_bytes = _int(Option.PENDING_SEND_BYTES, "Read-only: bytes queued by async sends and not "
                                                         "yet handed to the kernel.", readonly=True)
    del _flag, _int, _timeout

    # --- blocking I/O --------------------------------------------------------

    def send(self, data, flags: int = Msg.NONE) -> int:
        """``sock_send``: returns the bytes sent. Blocking mode (stream): all of
        ``data`` or an exception; on timeout :class:`~libsock.SockTimeout` whose
        ``sent`` is the bytes that did go. Non-blocking mode: what fits now
        (may be less), or :class:`~libsock.WouldBlock`. Every exception from a
        send carries ``sent``."""
        sent = c_size_t(0)
        with Pin(data) as pin:
            status = lib.sock_send(self._handle, pin.address, pin.length, int(flags), byref(sent))
        check(status, sent=sent.value)
        return sent.value

    def send_to(self, data, address: Address, flags: int = Msg.NONE) -> int:
        """``sock_send_to``: one datagram to ``address`` (or, connected stream: as :meth:`send`)."""
        sent = c_size_t(0)
        with Pin(data) as pin:
            status = lib.sock_send_to(self._handle, pin.address, pin.length, int(flags), _address(address),
                                      byref(sent))
        check(status, sent=sent.value)
        return sent.value

    def sendv(self, buffers: Iterable, flags: int = Msg.NONE) -> int:
        """``sock_sendv``: the buffers as one stream of bytes (or one datagram)."""
        pins = [Pin(b) for b in buffers]
        try:
            array = (sock_buf * max(1, len(pins)))(*[(p.address, p.length) for p in pins])
            sent = c_size_t(0)
            status = lib.sock_sendv(self._handle, array, len(pins), int(flags), byref(sent))
        finally:
            for p in pins:
                p.release()
        check(status, sent=sent.value)
        return sent.value

    def recv_into(self, buffer, nbytes: int = 0, flags: int = Msg.NONE) -> int:
        """``sock_recv`` into a writable buffer; returns the count (0 at end of stream)."""
        received = c_size_t(0)
        with Pin(buffer, writable=True) as pin:
            if nbytes < 0 or nbytes > pin.length:
                raise ValueError("nbytes out of range for the buffer")
            if pin.length == 0:
                return 0  # as Python's socket; libsock would wait for data, then report 0
            status = lib.sock_recv(self._handle, pin.address, nbytes or pin.length, int(flags), byref(received))
        check(status)
        return received.value

    def recv(self, bufsize: int, flags: int = Msg.NONE) -> bytes:
        """``sock_recv``: up to ``bufsize`` bytes; ``b""`` at orderly end of stream
        (and, without a call, for ``bufsize == 0``). Blocking mode waits (at most
        :attr:`recv_timeout`, then SockTimeout)."""
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        buf = bytearray(bufsize)
        n = self.recv_into(buf, bufsize, flags)
        del buf[n:]
        return bytes(buf)

    def recv_from(self, bufsize: int, flags: int = Msg.NONE) -> Tuple[bytes, str]:
        """``sock_recv_from``: ``(data, sender address text)``."""
        buf = bytearray(bufsize)
        received = c_size_t(0)
        addr = create_string_buffer(ADDRESS_MAX_LEN)
        with Pin(buf, writable=True) as pin:
            status = lib.sock_recv_from(self._handle, pin.address, bufsize, int(flags), addr, ADDRESS_MAX_LEN,
                                        byref(received))
        check(status)
        del buf[received.value:]
        return bytes(buf), addr.value.decode()

    # --- async I/O -----------------------------------------------------------

    def _submit(self, op: _async._Op, call) -> Tuple[int, int]:
        if not callable(op.callback):
            for p in op.pins:
                p.release()
            raise TypeError("callback must be callable")
        token = _async.register(op)  # before the call: the callback may run before it returns
        now = c_size_t(0)
        try:
            status = call(token, now)
        except BaseException:
            _async.unregister(token)
            raise
        if status != Status.IO_PENDING:
            _async.unregister(token)  # no callback will come
            check(status, sent=now.value if op.kind == "send" else None)
        return status, now.value

    def send_async(self, data, callback: Callable[[Status, int], Any], flags: int = Msg.NONE) -> AsyncResult:
        """``sock_send_async``: never blocks. Returns

        - ``Completed(len(data))`` -- finished inside the call (``SOCK_OK``);
          ``callback`` is **not** called (set ``async_inline_completion = False``
          to have it called for these too);
        - ``PENDING`` -- ``callback(status, bytes_sent)`` runs exactly once,
          later, on the socket's engine: the default engine's I/O thread (maybe
          before this method returns) or, for a manual :class:`Engine`, inside
          its ``poll``. ``status`` is a :class:`Status` (``Status.OK`` when all
          went; use :func:`~libsock.error_for` for an exception);

        or raises :class:`~libsock.SockError` (nothing queued, no callback).
        ``data`` (any contiguous bytes-like object) and ``callback`` are kept
        alive by the binding until the callback has run; do not modify ``data``
        meanwhile (a ``bytearray`` cannot be resized). Exceptions raised by
        ``callback`` go to ``sys.unraisablehook``."""
        pin = Pin(data)
        op = _async._Op("send", self, callback, [pin])
        status, now = self._submit(op, lambda token, now: lib.sock_send_async(
            self._handle, pin.address, pin.length, int(flags), _async.TRAMPOLINE, token, byref(now)))
        return PENDING if status == Status.IO_PENDING else Completed(now)

    def sendv_async(self, buffers: Iterable, callback: Callable[[Status, int], Any],
                    flags: int = Msg.NONE) -> AsyncResult:
        """``sock_sendv_async``: as :meth:`send_async` for a list of buffers."""
        pins = [Pin(b) for b in buffers]
        op = _async._Op("send", self, callback, pins)
        array = (sock_buf * max(1, len(pins)))(*[(p.address, p.length) for p in pins])
        status, now = self._submit(op, lambda token, now: lib.sock_sendv_async(
            self._handle, array, len(pins), int(flags), _async.TRAMPOLINE, token, byref(now)))
        return PENDING if status == Status.IO_PENDING else Completed(now)

    def recv_async(self, bufsize: int, callback: Callable[[Status, bytes], Any],
                   flags: int = Msg.NONE) -> AsyncResult:
        """``sock_recv_async``: never blocks. ``Completed(data)`` if data (or end
        of stream: ``b""``) was there (no callback); ``PENDING``:
        ``callback(status, data)`` runs once when at least one byte or end of
        stream arrived (bounded by :attr:`recv_timeout`); or raises."""
        if bufsize <= 0:
            raise ValueError("bufsize must be > 0")
        buf = bytearray(bufsize)
        pin = Pin(buf, writable=True)
        op = _async._Op("recv", self, callback, [pin], buf)
        status, now = self._submit(op, lambda token, now: lib.sock_recv_async(
            self._handle, pin.address, bufsize, int(flags), _async.TRAMPOLINE, token, byref(now)))
        if status == Status.IO_PENDING:
            return PENDING
        return Completed(bytes(memoryview(buf)[:now]))

    # --- the async connection life cycle ------------------------------------

    def _accepted(self, handle: int) -> "Socket":
        return Socket._adopt(handle, self.family, self.type)

    def connect_async(self, address: Address, callback: Callable[[Status], Any]) -> AsyncResult:
        """``sock_connect_async``: never blocks (a host name is looked up on a
        library thread). ``Completed(None)`` when it connected inside the call
        (a Unix socket); ``PENDING``: ``callback(status)`` runs once, on the
        socket's engine. Sends made meanwhile queue behind the connect. Raises
        on a synchronous failure (no callback)."""
        addr = _address(address)
        op = _async._Op("connect", self, callback, [])
        status, _ = self._submit(op, lambda token, now: lib.sock_connect_async(
            self._handle, addr, _async.STATUS_TRAMPOLINE, token))
        return PENDING if status == Status.IO_PENDING else Completed(None)

    def accept_async(self, callback: Callable[[Status, Optional["Socket"]], Any]) -> AsyncResult:
        """``sock_accept_async`` on a listening socket: ``Completed(socket)`` when
        a connection was waiting (no callback); ``PENDING``:
        ``callback(status, socket_or_None)`` runs once, in submission order
        with other accepts. The new socket is bound to this one's engine."""
        op = _async._Op("accept", self, callback, [])
        out = handle_t(0)
        status, _ = self._submit(op, lambda token, now: lib.sock_accept_async(
            self._handle, _async.ACCEPT_TRAMPOLINE, token, byref(out)))
        if status == Status.IO_PENDING:
            return PENDING
        return Completed(self._accepted(out.value))

    def shutdown_async(self, callback: Callable[[Status], Any]) -> AsyncResult:
        """``sock_shutdown_async``: ends the sending side once every pending
        send went (``Completed(None)`` at once when none was pending); later
        sends fail with :class:`~libsock.Shutdown`. Close the socket from the
        callback for a graceful end."""
        op = _async._Op("shutdown", self, callback, [])
        status, _ = self._submit(op, lambda token, now: lib.sock_shutdown_async(
            self._handle, _async.STATUS_TRAMPOLINE, token))
        return PENDING if status == Status.IO_PENDING else Completed(None)

    def send_to_async(self, data, address: Address, callback: Callable[[Status, int], Any],
                      flags: int = Msg.NONE) -> AsyncResult:
        """``sock_send_to_async``: one datagram to ``address``, as :meth:`send_async`."""
        addr = _address(address)
        pin = Pin(data)
        op = _async._Op("send", self, callback, [pin])
        status, now = self._submit(op, lambda token, now: lib.sock_send_to_async(
            self._handle, pin.address, pin.length, int(flags), addr, _async.TRAMPOLINE, token,
            byref(now)))
        return PENDING if status == Status.IO_PENDING else Completed(now)

    def recv_from_async(self, bufsize: int, callback: Callable[[Status, Tuple[bytes, str]], Any],
                        flags: int = Msg.NONE) -> AsyncResult:
        """``sock_recv_from_async``: as :meth:`recv_async`, with the sender's
        address: ``Completed((data, address))`` or ``callback(status, (data,
        address))``."""
        if bufsize <= 0:
            raise ValueError("bufsize must be > 0")
        buf = bytearray(bufsize)
        addr = create_string_buffer(ADDRESS_MAX_LEN)  # kept alive by the operation
        pin = Pin(buf, writable=True)
        op = _async._Op("recv_from", self, callback, [pin], (buf, addr))
        status, now = self._submit(op, lambda token, now: lib.sock_recv_from_async(
            self._handle, pin.address, bufsize, int(flags), addr, ADDRESS_MAX_LEN,
            _async.TRAMPOLINE, token, byref(now)))
        if status == Status.IO_PENDING:
            return PENDING
        return Completed((bytes(memoryview(buf)[:now]), addr.value.decode()))

    def cancel_sends(self) -> None:
        """``sock_cancel_sends``: pending sends complete with OPERATION_ABORTED; the socket stays open."""
        check(lib.sock_cancel_sends(self._handle))

    def attach(self, engine=None) -> None:
        """``sock_attach``: run this socket's callbacks on ``engine`` (``None``: the
        default engine). No async operation may be pending."""
        check(lib.sock_attach(self._handle, engine._pointer() if engine is not None else None))
        self._engine = engine  # the socket keeps its engine alive

    @property
    def engine(self):
        """The :class:`Engine` set by :meth:`attach` (``None``: the default engine)."""
        return self._engine

    def _threaded_engine(self) -> bool:
        return self._engine is None or self._engine.threads > 0


def create_connection(address: Address, timeout: Optional[float] = None) -> Socket:
    """A connected stream socket; ``timeout`` (seconds) bounds the connect and
    later becomes the socket's :attr:`~Socket.send_timeout`."""
    sock = Socket(family_for(address), Type.STREAM)
    try:
        if timeout is not None:
            sock.send_timeout = timeout
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def create_server(address: Address, backlog: int = 128, reuse_address: bool = True) -> Socket:
    """A listening stream socket bound to ``address`` (port 0: a free port;
    see :attr:`~Socket.local_address`)."""
    sock = Socket(family_for(address), Type.STREAM)
    try:
        if reuse_address and sock.family != Family.UNIX:
            sock.reuse_address = True
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
