#!/usr/bin/env bash
# Side-by-side generation benchmark: bpo (criterion, flex backend) against Hugging Face
# transformers (PyTorch fp32) on SmolLM2-135M-Instruct from the same GGUF: 16-token prompts,
# 64 new tokens (EOS ignored), batch 1 greedy and batch 8 sampling, same thread count. Run on an
# idle machine.
#
#   benches/compare/generate.sh [PYTHON]
#
# PYTHON must have torch, transformers, gguf and accelerate installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-python3}
threads=2
source benches/compare/bench_binary.sh
target=${CARGO_TARGET_DIR:-target}
bench=$(bench_binary generation "$python")
cargo build -q --workspace
gguf=$("$target"/debug/bpo fetch smollm2-135m)
rm -rf "$target"/criterion/generate
RAYON_NUM_THREADS=$threads "$bench" --bench --noplot > /dev/null 2>&1
# Criterion keeps each benchmark's median in target/criterion/<id>/new/estimates.json.
find "$target"/criterion/generate -path "*/new/estimates.json" | sort | while read -r f; do
  id=${f#"$target"/criterion/}; id=${id%/new/estimates.json}
  "$python" -c "import json,sys; m=json.load(open(sys.argv[1]))['median']['point_estimate']/1e9; print('bpo          %-40s %8.3f s median' % (sys.argv[2], m))" "$f" "$id"
done
OMP_NUM_THREADS=$threads "$python" benches/compare/generate_hf.py "$gguf" --threads $threads --repeats 5
