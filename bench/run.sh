#!/bin/sh
# Runs the benchmark programs and writes the report.
#
#   ./run.sh full  REPS [SPLIT]
#                         every case, REPS interleaved repetitions, except
#                         bench_blocking: REPS*SPLIT repetitions of trials
#                         1/SPLIT as long; then the HTTP server under wrk
#                         (run-server.sh: SERVER_REPS repetitions, default 5,
#                         of SERVER_SECONDS, default 5), folded into the report
#                         -> results/latest.md, results/ratios.png (and
#                         results/server.md, the server's own report)
#   ./run.sh quick REPS   small sizes (smoke test, < 60 s)
#                         -> results/quick.md
#
# Exits non-zero when any program fails: a crash, a timeout, or a receiver
# that saw a wrong byte count or corrupted data (the programs check that).
#
# Why SPLIT, and only for bench_blocking: there a trial's throughput varies
# from trial to trial by about as much whether it sends the full message
# count or a quarter of it, and the median rate moves less than that, so four
# quarter-length trials give a confidence interval about half as wide in the
# same time. bench_async's trials are not shortened: with a lagging receiver
# or 64 connections, the contenders' rates changed with the trial's length,
# and not alike, so a shorter trial measures something else (see
# bench/README.md).
set -u
cd "$(dirname "$0")"

mode=${1:-full}
reps=${2:-5}
split=${3:-1}
case $mode in
full)  flags="" ; calls=20000; limit=900; name=latest ;;
quick) flags="--quick"; calls=2000; limit=60; name=quick; split=1 ;;
*) echo "usage: $0 full|quick REPS [SPLIT]" >&2; exit 2 ;;
esac
case $split in
[1-9] | [1-9][0-9]) ;;
*) echo "$0: SPLIT must be 1..99, not '$split'" >&2; exit 2 ;;
esac
bflags="$flags"
[ "$split" -gt 1 ] && bflags="$flags --shorter $split"
breps=$((reps * split))

mkdir -p results

# Run every program against one snapshot of the library, so a rebuild
# during the run (cargo build by someone else) cannot mix two builds. The
# programs find it through LD_LIBRARY_PATH, which overrides their RUNPATH.
lib=${LIBSOCK_DIR:-../target/release}/libsock.so
snap=$(pwd)/build/libsock-snapshot
rm -rf "$snap"
mkdir -p "$snap"
soname=$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
for n in libsock.so ${soname:-libsock.so.0}; do cp "$lib" "$snap/$n"; done
export LD_LIBRARY_PATH="$snap${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
raw=results/raw-$name.txt
info=results/machine-$name.txt
cgdir=results/callgrind-$name
: >"$raw"
rm -rf "$cgdir"
mkdir -p "$cgdir"
failed=""
start=$(date +%s)

# The machine and whatever else is running on it.
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc: $(nproc)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    virt=$(systemd-detect-virt 2>/dev/null || true)
    hv=$(grep -q hypervisor /proc/cpuinfo && echo "hypervisor flag set" || echo "no hypervisor flag")
    echo "sandbox: ${virt:-unknown} (systemd-detect-virt), $hv"
    echo "fd limit: $(ulimit -Hn)"
    echo "library: snapshot of $lib, sha256 $(sha256sum "$snap/libsock.so" | cut -c1-12), built $(date -u -r "$lib" '+%H:%M UTC'), git HEAD $(git -C .. rev-parse --short HEAD 2>/dev/null)$(git -C .. diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted changes in src/')"
    if [ "$mode" = full ]; then
        echo "repetitions: $breps of bench_blocking (trials 1/$split of the full message count), $reps of bench_async, bench_pending and bench_latency"
    else
        echo "repetitions: $reps (quick: small sizes, not a measurement)"
    fi
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$info"

# Every 10 s, the other processes that used more than 10 % of a CPU
# (sender and receiver of the benchmark excluded).
(
    while :; do
        top -b -n 2 -d 1 -w 200 2>/dev/null | awk -v t="$(date +%T)" '
            /^top -/ { blk++ }
            blk == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 > 10 && $12 !~ /^(bench_|callgrind|valgrind|top|http_|wrk)/ {
                printf "%s %s %s%%\n", t, $12, $9 }'
        sleep 9
    done
) >"results/others-$name.txt" &
sampler=$!

run() {
    prog=$1
    shift
    echo "bench: $prog $*" >&2
    if ! timeout "$limit" "./build/$prog" "$@" >>"$raw"; then
        echo "bench: $prog FAILED" >&2
        failed="$failed $prog"
    fi
}

run bench_blocking --reps "$breps" $bflags
run bench_async --reps "$reps" $flags
run bench_pending --reps "$reps" $flags
run bench_latency --reps "$reps" $flags
run bench_recv --reps "$reps" $flags

# User-space instructions per 64-byte call, under callgrind.
if command -v valgrind >/dev/null 2>&1; then
    for m in send sock_send sock_send_async; do
        for n in 0 "$calls"; do
            echo "bench: callgrind bench_instr $m $n" >&2
            if ! timeout 300 valgrind --tool=callgrind --toggle-collect=run_calls \
                --callgrind-out-file="$cgdir/$m-$n.%p.out" \
                ./build/bench_instr "$m" "$n" >/dev/null 2>"$cgdir/$m-$n.log"; then
                echo "bench: bench_instr $m $n under callgrind FAILED (see $cgdir/$m-$n.log)" >&2
                failed="$failed bench_instr-$m"
            fi
        done
    done
else
    echo "bench: valgrind not found; instruction counts skipped" >&2
fi

# The HTTP server under wrk, with its own snapshot of the same library.
server_raw=""
if [ "$mode" = full ]; then
    echo "bench: run-server.sh full ${SERVER_REPS:-5} ${SERVER_SECONDS:-5}" >&2
    if ! LIBDIR=build/libsock-snapshot ./run-server.sh full "${SERVER_REPS:-5}" "${SERVER_SECONDS:-5}"; then
        failed="$failed server"
    fi
    server_raw="--server-raw results/raw-server.txt"
fi

kill "$sampler" 2>/dev/null
cmp -s "$lib" "$snap/libsock.so" ||
    echo "note: $lib was rebuilt during the run; every program used the snapshot taken at the start" >>"$info"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$info"
if [ -s "results/others-$name.txt" ]; then
    echo "other processes above 10 % CPU during the run (sampled every 10 s; max %CPU, samples):"
    awk '{ p = $3 + 0; if (p > max[$2]) max[$2] = p; n[$2]++ }
         END { for (c in max) printf "    %s %d%% (%d samples)\n", c, max[c], n[c] }' "results/others-$name.txt"
else
    echo "other processes above 10 % CPU during the run: none seen (sampled every 10 s)"
fi >>"$info"
echo "duration: $(($(date +%s) - start)) s" >>"$info"

# The chart needs gnuplot: installed now, after the measurements, when
# missing and root (report.py removes an old chart it cannot replace).
chart=""
if [ "$mode" = full ]; then
    ./ensure-deb.sh gnuplot-nox "the chart" sh -c 'command -v gnuplot' || true
    chart="--chart results/ratios.png"
fi
if ! python3 report.py --raw "$raw" --machine "$info" --callgrind "$cgdir" --calls "$calls" \
    --out "results/$name.md" $chart $server_raw --failed "$failed"; then
    failed="$failed report"
fi

if [ -n "$failed" ]; then
    echo "bench: FAILED:$failed" >&2
    exit 1
fi
echo "bench: wrote results/$name.md" >&2
