#!/usr/bin/env python3
"""The server benchmark's report (run-server.sh): requests/s, p50 and p99
latency of the three HTTP responders under wrk, and the ratios libsock ÷
libuv and libsock ÷ epoll with distribution-free confidence intervals of
the median per-repetition ratio (median_ci of report.py)."""
import argparse
import sys

from stats import Results, fmt, fmt_rate, load, table, target_status

CASES = [("server-13B-c1", "13 B, 1 conn"), ("server-13B-c64", "13 B, 64 conns"),
         ("server-13B-c1000", "13 B, 1,000 conns"), ("server-64KiB-c64", "64 KiB, 64 conns")]
WHO = ["libsock", "libuv", "epoll"]


def ratio_rows():
    """The server cases' ratio rows, as report.py's: (label, case, a, b,
    metric, invert, target); a target of None is for information."""
    rows = []
    for case, label in CASES:
        rows.append((f"server {label} vs libuv", case, "libsock", "libuv", "rps", False, 1.0))
        rows.append((f"server {label} vs epoll", case, "libsock", "epoll", "rps", False, 0.9))
        rows.append((f"server {label} p99 (libuv ÷ libsock)", case, "libsock", "libuv", "p99_us", True, 1.0))
        for base in ("libuv", "epoll"):
            rows.append((f"server {label} p50 ({base} ÷ libsock)", case, "libsock", base, "p50_us", True, None))
    return rows


def write_medians(R, w):
    """The tables of medians per server and of every trial."""
    w("`CPU µs/req`: user + system time of the server process (all its threads) per request answered.\n")
    rows = []
    for case, label in CASES:
        for who in WHO:
            m = R.med(case, who, "rps")
            if m is None:
                continue
            rows.append([label, who, fmt_rate(m), fmt(R.med(case, who, "p50_us"), 0),
                         fmt(R.med(case, who, "p99_us"), 0), fmt(R.med(case, who, "cpu_us_per_req"), 2)])
    w(table(["case", "server", "requests/s", "p50 µs", "p99 µs", "CPU µs/req"], rows))
    w("\nEvery trial:\n")
    rows = []
    for case, label in CASES:
        for who in WHO:
            v = R.d.get((case, who, "rps"), {})
            if v:
                rows.append([label, who, " ".join(fmt_rate(v[k]) for k in sorted(v))])
    w(table(["case", "server", "requests/s by repetition"], rows))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--failed", default="")
    a = ap.parse_args()
    R = Results(load(a.raw))
    machine = open(a.machine).read().rstrip()
    L = []
    w = L.append
    w("# libsock server benchmark (wrk against three HTTP responders)\n")
    w("```\n" + machine + "\n```\n")
    if a.failed.strip():
        w(f"**FAILED trials: {a.failed.strip()}** — their numbers are missing or partial.\n")
    w("`wrk -t1 -cC -dD --latency` against `examples/http_server` (libsock, one engine thread), the same "
      "responder on libuv (`bench/http_uv.c`) and on an edge-triggered epoll loop (`bench/http_epoll.c`), "
      "each on one thread, each trial a fresh server; the servers of a case run interleaved in the order of "
      "a row of a balanced Latin square. A ratio is the median of the per-repetition ratios, with a "
      "distribution-free confidence interval (CI) of that median (order statistics; with 3 repetitions "
      "the CI is the smallest to the largest ratio and covers the median with 75 % only). wrk and the "
      "server share the machine's 2 cores.\n")

    w("## Ratios and targets\n")
    w("Requests/s: libsock ÷ baseline, higher is better. p99: libsock ÷ libuv, lower is better (target "
      "≤ 1.0; the status reads it as libuv ÷ libsock ≥ 1.0).\n")
    rows = []
    covers = set()
    for label, case, x, y, metric, inv, target in ratio_rows():
        p = R.paired(case, x, y, metric, inv)
        if p is None:
            continue
        med, lo, hi, cover, n = p
        covers.add(f"{cover:.0%} with {n} repetition(s)")
        status = "info" if target is None else target_status(med, lo, hi, cover, target)
        rows.append([label.replace("server ", ""), metric, f"{med:.3f}", f"{lo:.2f} – {hi:.2f}",
                     "—" if target is None else f"≥ {target}", status])
    w(table(["case", "metric", "ratio", "CI", "target", "status"], rows))
    if covers:
        w(f"\nCI confidence: {', '.join(sorted(covers))}"
          + (" (below the report's usual 90 %: too few repetitions)" if any(
              c.startswith(('75', '50')) for c in covers) else "") + ".\n")

    w("\n## Medians per server\n")
    write_medians(R, w)
    with open(a.out, "w") as f:
        f.write("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
