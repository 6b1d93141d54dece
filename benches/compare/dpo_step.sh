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
gguf=$(cargo run -q -p bpo-cli -- fetch smollm2-135m)
RAYON_NUM_THREADS=$threads cargo bench -q --bench dpo_step -- --noplot 2>&1 |
  awk -v key=time: '$1 ~ /^dpo_step\// {name=$1} {for (i = 1; i <= NF; i++) if ($i == key && name) {print "bpo      " name "  median " $(i+3) " " $(i+4); name=""}}'
OMP_NUM_THREADS=$threads "$python" benches/compare/dpo_step.py "$gguf" --threads $threads --repeats 10
