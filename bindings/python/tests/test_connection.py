"""The async connection life cycle from Python: connect_async, accept_async,
shutdown_async, send_to_async and recv_from_async over loopback, with
callbacks on the default engine and on a manual engine."""
import threading

import libsock
from libsock import PENDING, Completed, Status


def wait(event, what):
    assert event.wait(10), f"{what}: no callback within 10 s"


def test_connect_accept_send_shutdown():
    listener = libsock.Socket("inet", "stream")
    listener.bind("127.0.0.1:0")
    listener.listen(8)
    addr = listener.local_address
    got = {}
    accepted, connected, shut = threading.Event(), threading.Event(), threading.Event()

    def on_accept(status, sock):
        got["accept"] = (status, sock)
        accepted.set()

    def on_connect(status):
        got["connect"] = status
        connected.set()

    assert listener.accept_async(on_accept) is PENDING
    client = libsock.Socket("inet", "stream")
    assert client.connect_async(addr, on_connect) is PENDING
    # sends made while connecting queue behind the connect
    client.send_async(b"hello ", lambda s, n: None)
    client.send_async(b"world", lambda s, n: None)

    def on_shut(status):
        got["shut"] = status
        client.close()   # the graceful way: close in the shutdown's callback
        shut.set()

    if client.shutdown_async(on_shut) is not PENDING:
        on_shut(Status.OK)   # finished inside the call: no callback comes
    wait(accepted, "accept")
    wait(connected, "connect")
    assert got["connect"] == Status.OK
    status, server = got["accept"]
    assert status == Status.OK and server is not None
    data = b""
    while True:
        chunk = server.recv(64)
        if not chunk:
            break
        data += chunk
    assert data == b"hello world"
    wait(shut, "shutdown")
    assert got["shut"] == Status.OK
    server.close()
    # a connection already waiting: accept completes inside the call
    c2 = libsock.Socket("inet", "stream")
    c2.connect(addr)
    r = PENDING
    for _ in range(100):
        r = listener.accept_async(lambda s, sock: None)
        if r is not PENDING:
            break
    if isinstance(r, Completed):
        r.value.close()
    c2.close()
    listener.close()


def test_connect_refused_reports_through_callback():
    dead = libsock.Socket("inet", "stream")
    dead.bind("127.0.0.1:0")
    addr = dead.local_address
    dead.close()
    done, got = threading.Event(), []
    s = libsock.Socket("inet", "stream")
    try:
        r = s.connect_async(addr, lambda st: (got.append(st), done.set()))
        assert r is PENDING
        wait(done, "connect")
        assert got == [Status.CONNECTION_REFUSED]
    except libsock.ConnectionRefused:
        pass  # refused inside the call: no callback
    s.close()


def test_datagrams_to_and_from_any_address():
    engine = libsock.Engine(0)
    rx = libsock.Socket("inet", "dgram")
    tx = libsock.Socket("inet", "dgram")
    rx.bind("127.0.0.1:0")
    tx.bind("127.0.0.1:0")
    rx.attach(engine)
    got = []
    assert rx.recv_from_async(64, lambda st, v: got.append((st, v))) is PENDING
    r = tx.send_to_async(b"ping", rx.local_address, lambda st, n: None)
    assert r is PENDING or r == Completed(4)
    for _ in range(200):
        engine.poll(50)
        if got:
            break
    assert got == [(Status.OK, (b"ping", tx.local_address))]
    rx.close()
    tx.close()
    engine.close()
