"""asyncio on libsock's completion queue.

Each running event loop gets a *queue engine* (``sock_engine_new_queue``)
as soon as it opens its first :class:`Socket`, and frees it when its last
one is closed. The engine's descriptor (``sock_engine_fd``, readable
exactly while entries wait) goes into the loop with ``loop.add_reader``;
when it is readable the loop takes the entries with ``sock_engine_dequeue``
(timeout 0, never blocking) and resolves the operations' futures, on the
loop's own thread. No thread of the library ever calls into Python here:
there are no callbacks, only entries.

Every async call registers an operation under a fresh integer id that goes
to C as ``user_data``. The operation holds what C may still touch -- the
buffer export of ``send_all``'s data, the receive buffer, the address text
-- and the future, until its entry arrives; only then is any of it let go.

Cancellation (``task.cancel()``, ``asyncio.wait_for``, ``asyncio.timeout``):

- ``send_all``: the pending sends of the socket are cancelled
  (``sock_cancel_sends``); once their entry has arrived the task gets
  :class:`SendCancelled`, an ``asyncio.CancelledError`` whose ``sent`` is
  the bytes that did go (the stream holds exactly ``data[:sent]`` of this
  call). Other ``send_all`` calls pending on the same socket end too, with
  :class:`~libsock.OperationAborted` and their own ``sent``.
- ``shutdown``: cancelled the same way (the pending shutdown ends).
- ``recv`` and ``accept``: the C API cannot cancel one receive or accept,
  and what it brings must not be lost. So the operation stays submitted
  (its buffer alive) and its result is kept for the socket: the next
  ``recv`` returns the bytes it received (or its end of stream or error)
  before receiving anything new; the next ``accept`` returns the
  connection it accepted. A ``wait_for(s.recv(n), t)`` that times out loses
  nothing. Closing the socket discards such a result (an accepted handle is
  closed).
- ``connect``: a half-made connection is of no use, so cancelling a connect
  closes the socket (as cancelling ``asyncio.open_connection`` does).

Exceptions are :class:`~libsock.SockError` subclasses with ``.status`` and
``.name``; those of ``send_all`` carry ``.sent``.

All methods must be called on the thread of the loop the socket was made
on. Close sockets before their loop ends: a loop that ends with sockets
open leaves its queue engine to the end of the process (an idle thread that
never calls into Python, freed at interpreter exit).
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import itertools
import warnings
from ctypes import byref, c_int32, c_size_t, c_void_p, create_string_buffer
from typing import Dict, Optional, Union

from . import _lib
from ._buffer import Pin
from ._lib import handle_t, lib, sock_completion
from .constants import Family, Op, Status, Type
from .errors import SockError, check, error_for
from .socket import Address, _FAMILIES, _TYPES, _address, _enum, family_for
from .socket import Socket as _SyncSocket

__all__ = ["Socket", "SendCancelled", "open_connection", "create_server", "pending_count"]

_BATCH = 64           # entries taken per sock_engine_dequeue
_BATCHES_PER_WAKE = 8  # then give the loop back (the fd stays readable)

# NULL callbacks: on a queue engine the entry reports instead.
_NO_CALLBACK = _lib.CALLBACK()
_NO_STATUS_CALLBACK = _lib.STATUS_CALLBACK()
_NO_ACCEPT_CALLBACK = _lib.ACCEPT_CALLBACK()


class SendCancelled(asyncio.CancelledError):
    """``send_all`` (or ``shutdown``) was cancelled: ``sent`` bytes of it went."""

    def __init__(self, sent: int):
        super().__init__(f"send cancelled after {sent} bytes")
        self.sent = sent


class _Operation:
    __slots__ = ("id", "kind", "sock", "future", "keep")

    def __init__(self, id: int, kind: Op, sock: "Socket", future: asyncio.Future, keep):
        self.id = id
        self.kind = kind
        self.sock = sock          # keeps the Socket alive while C works for it
        self.future = future      # result: (status, bytes, accepted handle)
        self.keep = keep          # what C reads or writes: released only at the entry

    def release(self):
        if isinstance(self.keep, Pin):
            self.keep.release()  # a receive buffer stays: its result is read from it


class _Hub:
    """The queue engine of one event loop, alive while a socket of it is open."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        ptr = c_void_p()
        check(lib.sock_engine_new_queue(byref(ptr)))
        self.engine = ptr.value
        fd = c_int32(-1)
        status = lib.sock_engine_fd(self.engine, byref(fd))
        if status != Status.OK:
            lib.sock_engine_free(self.engine)
            check(status)
        self.fd = fd.value
        self.ops: Dict[int, _Operation] = {}
        self.sockets = 0
        self._entries = (sock_completion * _BATCH)()
        self._count = c_size_t(0)
        self.closed = False
        loop.add_reader(self.fd, self._on_readable)

    # --- operations ---------------------------------------------------------

    def register(self, kind: Op, sock: "Socket", keep=None) -> _Operation:
        op = _Operation(next(_ids), kind, sock, self.loop.create_future(), keep)
        self.ops[op.id] = op
        return op

    def unregister(self, op: _Operation) -> None:
        """For a call that did not return SOCK_IO_PENDING: no entry will come."""
        self.ops.pop(op.id, None)
        op.release()

    # --- entries --------------------------------------------------------------

    def _take(self) -> tuple:
        """One ``sock_engine_dequeue`` without waiting; dispatches the entries;
        returns ``(status, how many)``."""
        status = lib.sock_engine_dequeue(self.engine, self._entries, _BATCH, 0, byref(self._count))
        n = self._count.value if status == Status.OK else 0
        for i in range(n):
            e = self._entries[i]
            self._dispatch(e.operation, e.status, e.bytes, e.accepted, e.user_data or 0)
        return status, n

    def _on_readable(self) -> None:
        for _ in range(_BATCHES_PER_WAKE):
            status, n = self._take()
            if status != Status.OK:  # never expected on a live engine: say so, do not spin
                self.loop.remove_reader(self.fd)
                self.loop.call_exception_handler({"message": "libsock.aio: sock_engine_dequeue failed",
                                                  "exception": error_for(status)})
                return
            if n < _BATCH:
                return

    def _dispatch(self, kind: int, status: int, nbytes: int, accepted: int, user_data: int) -> None:
        op = self.ops.pop(user_data, None)
        if op is None:  # not ours (cannot happen): never leak a connection
            if accepted:
                lib.sock_close(accepted)
            return
        op.release()
        if accepted and op.sock.closed:  # an accept of a listener closed meanwhile
            lib.sock_close(accepted)
            accepted, status = 0, Status.OPERATION_ABORTED
        if not op.future.done():
            op.future.set_result((status, nbytes, accepted))

    # --- life cycle -----------------------------------------------------------

    def add_socket(self) -> None:
        self.sockets += 1

    def remove_socket(self) -> None:
        self.sockets -= 1
        if self.sockets == 0:
            self.close()

    def close(self) -> None:
        """Frees the engine and resolves the futures of what it ended (every
        socket of it is closed by now)."""
        if self.closed:
            return
        self.closed = True
        if _hubs.get(self.loop) is self:
            del _hubs[self.loop]
        if not self.loop.is_closed():
            self.loop.remove_reader(self.fd)  # before the free closes (and the system may reuse) the fd
        lib.sock_engine_free(self.engine)
        # A freed queue engine stays dequeueable until drained, then says
        # SOCK_OPERATION_ABORTED; the free has queued every entry already.
        for _ in range(100_000):
            if self._take()[0] != Status.OK:  # SOCK_OPERATION_ABORTED: drained
                break
        for op in list(self.ops.values()):  # defensive: nothing may wait forever
            self._dispatch(op.kind, Status.OPERATION_ABORTED, 0, 0, op.id)


