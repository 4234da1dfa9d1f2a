#!/usr/bin/env bash
# Packaging checks, run by `make test` (make test-packaging); each "ok"/"not ok"
# line is one check, and the last line is "N passed, M failed":
#  - the shared library exports exactly the functions of sock.h, with the
#    SONAME of the ABI rule (libsock.so.0.MINOR while 0.x, then .MAJOR);
#  - SOCK_VERSION_HEX and sock_version_number() agree with Cargo.toml;
#  - the ABI check (tools/abi.py) passes on the tree, fails on a removed
#    export, a changed prototype or an unrecorded addition, and lets a
#    removal through only with a new minor version;
#  - every function has a man page, each renders without warnings, and
#    docs/api.md is as generated;
#  - `make install PREFIX=/usr LIBDIR=lib/x86_64-linux-gnu` into a DESTDIR
#    lays out the libraries and links, headers, sock.pc (with that libdir),
#    the CMake package, the man pages and the licence files;
#  - against that staged tree, the pkg-config consumer and the find_package
#    consumer (examples/cmake), shared and static, and the pkg-config CMake
#    route (examples/cmake-pkgconfig) build and run; sockConfigVersion takes
#    the same 0.MINOR and refuses the next one;
#  - `make uninstall` leaves nothing behind, and keeps directories that were
#    there before;
#  - the static-link line in the README links and runs the demo;
#  - `cargo cinstall` (when cargo-c is installed) gives the same layout.
set -uo pipefail
cd "$(dirname "$0")/.."
lib=target/release/libsock.so
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
IFS=. read -r major minor patch <<<"$version"
if [ "$major" = 0 ]; then soversion=0.$minor; next=0.$((minor + 1)).0; else soversion=$major; next=$((major + 1)).0.0; fi
soname=libsock.so.$soversion
pass=0 failed=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
bad() { failed=$((failed + 1)); echo "not ok - $*"; }
# check NAME FUNCTION: one check; the function prints why it fails.
check() { if "$2"; then ok "$1"; else bad "$1"; fi; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CFLAGS_STRICT="-std=c11 -Wall -Wextra -Werror -pthread"

exports_match_header() {
    local others exported declared
    others=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^sock_') || true
    [ -z "$others" ] || { echo "# non-API exports: $others"; return 1; }
    exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort)
    declared=$(grep -E '^[a-z].*\bsock_[a-z0-9_]+\(' include/sock.h | sed -E 's/.*\b(sock_[a-z0-9_]+)\(.*/\1/' | sort)
    [ "$exported" = "$declared" ] || { echo "# exports vs header: $(diff <(echo "$exported") <(echo "$declared") | tr '\n' ' ')"; return 1; }
}
check "libsock.so exports exactly the $(grep -cE '^[a-z].*\bsock_[a-z0-9_]+\(' include/sock.h) functions of sock.h" exports_match_header

soname_is_right() {
    readelf -d "$lib" | grep -q "SONAME.*\[$soname\]" || { echo "# $(readelf -d "$lib" | grep SONAME)"; return 1; }
}
check "SONAME $soname (version $version)" soname_is_right

version_number_agrees() {
    local want got
    want=$(printf '0x%06x' $(((major << 16) | (minor << 8) | patch)))
    printf '#include <stdio.h>\n#include "sock.h"\nint main(void) {\n  printf("0x%%06x 0x%%06x %%s\\n", (unsigned)SOCK_VERSION_HEX, (unsigned)sock_version_number(), sock_version());\n  return 0;\n}\n' > "$tmp/ver.c"
    # shellcheck disable=SC2086
    cc $CFLAGS_STRICT -Iinclude "$tmp/ver.c" -o "$tmp/ver" -Ltarget/release -lsock || return 1
    got=$(LD_LIBRARY_PATH=target/release "$tmp/ver") || return 1
    [ "$got" = "$want $want $version" ] || { echo "# got '$got', want '$want $want $version'"; return 1; }
}
check "SOCK_VERSION_HEX == sock_version_number() == $version from Cargo.toml" version_number_agrees

abi_passes() { python3 tools/abi.py check >"$tmp/abi.out" 2>&1 || { sed 's/^/# /' "$tmp/abi.out"; return 1; }; }
check "ABI check passes on the tree (abi/sock.abi)" abi_passes

