#!/bin/sh
# Exit 0 when libuv's development files are usable, installing Debian's
# libuv1-dev with apt-get when they are missing and we are root; else say
# why libuv is skipped and exit 1.
have() { pkg-config --exists libuv 2>/dev/null || [ -f /usr/include/uv.h ]; }
have && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing libuv1-dev with apt-get" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libuv1-dev) >/dev/null 2>&1
    have && exit 0
fi
echo "bench: libuv not found (Debian: apt-get install libuv1-dev); skipping the libuv contenders" >&2
exit 1
