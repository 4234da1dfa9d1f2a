"""What every benchmark report shares: the result lines, medians and
ratios of interleaved repetitions with distribution-free confidence
intervals, and Markdown tables. Used by report.py (the full report),
report_server.py (the server's) and report_runs.py (several runs)."""
import collections
import math
import statistics

CI_LEVEL = 0.90


def median_ci(values, level=CI_LEVEL):
    """(lo, hi, coverage): order statistics of `values` that hold their
    population's median with probability `coverage` >= `level`, whatever the
    distribution (each value falls below the median with probability 1/2, so
    the count below is Binomial(n, 1/2)). With 9 values: the 2nd smallest
    and the 2nd largest, 96 %. Too few values for `level`: the smallest and
    largest, with their (lower) coverage."""
    v = sorted(values)
    n = len(v)
    tail, k = 0.0, 0  # k: values cut from each end
    for j in range(n):
        p = tail + math.comb(n, j) / 2**n
        if p > (1 - level) / 2:
            break
        tail, k = p, j + 1
    if k == 0:
        return v[0], v[-1], 1 - 2 / 2**n
    # The CI is [v[k-1], v[n-k]] (0-based): P(median outside) = 2 * P(Bin <= k-1) = 2 * tail.
    return v[k - 1], v[n - k], 1 - 2 * tail


def load(path):
    data = collections.defaultdict(dict)  # (case, who, metric) -> {rep: value}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 6 and p[0] == "R":
                data[(p[1], p[2], p[4])][int(p[3])] = float(p[5])
    return data


class Results:
    def __init__(self, data):
        self.d = data

    def values(self, case, who, metric):
        return list(self.d.get((case, who, metric), {}).values())

    def med(self, case, who, metric):
        v = self.values(case, who, metric)
        return statistics.median(v) if v else None

    def paired(self, case, a, b, metric, invert=False):
        """Median, confidence interval (lo, hi, coverage) and count of the
        per-repetition a/b (b/a if invert)."""
        x = self.d.get((case, a, metric), {})
        y = self.d.get((case, b, metric), {})
        r = []
        for rep in sorted(set(x) & set(y)):
            num, den = (y[rep], x[rep]) if invert else (x[rep], y[rep])
            if den > 0:
                r.append(num / den)
        if not r:
            return None
        lo, hi, cover = median_ci(r)
        return statistics.median(r), lo, hi, cover, len(r)

    def has(self, case):
        return any(k[0] == case for k in self.d)


def fmt_rate(v):
    if v is None:
        return "—"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def fmt(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def target_status(med, lo, hi, cover, target):
    """Met or missed by the median; whether the CI agrees."""
    if cover < CI_LEVEL:
        return ("**met**" if med >= target else "**missed**") + " (too few repetitions for a CI)"
    if med >= target:
        return "**met**" if lo >= target else "**met** (CI includes target)"
    return "**missed** (CI below target)" if hi < target else "**missed** (CI includes target)"
