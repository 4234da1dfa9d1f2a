#!/bin/sh
# ensure-deb.sh PACKAGE WHAT CHECK...: exit 0 when the command CHECK...
# succeeds, installing Debian's PACKAGE with apt-get first when it fails
# and we are root; else say that WHAT is left out, and why, and exit 1.
pkg=$1 what=$2
shift 2
"$@" >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing $pkg with apt-get" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg") >/dev/null 2>&1
    "$@" >/dev/null 2>&1 && exit 0
fi
echo "bench: $pkg is missing (Debian: apt-get install $pkg); leaving out $what" >&2
exit 1
