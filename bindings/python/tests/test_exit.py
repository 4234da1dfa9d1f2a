"""Interpreter exit with async operations still pending: no engine thread may
call into a finalizing interpreter (that aborts the process), so the binding
closes such sockets at exit and waits until their callbacks (with
OPERATION_ABORTED) have run and returned."""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import PACKAGE_ROOT

SCRIPT = textwrap.dedent("""
    import socket, sys, time
    sys.path.insert(0, sys.argv[1])
    import libsock
    if sys.argv[2] == "trace":
        # Trace calls still running at exit, too (each gives the GIL away).
        libsock.set_trace(lambda line: time.sleep(0.002))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.bind(("127.0.0.1", 0))
    server.listen()
    c = libsock.Socket()
    c.send_buffer_size = 4096
    c.connect(server.getsockname())
    peer, _ = server.accept()
    # Slow callbacks, still running as the interpreter exits; each gives the
    # GIL away after its print, when its operation is no longer pending.
    for i in range(20):
        c.send_async(b"x" * 65536, lambda s, n: (print("send", s.name, flush=True), time.sleep(0.005)))
    c.recv_async(10, lambda s, d: (print("recv", s.name, flush=True), time.sleep(0.005)))
    print("exiting", flush=True)
""")


@pytest.mark.parametrize("trace", ["no-trace", "trace"])
def test_exit_with_pending_operations_is_clean(trace):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(PACKAGE_ROOT), trace], capture_output=True, text=True,
                          timeout=30, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "exiting"
    assert sorted(lines[1:]) == ["recv OPERATION_ABORTED"] + ["send OPERATION_ABORTED"] * 20
