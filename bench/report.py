#!/usr/bin/env python3
"""Turns the result lines of the benchmark programs into a Markdown report
(and a PNG chart of the ratios, with gnuplot).

Input lines:  R <case> <contender> <rep> <metric> <value>
Medians are over repetitions; a ratio is the median of the per-repetition
ratios of two contenders that ran interleaved (every repetition runs each
contender once, in the order of a row of a balanced Latin square: for two
contenders A B, B A), with a
distribution-free confidence interval of that median (order statistics of
the per-repetition ratios, see median_ci).
"""
import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys

from report_server import ratio_rows as server_rows, write_medians as server_medians
from stats import CI_LEVEL, Results, fmt, fmt_rate, load, table, target_status

SIZES = ["64B", "1KiB", "16KiB", "256KiB", "1MiB"]
ASYNC = [f"async-{s}-{c}conn-{r}" for r in ("fast", "lag") for s in ("64B", "16KiB") for c in (1, 64)]
ASYNC_WHO = ["libsock", "libsock-manual", "libsock-cb", "epoll", "libuv", "libuv-try"]


def async_label(case):
    """'async-16KiB-1conn-lag' -> 'async 16KiB-1 conn lag' (the report's row label)."""
    return case.replace("async-", "async ").replace("conn-", " conn ")


def recv_order(case):
    """Receive cases by connections, then read size."""
    sizes = {"64B": 0, "16KiB": 1, "1MiB": 2}
    parts = case.split("-")
    return (parts[2], sizes.get(parts[1], 9))


# ---- callgrind -------------------------------------------------------------

def cg_total(files):
    total = 0
    for fn in files:
        with open(fn) as f:
            for line in f:
                if line.startswith("totals:") or line.startswith("summary:"):
                    total += int(line.split()[1])
                    break
    return total


def cg_top(fn, calls, limit=12):
    """Self instructions per call from callgrind_annotate, (1) by function,
    inlined code counted in the function it was inlined into, and (2) by
    source file and function, which tells inlined library code (locks,
    atomics, Arc, panic guard) apart from the function's own."""
    if not shutil.which("callgrind_annotate"):
        return [], []
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", fn],
                         capture_output=True, text=True).stdout
    per_fn, per_src = collections.Counter(), collections.Counter()
    obj_of = {}
    pat = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$")
    for line in out.splitlines():
        m = pat.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        rest = m.group(2)
        obj = ""
        om = re.search(r" \[([^\]]*)\]$", rest)
        if om:
            obj = os.path.basename(om.group(1))
            rest = rest[: om.start()]
        src, func = rest.split(":", 1) if ":" in rest else ("???", rest)
        if src.startswith("/rustc/"):
            src = re.sub(r"^/rustc/[0-9a-f]+/library/(\w+)/src/", r"std:\1/", src)
        elif "/async/src/" in src or "/bench/" in src:
            src = re.sub(r"^.*/(src|bench)/", r"\1/", src)
        else:
            src = os.path.basename(src)
        n = int(m.group(1).replace(",", ""))
        per_fn[func] += n
        per_src[(src, func)] += n
        if obj:
            obj_of[func] = obj
    by_fn = [(f, n / calls, obj_of.get(f, "")) for f, n in per_fn.most_common(limit)]
    by_src = [(f"{src} → {f}", n / calls, "") for (src, f), n in per_src.most_common(limit + 4)]
    return by_fn, by_src


def callgrind(cgdir, calls):
    res = {}
    for mode in ("send", "sock_send", "sock_send_async"):
        f0 = glob.glob(os.path.join(cgdir, f"{mode}-0.*.out"))
        fn = glob.glob(os.path.join(cgdir, f"{mode}-{calls}.*.out"))
        if not f0 or not fn:
            continue
        per_call = (cg_total(fn) - cg_total(f0)) / calls
        main_file = max(fn, key=lambda p: cg_total([p]))
        res[mode] = (per_call, cg_top(main_file, calls))
    return res


# ---- the report --------------------------------------------------------------

