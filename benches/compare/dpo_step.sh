#!/usr/bin/env bash
# Side-by-side DPO step benchmark: bpo (criterion, flex backend) against a hand-written PyTorch
# fp32 step, same shapes, same thread count, and each side's peak RSS. Run on an idle machine.
#
#   [ROUNDS=N] [LONG=1] [BF16=1] benches/compare/dpo_step.sh [PYTHON]
#
# LONG=1 runs the long rows instead (SmolLM2, LoRA r16, up to one pair of 1024 + 1024 tokens;
# `dpo_step.py --list`), each row in its own process on both sides, so each peak RSS is that
# row's; PyTorch takes 3 timed steps there (REPEATS), criterion its minimum of 10. BF16=1 times
# bpo's long rows twice, f32 then with bf16 products (`run.bf16_products`), PyTorch in f32.
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
# Criterion keeps each benchmark's median in target/criterion/<id>/new/estimates.json.
median_s() {
  "$python" -c "import json,sys; print('%.3f' % (json.load(open(sys.argv[1]))['median']['point_estimate'] / 1e9))" "$1"
}
# ROUNDS (default 1) alternates the two sides that many times, so that the machine's drift
# between minutes shows in the per-round lines instead of in one ratio.
precisions=f32
[ "${BF16:-}" = 1 ] && precisions="f32 bf16"
if [ -n "${LONG:-}" ]; then
  for round in $(seq 1 "${ROUNDS:-1}"); do
    [ "${ROUNDS:-1}" -gt 1 ] && echo "round $round"
    "$python" benches/compare/dpo_step.py "$gguf" --list | while read -r row; do
      for precision in $precisions; do
        rm -rf "$target"/criterion/dpo_step
        bf16=()
        [ "$precision" = bf16 ] && bf16=(BPO_BENCH_BF16=1)
        env "${bf16[@]}" BPO_BENCH_LONG=1 RAYON_NUM_THREADS=$threads /usr/bin/time -f %M -o "$rss" \
          "$bench" --bench --noplot --exact "dpo_step/$row" > /dev/null 2>&1
        f=$(find "$target"/criterion/dpo_step -path "*/new/estimates.json")
        printf 'bpo %-4s %-28s %8s s/step median, peak RSS %s MiB\n' "$precision" "$row" \
          "$(median_s "$f")" $(( $(cat "$rss") / 1024 ))
      done
      OMP_NUM_THREADS=$threads /usr/bin/time -f %M -o "$rss" "$python" benches/compare/dpo_step.py \
        "$gguf" --threads $threads --repeats "${REPEATS:-3}" --long --row "$row"
      echo "pytorch  $row peak RSS $(( $(cat "$rss") / 1024 )) MiB"
    done
  done
  exit 0
fi
for round in $(seq 1 "${ROUNDS:-1}"); do
  [ "${ROUNDS:-1}" -gt 1 ] && echo "round $round"
  rm -rf "$target"/criterion/dpo_step
  # Peak resident memory of each side's whole process (every row, the largest one dominates).
  RAYON_NUM_THREADS=$threads /usr/bin/time -f %M -o "$rss" "$bench" --bench --noplot > /dev/null 2>&1
  echo "bpo      peak RSS $(( $(cat "$rss") / 1024 )) MiB"
  find "$target"/criterion/dpo_step -path "*/new/estimates.json" | sort | while read -r f; do
    id=${f#"$target"/criterion/}; id=${id%/new/estimates.json}
    printf 'bpo      %-40s %8s s median\n' "$id" "$(median_s "$f")"
  done
  OMP_NUM_THREADS=$threads /usr/bin/time -f %M -o "$rss" \
    "$python" benches/compare/dpo_step.py "$gguf" --threads $threads --repeats 10
  echo "pytorch  peak RSS $(( $(cat "$rss") / 1024 )) MiB"
done
