"""Zero-copy access to the memory of any bytes-like object.

A :class:`Pin` takes a buffer export of the object (``PyObject_GetBuffer``,
like the ``socket`` module's ``y*``/``w*`` arguments do): the address stays
valid, and a ``bytearray`` cannot be resized, until :meth:`Pin.release`.
Needs CPython (``ctypes.pythonapi``). The object must be C-contiguous, as for
``socket.send``.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_int, c_ssize_t, c_void_p, py_object


class _Py_buffer(ctypes.Structure):
    # Layout of CPython's Py_buffer (unchanged since 3.3).
    _fields_ = [
        ("buf", c_void_p),
        ("obj", c_void_p),
        ("len", c_ssize_t),
        ("itemsize", c_ssize_t),
        ("readonly", c_int),
        ("ndim", c_int),
        ("format", c_void_p),
        ("shape", c_void_p),
        ("strides", c_void_p),
        ("suboffsets", c_void_p),
        ("internal", c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [py_object, POINTER(_Py_buffer), c_int]
_get_buffer.restype = c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [POINTER(_Py_buffer)]
_release_buffer.restype = None

_PyBUF_SIMPLE = 0
_PyBUF_WRITABLE = 1

# A valid address for zero-length buffers whose export has no storage
# (libsock rejects NULL with SOCK_FAULT even when the length is 0).
_EMPTY = ctypes.create_string_buffer(1)
_EMPTY_ADDRESS = ctypes.addressof(_EMPTY)


class Pin:
    """Holds a buffer export of ``obj``: ``address`` and ``length`` in bytes."""

    __slots__ = ("_view", "_held", "address", "length")

    def __init__(self, obj, writable: bool = False):
        self._held = False
        if isinstance(obj, str):
            raise TypeError("a bytes-like object is required, not 'str'")
        self._view = _Py_buffer()
        # Raises TypeError (not bytes-like) or BufferError (not contiguous / read-only).
        _get_buffer(obj, ctypes.byref(self._view), _PyBUF_WRITABLE if writable else _PyBUF_SIMPLE)
        self._held = True
        self.length = self._view.len
        self.address = self._view.buf or _EMPTY_ADDRESS

    def release(self) -> None:
        """Ends the export; idempotent. Needs the GIL (any Python code has it)."""
        if self._held:
            self._held = False
            _release_buffer(ctypes.byref(self._view))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        self.release()
