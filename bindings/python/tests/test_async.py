"""send_async / recv_async: the three-way result, callbacks on the engine,
lifetimes of the payload and the callable, manual engines, many threads."""

import gc
import select
import struct
import sys
import threading
import time
import weakref

import pytest

import libsock
from libsock import PENDING, Completed, Status
from conftest import WAIT, Reader, payload, recv_exactly


class Recorder:
    """A callback that records (status, value, thread) and can be waited on."""

    def __init__(self):
        self.calls = []
        self.done = threading.Event()

    def __call__(self, status, value):
        self.calls.append((status, value, threading.get_ident()))
        self.done.set()

    def wait(self, timeout=WAIT):
        assert self.done.wait(timeout), "callback did not run"
        return self.calls[0]


def test_inline_completion_returns_completed_and_skips_the_callback(pair):
    client, peer = pair
    cb = Recorder()
    result = client.send_async(b"small message", cb)
    assert result == Completed(13) and result.pending is False
    assert recv_exactly(peer, 13) == b"small message"
    time.sleep(0.05)
    assert cb.calls == []  # SOCK_OK: libsock does not call it, neither do we


def test_pending_send_calls_back_once_on_an_engine_thread_in_order(slow_pair):
    client, peer = slow_pair
    big, tail = payload(512 << 10, seed=2), payload(1000, seed=3)
    first, second = Recorder(), Recorder()
    order = []
    r1 = client.send_async(big, lambda s, n: (order.append(1), first(s, n)))
    r2 = client.send_async(tail, lambda s, n: (order.append(2), second(s, n)))
    assert r1 is PENDING and r1.pending and r2 is PENDING  # nobody reads yet: the kernel buffer is full
    assert client.pending_send_bytes > 0
    reader = Reader(peer, len(big) + len(tail))
    reader.start()
    status, sent, thread = first.wait()
    assert (status, sent) == (Status.OK, len(big)) and isinstance(status, Status)
    assert thread != threading.get_ident()
    assert second.wait()[:2] == (Status.OK, len(tail))
    assert reader.result() == big + tail  # intact and in submission order
    time.sleep(0.05)
    assert len(first.calls) == 1 and len(second.calls) == 1 and order == [1, 2]
    assert libsock.pending_count() == 0


def test_inline_completion_off_reports_through_the_callback(pair):
    client, peer = pair
    client.async_inline_completion = False
    cb = Recorder()
    assert client.send_async(b"one path", cb) is PENDING
    assert cb.wait()[:2] == (Status.OK, 8)
    assert recv_exactly(peer, 8) == b"one path"


class Buf(bytearray):
    """A bytearray that can be weakly referenced."""


def test_payload_and_callback_are_kept_alive_then_released(slow_pair):
    client, peer = slow_pair
    data = payload(256 << 10, seed=4)
    buf = Buf(data)
    results = []
    done = threading.Event()

    class Callback:
        def __call__(self, status, sent):
            results.append((status, sent))
            done.set()

    cb = Callback()
    buf_ref, cb_ref = weakref.ref(buf), weakref.ref(cb)
    assert client.send_async(buf, cb) is PENDING
    del buf, cb
    gc.collect()
    junk = [bytearray(b"\xee" * len(data)) for _ in range(4)]  # would overwrite freed memory
    assert buf_ref() is not None and cb_ref() is not None  # the binding holds them
    assert libsock.pending_count() == 1
    assert recv_exactly(peer, len(data)) == data
    assert done.wait(WAIT) and results == [(Status.OK, len(data))]
    del junk
    deadline = time.monotonic() + WAIT
    while (buf_ref() is not None or cb_ref() is not None) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert buf_ref() is None and cb_ref() is None  # released after the callback
    assert libsock.pending_count() == 0


