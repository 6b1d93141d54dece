#!/usr/bin/env bash
# Creates (or reuses) the Python venv for bpo's interoperability checks and prints its python.
#
#   PY=$(scripts/setup-venv.sh "$HOME/.cache/bpo-ci/venv")
#   "$PY" scripts/check_interop.py ...
#
# Idempotent: the venv keeps a stamp (hash of scripts/requirements-interop.txt, of this script
# and of the base interpreter's version); while it matches, this is a no-op that prints the path.
# Otherwise the venv is deleted and rebuilt from the pinned lock with `pip install --no-deps`
# (see the requirements file for why torch's CUDA libraries are there and triton is not).
# The stamp is written last, so an interrupted install is redone on the next run.
# Only the python path goes to stdout; progress goes to stderr.
# Environment: PYTHON (base interpreter, default python3).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
venv=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
req="$here/requirements-interop.txt"
base_python=${PYTHON:-python3}

want=$( {
    sha256sum < "$req"
    sha256sum < "${BASH_SOURCE[0]}"
    "$base_python" -c 'import sys; print(sys.version)'
} | sha256sum | cut -d' ' -f1)
stamp="$venv/.bpo-interop-stamp"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c '' 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi

# Never delete a directory this script did not make: only an empty one or a venv.
if [ -e "$venv" ]; then
    if [ -f "$venv/pyvenv.cfg" ] || [ -z "$(ls -A "$venv" 2>/dev/null)" ]; then
        echo "setup-venv: requirements or interpreter changed (or unfinished install): rebuilding $venv" >&2
        rm -rf "$venv"
    else
        echo "setup-venv: $venv exists and is not a venv; refusing to replace it" >&2
        exit 1
    fi
fi

start=$SECONDS
echo "setup-venv: creating $venv with $("$base_python" --version 2>&1)" >&2
mkdir -p "$(dirname "$venv")"
"$base_python" -m venv "$venv"
# --no-deps: the file is a complete lock, and it leaves out torch's GPU-only requirements.
# --no-cache-dir: the venv itself is the cache; pip's would keep a second ~2.5 GB of wheels.
"$venv/bin/python" -m pip install --no-deps --only-binary=:all: --no-cache-dir \
    --disable-pip-version-check --no-input --retries 5 -r "$req" >&2
"$venv/bin/python" -c 'import torch, transformers, peft, datasets, trl, vaderSentiment' >&2
echo "$want" > "$stamp"
echo "setup-venv: ready in $((SECONDS - start)) s ($(du -sh "$venv" | cut -f1))" >&2
echo "$venv/bin/python"
