#!/usr/bin/env bash
# The frontier on dev (README: Results, docs/results/frontier/): offline DAP, online DAP and BPO
# each at beta 0.03, 0.1, 0.3 and 1.0 with F = 2, online DAP and BPO also at F = 4 with beta 0.1
# and 0.3 (the betas equal tuning chose, around the frontiers' knee); budget 192, learning rate
# 4e-3 for every method (their tuned value), 200 genre-stratified dev prompts, training seeds
# 0..SEEDS. Compared at matched KL to the initial policy.
#
#   scripts/frontier.sh [OUT] [SEEDS] [BPO]     default: runs/frontier 3 (cargo run)
#
# Runs one seed more at a time (--seeds 1, 2, ...), each a complete report (OUT/seeds-N.md);
# finished runs are reused, so stopping and rerunning continues where it stopped. The finished
# runs' results are also kept in docs/results/frontier/cells (committed while the grid is
# incomplete), from which a fresh clone continues. BPO: a bpo binary to run instead of
# `cargo run` (a copy, so that rebuilding meanwhile changes nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/frontier}
seeds=${2:-3}
cells=docs/results/frontier/cells
if [ $# -ge 3 ]; then bpo=("$3"); else bpo=(cargo run -q -p bpo-cli --); fi
mkdir -p "$out"
# Copies every finished run's result.json and the initial evaluation from $1 to $2; with a
# third argument, keeps the files $2 has.
copy_results() {
    (cd "$1" && find . -name result.json -o -name initial.json) | while read -r f; do
        mkdir -p "$2/$(dirname "$f")"
        if [ $# -lt 3 ] || [ ! -f "$2/$f" ]; then cp "$1/$f" "$2/$f"; fi
    done
}
if [ -d "$cells" ]; then copy_results "$cells" "$out" keep; fi
for s in $(seq 1 "$seeds"); do
    echo "seeds $s: $(date -u +%H:%M:%S) start"
    "${bpo[@]}" experiment --frontier --seeds "$s" --phases 2,4 --out "$out" \
        --set online.budget=192 --set online.optim.lr=0.004 \
        --set eval.prompts=sentiment:dev --set eval.limit=200 \
        --set 'frontier.betas=[0.03, 0.1, 0.3, 1.0]' \
        --set 'frontier.more_phases_betas=[0.1, 0.3]' > /dev/null
    cp "$out/results.md" "$out/seeds-$s.md"
    mkdir -p "$cells"
    copy_results "$out" "$cells"
    echo "seeds $s: $(date -u +%H:%M:%S) done"
done
