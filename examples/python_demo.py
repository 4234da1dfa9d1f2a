#!/usr/bin/env python3
"""libsock from Python: a loopback demo.

A server thread (Python's own socket module) counts and hashes what it
receives; a libsock client sends to it with a blocking send, an async send
that finishes inline, and an async send that goes pending and reports through
its callback on libsock's engine thread.

Run from the repository root after `cargo build --release`:

    python3 examples/python_demo.py
"""

import hashlib
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
import libsock  # noqa: E402


def server(listener: socket.socket, report: dict) -> None:
    conn, _ = listener.accept()
    with conn:
        time.sleep(0.3)  # a slow reader: lets the client's big async send go pending
        digest, total = hashlib.sha256(), 0
        while chunk := conn.recv(1 << 16):
            digest.update(chunk)
            total += len(chunk)
        report.update(total=total, sha256=digest.hexdigest())
        conn.sendall(f"server got {total} bytes".encode())


def main() -> int:
    print(f"libsock {libsock.version()} loaded from {libsock._lib.path}")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    report: dict = {}
    t = threading.Thread(target=server, args=(listener, report))
    t.start()

    sent_hash = hashlib.sha256()
    address = "%s:%d" % listener.getsockname()
    with libsock.create_connection(address, timeout=5) as sock:
        print(f"connected {sock.local_address} -> {sock.peer_address}")

        greeting = b"hello from libsock\n"
        n = sock.send(greeting)  # blocks until every byte is in the kernel
        sent_hash.update(greeting)
        print(f"blocking send: {n} bytes")

        small = b"a small async send\n"
        result = sock.send_async(small, lambda status, sent: print("never called for an inline completion"))
        sent_hash.update(small)
        print(f"send_async(small) -> {result!r}: finished inside the call, callback not called")

        big = os.urandom(8 << 20)
        done = threading.Event()

        def on_sent(status, sent):  # runs on libsock's engine thread
            where = "main thread" if threading.current_thread() is threading.main_thread() else "engine thread"
            print(f"  callback on the {where} (ident {threading.get_ident()}): "
                  f"{libsock.status_name(status)}, {sent} bytes")
            done.set()

        result = sock.send_async(big, on_sent)  # big stays alive until on_sent has run
        sent_hash.update(big)
        print(f"send_async(8 MiB) -> {result!r}: {sock.pending_send_bytes} bytes queued, "
              f"main thread is free meanwhile")
        if result.pending:
            done.wait(10)

        sock.shutdown("send")  # the server sees end of stream
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        print(f"reply: {reply.decode()!r}")

    t.join()
    listener.close()
    ok = report.get("sha256") == sent_hash.hexdigest()
    print(f"server received {report.get('total')} bytes, checksum {'matches' if ok else 'DIFFERS'}")

    try:
        libsock.create_connection(address)
    except ConnectionRefusedError as e:  # a libsock.ConnectionRefused
        print(f"connecting again: {type(e).__name__} status={e.status} name={e.name}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