def target_rows(R):
    """The rows with a target: (label, case, a, b, metric, invert, target),
    the ratio being a ÷ b of `metric` (b ÷ a with invert)."""
    ratio_rows = []
    for s in SIZES:
        # Small blocking sends: within 1 % of send(2) (issue 22), larger ones within 3 %.
        t = 0.99 if s in ("64B", "1KiB") else 0.97
        ratio_rows.append((f"blocking {s}", f"blocking-{s}", "libsock", "send", "msgs_per_s", False, t))
    for c in ASYNC:
        label = async_label(c)
        t = 1.5 if c == "async-64B-64conn-lag" else 1.0
        ratio_rows.append((f"{label} vs libuv", c, "libsock", "libuv", "msgs_per_s", False, t))
        ratio_rows.append((f"{label} vs epoll", c, "libsock", "epoll", "msgs_per_s", False, 0.9))
    pend = pending_case(R)
    ratio_rows.append((f"{pend} vs libuv", pend, "libsock", "libuv", "completions_per_s", False, 1.0))
    ratio_rows.append((f"{pend} vs epoll", pend, "libsock", "epoll", "completions_per_s", False, 0.9))
    # Receive throughput (bench_recv): sock_recv vs recv(2), and
    # sock_recv_async on a manual engine vs libuv's uv_read_start.
    for c in sorted({k[0] for k in R.d if k[0].startswith("recv-")}, key=recv_order):
        ratio_rows.append((f"{c} vs recv(2)", c, "libsock", "recv", "GB_per_s", False, 0.97))
        ac = "recvasync-" + c[len("recv-"):]
        ratio_rows.append((f"{ac} vs libuv", ac, "libsock-manual", "libuv", "GB_per_s", False, 1.0))
    # The HTTP server under wrk (run-server.sh), when it ran.
    ratio_rows += [r for r in server_rows() if r[6] is not None]
    return ratio_rows


