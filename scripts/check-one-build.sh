#!/usr/bin/env bash
# Checks that the README's two commands share one build of the Burn stack: the `burn*` library
# files (their names carry cargo's metadata hash, which changes with the resolved features) that
# `cargo build -p bpo-cli` uses are the very files `cargo test --workspace` uses. Run after
# both have been built (it then compiles nothing); exits 1 and prints the difference otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

burn_libs() {
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"].startswith("burn"):
        for f in m["filenames"]:
            if f.endswith(".rlib"):
                print(f)
' | sort -u
}

cli=$(cargo build -p bpo-cli --message-format=json 2>/dev/null | burn_libs)
tests=$(cargo test --workspace --no-run --message-format=json 2>/dev/null | burn_libs)
if [ -z "$cli" ]; then
    echo "check-one-build: cargo reported no burn libraries" >&2
    exit 1
fi
if [ "$cli" != "$tests" ]; then
    echo "check-one-build: \`cargo build -p bpo-cli\` and \`cargo test --workspace\` use different Burn builds:" >&2
    diff <(echo "$cli") <(echo "$tests") >&2 || true
    exit 1
fi
echo "one build: \`cargo build -p bpo-cli\` and \`cargo test --workspace\` share the same $(echo "$cli" | wc -l) burn libraries"
