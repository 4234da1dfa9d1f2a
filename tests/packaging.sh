#!/usr/bin/env bash
# Packaging checks, run by `make test`:
#  - the shared library exports exactly the sock_* API, with SONAME libsock.so.MAJOR;
#  - `make install` into a temporary DESTDIR lays out the library, its symlinks,
#    libsock.a, the headers and sock.pc, and a program builds and runs with
#    nothing but `pkg-config --cflags --libs sock`;
#  - the CMake consumer in examples/cmake builds and runs (when cmake exists);
#  - the static-link line in the README links and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=target/release/libsock.so
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
major=${version%%.*}
pass=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
fail() { echo "not ok - $*"; echo "0 passed, 1 failed"; exit 1; }

others=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^sock_' || true)
[ -z "$others" ] || fail "libsock.so exports non-API symbols: $others"
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort)
declared=$(grep -E '^[a-z].*\bsock_[a-z_]+\(' include/sock.h | sed -E 's/.*\b(sock_[a-z_]+)\(.*/\1/' | sort)
[ "$exported" = "$declared" ] || fail "exports differ from the header: $(diff <(echo "$exported") <(echo "$declared") | tr '\n' ' ')"
ok "libsock.so exports exactly the $(echo "$exported" | wc -l) functions of sock.h"
readelf -d "$lib" | grep -q "SONAME.*\[libsock.so.$major\]" || fail "SONAME is not libsock.so.$major"
ok "SONAME libsock.so.$major"

dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
prefix=/opt/libsock
make --no-print-directory install PREFIX="$prefix" DESTDIR="$dest" >/dev/null
root="$dest$prefix"
[ -f "$root/lib/libsock.so.$version" ] || fail "libsock.so.$version not installed"
[ "$(readlink "$root/lib/libsock.so.$major")" = "libsock.so.$version" ] || fail "libsock.so.$major link"
[ "$(readlink "$root/lib/libsock.so")" = "libsock.so.$major" ] || fail "libsock.so link"
for f in lib/libsock.a include/sock.h lib/pkgconfig/sock.pc; do
    [ -f "$root/$f" ] || fail "$f not installed"
done
ok "make install lays out lib, links, libsock.a, headers and sock.pc"

export PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$root/lib/pkgconfig"
[ "$(pkg-config --modversion sock)" = "$version" ] || fail "pkg-config version"
out=$(mktemp -d)
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -pthread examples/demo.c -o "$out/demo" $(pkg-config --cflags --libs sock)
readelf -d "$out/demo" | grep -q "NEEDED.*\[libsock.so.$major\]" || fail "demo does not need libsock.so.$major"
LD_LIBRARY_PATH="$root/lib" "$out/demo" >/dev/null || fail "demo built with pkg-config does not run"
ok "a program builds with only pkg-config --cflags --libs sock and runs"

if command -v cmake >/dev/null 2>&1; then
    cmake -S examples/cmake -B "$out/cmake" >/dev/null || fail "cmake configure"
    cmake --build "$out/cmake" >/dev/null || fail "cmake build"
    LD_LIBRARY_PATH="$root/lib" "$out/cmake/sock_cmake_demo" >/dev/null || fail "cmake demo run"
    ok "examples/cmake builds against the installed library and runs"
else
    echo "skip - cmake not installed: examples/cmake not built"
fi

line=$(grep -m1 '^cc -Iinclude app.c target/release/libsock.a' README.md) || fail "README has no static-link line"
line=${line/app.c/examples/demo.c}
line=${line/-o app/-o $out/demo_static}
eval "$line" || fail "README static-link line does not link: $line"
readelf -d "$out/demo_static" | grep -q 'libsock' && fail "the static demo still needs libsock.so"
"$out/demo_static" >/dev/null || fail "statically linked demo does not run"
ok "the README's static-link line links and runs the demo"
rm -rf "$out"
echo "$pass passed, 0 failed"