def pending_case(R):
    """The many-connections case's name (its connection count varies)."""
    return next((k[0] for k in R.d if k[0].startswith("pending-")), "pending-10000conn")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--callgrind")
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--chart")
    ap.add_argument("--failed", default="")
    ap.add_argument("--server-raw", help="the server benchmark's results (run-server.sh), folded in")
    a = ap.parse_args()

    data = load(a.raw)
    if a.server_raw and os.path.exists(a.server_raw):
        data.update(load(a.server_raw))
    R = Results(data)
    cg = callgrind(a.callgrind, a.calls) if a.callgrind and os.path.isdir(a.callgrind) else {}
    machine = open(a.machine).read().rstrip()
    reps = {}  # program's case prefix ("blocking", "async", ...) -> repetitions
    for (case, _, _), v in R.d.items():
        prog = case.split("-")[0]
        reps[prog] = max(reps.get(prog, 0), len(v))
    reps_text = ", ".join(f"{p} {n}" for p, n in reps.items()) or "none"

    ratio_rows = target_rows(R)
    pend = pending_case(R)
    info_rows = [r for r in server_rows() if r[6] is None]
    for c in ASYNC:
        if "64conn" in c:
            info_rows.append((f"{c}: manual ÷ default engine", c, "libsock-manual", "libsock", "msgs_per_s", False, None))
    for c in ASYNC:
        info_rows.append((f"{async_label(c)}: libsock-cb vs libuv", c, "libsock-cb", "libuv", "msgs_per_s", False, None))
    for v in ("", "-1cpu"):
        tag = " 1cpu" if v else ""
        info_rows += [
            (f"latency blocking{tag} p50 (send ÷ libsock)", f"latency-blocking{v}", "libsock", "send", "p50_us", True, None),
            (f"latency async{tag} p50 (epoll ÷ libsock)", f"latency-async{v}", "libsock", "epoll", "p50_us", True, None),
            (f"latency async{tag} p50 (epoll ÷ libsock-manual)", f"latency-async{v}", "libsock-manual", "epoll", "p50_us", True, None),
            (f"latency async{tag} p50 (libuv ÷ libsock)", f"latency-async{v}", "libsock", "libuv", "p50_us", True, None),
        ]

    L = []
    w = L.append
    w(f"# libsock benchmark results\n")
    w("```\n" + machine + "\n```\n")
    if a.failed.strip():
        w(f"**FAILED programs: {a.failed.strip()}** — their numbers are missing or partial.\n")
    w(f"Repetitions per contender: {reps_text} (the machine block says how long each trial was). They are "
      "interleaved: each repetition runs every contender once, in the "
      "order of a row of a balanced Latin square (each contender in each place, and right after each other "
      "contender, equally often; for two contenders A B, B A). Figures are medians over the repetitions; a ratio is the median of the per-repetition ratios of two contenders, with a "
      "confidence interval (CI) of that median. Every receiver counted the bytes and checked their content. "
      "2 cores are shared by sender, receiver and (libsock default engine) the engine thread; "
      "other processes on the machine are listed above.\n")

    # Targets.
    w("## Ratios and targets\n")
    w("libsock ÷ baseline (higher is better for libsock; latency rows are baseline ÷ libsock of the p50, "
      "so also higher is better). `ratio`: median of the per-repetition ratios, the figure the status "
      "uses; `CI`: the interval that holds the true median ratio with the confidence given in the header "
      "(distribution-free: the order statistics of the per-repetition ratios), so a status marked "
      "*CI includes target* could go either way in another run; `ratio of medians`: the two contenders' medians divided, for comparison (they differ when "
      "runs are bimodal).\n")
    rows, chart, covers, judged = [], [], set(), []
    for label, case, x, y, metric, inv, target in ratio_rows + info_rows:
        p = R.paired(case, x, y, metric, inv)
        if p is None:
            continue
        med, lo, hi, cover, n = p
        covers.add(f"{cover:.0%} with {n} repetition(s)"
                   + (" (too few for a CI: smallest to largest ratio)" if cover < CI_LEVEL else ""))
        status = "info" if target is None else target_status(med, lo, hi, cover, target)
        if target is not None:
            judged.append((med, lo, hi, cover >= CI_LEVEL, target))
        mx, my = R.med(case, x, metric), R.med(case, y, metric)
        rom = (my / mx if inv else mx / my) if mx and my else None
        rows.append([label, metric, f"{med:.3f}", f"{lo:.2f} – {hi:.2f}", fmt(rom, 3),
                     "—" if target is None else f"≥ {target}", status])
        chart.append((label, med, lo, hi, target))
    extra = []
    if "send" in cg and "sock_send" in cg:
        d = cg["sock_send"][0] - cg["send"][0]
        extra.append(["sock_send 64 B: user-space instructions − send(2)", "instr/call", f"{d:+.0f}", "exact", "",
                      "≤ +100", "**met**" if d <= 100 else "**missed**"])
    if "send" in cg and "sock_send_async" in cg:
        d = cg["sock_send_async"][0] - cg["send"][0]
        extra.append(["sock_send_async 64 B inline: instructions − send(2)", "instr/call", f"{d:+.0f}", "exact", "",
                      "—", "info"])
    mem_l, mem_r = R.med(pend, "libsock", "rss_delta_per_conn"), R.med(pend, "epoll", "rss_delta_per_conn")
    if mem_l is not None and mem_r is not None:
        lib = mem_l - mem_r
        extra.append([f"{pend}: library memory per connection", "bytes", f"{lib:.0f}", "—", "",  "≤ 1024",
                      "**met**" if lib <= 1024 else "**missed**"])
    w(table(["case", "metric", "ratio", "CI", "ratio of medians", "target", "status"], rows + extra))
    if covers:
        w(f"\nCI confidence: {', '.join(sorted(covers))}.")
    met = [j for j in judged if j[0] >= j[4]]
    missed = [j for j in judged if j[0] < j[4]]
    w(f"\nRatio targets: {len(met)} met ({sum(ci and lo >= t for _, lo, _, ci, t in met)} with the whole CI "
      f"above), {len(missed)} missed ({sum(ci and hi < t for _, _, hi, ci, t in missed)} with the whole CI below).")

    # Blocking.
    w("\n## Blocking throughput (1 connection, sock_send vs send(2))\n")
    rows = []
    for s in SIZES:
        c = f"blocking-{s}"
        if not R.has(c):
            continue
        p = R.paired(c, "libsock", "send", "msgs_per_s")
        rows.append([s, fmt_rate(R.med(c, "send", "msgs_per_s")), fmt_rate(R.med(c, "libsock", "msgs_per_s")),
                     fmt(R.med(c, "send", "GB_per_s")), fmt(R.med(c, "libsock", "GB_per_s")),
                     fmt(p[0], 3) if p else "—",
                     fmt(R.med(c, "send", "cpu_ns_per_msg"), 0), fmt(R.med(c, "libsock", "cpu_ns_per_msg"), 0)])
    w(table(["size", "send(2) msgs/s", "sock_send msgs/s", "send(2) GB/s", "sock_send GB/s", "ratio",
             "send(2) CPU ns/msg", "sock_send CPU ns/msg"], rows))

    # Async.
    w("\n## Async throughput\n")
    w("Window of 64 outstanding operations per connection, turns of up to 64 messages per connection. "
      "`pending %`: messages that did not complete inside their first call (libsock: SOCK_IO_PENDING; "
      "epoll: hit EAGAIN; libuv: left queued by uv_write). `CPU`: user+system time of the sending process "
      "(all its threads) per message. *lag*: the lagging receiver (backpressure), see README.\n")
    rows = []
    for c in ASYNC:
        if not R.has(c):
            continue
        for who in ASYNC_WHO:
            m = R.med(c, who, "msgs_per_s")
            if m is None:
                continue
            rows.append([c, who, fmt_rate(m), fmt(R.med(c, who, "GB_per_s")),
                         fmt(R.med(c, who, "pending_pct"), 1), fmt(R.med(c, who, "cpu_ns_per_msg"), 0)])
    w(table(["case", "contender", "msgs/s", "GB/s", "pending %", "CPU ns/msg"], rows))

    # Pending.
    if R.has(pend):
        w(f"\n## {pend}: one pending send per connection\n")
        rows = []
        for who in ("libsock", "epoll", "libuv"):
            m = R.med(pend, who, "completions_per_s")
            if m is None:
                continue
            rows.append([who, fmt_rate(m), fmt(R.med(pend, who, "rss_delta_per_conn"), 0),
                         fmt(R.med(pend, who, "cpu_ns_per_completion"), 0)])
        w(table(["contender", "completions/s", "RSS delta per conn (B)", "CPU ns/completion"], rows))
        if mem_l is not None and mem_r is not None:
            w(f"\nlibsock's own memory per connection: {mem_l:.0f} − {mem_r:.0f} (raw fds) = "
              f"**{mem_l - mem_r:.0f} B** (RSS, pages touched; kernel socket memory is not in RSS).\n")

    # The server.
    if any(k[0].startswith("server-") for k in R.d):
        w("\n## HTTP server under wrk (`make bench-server`'s cases)\n")
        w("`wrk -t1 -cC --latency` against `examples/http_server` (libsock, one engine thread), the same "
          "responder on libuv (`http_uv.c`) and on an edge-triggered epoll loop (`http_epoll.c`), each "
          "trial a fresh server, interleaved as above; its ratio rows are in the table of targets "
          "(`server …`). Requests/s ratios are libsock ÷ baseline; latency rows baseline ÷ libsock.\n")
        server_medians(R, w)

    # Latency.
    w("\n## Ping-pong latency (64 B, TCP_NODELAY), µs\n")
    w("`latency-*`: processes placed by the scheduler (on this VM a wake-up on the other, idle vCPU "
      "costs tens of µs, which dominates); `latency-*-1cpu`: client (all threads) and echo server pinned "
      "to CPU 0, so every wake-up is a local context switch and the difference is the software's.\n")
    rows = []
    for c in ("latency-blocking", "latency-async", "latency-blocking-1cpu", "latency-async-1cpu"):
        for who in ("send", "libsock", "libsock-manual", "epoll", "libuv"):
            p50 = R.med(c, who, "p50_us")
            if p50 is not None:
                rows.append([c, who, fmt(p50, 1), fmt(R.med(c, who, "p99_us"), 1)])
    w(table(["case", "contender", "p50", "p99"], rows))

    # Instructions.
    if cg:
        w(f"\n## User-space instructions per 64-byte call (callgrind, ({a.calls} calls − 0 calls) ÷ {a.calls})\n")
        rows = []
        base = cg.get("send", (None,))[0]
        for mode in ("send", "sock_send", "sock_send_async"):
            if mode in cg:
                pc = cg[mode][0]
                rows.append([mode if mode != "send" else "send(2)", f"{pc:.1f}",
                             "—" if base is None or mode == "send" else f"{pc - base:+.1f}"])
        w(table(["call", "instructions", "vs send(2)"], rows))
        w("\nIncludes the benchmark loop's own few instructions (the same in every row).\n")
        for mode in ("sock_send", "sock_send_async", "send"):
            if mode in cg and cg[mode][1][0]:
                by_fn, by_src = cg[mode][1]
                w(f"\nWhere {mode}'s instructions go, per call: self cost by function (inlined code "
                  "counted in the function it was inlined into), and the same split by the source "
                  "file the code came from (`std:` is Rust's standard library inlined there):\n")
                w(table(["function", "instr/call", "object"], [[f"`{f}`", f"{n:.1f}", o] for f, n, o in by_fn]))
                if mode != "send":
                    w("\n")
                    w(table(["source → function", "instr/call"], [[f"`{f}`", f"{n:.1f}"] for f, n, _ in by_src]))

    with open(a.out, "w") as f:
        f.write("\n".join(L))

    if a.chart:
        make_chart(chart, a.chart)
    return 0