# Fails with the given message; $1 the pattern, the rest the arguments.
abi_fails_with() {
    local pattern=$1
    shift
    if python3 tools/abi.py check "$@" >"$tmp/abi.out" 2>&1; then
        echo "# the check passed: $*"
        return 1
    fi
    grep -q -- "$pattern" "$tmp/abi.out" || { sed 's/^/# /' "$tmp/abi.out"; return 1; }
}
abi_fails_on_removed_export() {
    local victim
    victim=$(nm -D --defined-only "$lib" | awk '$3 ~ /^sock_/ {print $3}' | sort | head -n1)
    nm -D --defined-only "$lib" | awk '{print $3}' | grep -vx "$victim" > "$tmp/exports"
    abi_fails_with "removed  func $victim" --exports "$tmp/exports"
}
check "ABI check fails when the library loses an export" abi_fails_on_removed_export

abi_fails_on_changed_prototype() {
    sed 's/^\(func sock_close .*(sock_handle\))$/\1, int32_t)/' abi/sock.abi > "$tmp/changed.abi"
    ! cmp -s abi/sock.abi "$tmp/changed.abi" || { echo "# no sock_close line to change"; return 1; }
    abi_fails_with "changed  func sock_close" --baseline "$tmp/changed.abi"
}
check "ABI check fails on a changed prototype" abi_fails_on_changed_prototype

abi_addition_asks_for_update() {
    grep -v '^func sock_fd ' abi/sock.abi > "$tmp/older.abi"
    abi_fails_with "make abi-update" --baseline "$tmp/older.abi"
}
check "ABI check fails on an unrecorded addition and says: make abi-update" abi_addition_asks_for_update

abi_removal_allowed_by_new_minor() {
    { cat abi/sock.abi; echo "func sock_gone sock_status sock_gone(sock_handle)"; } > "$tmp/gone.abi"
    abi_fails_with "keeps SONAME" --baseline "$tmp/gone.abi" || return 1
    python3 tools/abi.py check --baseline "$tmp/gone.abi" --version "$next" >"$tmp/abi.out" 2>&1 ||
        { sed 's/^/# /' "$tmp/abi.out"; return 1; }
}
check "a removal passes only with a new SONAME (version $next)" abi_removal_allowed_by_new_minor

man_pages_render() {
    local fn page warn n=0
    make --no-print-directory man >/dev/null || return 1
    for fn in libsock $(grep -E '^[a-z].*\bsock_[a-z0-9_]+\(' include/sock.h | sed -E 's/.*\b(sock_[a-z0-9_]+)\(.*/\1/'); do
        page=target/man/man3/$fn.3
        [ -f "$page" ] || { echo "# no man page for $fn"; return 1; }
        warn=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
        [ -z "$warn" ] || { echo "# $page: $warn"; return 1; }
        MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q "^NAME" || { echo "# $page renders no NAME section"; return 1; }
        n=$((n + 1))
    done
    echo "# $n man pages"
}
if command -v man >/dev/null 2>&1; then
    check "every function has a man page, and man -l renders each without warnings" man_pages_render
else
    echo "skip - man is not installed (Debian: man-db): man pages not checked"
fi

api_doc_fresh() {
    python3 tools/mkman.py markdown include/sock.h "$tmp/api.md" || return 1
    cmp -s docs/api.md "$tmp/api.md" || { echo "# docs/api.md is stale: run make api-doc (or make header) and commit it"; return 1; }
}
check "docs/api.md is generated from the current header" api_doc_fresh

dest=$tmp/dest
prefix=/usr
multiarch=lib/x86_64-linux-gnu
mkdir -p "$dest/usr/lib" "$dest/usr/share/man"   # there before install: must survive uninstall
make_vars=(PREFIX="$prefix" LIBDIR="$multiarch" DESTDIR="$dest")
root=$dest$prefix
libdir=$root/$multiarch

install_layout() {
    local f
    make --no-print-directory install "${make_vars[@]}" >"$tmp/install.out" 2>&1 || { tail -n 5 "$tmp/install.out"; return 1; }
    [ -f "$libdir/libsock.so.$version" ] || { echo "# libsock.so.$version not in $multiarch"; return 1; }
    [ "$(readlink "$libdir/$soname")" = "libsock.so.$version" ] || { echo "# $soname link"; return 1; }
    [ "$(readlink "$libdir/libsock.so")" = "$soname" ] || { echo "# libsock.so link"; return 1; }
    for f in $multiarch/libsock.a include/sock.h include/sock.hpp $multiarch/pkgconfig/sock.pc \
             $multiarch/cmake/sock/sockConfig.cmake $multiarch/cmake/sock/sockConfigVersion.cmake \
             share/man/man3/libsock.3 share/man/man3/sock_send.3; do
        [ -f "$root/$f" ] || { echo "# $f not installed"; return 1; }
    done
    [ -z "$(ls "$root/lib" | grep -v x86_64-linux-gnu)" ] || { echo "# files in lib/ itself: $(ls "$root/lib")"; return 1; }
    grep -qx "libdir=\${prefix}/$multiarch" "$libdir/pkgconfig/sock.pc" || { echo "# sock.pc: $(grep libdir= "$libdir/pkgconfig/sock.pc")"; return 1; }
}
check "make install LIBDIR=$multiarch: libraries, links, headers, sock.pc, CMake package, man pages" install_layout

