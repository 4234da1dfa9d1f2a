#!/bin/sh
# Directories for `make install` / `make uninstall`.
#
#   tools/dirs.sh make MANIFEST DIR...    creates each DIR and its missing
#                                         parents; appends those it created
#                                         to MANIFEST
#   tools/dirs.sh remove MANIFEST DIR...  removes each DIR and parent that is
#                                         empty and listed in MANIFEST (or
#                                         is libsock's own: named "sock"),
#                                         deepest first
#
# So uninstall never removes a directory that was there before install (such
# as DESTDIR/usr/lib), even when it is empty.
set -eu
cmd=$1 manifest=$2
shift 2
case $cmd in
make)
    touch "$manifest"
    for dir in "$@"; do
        path=
        for part in $(echo "$dir" | tr '/' ' '); do
            path=$path/$part
            if [ ! -d "$path" ]; then
                mkdir "$path"
                grep -qxF "$path" "$manifest" || echo "$path" >> "$manifest"
            fi
        done
    done
    ;;
remove)
    for dir in "$@"; do
        path=$dir
        while [ -n "$path" ] && [ "$path" != / ]; do
            echo "$path"
            path=${path%/*}
        done
    done | awk '{ print gsub("/", "/"), $0 }' | sort -k1,1nr -k2 | uniq | cut -d' ' -f2- |
    while IFS= read -r path; do
        [ -d "$path" ] || continue
        if grep -qxF "$path" "$manifest" 2>/dev/null || [ "${path##*/}" = sock ]; then
            if rmdir "$path" 2>/dev/null; then
                if [ -f "$manifest" ]; then
                    grep -vxF "$path" "$manifest" > "$manifest.tmp" || true
                    mv "$manifest.tmp" "$manifest"
                fi
            fi
        fi
    done
    ;;
*)
    echo "usage: $0 make|remove MANIFEST DIR..." >&2
    exit 2
    ;;
esac