_ids = itertools.count(1)  # 0 would reach Python as None
_hubs: Dict[asyncio.AbstractEventLoop, _Hub] = {}


def _current_hub() -> _Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = _Hub(loop)
    return hub


def pending_count() -> int:
    """How many operations of every loop wait for their entry."""
    return sum(len(h.ops) for h in _hubs.values())


@atexit.register
def _free_at_exit() -> None:
    # Engines of loops that ended with sockets open: their threads never
    # call into Python, so this is tidiness, not safety.
    for hub in list(_hubs.values()):
        hub.closed = True
        lib.sock_engine_free(hub.engine)
    _hubs.clear()


async def _through_cancellation(future: asyncio.Future):
    """Awaits ``future`` even if the task is cancelled again meanwhile."""
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                return future.result()


class Socket:
    """A libsock socket whose async operations are awaited.

    ``Socket(family="inet", type="stream")`` -- made inside a running loop,
    on that loop's queue engine. ``async with`` closes it. :attr:`sync` is
    the underlying :class:`libsock.Socket` (options, addresses); do not use
    its blocking or callback calls on this socket.
    """

    def __init__(self, family: Union[str, int] = "inet", type: Union[str, int] = "stream", *,
                 _handle: Optional[int] = None, _hub: Optional[_Hub] = None):
        self._closed = True
        hub = _hub or _current_hub()
        fam = _enum(family, _FAMILIES, Family, "family")
        typ = _enum(type, _TYPES, Type, "type")
        if _handle is None:
            self.sync = _SyncSocket(fam, typ)
            status = lib.sock_attach(self.sync.handle, hub.engine)
            if status != Status.OK:
                self.sync.close()
                check(status)
        else:
            self.sync = _SyncSocket._adopt(_handle, fam, typ)  # accepted: bound to the listener's engine
        self._hub = hub
        self._closed = False
        hub.add_socket()
        self._recv_op: Optional[_Operation] = None   # a receive whose result no one took yet
        self._recv_busy = False
        self._accept_ops: list = []                  # cancelled accepts, oldest first

    # --- plumbing ---------------------------------------------------------------

    @property
    def handle(self) -> int:
        return self.sync.handle

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def local_address(self) -> str:
        return self.sync.local_address

    @property
    def peer_address(self) -> str:
        return self.sync.peer_address

    def bind(self, address: Address) -> None:
        self.sync.bind(address)

    def listen(self, backlog: int = 128) -> None:
        self.sync.listen(backlog)

    def close(self) -> None:
        """``sock_close``; idempotent. Pending operations end with
        :class:`~libsock.OperationAborted`; the loop's engine is freed with
        its last socket."""
        if self._closed:
            return
        self._closed = True
        for op in self._accept_ops:
            if op.future.done() and op.future.result()[2]:
                lib.sock_close(op.future.result()[2])
        self._accept_ops = []
        self._recv_op = None
        try:
            self.sync._closed = True  # the handle is closed here, once
            lib.sock_close(self.sync.handle)
        finally:
            self._hub.remove_socket()

    async def __aenter__(self) -> "Socket":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_closed", True):
            return
        self._closed = True
        lib.sock_close(self.sync.handle)
        self.sync._closed = True
        hub = self._hub
        try:
            if asyncio.get_running_loop() is hub.loop:
                hub.remove_socket()
            else:
                raise RuntimeError
        except RuntimeError:
            if not hub.loop.is_closed():
                hub.loop.call_soon_threadsafe(hub.remove_socket)
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<libsock.aio.Socket handle={self.handle:#x} {'closed' if self._closed else 'open'}>"

    # --- operations -------------------------------------------------------------

    async def connect(self, address: Address) -> None:
        """``sock_connect_async``. Cancelling it closes the socket."""
        text = _address(address)
        op = self._hub.register(Op.CONNECT, self, text)
        status = lib.sock_connect_async(self.handle, text, _NO_STATUS_CALLBACK, op.id)
        if status != Status.IO_PENDING:
            self._hub.unregister(op)
            check(status)
            return
        try:
            status, _, _ = await asyncio.shield(op.future)
        except asyncio.CancelledError:
            self.close()
            raise
        if status != Status.OK:
            raise error_for(status)

    async def accept(self) -> "Socket":
        """``sock_accept_async``: the next connection, as an aio :class:`Socket`."""
        if self._accept_ops:
            op = self._accept_ops.pop(0)  # one a cancelled accept left
        else:
            out = handle_t(0)
            op = self._hub.register(Op.ACCEPT, self)
            status = lib.sock_accept_async(self.handle, _NO_ACCEPT_CALLBACK, op.id, byref(out))
            if status != Status.IO_PENDING:
                self._hub.unregister(op)
                check(status)
                return self._adopt(out.value)
        try:
            status, _, accepted = await asyncio.shield(op.future)
        except asyncio.CancelledError:
            if not self._closed:
                self._accept_ops.append(op)
                self._accept_ops.sort(key=lambda o: o.id)
            raise
        if status != Status.OK:
            raise error_for(status)
        return self._adopt(accepted)

    def _adopt(self, handle: int) -> "Socket":
        return Socket(self.sync.family, self.sync.type, _handle=handle, _hub=self._hub)

    async def send_all(self, data) -> int:
        """``sock_send_async`` of the whole of ``data`` (any contiguous
        bytes-like object, not copied: do not change it meanwhile). Returns
        ``len(data)``; a failure raises with ``.sent``."""
        pin = Pin(data)
        op = self._hub.register(Op.SEND, self, pin)
        now = c_size_t(0)
        status = lib.sock_send_async(self.handle, pin.address, pin.length, 0, _NO_CALLBACK, op.id,
                                     byref(now))
        if status != Status.IO_PENDING:
            self._hub.unregister(op)
            check(status, sent=now.value)
            return now.value
        try:
            status, sent, _ = await asyncio.shield(op.future)
        except asyncio.CancelledError:
            if not self._closed:
                lib.sock_cancel_sends(self.handle)
            status, sent, _ = await _through_cancellation(op.future)
            raise SendCancelled(sent) from None
        if status != Status.OK:
            raise error_for(status, sent=sent)
        return sent

    async def recv(self, n: int) -> bytes:
        """``sock_recv_async``: 1 to ``n`` bytes, ``b""`` at end of stream."""
        if n < 0:
            raise ValueError("negative buffersize in recv")
        if self._recv_busy:
            raise RuntimeError("recv() called while another coroutine is already waiting for data")
        op = self._recv_op
        if op is None:
            if n == 0:
                return b""
            buf = create_string_buffer(n)
            op = self._hub.register(Op.RECV, self, buf)
            now = c_size_t(0)
            status = lib.sock_recv_async(self.handle, buf, n, 0, _NO_CALLBACK, op.id, byref(now))
            if status != Status.IO_PENDING:
                self._hub.unregister(op)
                check(status)
                return ctypes.string_at(buf, now.value)
            self._recv_op = op
        buf = op.keep
        self._recv_busy = True
        try:
            status, nbytes, _ = await asyncio.shield(op.future)
        finally:
            self._recv_busy = False
        # Cancelled: the op stays in _recv_op; the next recv takes its result.
        self._recv_op = None
        if status != Status.OK:
            raise error_for(status)
        return ctypes.string_at(buf, nbytes) if nbytes else b""

    async def shutdown(self) -> None:
        """``sock_shutdown_async``: after every pending send, ends sending (the
        peer reads everything, then end of stream)."""
        op = self._hub.register(Op.SHUTDOWN, self)
        status = lib.sock_shutdown_async(self.handle, _NO_STATUS_CALLBACK, op.id)
        if status != Status.IO_PENDING:
            self._hub.unregister(op)
            check(status)
            return
        try:
            status, _, _ = await asyncio.shield(op.future)
        except asyncio.CancelledError:
            if not self._closed:
                lib.sock_cancel_sends(self.handle)
            await _through_cancellation(op.future)
            raise
        if status != Status.OK:
            raise error_for(status)


async def open_connection(address: Address) -> Socket:
    """A connected :class:`Socket` (family from the address)."""
    s = Socket(family_for(address), "stream")
    try:
        await s.connect(address)
    except BaseException:
        s.close()
        raise
    return s


def create_server(address: Address, backlog: int = 128) -> Socket:
    """A listening :class:`Socket` bound to ``address`` (port 0: any free one)."""
    s = Socket(family_for(address), "stream")
    try:
        if family_for(address) != Family.UNIX:
            s.sync.reuse_address = True
        s.bind(address)
        s.listen(backlog)
    except BaseException:
        s.close()
        raise
    return s
