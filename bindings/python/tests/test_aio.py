"""libsock.aio: asyncio over the completion queue (no callbacks from library threads)."""

import asyncio
import hashlib
import random
import socket
import threading

import pytest

import libsock
from libsock import aio
from conftest import WAIT, payload, recv_to_eof


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, WAIT * 3))


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """Every test ends with no operation waiting for an entry and no engine."""
    yield
    assert aio.pending_count() == 0
    assert not aio._hubs, "a loop's queue engine outlived its sockets"


def python_listener(rcvbuf=None):
    server = socket.socket()
    if rcvbuf:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


# --- echo ------------------------------------------------------------------------

async def _echo(n_clients: int):
    server = aio.create_server("127.0.0.1:0")
    address = server.local_address
    seen = []

    async def serve(conn):
        async with conn:
            while data := await conn.recv(65536):
                await conn.send_all(data)
            await conn.shutdown()

    async def accept_all():
        async with server:
            handlers = []
            for _ in range(n_clients):
                handlers.append(asyncio.create_task(serve(await server.accept())))
            await asyncio.gather(*handlers)

    async def client(i):
        rng = random.Random(i)
        data = rng.randbytes(rng.randint(1, 256 * 1024))
        async with await aio.open_connection(address) as s:
            async def receive():
                digest, n = hashlib.sha256(), 0
                while chunk := await s.recv(65536):
                    digest.update(chunk)
                    n += len(chunk)
                return digest.hexdigest(), n

            receiver = asyncio.create_task(receive())   # read while writing: no deadlock on full buffers
            assert await s.send_all(data) == len(data)
            await s.shutdown()
            got = await receiver
        seen.append(i)
        assert got == (hashlib.sha256(data).hexdigest(), len(data)), f"client {i}"
        return len(data)

    acceptor = asyncio.create_task(accept_all())
    total = sum(await asyncio.gather(*(client(i) for i in range(n_clients))))
    await acceptor
    return total, sorted(seen)


def test_echo_100_concurrent_connections_checksummed():
    total, seen = run(_echo(100))
    assert seen == list(range(100))
    assert total > 100 * 64 * 1024


def test_everything_runs_on_the_loop_thread_no_library_thread_calls_python():
    calls = []
    original = aio._Hub._dispatch

    def spy(self, *args):
        calls.append(threading.get_ident())
        return original(self, *args)

    aio._Hub._dispatch = spy
    try:
        ident = run(_loop_thread_and_echo())
    finally:
        aio._Hub._dispatch = original
    assert calls and set(calls) == {ident}


async def _loop_thread_and_echo():
    await _echo(3)
    return threading.get_ident()


# --- single calls ------------------------------------------------------------------

def test_connect_refused_is_an_error_with_status_and_name():
    async def main():
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nobody listens there now
        s = aio.Socket()
        with pytest.raises(libsock.ConnectionRefused) as info:
            await s.connect(("127.0.0.1", port))
        s.close()
        return info.value

    e = run(main())
    assert isinstance(e, ConnectionRefusedError)
    assert e.status == 10061 and e.name == "SOCK_CONNECTION_REFUSED"


def test_recv_end_of_stream_and_peer_data():
    async def main():
        server = python_listener()
        async with await aio.open_connection(server.getsockname()) as s:
            peer, _ = server.accept()
            server.close()
            peer.sendall(b"hello")
            assert await s.recv(100) == b"hello"
            peer.shutdown(socket.SHUT_WR)
            assert await s.recv(100) == b""
            assert await s.recv(100) == b""
            await s.send_all(b"bye")
            await s.shutdown()
            peer.settimeout(WAIT)
            assert recv_to_eof(peer) == b"bye"
            peer.close()

    run(main())


def test_send_all_of_a_large_buffer_arrives_whole():
    data = payload(4 << 20, seed=7)

    async def main():
        server = python_listener()
        async with await aio.open_connection(server.getsockname()) as s:
            peer, _ = server.accept()
            server.close()
            peer.settimeout(WAIT)
            box = {}
            reader = threading.Thread(target=lambda: box.setdefault("data", recv_to_eof(peer)))
            reader.start()
            assert await s.send_all(memoryview(data)) == len(data)
            await s.shutdown()
            await asyncio.get_running_loop().run_in_executor(None, reader.join)
            peer.close()
            return box["data"]

    assert run(main()) == data


