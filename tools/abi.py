#!/usr/bin/env python3
"""The ABI check: the built library and include/sock.h against abi/sock.abi.

    tools/abi.py check    [options]   (make abi-check; run by tests/packaging.sh)
    tools/abi.py update   [options]   (make abi-update) rewrites the baseline

abi/sock.abi lists every exported function with its prototype (parameter
names dropped: they are not ABI), every type and every constant of the
header, and the version it was recorded at. The check fails when

  - a function, type or constant of the baseline is gone from the header,
    or a function is no longer exported by the library, or one of them
    changed, unless the version in Cargo.toml has a new SONAME (0.x: a new
    minor version, libsock.so.0.MINOR; from 1.0: a new major version);
  - the header or the library has something the baseline does not list (an
    addition is fine, but record it: `make abi-update`);
  - the library exports a function the header does not declare, or the
    header declares one the library does not export.

`update` refuses to record an incompatible change that the version does not
allow, so the baseline cannot be made to agree with a silent break.

Options: --header FILE, --baseline FILE, --lib FILE (read with nm -D),
--exports FILE (the exported names, one a line, instead of --lib), and
--version X.Y.Z (instead of Cargo.toml's), so tests can check the check.
"""

import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import sockh  # noqa: E402

# Constants that change with every release; not ABI.
UNTRACKED = {"SOCK_VERSION_MAJOR", "SOCK_VERSION_MINOR", "SOCK_VERSION_PATCH", "SOCK_VERSION_HEX"}


def split_params(text: str) -> list:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


def type_only(param: str) -> str:
    """'const void *buf' -> 'const void*'; 'void' stays."""
    param = re.sub(r"\s+", " ", param).strip()
    if param == "void":
        return param
    m = re.match(r"^(.*?[\s*])(\w+)(\[\d*\])?$", param)
    t = (m.group(1) + (m.group(3) or "")) if m else param
    t = re.sub(r"\s*\*\s*", "*", t).strip()
    return t


def normalize_signature(ret: str, name: str, params: str) -> str:
    types = [type_only(p) for p in split_params(params)]
    ret = re.sub(r"\s*\*\s*", "*", ret).strip()
    return "%s %s(%s)" % (ret, name, ", ".join(types))


def entries_from_header(path: str) -> dict:
    """{(kind, name): normalized text}"""
    out = {}
    for it in sockh.read(path)["items"]:
        decl = it.decl()
        if it.kind == "func":
            m = re.match(r"^(.*?)\b%s\((.*)\);$" % re.escape(it.name), decl)
            out[("func", it.name)] = normalize_signature(m.group(1), it.name, m.group(2))
        elif it.kind == "type":
            m = re.match(r"^typedef (.*?)\(\*\s*%s\)\((.*)\);$" % re.escape(it.name), decl)
            if m:  # a function pointer: parameter names are not ABI either
                sig = normalize_signature(m.group(1), "(*%s)" % it.name, m.group(2))
                out[("type", it.name)] = "typedef %s;" % sig
            else:
                out[("type", it.name)] = decl
        elif it.kind == "define" and it.name not in UNTRACKED:
            out[("const", it.name)] = it.value
    return out