licences_installed() {
    local f
    for f in LICENSE-MIT LICENSE-APACHE CHANGELOG.md README.md; do
        cmp -s "$f" "$root/share/doc/sock/$f" || { echo "# share/doc/sock/$f missing or different"; return 1; }
    done
    grep -q "The libsock developers" "$root/share/doc/sock/LICENSE-MIT" &&
        grep -q "Apache License" "$root/share/doc/sock/LICENSE-APACHE"
}
check "licence files, changelog and README under share/doc/sock" licences_installed

export PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$libdir/pkgconfig" PKG_CONFIG_LIBDIR=/nonexistent
pkgconfig_shared() {
    [ "$(pkg-config --modversion sock)" = "$version" ] || { echo "# pkg-config --modversion: $(pkg-config --modversion sock)"; return 1; }
    # shellcheck disable=SC2046,SC2086
    cc $CFLAGS_STRICT examples/demo.c -o "$tmp/demo" $(pkg-config --cflags --libs sock) || return 1
    readelf -d "$tmp/demo" | grep -q "NEEDED.*\[$soname\]" || { echo "# demo does not need $soname"; return 1; }
    LD_LIBRARY_PATH=$libdir "$tmp/demo" >/dev/null || { echo "# demo does not run"; return 1; }
}
check "pkg-config consumer, shared: builds with pkg-config --cflags --libs sock, needs $soname, runs" pkgconfig_shared

pkgconfig_static() {
    local libs
    libs=$(pkg-config --static --libs sock | sed 's/-lsock\b/-l:libsock.a/')
    # shellcheck disable=SC2046,SC2086
    cc $CFLAGS_STRICT examples/demo.c -o "$tmp/demo_static_pc" $(pkg-config --cflags sock) $libs || return 1
    ! readelf -d "$tmp/demo_static_pc" | grep -q libsock || { echo "# still needs libsock.so"; return 1; }
    "$tmp/demo_static_pc" >/dev/null || { echo "# does not run"; return 1; }
}
check "pkg-config consumer, static: links libsock.a with pkg-config --static --libs sock, runs" pkgconfig_static

cmake_build() { # DIR BUILD [cmake args]: configure, build, run the demo
    local src=$1 build=$2
    shift 2
    cmake -S "$src" -B "$build" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" "$@" >"$build.log" 2>&1 &&
        cmake --build "$build" >>"$build.log" 2>&1 || { tail -n 15 "$build.log" | sed 's/^/# /'; return 1; }
    LD_LIBRARY_PATH=$libdir "$build/sock_cmake_demo" >/dev/null || { echo "# $build/sock_cmake_demo does not run"; return 1; }
}
find_package_shared() {
    cmake_build examples/cmake "$tmp/cm-shared" -DCMAKE_PREFIX_PATH="$root" || return 1
    readelf -d "$tmp/cm-shared/sock_cmake_demo" | grep -q "NEEDED.*\[$soname\]" || { echo "# does not need $soname"; return 1; }
}
find_package_static() {
    cmake_build examples/cmake "$tmp/cm-static" -DCMAKE_PREFIX_PATH="$root" -DSOCK_STATIC=ON || return 1
    ! readelf -d "$tmp/cm-static/sock_cmake_demo" | grep -q libsock || { echo "# still needs libsock.so"; return 1; }
}
cmake_pkgconfig() { cmake_build examples/cmake-pkgconfig "$tmp/cm-pc"; }
find_package_versions() {
    mkdir -p "$tmp/cm-ver"
    printf 'cmake_minimum_required(VERSION 3.13)\nproject(v C)\nfind_package(sock ${WANT} REQUIRED)\n' > "$tmp/cm-ver/CMakeLists.txt"
    cmake -S "$tmp/cm-ver" -B "$tmp/cm-ver/ok" -DCMAKE_PREFIX_PATH="$root" -DWANT="$major.$minor" >/dev/null 2>&1 ||
        { echo "# find_package(sock $major.$minor) failed"; return 1; }
    if cmake -S "$tmp/cm-ver" -B "$tmp/cm-ver/next" -DCMAKE_PREFIX_PATH="$root" -DWANT="${next%.0}" >/dev/null 2>&1; then
        echo "# find_package(sock ${next%.0}) accepted $version"
        return 1
    fi
}
if command -v cmake >/dev/null 2>&1; then
    check "find_package(sock) consumer (examples/cmake), shared: sock::sock builds and runs" find_package_shared
    check "find_package(sock) consumer, static: sock::sock_static builds and runs" find_package_static
    check "pkg-config CMake consumer (examples/cmake-pkgconfig) builds and runs" cmake_pkgconfig
    check "find_package(sock $major.$minor) is met by $version, find_package(sock ${next%.0}) is not" find_package_versions
