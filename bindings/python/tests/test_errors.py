"""Failures raise SockError subclasses carrying the status code and its name."""

import pickle
import socket

import pytest

import libsock
from libsock import Status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_refused_carries_status_name_and_builtin_class():
    with libsock.Socket() as s:
        with pytest.raises(ConnectionRefusedError) as info:
            s.connect(f"127.0.0.1:{free_port()}")
    e = info.value
    assert isinstance(e, libsock.SockError) and isinstance(e, libsock.ConnectionRefused)
    assert isinstance(e, OSError)
    assert e.status == 10061 == Status.CONNECTION_REFUSED
    assert e.name == "SOCK_CONNECTION_REFUSED"
    assert e.strerror == libsock.strerror(10061)
    assert "SOCK_CONNECTION_REFUSED" in str(e) and "10061" in str(e)
    assert e.os_error == 111  # ECONNREFUSED behind it, for diagnostics


def test_calls_on_a_closed_socket_raise_not_socket():
    s = libsock.Socket()
    s.close()
    with pytest.raises(libsock.NotSocket) as info:
        s.send(b"x")
    assert info.value.status == Status.NOT_SOCKET and info.value.name == "SOCK_NOT_SOCKET"
    assert info.value.sent == 0  # send errors say how much went


def test_invalid_argument_is_also_a_value_error():
    with libsock.Socket() as s:
        with pytest.raises(ValueError) as info:
            s.bind("not an address")
        assert info.value.status == Status.INVALID_ARGUMENT
        with pytest.raises(libsock.InvalidArgument):
            s.set_option(libsock.Option.BLOCKING, 7)


def test_send_on_unconnected_stream_is_not_connected():
    with libsock.Socket() as s, pytest.raises(libsock.NotConnected) as info:
        s.send(b"data")
    assert info.value.name == "SOCK_NOT_CONNECTED"


def test_error_for_maps_codes_and_unknown_codes():
    assert type(libsock.error_for(Status.TIMED_OUT)) is libsock.SockTimeout
    assert isinstance(libsock.error_for(Status.WOULD_BLOCK), BlockingIOError)
    assert isinstance(libsock.error_for(Status.CONNECTION_RESET), ConnectionResetError)
    assert isinstance(libsock.error_for(Status.SHUTDOWN), BrokenPipeError)
    assert isinstance(libsock.error_for(Status.HOST_NOT_FOUND), socket.gaierror)
    odd = libsock.error_for(4242)
    assert type(odd) is libsock.SockError and odd.status == 4242 and odd.name == "SOCK_UNKNOWN_4242"


def test_errors_pickle_with_their_fields():
    e = libsock.error_for(Status.TIMED_OUT, sent=17)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is libsock.SockTimeout
    assert (back.status, back.name, back.sent, str(back)) == (e.status, e.name, 17, str(e))
