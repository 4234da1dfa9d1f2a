"""Shared fixtures: loopback peers written with Python's own ``socket`` module
(never libsock), so every test checks libsock against an independent end."""

import os
import random
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]          # bindings/python
REPO_ROOT = PACKAGE_ROOT.parents[1]
sys.path.insert(0, str(PACKAGE_ROOT))                       # test the tree, not an installed copy
_built = REPO_ROOT / "target" / "release" / "libsock.so"
if "LIBSOCK_PATH" not in os.environ and _built.exists():
    os.environ["LIBSOCK_PATH"] = str(_built)

import libsock  # noqa: E402

HEADER = REPO_ROOT / "include" / "sock.h"
WAIT = 10.0  # generous upper bound for anything that should happen "soon"


def payload(n: int, seed: int = 1) -> bytes:
    """``n`` bytes with no period, so reordering or loss shows."""
    return random.Random(seed).randbytes(n)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class Reader(threading.Thread):
    """Reads a Python socket in the background until EOF or ``n`` bytes."""

    def __init__(self, sock: socket.socket, n: int = -1):
        super().__init__(daemon=True)
        self.sock, self.n, self.data = sock, n, b""

    def run(self):
        self.data = recv_to_eof(self.sock) if self.n < 0 else recv_exactly(self.sock, self.n)

    def result(self, timeout: float = WAIT) -> bytes:
        self.join(timeout)
        assert not self.is_alive(), "peer did not receive everything in time"
        return self.data


@pytest.fixture
def pair():
    """(libsock client, Python peer): a connected loopback TCP pair."""
    server = socket.create_server(("127.0.0.1", 0))
    client = libsock.Socket("inet", "stream")
    client.connect(server.getsockname())
    peer, _ = server.accept()
    server.close()
    peer.settimeout(WAIT)
    yield client, peer
    client.close()
    peer.close()


@pytest.fixture
def slow_pair():
    """As ``pair``, with small kernel buffers on both ends, so a few hundred KiB
    sent and not read make libsock's sends wait (pending / timeout)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # inherited by the accepted peer
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = libsock.Socket()
    client.send_buffer_size = 4096
    client.connect(server.getsockname())
    peer, _ = server.accept()
    server.close()
    peer.settimeout(WAIT)
    yield client, peer
    client.close()
    peer.close()


@pytest.fixture(autouse=True)
def no_leaked_operations():
    """Every test must leave no async operation registered in the binding."""
    yield
    deadline = time.monotonic() + WAIT
    while libsock.pending_count() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert libsock.pending_count() == 0