def short(label):
    """A label short enough for the chart's axis."""
    for a, b in ((" (send ÷ libsock)", " send÷ls"), (" (epoll ÷ libsock)", " epoll÷ls"),
                 (" (epoll ÷ libsock-manual)", " epoll÷manual"), (" (libuv ÷ libsock)", " uv÷ls"),
                 ("latency async 1cpu p50", "lat1cpu async"), ("latency blocking 1cpu p50", "lat1cpu blk"),
                 ("latency async p50", "lat async"), ("latency blocking p50", "lat blk"),
                 ("async ", ""), (" conn ", "c "), ("-1 conn", "-1c"), ("-64 conn", "-64c"), ("blocking", "blk"),
                 ("pending-10000conn", "10k pending"), ("pending-1000conn", "1k pending"),
                 ("async-", ""), ("conn-", "c-"), (": manual ÷ default engine", " man÷def"),
                 ("latency ", "lat "), ("blocking", "blk"), (": libsock-cb vs libuv", " cb÷uv"),
                 ("server ", "srv "), (" p99 (libuv ÷ libsock)", " p99 uv÷ls"), (" p50 (libuv ÷ libsock)", " p50 uv÷ls"),
                 (" p50 (epoll ÷ libsock)", " p50 ep÷ls"), (", 1,000 conns", "-1000c"), (", 64 conns", "-64c"),
                 (", 1 conn", "-1c"), ("13 B", "13B"), ("64 KiB", "64KiB")):
        label = label.replace(a, b)
    return label


