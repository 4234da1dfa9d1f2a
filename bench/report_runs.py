#!/usr/bin/env python3
"""Several full runs (`make bench`) in one table: for every row with a
target, each run's median ratio, the median of those, and the ratio over
all runs' repetitions pooled (each repetition still pairs contenders of the
same run), with its distribution-free confidence interval. On a noisy
machine one run's CI often straddles a target; the pooled figure says more.

    report_runs.py --run DIR [--run DIR ...] --out FILE

Each DIR is a copy of results/ after a run: raw-latest.txt, and
raw-server.txt, machine-latest.txt and callgrind-latest/ when present
(callgrind-latest/ is not committed: its exact counts are in each run's
latest.md). The committed three-runs.md came from

    report_runs.py --run results/runs/run1 --run results/runs/run2 --run results \
        --out results/three-runs.md
"""
import argparse
import os
import statistics
import sys

from report import callgrind, target_rows
from stats import CI_LEVEL, Results, load, table, target_status

# Repetition numbers of run i become i * REP_STRIDE + rep, so that pooled
# runs never pair two runs' trials.
REP_STRIDE = 100000


def load_run(d):
    data = load(os.path.join(d, "raw-latest.txt"))
    server = os.path.join(d, "raw-server.txt")
    if os.path.exists(server):
        data.update(load(server))
    return data


def machine_line(d, key):
    path = os.path.join(d, "machine-latest.txt")
    if not os.path.exists(path):
        return "?"
    for line in open(path):
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--calls", type=int, default=20000)
    a = ap.parse_args()

    runs = [Results(load_run(d)) for d in a.run]
    pooled = {}
    for i, R in enumerate(runs):
        for key, by_rep in R.d.items():
            for rep, v in by_rep.items():
                pooled.setdefault(key, {})[i * REP_STRIDE + rep] = v
    P = Results(pooled)

    L = []
    w = L.append
    w(f"# libsock benchmarks over {len(runs)} full runs\n")
    w("Each run is one `make bench` (`results/latest.md` is the last of them). Per run: the median of "
      "its per-repetition ratios, as in its own report. `median of runs`: the median of those. "
      "`pooled`: the median of every repetition's ratio from all runs together (contenders paired "
      "within their run), with its confidence interval, which sets the status.\n")
    rows = []
    for i, d in enumerate(a.run):
        rows.append([f"run {i + 1}", machine_line(d, "date"), machine_line(d, "library"),
                     machine_line(d, "duration"), machine_line(d, "load at start")])
    w(table(["run", "date", "library", "duration", "load at start"], rows))
    w("")

    header = ["case", "metric"] + [f"run {i + 1}" for i in range(len(runs))] + [
        "median of runs", "pooled", "pooled CI", "target", "status (pooled)"]
    rows, met, missed = [], 0, 0
    for label, case, x, y, metric, inv, target in target_rows(P):
        per_run = [R.paired(case, x, y, metric, inv) for R in runs]
        p = P.paired(case, x, y, metric, inv)
        if p is None:
            continue
        med, lo, hi, cover, n = p
        meds = [r[0] for r in per_run if r is not None]
        status = target_status(med, lo, hi, cover, target)
        met += med >= target
        missed += med < target
        rows.append([label, metric] + [f"{r[0]:.3f}" if r else "—" for r in per_run] + [
            f"{statistics.median(meds):.3f}", f"{med:.3f}", f"{lo:.2f} – {hi:.2f} ({cover:.0%}, n={n})",
            f"≥ {target}", status])
    counts = []
    for d in a.run:
        cg_dir = os.path.join(d, "callgrind-latest")
        cg = callgrind(cg_dir, a.calls) if os.path.isdir(cg_dir) else {}
        counts.append(cg["sock_send"][0] - cg["send"][0] if "send" in cg and "sock_send" in cg else None)
    known = [c for c in counts if c is not None]
    if known:
        rows.append(["sock_send 64 B: user-space instructions − send(2)", "instr/call"]
                    + ["—" if c is None else f"{c:+.0f}" for c in counts]
                    + [f"{statistics.median(known):+.0f}", "exact", "", "≤ +100",
                       "**met**" if max(known) <= 100 else "**missed**"])
    w(table(header, rows))
    w(f"\nRatio targets by the pooled median: {met} met, {missed} missed (confidence {CI_LEVEL:.0%} or "
      "more wherever there are enough repetitions).\n")
    with open(a.out, "w") as f:
        f.write("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
