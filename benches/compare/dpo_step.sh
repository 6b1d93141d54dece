#!/usr/bin/env bash
# Side-by-side DPO step benchmark: bpo (criterion, flex backend) against a hand-written PyTorch
# fp32 step, same shapes, same thread count, and each side's peak RSS. Run on an idle machine.
#
#   [ROUNDS=N] benches/compare/dpo_step.sh [PYTHON]
#
# PYTHON must have torch, transformers, gguf and accelerate installed; /usr/bin/time (Debian:
# `time`) measures the peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-python3}
threads=2
source benches/compare/bench_binary.sh
target=${CARGO_TARGET_DIR:-target}
bench=$(bench_binary dpo_step "$python")
cargo build -q --workspace
gguf=$("$target"/debug/bpo fetch smollm2-135m)
rss=$(mktemp)
trap 'rm -f "$rss"' EXIT
# ROUNDS (default 1) alternates the two sides that many times, so that the machine's drift
# between minutes shows in the per-round lines instead of in one ratio.
for round in $(seq 1 "${ROUNDS:-1}"); do
  [ "${ROUNDS:-1}" -gt 1 ] && echo "round $round"
  rm -rf "$target"/criterion/dpo_step
  # Peak resident memory of each side's whole process (every row, the largest one dominates).
  RAYON_NUM_THREADS=$threads /usr/bin/time -f %M -o "$rss" "$bench" --bench --noplot > /dev/null 2>&1
  echo "bpo      peak RSS $(( $(cat "$rss") / 1024 )) MiB"
  # Criterion keeps each benchmark's median in target/criterion/<id>/new/estimates.json.
  find "$target"/criterion/dpo_step -path "*/new/estimates.json" | sort | while read -r f; do
    id=${f#"$target"/criterion/}; id=${id%/new/estimates.json}
    "$python" -c "import json,sys; m=json.load(open(sys.argv[1]))['median']['point_estimate']/1e9; print('bpo      %-40s %8.3f s median' % (sys.argv[2], m))" "$f" "$id"
  done
  OMP_NUM_THREADS=$threads /usr/bin/time -f %M -o "$rss" \
    "$python" benches/compare/dpo_step.py "$gguf" --threads $threads --repeats 10
  echo "pytorch  peak RSS $(( $(cat "$rss") / 1024 )) MiB"
done
