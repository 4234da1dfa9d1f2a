#!/usr/bin/env bash
# Compiles tests/ffi/mono/Cleanup.cs with Mono's mcs and runs it: the
# program must exit 0 when it calls sock_cleanup() (in Main, or from
# AppDomain.ProcessExit). Without sock_cleanup it is run once more, only
# to report what happens (Mono waits for the engine thread its callback
# ran on). Needs target/release/libsock.so (make build). Skips, with a
# message, when mcs or mono is missing (Debian: mono-mcs mono-runtime).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v mcs >/dev/null 2>&1 || ! command -v mono >/dev/null 2>&1; then
    echo "test-ffi: SKIPPED: mcs/mono not installed (apt-get install mono-mcs mono-runtime)"
    exit 0
fi
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
mcs -nologo -warnaserror -out:"$build/Cleanup.exe" tests/ffi/mono/Cleanup.cs
export LD_LIBRARY_PATH="$PWD/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

fail=0
for mode in "" --process-exit; do
    start=$(date +%s%N)
    set +e
    out=$(timeout 30 mono "$build/Cleanup.exe" $mode 2>&1)
    rc=$?
    set -e
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "$out" | sed 's/^/    /'
    if [ $rc -eq 0 ]; then
        echo "test-ffi: mono Cleanup.exe ${mode:-(sock_cleanup in Main)}: exit 0 in $ms ms: ok"
    else
        echo "test-ffi: mono Cleanup.exe ${mode:-(sock_cleanup in Main)}: exit $rc (124: hung 30 s): FAILED" >&2
        fail=1
    fi
done

# Informational: the same program without sock_cleanup.
set +e
timeout 5 mono "$build/Cleanup.exe" --no-cleanup >/dev/null 2>&1
rc=$?
set -e
if [ $rc -eq 124 ]; then
    echo "test-ffi: (informational) without sock_cleanup, Mono is still running after 5 s (the hang sock_cleanup fixes)"
else
    echo "test-ffi: (informational) without sock_cleanup, Mono exited with $rc"
fi
exit $fail
