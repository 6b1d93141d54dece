#!/usr/bin/env bash
# The annotation-budget sweep on dev (README: Results): offline DAP, online DAP (F = 2) and BPO
# (F = 2) at each budget, every method at its tuned setting from the headline run (lr 4e-3; beta
# 0.3 for offline DAP and BPO, 0.1 for online DAP), evaluated on 200 genre-stratified dev
# prompts (the tuning prompts; the training seeds 0.. differ from the tuning seed 1000).
#
#   scripts/budget-sweep.sh [OUT] [SEEDS] [BUDGETS...]     default: runs/budget-sweep 2 96 192 384
#
# One `bpo experiment` per budget into OUT/budget-B, then OUT/sweep.md from every results.json
# (scripts/budget_sweep_table.py). A finished budget (its results.json exists) is not rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/budget-sweep}
seeds=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
budgets=("$@")
[ ${#budgets[@]} -gt 0 ] || budgets=(96 192 384)
mkdir -p "$out"
for b in "${budgets[@]}"; do
    dir="$out/budget-$b"
    if [ -f "$dir/results.json" ]; then
        echo "budget $b: done already ($dir/results.json)"
        continue
    fi
    echo "budget $b: $(date -u +%H:%M:%S) start"
    cargo run -q -p bpo-cli -- experiment --seeds "$seeds" --out "$dir" \
        --set online.budget="$b" \
        --set eval.prompts=sentiment:dev --set eval.limit=200 \
        --set per_method.offline.lr=0.004 --set per_method.offline.beta=0.3 \
        --set per_method.online_dap.lr=0.004 --set per_method.online_dap.beta=0.1 \
        --set per_method.bpo.lr=0.004 --set per_method.bpo.beta=0.3
done
python3 scripts/budget_sweep_table.py "$out" > "$out/sweep.md.tmp"
mv "$out/sweep.md.tmp" "$out/sweep.md"
cat "$out/sweep.md"
