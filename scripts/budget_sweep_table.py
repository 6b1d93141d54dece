#!/usr/bin/env python3
"""Tabulates a budget sweep (scripts/budget-sweep.sh): one `bpo experiment` per budget.

    budget_sweep_table.py OUT

Reads OUT/budget-*/results.json and prints markdown: per budget, each method's win rate with its
prompt-resampled 95% interval, per-seed win rates, gold score, held-out judge win rate, distinct-2, responses without a
sentence end, KL to the initial policy and pairs kept / steps;
then the paired comparisons between methods in both views of results.md (a cluster bootstrap over
prompts with p, and the mean per-seed difference with a t-interval over seeds).
"""
import glob
import json
import os
import sys

NAMES = {None: "initial", "offline": "offline DAP", "online_dap": "online DAP", "bpo": "BPO"}
COMPARISONS = [
    ("BPO (F=2) vs online DAP (F=2)", "BPO - online DAP"),
    ("BPO (F=2) vs offline DAP", "BPO - offline DAP"),
    ("online DAP (F=2) vs offline DAP", "online DAP - offline DAP"),
    ("BPO (F=2) vs initial policy", "BPO - initial"),
]


def pct(x):
    return f"{100 * x:.1f}"


def points(interval):
    return f"{100 * interval['value']:+.1f} [{100 * interval['low']:+.1f}, {100 * interval['high']:+.1f}]"


def p_value(p):
    return f"p <= {p:.3f}" if p <= 0.001 else f"p = {p:.3f}"


def main(out):
    results = []
    for path in glob.glob(os.path.join(out, "budget-*", "results.json")):
        with open(path) as f:
            r = json.load(f)
        results.append((r["config"]["online"]["budget"], r))
    if not results:
        sys.exit(f"budget_sweep_table: no {out}/budget-*/results.json")
    results.sort(key=lambda x: x[0])
    first = results[0][1]
    print(f"Budget sweep on `{first['config']['eval']['prompts']}` "
          f"({len(first['prompts'])} prompts), {first['config']['seeds']} seeds per method, "
          f"settings {json.dumps(first['config']['per_method'])}.\n")
    print("| budget | method | win rate [95% CI] | per seed | gold score | held-out judge | distinct-2 "
          "| no sentence end | KL to initial | pairs kept / steps |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for budget, r in results:
        for row in r["rows"]:
            name = NAMES[row["method"]]
            wr = row["win_rate"]
            per_seed = " / ".join(pct(s) for s in row["per_seed"]) if row["method"] else "-"
            kl = f"{row['kl_initial']:.1f}" if row["method"] and row.get("kl_initial") is not None else "-"
            pairs = f"{row['pairs']:.0f} / {row['steps']:.0f}" if row["method"] else "-"
            heldout = f"{pct(row['heldout_win_rate']['value'])}%" if row.get("heldout_win_rate") else "-"
            print(f"| {budget} | {name} | {pct(wr['value'])}% [{pct(wr['low'])}, {pct(wr['high'])}] "
                  f"| {per_seed} | {row['gold_score']:.3f} | {heldout} | {row['distinct_2']:.3f} "
                  f"| {pct(row['capped'])}% | {kl} | {pairs} |")
    print("\nDifferences in win-rate points: prompts (paired cluster bootstrap, p) and seeds "
          "(mean per-seed difference, 95% t-interval).\n")
    print("| budget | " + " | ".join(label for _, label in COMPARISONS) + " |")
    print("|---|" + "---|" * len(COMPARISONS))
    for budget, r in results:
        by_label = {c["label"]: c for c in r["comparisons"]}
        cells = []
        for key, _ in COMPARISONS:
            c = by_label[key]
            seeds = f"; seeds {points(c['over_seeds'])}" if c.get("over_seeds") else ""
            cells.append(f"{points(c['difference'])}, {p_value(c['p_value'])}{seeds}")
        print(f"| {budget} | " + " | ".join(cells) + " |")
    total = sum(r["seconds"] for _, r in results)
    print(f"\nWall time of the sweep: {total / 60:.0f} min.")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
