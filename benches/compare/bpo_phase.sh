#!/usr/bin/env bash
# Side-by-side BPO phase: one collection phase at the experiment's settings (SmolLM2-135M, 48
# prompts, 2 samples each, 32 sequences (16 prompts x 2) per generation call, 24 new tokens,
# top-k 50, VADER, DPO beta 0.1 on LoRA r16 of blocks 20-29, 8 pairs a step), done by `bpo online` (behavior
# log-probs recorded while sampling, so no reference pass) and by transformers + PyTorch the
# usual way (generate, score, a reference forward, DPO steps): bpo_phase.py. Same prompts, same
# thread count, medians of REPEATS runs each. Run on an idle machine.
#
#   benches/compare/bpo_phase.sh [PYTHON] [REPEATS]
#
# PYTHON must have torch, transformers, gguf and vaderSentiment installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-python3}
repeats=${2:-3}
threads=2
target=${CARGO_TARGET_DIR:-target}
cargo build -q -p bpo-cli
bpo="$target"/debug/bpo
gguf=$("$bpo" fetch smollm2-135m)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# 48 prompts spread over the training split (it is ordered by genre).
awk 'NR % 100 == 1 && n++ < 48' data/sentiment/train.jsonl > "$work/prompts.jsonl"
cat > "$work/phase.toml" <<EOF
model = "$gguf"
device = "flex"
prompts = "$work/prompts.jsonl"
max_prompt_tokens = 64
budget = 48
phases = 1
[sampling]
max_new_tokens = 24
batch_size = 32
[reference]
mode = "behavior"
[lora]
rank = 16
alpha = 32.0
layers = [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]
[optim]
lr = 3e-3
[run]
batch_size = 8
kl_metrics = false
save_model = false
EOF
for repeat in $(seq 1 "$repeats"); do
  RAYON_NUM_THREADS=$threads "$bpo" online --config "$work/phase.toml" \
    --set run.seed="$repeat" --set run.out="\"$work/run-$repeat\"" > /dev/null 2>&1
done
"$python" - "$work" "$repeats" <<'EOF'
import json, statistics, sys
work, repeats = sys.argv[1], int(sys.argv[2])
phases = [json.loads(open(f"{work}/run-{r}/phases.jsonl").readline()) for r in range(1, repeats + 1)]
parts = {"sampling": "sample_seconds", "reference": "reference_seconds", "training": "train_seconds"}
for part, key in parts.items():
    print(f"bpo      {part:10s} {statistics.median(p[key] for p in phases):8.2f} s median")
total = statistics.median(sum(p[k] for k in parts.values()) for p in phases)
pairs = statistics.median(p["pairs"] for p in phases)
print(f"bpo      {'phase':10s} {total:8.2f} s median of {repeats} ({pairs:.0f} pairs)")
EOF
OMP_NUM_THREADS=$threads "$python" benches/compare/bpo_phase.py "$gguf" "$work/prompts.jsonl" \
  --threads $threads --repeats "$repeats"
