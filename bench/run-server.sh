#!/usr/bin/env bash
# The server benchmark (make bench-server): wrk against three HTTP
# responders with the same interface, each on one thread:
#   libsock  examples/http_server.c (build/http_libsock)
#   libuv    http_uv.c
#   epoll    http_epoll.c (hand-written edge-triggered loop)
#
#   ./run-server.sh full  REPS SECONDS   -> results/server.md
#   ./run-server.sh quick 1    2         -> results/server-quick.md
#
# Cases: wrk -t1 -cC -dSECONDS --latency for C = 1, 64, 1000 with a 13-byte
# body, and C = 64 with a 64 KiB body. Every trial starts its server fresh
# (and stops it with SIGTERM, which must exit 0); within a repetition the
# servers of a case run in the order of a row of a balanced Latin square
# (as run_order in common.c: each server in each place, and right after
# each other one, equally often over 6 repetitions). A trial fails the run
# when wrk sees a socket error or a non-2xx response, or the server does
# not exit 0. wrk is installed with apt-get when missing (ensure-deb.sh).
set -u
cd "$(dirname "$0")"

mode=${1:-full}
reps=${2:-3}
secs=${3:-5}
case $mode in
full) name=server ;;
quick) name=server-quick ;;
*) echo "usage: $0 full|quick REPS SECONDS" >&2; exit 2 ;;
esac

./ensure-deb.sh wrk "the server benchmark" sh -c 'command -v wrk' || exit 1
# 1,000 connections: wrk and the servers need more than 1,024 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt 2100 ]; then
    echo "bench: the descriptor limit is $(ulimit -n); the 1,000-connection case needs about 2,100" >&2
    exit 1
fi

# One snapshot of the library for the whole run (see run.sh).
lib=${LIBDIR:-../target/release}/libsock.so
snap=$(pwd)/build/libsock-snapshot-server
rm -rf "$snap"
mkdir -p "$snap"
soname=$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
for n in libsock.so ${soname:-libsock.so.0}; do cp "$lib" "$snap/$n"; done
export LD_LIBRARY_PATH="$snap${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

servers=(libsock epoll)
[ -x build/http_uv ] && servers=(libsock libuv epoll) ||
    echo "bench: build/http_uv missing (no libuv): libuv left out" >&2
nserv=${#servers[@]}
declare -A bin=([libsock]=build/http_libsock [libuv]=build/http_uv [epoll]=build/http_epoll)
cases=("13B-c1 1 13" "13B-c64 64 13" "13B-c1000 1000 13" "64KiB-c64 64 65536")

mkdir -p results
raw=results/raw-$name.txt
info=results/machine-$name.txt
: >"$raw"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=""
start=$(date +%s)
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -sr)"
    echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "wrk: $(wrk -v 2>&1 | head -n1)"
    echo "libuv: $(pkg-config --modversion libuv 2>/dev/null || echo none)"
    echo "library: snapshot of $lib, sha256 $(sha256sum "$snap/libsock.so" | cut -c1-12), git HEAD $(git -C .. rev-parse --short HEAD 2>/dev/null)$(git -C .. diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted changes in src/')"
    echo "repetitions: $reps of $secs s per case and server ($mode)"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$info"

# Williams rows: order of server j in repetition r (n = 2 or 3).
order() { # rep j
    local r=$1 j=$2
    if [ "$nserv" = 3 ]; then
        local rows=(012 120 201 210 021 102)
        echo "${rows[$((r % 6))]:$j:1}"
    else
        local rows=(01 10)
        echo "${rows[$((r % 2))]:$j:1}"
    fi
}

# wrk's latency text (12.3us, 1.20ms, 1.5s) in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") m = 1; else if (u == "ms") m = 1000; else if (u == "s") m = 1000000; else m = -1
        if (m < 0) { print "NaN"; exit } printf "%.1f\n", n * m }'
}

trial() { # rep who case conns body
    local rep=$1 who=$2 case_id=$3 conns=$4 bodylen=$5
    rm -f "$tmp/out" "$tmp/err" # never the previous server's line
    "./${bin[$who]}" --body "$bodylen" 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
    local pid=$!
    for _ in $(seq 200); do
        grep -q '^listening on' "$tmp/out" 2>/dev/null && break
        sleep 0.05
    done
    local port
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/out")
    if [ -z "$port" ]; then
        echo "bench: $who did not start: $(cat "$tmp/err")" >&2
        kill -KILL "$pid" 2>/dev/null
        failed="$failed $who-$case_id"
        return
    fi
    local cpu0
    cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    echo "bench: $case_id $who (rep $rep): wrk -t1 -c$conns -d${secs}s" >&2
    timeout $((secs + 30)) wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/" >"$tmp/wrk" 2>&1
    local cpu1
    cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "bench: $who exited $rc after SIGTERM: $(cat "$tmp/err")" >&2
        failed="$failed $who-$case_id-exit"
    fi
    if grep -qE "Socket errors|Non-2xx" "$tmp/wrk"; then
        echo "bench: $case_id $who: $(grep -E 'Socket errors|Non-2xx' "$tmp/wrk")" >&2
        failed="$failed $who-$case_id-errors"
    fi
    local rps p50 p99 reqs
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk")
    reqs=$(awk '/requests in/ {print $1}' "$tmp/wrk")
    p50=$(to_us "$(awk '$1 == "50%" {print $2}' "$tmp/wrk")")
    p99=$(to_us "$(awk '$1 == "99%" {print $2}' "$tmp/wrk")")
    if [ -z "$rps" ] || [ -z "$reqs" ]; then
        echo "bench: $case_id $who: no result: $(cat "$tmp/wrk")" >&2
        failed="$failed $who-$case_id"
        return
    fi
    local tck
    tck=$(getconf CLK_TCK)
    {
        echo "R server-$case_id $who $rep rps $rps"
        echo "R server-$case_id $who $rep p50_us $p50"
        echo "R server-$case_id $who $rep p99_us $p99"
        awk -v c=$((cpu1 - cpu0)) -v t="$tck" -v n="$reqs" -v k="server-$case_id" -v w="$who" -v r="$rep" \
            'BEGIN { if (n > 0) printf "R %s %s %s cpu_us_per_req %.2f\n", k, w, r, c / t * 1e6 / n }'
    } >>"$raw"
}

for ((rep = 0; rep < reps; rep++)); do
    for c in "${cases[@]}"; do
        set -- $c
        for ((j = 0; j < nserv; j++)); do
            trial "$rep" "${servers[$(order "$rep" "$j")]}" "$1" "$2" "$3"
        done
    done
done

echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$info"
echo "duration: $(($(date +%s) - start)) s" >>"$info"
if ! python3 report_server.py --raw "$raw" --machine "$info" --out "results/$name.md" --failed "$failed"; then
    failed="$failed report"
fi
if [ -n "$failed" ]; then
    echo "bench: FAILED:$failed" >&2
    exit 1
fi
echo "bench: wrote results/$name.md" >&2