def test_send_all_error_carries_sent():
    async def main():
        server = python_listener(rcvbuf=4096)
        async with await aio.open_connection(server.getsockname()) as s:
            peer, _ = server.accept()
            server.close()
            send = asyncio.create_task(s.send_all(payload(8 << 20)))
            await asyncio.sleep(0.05)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            peer.close()  # a reset while the send is pending
            with pytest.raises(libsock.SockError) as info:
                await send
            return info.value

    e = run(main())
    assert e.name in ("SOCK_CONNECTION_RESET", "SOCK_SHUTDOWN", "SOCK_CONNECTION_ABORTED"), e
    assert isinstance(e.sent, int) and 0 <= e.sent < 8 << 20


def test_operations_pending_at_close_end_with_operation_aborted():
    async def main():
        server = python_listener()
        s = await aio.open_connection(server.getsockname())
        peer, _ = server.accept()
        server.close()
        recv = asyncio.create_task(s.recv(10))
        await asyncio.sleep(0.02)
        s.close()
        with pytest.raises(libsock.OperationAborted):
            await recv
        with pytest.raises(libsock.NotSocket):
            await s.recv(10)
        peer.close()

    run(main())


def test_async_with_closes_and_the_engine_goes_with_the_last_socket():
    async def main():
        async with aio.create_server("127.0.0.1:0") as listener:
            assert aio._hubs
            async with await aio.open_connection(listener.local_address) as c:
                conn = await listener.accept()
                conn.close()
                assert not c.closed
            assert c.closed
        assert listener.closed
        assert not aio._hubs

    run(main())


# --- cancellation ----------------------------------------------------------------------

def test_cancelled_send_all_reports_the_bytes_that_went():
    data = payload(16 << 20, seed=3)

    async def main():
        server = python_listener(rcvbuf=4096)
        s = await aio.open_connection(server.getsockname())
        s.sync.send_buffer_size = 4096
        peer, _ = server.accept()
        server.close()
        outcome = {}

        async def sender():
            try:
                await s.send_all(data)
            except asyncio.CancelledError as e:
                outcome["sent"] = getattr(e, "sent", None)
                raise

        task = asyncio.create_task(sender())
        await asyncio.sleep(0.05)  # pending: the peer reads nothing
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert isinstance(outcome["sent"], int) and 0 < outcome["sent"] < len(data)
        s.close()
        peer.settimeout(WAIT)
        got = await asyncio.get_running_loop().run_in_executor(None, recv_to_eof, peer)
        peer.close()
        return outcome["sent"], got

    sent, got = run(main())
    assert got == data[:sent]  # exactly the bytes reported, and the stream ended cleanly


def test_cancelled_recv_loses_nothing():
    async def main():
        server = python_listener()
        async with await aio.open_connection(server.getsockname()) as s:
            peer, _ = server.accept()
            server.close()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(s.recv(100), 0.05)
            peer.sendall(b"first")
            await asyncio.sleep(0.05)  # the cancelled receive takes these bytes meanwhile
            assert await s.recv(100) == b"first"
            peer.sendall(b"second")
            assert await s.recv(100) == b"second"
            peer.close()

    run(main())


def test_concurrent_recv_is_refused():
    async def main():
        server = python_listener()
        async with await aio.open_connection(server.getsockname()) as s:
            peer, _ = server.accept()
            server.close()
            first = asyncio.create_task(s.recv(10))
            await asyncio.sleep(0.01)
            with pytest.raises(RuntimeError):
                await s.recv(10)
            peer.sendall(b"x")
            assert await first == b"x"
            peer.close()

    run(main())


def test_cancelled_accept_keeps_the_connection_for_the_next_accept():
    async def main():
        async with aio.create_server("127.0.0.1:0") as listener:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(listener.accept(), 0.05)
            client = socket.create_connection(tuple_of(listener.local_address))
            client.sendall(b"ping")
            async with await listener.accept() as conn:
                assert await conn.recv(10) == b"ping"
            client.close()

    run(main())


def test_accept_cancelled_then_listener_closed_closes_the_accepted_connection():
    async def main():
        listener = aio.create_server("127.0.0.1:0")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(listener.accept(), 0.05)
        client = socket.create_connection(tuple_of(listener.local_address))
        await asyncio.sleep(0.05)
        listener.close()
        client.settimeout(WAIT)
        try:
            assert client.recv(10) == b""   # closed by the binding, not leaked
        except ConnectionResetError:
            pass
        client.close()

    run(main())


def test_cancelled_connect_closes_the_socket():
    async def main():
        s = aio.Socket()
        # A host name: looked up on a library thread, so the connect is pending.
        task = asyncio.create_task(s.connect("localhost:9"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert s.closed
        for _ in range(200):  # the aborted entry arrives and is taken
            if not aio.pending_count():
                break
            await asyncio.sleep(0.01)

    run(main())


def tuple_of(address: str):
    host, port = address.rsplit(":", 1)
    return host, int(port)
