"""The binding mirrors include/sock.h: constants and prototypes can't drift."""

import ctypes
import re

import pytest

import libsock
from libsock import _lib
from conftest import HEADER

pytestmark = pytest.mark.skipif(not HEADER.exists(), reason="include/sock.h not found (installed copy?)")


def header_defines() -> dict:
    text = HEADER.read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^#define (SOCK_\w+) (-?\d+)\s*$", text, re.M)}


def binding_constants() -> dict:
    out = {}
    for enum_type, prefix in [(libsock.Status, "SOCK_"), (libsock.Option, "SOCK_OPT_"),
                              (libsock.Family, "SOCK_FAMILY_"), (libsock.Type, "SOCK_TYPE_"),
                              (libsock.Shut, "SOCK_SHUT_"), (libsock.Msg, "SOCK_MSG_"),
                              (libsock.constants.Op, "SOCK_OP_")]:
        for member in enum_type.__members__.values():
            out[prefix + member.name] = int(member)
    for name in ["INVALID_HANDLE", "ADDRESS_MAX_LEN", "ENGINE_MAX_THREADS", "LINGER_MS_MAX",
                 "VERSION_MAJOR", "VERSION_MINOR", "VERSION_PATCH"]:
        out["SOCK_" + name] = getattr(libsock, name)
    return out


def test_every_binding_constant_has_the_header_value():
    header, ours = header_defines(), binding_constants()
    wrong = {k: (v, header.get(k)) for k, v in ours.items() if header.get(k) != v}
    assert not wrong, f"binding value != header value (or not in header): {wrong}"


def test_every_header_constant_is_in_the_binding():
    missing = sorted(set(header_defines()) - set(binding_constants()))
    assert not missing, f"add these to libsock/constants.py: {missing}"


def test_loaded_library_version_matches_the_header():
    d = header_defines()
    assert libsock.version() == f"{d['SOCK_VERSION_MAJOR']}.{d['SOCK_VERSION_MINOR']}.{d['SOCK_VERSION_PATCH']}"


_C_TYPES = {"sock_handle": ctypes.c_uint64, "sock_status": ctypes.c_int32, "int32_t": ctypes.c_int32,
            "uint32_t": ctypes.c_uint32, "int64_t": ctypes.c_int64, "size_t": ctypes.c_size_t}
_POINTERS = (ctypes._Pointer, ctypes._CFuncPtr, ctypes.c_void_p, ctypes.c_char_p)


def _is_pointer_type(t) -> bool:
    return isinstance(t, type) and issubclass(t, _POINTERS)


def _c_type_ok(c_type: str, ctype) -> bool:
    c_type = c_type.replace("const ", "").replace("struct ", "").strip()
    if c_type.endswith("*") or c_type.endswith("_callback"):
        return _is_pointer_type(ctype)
    return ctype is _C_TYPES[c_type]


def header_functions() -> dict:
    text = HEADER.read_text()
    funcs = {}
    for m in re.finditer(r"^(sock_status|const char \*|u?int32_t) ?(sock_\w+)\(([^)]*)\);", text, re.M):
        params = [] if m.group(3).strip() == "void" else [" ".join(p.split()) for p in m.group(3).split(",")]
        types = []
        for p in params:
            ctype, name = p.rsplit(" ", 1)
            types.append(ctype + "*" * name.count("*"))
        funcs[m.group(2)] = (m.group(1).strip(), types)
    return funcs


def test_every_header_function_is_declared_with_matching_types():
    funcs = header_functions()
    assert len(funcs) >= 25, "header parse failed"
    unbound = sorted(set(funcs) - set(_lib._PROTOTYPES))
    assert not unbound, f"bind these in libsock/_lib.py: {unbound}"
    for name, (restype, argtypes) in _lib._PROTOTYPES.items():
        c_ret, c_args = funcs[name]
        assert _c_type_ok(c_ret, restype), f"{name}: restype {restype} vs {c_ret}"
        assert len(argtypes) == len(c_args), f"{name}: {len(argtypes)} argtypes vs {c_args}"
        for i, (c_arg, py_arg) in enumerate(zip(c_args, argtypes)):
            assert _c_type_ok(c_arg, py_arg), f"{name} arg {i}: {py_arg} vs {c_arg}"
        fn = getattr(_lib.lib, name)
        assert fn.argtypes == argtypes and fn.restype is restype


def test_strerror_texts():
    assert libsock.strerror(libsock.Status.CONNECTION_REFUSED) == "connection refused"
    assert libsock.strerror(123456)  # unknown codes still get a text