def make_chart(rows, path):
    # No chart rather than one of another run.
    if os.path.exists(path):
        os.remove(path)
    if not shutil.which("gnuplot"):
        print("report: gnuplot not found; no chart (Debian: apt-get install gnuplot-nox)", file=sys.stderr)
        return
    base = os.path.splitext(path)[0]
    with open(base + ".dat", "w") as f:
        for i, (label, med, lo, hi, target) in enumerate(rows):
            color = "0x888888" if target is None else ("0x2e8b57" if med >= target else "0xcc3333")
            t = "NaN" if target is None else f"{target}"
            f.write(f'{i} "{short(label)}" {med:.4f} {t} {color} {lo:.4f} {hi:.4f}\n')
    script = f"""
set terminal pngcairo size 1500,800 font ",10"
set output "{path}"
set title "libsock ÷ baseline (median of interleaved pairs, bar: its CI); green met, red missed, grey no target; ◆ target"
set style fill solid 0.85 border -1
set boxwidth 0.7
set xtics rotate by -50 scale 0 font ",9"
set ylabel "ratio"
set yrange [0:*<3]  # a CI far above 3 would squash every bar
set grid ytics
set key off
set bmargin 9
set rmargin 10
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "black"
plot "{base}.dat" using 1:3:5:xtic(2) with boxes lc rgb variable, \\
     "" using 1:3:6:7 with yerrorbars pt -1 lc rgb "black", \\
     "" using 1:4 with points pt 13 ps 1.6 lc rgb "black"
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        print("report: gnuplot failed: " + r.stderr, file=sys.stderr)
    else:
        os.remove(base + ".dat")


if __name__ == "__main__":
    sys.exit(main())
