#!/usr/bin/env python3
"""Where in a burst of requests the slow first tokens are.

In scenario (a) the closed loop keeps streams in step, so requests leave in bursts: each
time a wave of streams ends, the next requests all start within a few milliseconds. This
reads the per-request lines `loadgen run --trace-out FILE` writes (start µs, TTFT µs) for one
or more systems and reports, for each:

  - TTFT p50/p90/p99 of requests in big bursts (at least --big requests) and of the rest;
  - for its biggest burst, the mean TTFT of each tenth of the burst in start order: whether the
    first requests of a burst or the last ones wait longest.

  loadgen run --url http://127.0.0.1:18080 -c 256 -d 8 --trace-out gateway.trace
  python3 bench/ttft_bursts.py direct.trace gateway.trace nginx.trace
  python3 bench/ttft_bursts.py --gap-ms 100 --big 32 --late-ms 25 gateway.trace   # each burst

A burst is a run of requests each starting within --gap-ms of the one before.
"""

import argparse
import os


def read(path):
    with open(path) as f:
        return sorted(tuple(int(x) for x in line.split()) for line in f if line.strip())


def bursts(rows, gap_us):
    out, current = [], []
    for row in rows:
        if current and row[0] - current[-1][0] > gap_us:
            out.append(current)
            current = []
        current.append(row)
    if current:
        out.append(current)
    return out


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] / 1000 if values else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--gap-ms", type=float, default=5.0)
    ap.add_argument("--big", type=int, default=100, help="requests that make a burst big")
    ap.add_argument("--late-ms", type=float, default=None,
                    help="also list each burst: its size, median TTFT and requests slower than this")
    a = ap.parse_args()
    for path in a.traces:
        rows = read(path)
        if not rows:
            print(f"{path}: no requests")
            continue
        groups = bursts(rows, a.gap_ms * 1000)
        big = [r[1] for g in groups if len(g) >= a.big for r in g]
        rest = [r[1] for g in groups if len(g) < a.big for r in g]
        name = os.path.basename(path)
        print(
            f"{name}: {len(rows)} requests in {len(groups)} bursts; "
            f"in big bursts ({sum(len(g) >= a.big for g in groups)}, {len(big)} requests) "
            f"TTFT p50 {pct(big, .5):.2f} p90 {pct(big, .9):.2f} p99 {pct(big, .99):.2f} ms; "
            f"the rest p50 {pct(rest, .5):.2f} p90 {pct(rest, .9):.2f} p99 {pct(rest, .99):.2f} ms"
        )
        biggest = max(groups, key=len)
        n = len(biggest)
        if n >= 10:
            tenths = [biggest[i * n // 10:(i + 1) * n // 10] for i in range(10)]
            means = " ".join(f"{sum(r[1] for r in t) / len(t) / 1000:.2f}" for t in tenths)
            span = (biggest[-1][0] - biggest[0][0]) / 1000
            print(f"  biggest burst: {n} requests started over {span:.1f} ms; "
                  f"mean TTFT per tenth, in start order: {means}")
        if a.late_ms is not None:
            for g in groups:
                late = sum(r[1] > a.late_ms * 1000 for r in g)
                print(f"  burst at {(g[0][0] - rows[0][0]) / 1000:8.1f} ms: {len(g):4d} requests, "
                      f"TTFT p50 {pct([r[1] for r in g], .5):.2f} ms, {late} over {a.late_ms:g} ms")


if __name__ == "__main__":
    main()
