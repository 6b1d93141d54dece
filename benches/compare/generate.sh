#!/usr/bin/env bash
# Side-by-side generation benchmark: bpo (release build, flex backend) against Hugging Face
# transformers (PyTorch fp32) on SmolLM2-135M-Instruct, same GGUF, same chat prompts, greedy,
# fixed length, same thread count. Run on an idle machine.
#
#   benches/compare/generate.sh [BATCH] [NEW_TOKENS] [PYTHON]
#
# PYTHON must have torch, transformers, gguf and accelerate installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
batch=${1:-4}
new=${2:-64}
python=${3:-python3}
threads=2
repeats=3

cargo build --release -p bpo-cli >/dev/null
gguf=$(target/release/bpo fetch smollm2-135m)
prompts=("What is the capital of France?" "Write a short story about a robot."
  "Explain photosynthesis in one paragraph." "List three uses of a paperclip."
  "Why is the sky blue?" "Give me a recipe for pancakes." "What is 12 + 30?" "Describe the ocean.")
args=()
for i in $(seq 0 $((batch - 1))); do args+=(--prompt "${prompts[$((i % 8))]}"); done

# bpo prints "N tokens in S s" for the generation itself (model loading excluded, as on the
# Python side, which times model.generate only).
times=()
for _ in $(seq $repeats); do
  line=$(RAYON_NUM_THREADS=$threads target/release/bpo generate --model "$gguf" --chat --greedy --ignore-eos \
    --max-new-tokens "$new" --batch-size "$batch" "${args[@]}" 2>&1 >/dev/null | grep "tokens in")
  times+=("$(echo "$line" | awk '{print $4}')")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((repeats + 1) / 2))p")
tokens=$((batch * new))
echo "bpo          ${median} s median of $repeats ($tokens new tokens, $(echo "scale=1; $tokens / $median" | bc) tokens/s)"
OMP_NUM_THREADS=$threads "$python" benches/compare/generate_hf.py "$gguf" --batch "$batch" --new-tokens "$new" --threads $threads --repeats $repeats
