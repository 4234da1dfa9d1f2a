"""Blocking API over real loopback sockets against a plain-Python peer."""

import ctypes
import socket
import threading
import time

import pytest

import libsock
from libsock import Option, Status
from libsock._lib import lib
from conftest import WAIT, payload, recv_exactly, recv_to_eof


def test_context_manager_closes_the_handle():
    with libsock.Socket() as s:
        h = s.handle
        assert h != libsock.INVALID_HANDLE and not s.closed
    assert s.closed
    value = ctypes.c_int64()
    assert lib.sock_get_option(h, Option.BLOCKING, ctypes.byref(value)) == Status.NOT_SOCKET
    s.close()  # idempotent


def test_blocking_round_trip_of_4_mib(pair):
    client, peer = pair
    data = payload(4 << 20)

    def echo():  # read all, then send it back and close
        peer.sendall(recv_to_eof(peer))
        peer.close()
    t = threading.Thread(target=echo, daemon=True)
    t.start()
    assert client.send(data) == len(data)  # one call, all of it
    client.shutdown("send")
    got = bytearray()
    while True:
        chunk = client.recv(1 << 20)
        if chunk == b"":  # end of stream
            break
        got += chunk
    t.join(WAIT)
    assert bytes(got) == data


def test_send_timeout_reports_the_partial_count_truthfully(slow_pair):
    client, peer = slow_pair
    client.send_timeout = 0.2
    data = payload(1 << 20)
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        client.send(data)
    elapsed = time.monotonic() - start
    e = info.value
    assert isinstance(e, libsock.SockTimeout)
    assert e.status == Status.TIMED_OUT and e.name == "SOCK_TIMED_OUT"
    assert 0 < e.sent < len(data)
    assert 0.15 < elapsed < 2.0
    client.close()  # the peer now reads exactly what libsock said went out
    assert recv_to_eof(peer) == data[:e.sent]


def test_recv_timeout_and_non_blocking_would_block(pair):
    client, peer = pair
    client.recv_timeout = 0.05
    assert client.recv_timeout == 0.05
    with pytest.raises(libsock.SockTimeout):
        client.recv(10)
    client.blocking = False
    assert client.blocking is False
    with pytest.raises(BlockingIOError) as info:
        client.recv(10)
    assert info.value.status == Status.WOULD_BLOCK


def test_sendv_and_recv_into(pair):
    client, peer = pair
    parts = [b"alpha-", bytearray(b"beta-"), memoryview(b"xxgamma")[2:], b""]
    assert client.sendv(parts) == len(b"alpha-beta-gamma")
    assert recv_exactly(peer, 16) == b"alpha-beta-gamma"
    peer.sendall(b"0123456789")
    buf = bytearray(32)
    n = 0
    while n < 10:
        n += client.recv_into(memoryview(buf)[n:], 10 - n)
    assert bytes(buf[:10]) == b"0123456789"


def test_server_side_accept_addresses_and_eof():
    with libsock.create_server("127.0.0.1:0") as server:
        host, port = server.local_address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        with socket.create_connection((host, int(port))) as py_client:
            with server.accept() as conn:
                assert conn.peer_address == "%s:%d" % py_client.getsockname()
                assert conn.local_address == server.local_address
                py_client.sendall(b"ping")
                assert conn.recv(100) == b"ping"
                conn.send(b"pong")
                assert py_client.recv(100) == b"pong"
                py_client.shutdown(socket.SHUT_WR)
                assert conn.recv(100) == b""  # orderly end of stream


def test_options_round_trip(pair):
    client, _ = pair
    assert client.blocking is True and client.send_timeout is None
    client.send_timeout = 1.5
    assert client.get_option(Option.SEND_TIMEOUT_MS) == 1500 and client.send_timeout == 1.5
    client.send_timeout = None
    assert client.get_option(Option.SEND_TIMEOUT_MS) == 0
    with pytest.raises(ValueError):
        client.send_timeout = 0
    client.no_delay = True
    assert client.no_delay is True
    assert client.async_inline_completion is True
    assert client.pending_send_bytes == 0
    with pytest.raises(AttributeError):
        client.pending_send_bytes = 1
    assert client.fileno() >= 0


def test_tuple_addresses_and_str_payload_rejected(pair):
    client, peer = pair
    with pytest.raises(TypeError):
        client.send("text is not bytes")
    with libsock.Socket() as s:
        s.bind(("127.0.0.1", 0))
        assert s.local_address.startswith("127.0.0.1:")


def test_datagrams_with_send_to_and_recv_from():
    with libsock.Socket("inet", "dgram") as a, libsock.Socket("inet", "dgram") as b:
        a.bind("127.0.0.1:0")
        b.bind("127.0.0.1:0")
        assert b.send_to(b"one datagram", a.local_address) == 12
        a.recv_timeout = WAIT
        assert a.recv_from(100) == (b"one datagram", b.local_address)
        with pytest.raises(libsock.SockError) as info:
            b.send(b"unconnected")
        assert info.value.name == "SOCK_DESTINATION_ADDRESS_REQUIRED"