else
    echo "skip - cmake not installed: the CMake consumers were not built"
fi

uninstall_leaves_nothing() {
    local left
    make --no-print-directory uninstall "${make_vars[@]}" >"$tmp/uninstall.out" 2>&1 || { tail -n 5 "$tmp/uninstall.out"; return 1; }
    left=$(cd "$dest" && find . | sort | tr '\n' ' ')
    [ "$left" = ". ./usr ./usr/lib ./usr/share ./usr/share/man " ] || { echo "# left behind: $left"; return 1; }
}
check "make uninstall removes everything install put there, and keeps the directories that were there" uninstall_leaves_nothing

readme_static_line() {
    local line
    line=$(grep -m1 '^cc -Iinclude app.c target/release/libsock.a' README.md) || { echo "# README has no static-link line"; return 1; }
    line=${line/app.c/examples/demo.c}
    line=${line/-o app/-o $tmp/demo_static}
    eval "$line" || { echo "# does not link: $line"; return 1; }
    ! readelf -d "$tmp/demo_static" | grep -q 'libsock' || { echo "# still needs libsock.so"; return 1; }
    "$tmp/demo_static" >/dev/null || { echo "# does not run"; return 1; }
}
check "the README's static-link line links and runs the demo" readme_static_line

cargo_cinstall_layout() {
    local d=$tmp/cinstall r
    nice -n 10 cargo cinstall --release --target-dir target/cargo-c --prefix=/usr --libdir="/usr/$multiarch" \
        --destdir="$d" >"$tmp/cinstall.out" 2>&1 || { tail -n 15 "$tmp/cinstall.out" | sed 's/^/# /'; return 1; }
    r=$d/usr
    [ -f "$r/$multiarch/libsock.so.$version" ] || { echo "# $(cd "$r" && find . -name 'libsock*' | tr '\n' ' ')"; return 1; }
    [ "$(readlink "$r/$multiarch/$soname")" = "libsock.so.$version" ] || { echo "# no $soname link"; return 1; }
    readelf -d "$r/$multiarch/libsock.so.$version" | grep -q "SONAME.*\[$soname\]" || { echo "# SONAME"; return 1; }
    cmp -s include/sock.h "$r/include/sock.h" || { echo "# include/sock.h not installed as committed"; return 1; }
    [ -f "$r/include/sock.hpp" ] || { echo "# sock.hpp not installed"; return 1; }
    PKG_CONFIG_SYSROOT_DIR=$d PKG_CONFIG_PATH=$r/$multiarch/pkgconfig pkg-config --modversion sock >/dev/null ||
        { echo "# no sock.pc"; return 1; }
    # shellcheck disable=SC2046,SC2086
    cc $CFLAGS_STRICT examples/demo.c -o "$tmp/demo_cc" $(PKG_CONFIG_SYSROOT_DIR=$d PKG_CONFIG_PATH=$r/$multiarch/pkgconfig pkg-config --cflags --libs sock) &&
        LD_LIBRARY_PATH=$r/$multiarch "$tmp/demo_cc" >/dev/null || { echo "# demo against the cargo-c install"; return 1; }
}
if command -v cargo-cinstall >/dev/null 2>&1; then
    check "cargo cinstall: libsock.so.$version, $soname, the committed sock.h and sock.pc; the demo builds and runs" cargo_cinstall_layout
else
    echo "skip - cargo-c not installed: cargo cinstall not checked"
fi

echo "$pass passed, $failed failed"
[ "$failed" = 0 ]