def test_an_exception_in_the_callback_is_reported_and_harmless(slow_pair, monkeypatch):
    client, peer = slow_pair
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    ran = threading.Event()

    def bad(status, sent):
        ran.set()
        raise RuntimeError("boom in callback")

    data = payload(128 << 10, seed=5)
    assert client.send_async(data, bad) is PENDING
    assert recv_exactly(peer, len(data)) == data
    assert ran.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while not reported and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(reported) == 1 and isinstance(reported[0].exc_value, RuntimeError)
    assert reported[0].object is bad
    # The engine thread lives on: the next pending send still completes.
    cb = Recorder()
    assert client.send_async(data, cb) is PENDING
    assert recv_exactly(peer, len(data)) == data
    assert cb.wait()[:2] == (Status.OK, len(data))


def test_close_aborts_pending_sends_with_their_partial_count(slow_pair):
    client, peer = slow_pair
    cb = Recorder()
    data = payload(256 << 10, seed=6)
    assert client.send_async(data, cb) is PENDING
    client.close()
    status, sent, _ = cb.wait()
    assert status == Status.OPERATION_ABORTED and 0 <= sent < len(data)
    assert isinstance(libsock.error_for(status), libsock.OperationAborted)


def test_errors_raise_and_release_everything(pair):
    client, peer = pair
    client.shutdown("send")
    cb = Recorder()
    with pytest.raises(libsock.Shutdown) as info:
        client.send_async(b"after shutdown", cb)
    assert info.value.name == "SOCK_SHUTDOWN"
    assert libsock.pending_count() == 0 and cb.calls == []
    with pytest.raises(TypeError):
        client.send_async(b"x", "not callable")


def test_recv_async_pending_then_inline_then_end_of_stream(pair):
    client, peer = pair
    cb = Recorder()
    assert client.recv_async(100, cb) is PENDING
    peer.sendall(b"late data")
    status, data, thread = cb.wait()
    assert (status, data) == (Status.OK, b"late data") and thread != threading.get_ident()
    peer.sendall(b"early")
    assert select.select([client.fileno()], [], [], WAIT)[0]  # the bytes are in our kernel buffer
    late = Recorder()
    assert client.recv_async(100, late) == Completed(b"early")  # so the receive completes inline
    time.sleep(0.05)
    assert late.calls == []
    peer.shutdown(2)
    eof = Recorder()
    r = client.recv_async(100, eof)
    assert r == Completed(b"") or eof.wait()[:2] == (Status.OK, b"")


def test_manual_engine_runs_callbacks_only_inside_poll_on_the_caller(slow_pair):
    client, peer = slow_pair
    polling = threading.local()
    seen = []
    done = threading.Event()

    def cb(status, sent):
        seen.append((status, sent, threading.get_ident(), getattr(polling, "active", False)))
        done.set()

    data = payload(256 << 10, seed=7)
    with libsock.Engine() as engine:
        assert engine.manual
        engine.attach(client)
        assert client.engine is engine
        assert client.send_async(data, cb) is PENDING
        reader = Reader(peer, len(data))
        reader.start()
        time.sleep(0.2)
        assert seen == []  # nobody polled: nothing ran, nothing moved on
        fd = engine.fileno()
        deadline = time.monotonic() + WAIT
        while not done.is_set() and time.monotonic() < deadline:
            select.select([fd], [], [], 0.5)  # the engine's fd folds into our own loop
            polling.active = True
            try:
                engine.poll(0)
            finally:
                polling.active = False
        assert reader.result() == data
        assert seen == [(Status.OK, len(data), threading.get_ident(), True)]
        client.close()


