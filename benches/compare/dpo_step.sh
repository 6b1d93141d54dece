#!/usr/bin/env bash
# Side-by-side DPO step benchmark: bpo (criterion, flex backend) against a hand-written PyTorch
# fp32 step, same shapes, same thread count. Run on an idle machine.
#
#   benches/compare/dpo_step.sh [PYTHON]
#
# PYTHON must have torch, transformers, gguf and accelerate installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-python3}
threads=2
source benches/compare/bench_binary.sh
target=${CARGO_TARGET_DIR:-target}
bench=$(bench_binary dpo_step "$python")
cargo build -q --workspace
gguf=$("$target"/debug/bpo fetch smollm2-135m)
rm -rf "$target"/criterion/dpo_step
RAYON_NUM_THREADS=$threads "$bench" --bench --noplot > /dev/null 2>&1
# Criterion keeps each benchmark's median in target/criterion/<id>/new/estimates.json.
find "$target"/criterion/dpo_step -path "*/new/estimates.json" | sort | while read -r f; do
  id=${f#"$target"/criterion/}; id=${id%/new/estimates.json}
  "$python" -c "import json,sys; m=json.load(open(sys.argv[1]))['median']['point_estimate']/1e9; print('bpo      %-40s %8.3f s median' % (sys.argv[2], m))" "$f" "$id"
done
OMP_NUM_THREADS=$threads "$python" benches/compare/dpo_step.py "$gguf" --threads $threads --repeats 10
