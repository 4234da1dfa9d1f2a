#!/bin/sh
# Exit 0 when libuv's development files are usable (installing Debian's
# libuv1-dev when they are missing and we are root); else say why the
# libuv contenders are skipped and exit 1.
exec "$(dirname "$0")/ensure-deb.sh" libuv1-dev "the libuv contenders" \
    sh -c 'pkg-config --exists libuv || [ -f /usr/include/uv.h ]'
