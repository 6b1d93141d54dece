#!/usr/bin/env python3
"""Seed-level view of a `bpo experiment` results.json: each method's win rate per training seed,
and for every comparison the mean of the per-seed differences with a 95% t-interval over seeds
(seed s of two methods paired). results.md's intervals resample prompts and describe the trained
checkpoints; these describe the training procedure, whose seed-to-seed spread they include.

Usage: python3 scripts/seed_level.py runs/experiment/results.json
"""
import json
import math
import statistics
import sys

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def interval(diffs):
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return mean, float("nan"), float("nan")
    half = T95[min(len(diffs), 31) - 2] * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def main():
    results = json.load(open(sys.argv[1]))
    initial = results["initial"]["win_rate"]["value"]
    cells = {}
    for run in results["runs"]:
        key = (run["loss"], run["method"], run["phases"])
        cells.setdefault(key, {})[run["seed"]] = run["report"]["win_rate"]["value"]
    print(f"initial policy: {100 * initial:.1f}%")
    for key, seeds in cells.items():
        per_seed = " / ".join(f"{100 * seeds[s]:.1f}" for s in sorted(seeds))
        m, lo, hi = interval([100 * (seeds[s] - initial) for s in sorted(seeds)])
        print(f"{'/'.join(map(str, key))}: {per_seed}; vs initial {m:+.1f} points [{lo:+.1f}, {hi:+.1f}]")
    keys = list(cells)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if a[0] != b[0]:
                continue
            seeds = sorted(set(cells[a]) & set(cells[b]))
            m, lo, hi = interval([100 * (cells[a][s] - cells[b][s]) for s in seeds])
            print(f"{'/'.join(map(str, a))} vs {'/'.join(map(str, b))}: {m:+.1f} points "
                  f"[{lo:+.1f}, {hi:+.1f}] over {len(seeds)} seeds")


if __name__ == "__main__":
    main()