def read_baseline(path: str):
    version, entries = None, {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            kind, rest = line.split(" ", 1)
            if kind == "version":
                version = rest.strip()
                continue
            name, text = rest.split(" ", 1)
            entries[(kind, name)] = text
    return version, entries


def write_baseline(path: str, version: str, entries: dict) -> None:
    lines = [
        "# libsock ABI baseline: each exported function (prototype without parameter",
        "# names), type and constant of include/sock.h, recorded at the version below.",
        "# Checked by `make abi-check` (tests/packaging.sh) against the built library",
        "# and the header. GENERATED: after adding to the API, run `make abi-update`.",
        "version " + version,
    ]
    order = {"func": 0, "type": 1, "const": 2}
    for (kind, name) in sorted(entries, key=lambda k: (order[k[0]], k[1])):
        lines.append("%s %s %s" % (kind, name, entries[(kind, name)]))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def exported_names(args) -> set:
    if args.exports:
        try:
            with open(args.exports, encoding="utf-8") as f:
                return {l.strip() for l in f if l.strip()}
        except OSError as e:
            sys.exit("abi: cannot read the export list: %s" % e)
    res = subprocess.run(["nm", "-D", "--defined-only", args.lib], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit("abi: nm -D %s failed (build the library first: cargo build --release): %s"
                 % (args.lib, res.stderr.strip()))
    return {parts[2] for parts in (l.split() for l in res.stdout.splitlines())
            if len(parts) == 3 and parts[1] in "TtWi"}


def cargo_version() -> str:
    with open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8") as f:
        m = re.search(r'^version = "([^"]+)"', f.read(), re.M)
    return m.group(1)


def soname(version: str) -> str:
    major, minor = version.split(".")[:2]
    return "libsock.so.0.%s" % minor if major == "0" else "libsock.so.%s" % major


def main(argv: list) -> int:
    ap = argparse.ArgumentParser(description="libsock ABI check", usage="%(prog)s check|update [options]")
    ap.add_argument("command", choices=["check", "update"])
    ap.add_argument("--header", default=os.path.join(ROOT, "include", "sock.h"))
    ap.add_argument("--baseline", default=os.path.join(ROOT, "abi", "sock.abi"))
    ap.add_argument("--lib", default=os.path.join(ROOT, "target", "release", "libsock.so"))
    ap.add_argument("--exports")
    ap.add_argument("--version")
    args = ap.parse_args(argv[1:])
    version = args.version or cargo_version()

    current = entries_from_header(args.header)
    header_funcs = {n for (k, n) in current if k == "func"}
    exports = exported_names(args)
    problems = []
    for n in sorted(exports - header_funcs):
        problems.append("the library exports %s, which sock.h does not declare" % n)
    # A declared function the library lacks is not part of the current ABI
    # (a removal if the baseline has it, an error in any case).
    for n in sorted(header_funcs - exports):
        problems.append("sock.h declares %s, which the library does not export" % n)
        del current[("func", n)]

    if os.path.exists(args.baseline):
        base_version, base = read_baseline(args.baseline)
    else:
        base_version, base = None, {}
        if args.command == "check":
            problems.append("no baseline %s: create it with `make abi-update`" % show(args.baseline))

    removed = sorted(k for k in base if k not in current)
    changed = sorted(k for k in base if k in current and base[k] != current[k])
    added = sorted(k for k in current if k not in base)
    allowed = base_version is not None and soname(base_version) != soname(version)
    breaks = ["  - removed  %s %s: %s" % (k[0], k[1], base[k]) for k in removed] + \
             ["  ~ changed  %s %s:\n      was %s\n      now %s" % (k[0], k[1], base[k], current[k]) for k in changed]

    status = 0
    if problems:
        print("abi: the library and sock.h disagree:\n  " + "\n  ".join(problems), file=sys.stderr)
        status = 1
    if breaks and not allowed:
        print("abi: incompatible ABI change, but version %s keeps SONAME %s (baseline %s):\n%s\n"
              "Programs built against %s would break at run time. Undo the change, or make it a new "
              "SONAME: bump %s in Cargo.toml (%s), say so in CHANGELOG.md, then `make abi-update`."
              % (version, soname(version), base_version, "\n".join(breaks), base_version,
                 "the minor version" if version.startswith("0.") else "the major version",
                 "e.g. %s" % next_breaking(version)), file=sys.stderr)
        status = 1
    elif breaks:
        print("abi: incompatible changes, allowed by the new SONAME %s (baseline %s is %s):\n%s"
              % (soname(version), base_version, soname(base_version), "\n".join(breaks)), file=sys.stderr)
    if args.command == "update":
        if status:
            print("abi: %s not updated" % show(args.baseline), file=sys.stderr)
            return status
        write_baseline(args.baseline, version, current)
        print("abi: %s records %d functions, %d types, %d constants at %s (%d added, %d removed, %d changed)"
              % (show(args.baseline), *count(current), version, len(added), len(removed), len(changed)))
        return 0
    if added and base_version is not None:
        print("abi: new in the ABI, not yet in %s:\n%s\nAdditions are fine: record them with "
              "`make abi-update` (and add a line to CHANGELOG.md under Unreleased)."
              % (show(args.baseline),
                 "\n".join("  + %s %s: %s" % (k[0], k[1], current[k]) for k in added)), file=sys.stderr)
        status = 1
    if breaks and allowed and not status:
        print("abi: record the new ABI with `make abi-update`", file=sys.stderr)
    if status == 0:
        print("abi: ok: %d functions, %d types, %d constants as in %s (version %s, SONAME %s)"
              % (*count(current), show(args.baseline), version, soname(version)))
    return status


def show(path: str) -> str:
    """A path as the user would type it: relative inside the tree."""
    full = os.path.abspath(path)
    return os.path.relpath(full, ROOT) if full.startswith(ROOT + os.sep) else path


def count(entries: dict):
    return tuple(sum(1 for (k, _) in entries if k == kind) for kind in ("func", "type", "const"))


def next_breaking(version: str) -> str:
    major, minor = (int(x) for x in version.split(".")[:2])
    return "0.%d.0" % (minor + 1) if major == 0 else "%d.0.0" % (major + 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
