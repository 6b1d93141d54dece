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
gguf=$(cargo run -q -p bpo-cli -- fetch smollm2-135m)
RAYON_NUM_THREADS=$threads cargo bench -q --bench generation -- --noplot smollm2 2>&1 |
  awk -v key=thrpt: '$1 ~ /^generate\// {name=$1} {for (i = 1; i <= NF; i++) if ($i == key && name) {print "bpo          " name "  median " $(i+3) " " $(i+4); name=""}}'
OMP_NUM_THREADS=$threads "$python" benches/compare/generate_hf.py "$gguf" --threads $threads --repeats 5