def test_many_threads_sending_async_on_one_socket(slow_pair):
    client, peer = slow_pair
    threads, per_thread, size = 4, 100, 1024
    total = threads * per_thread
    lock = threading.Lock()
    finished = threading.Condition(lock)
    counts = {"inline": 0, "callback": 0, "bad": []}

    def on_done(status, sent):
        with lock:
            counts["callback"] += 1
            if status != Status.OK or sent != size:
                counts["bad"].append((status, sent))
            finished.notify_all()

    def frame(t, i):
        head = struct.pack("<HI", t, i)
        return head + bytes([(t * 31 + i) & 0xFF]) * (size - len(head))

    def sender(t):
        for i in range(per_thread):
            r = client.send_async(frame(t, i), on_done)
            if r is not PENDING:
                with lock:
                    counts["inline"] += 1
                    finished.notify_all()

    reader = Reader(peer, total * size)
    reader.start()
    workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(WAIT)
    with lock:
        assert finished.wait_for(lambda: counts["inline"] + counts["callback"] == total, WAIT)
    assert counts["bad"] == [] and counts["callback"] > 0
    stream = reader.result()
    assert len(stream) == total * size
    next_seq = [0] * threads
    for k in range(total):
        chunk = stream[k * size:(k + 1) * size]
        t, i = struct.unpack_from("<HI", chunk)
        assert chunk == frame(t, i), "a frame was interleaved or damaged"
        assert i == next_seq[t], "one thread's sends left out of order"
        next_seq[t] += 1
    assert next_seq == [per_thread] * threads


def test_sendv_async_gathers_buffers_in_order(slow_pair):
    client, peer = slow_pair
    parts = [payload(100 << 10, seed=s) for s in (8, 9, 10)]
    cb = Recorder()
    assert client.sendv_async([parts[0], bytearray(parts[1]), memoryview(parts[2])], cb) is PENDING
    assert recv_exactly(peer, 300 << 10) == b"".join(parts)
    assert cb.wait()[:2] == (Status.OK, 300 << 10)


def test_threaded_engine_and_freeing_it_aborts_pending_sends(slow_pair):
    client, peer = slow_pair
    engine = libsock.Engine(1)
    client.attach(engine)
    cb = Recorder()
    assert client.send_async(payload(256 << 10, seed=11), cb) is PENDING
    engine.close()  # pending operations complete first, on the engine's thread
    status, sent, thread = cb.wait()
    assert status == Status.OPERATION_ABORTED and thread != threading.get_ident()
    with pytest.raises(libsock.OperationAborted):  # no engine any more until attach
        client.send_async(b"x", Recorder())
    client.attach(None)  # back to the default engine
    after = Recorder()
    r = client.send_async(b"y", after)
    data = recv_exactly(peer, sent + 1)  # what the aborted send did send, then "y"
    assert data[-1:] == b"y"
    assert r == Completed(1) or after.wait()[:2] == (Status.OK, 1)


def test_trace_lines_reach_a_python_callable(pair):
    client, peer = pair
    lines = []
    libsock.set_trace(lines.append)
    try:
        client.send(b"traced")
    finally:
        libsock.set_trace(None)
    client.send(b"not traced")
    assert any("op=send" in line and "bytes=6" in line for line in lines)
    assert not any("bytes=10" in line for line in lines)


def test_set_trace_returns_after_the_running_call(pair):
    """set_trace(None) waits for a call that another thread has in progress."""
    client, peer = pair
    entered, left = threading.Event(), threading.Event()

    def slow(line):
        if not entered.is_set():
            entered.set()
            time.sleep(0.3)
            left.set()

    libsock.set_trace(slow)
    try:
        t = threading.Thread(target=client.send, args=(b"z",))
        t.start()
        assert entered.wait(WAIT)
    finally:
        libsock.set_trace(None)
    assert left.is_set(), "set_trace(None) returned while the trace function still ran"
    t.join(WAIT)
    assert recv_exactly(peer, 1) == b"z"


def test_set_trace_inside_the_trace_function_is_refused(pair):
    client, _ = pair
    raised, seen = [], []

    def reentrant(line):
        seen.append(line)
        if not raised:
            try:
                libsock.set_trace(None)
            except libsock.SockError as exc:
                raised.append(exc.status)
            else:
                raised.append(None)

    libsock.set_trace(reentrant)
    try:
        client.send(b"a")
        assert raised == [Status.ALREADY_IN_PROGRESS]
        before = len(seen)
        client.send(b"b")  # still traced: the refused call changed nothing
        assert len(seen) > before
    finally:
        libsock.set_trace(None)
