# Sourced by the side-by-side scripts. `bench_binary NAME PYTHON` builds the workspace's benches
# in its own build (dev profile, optimised; the same build as the tests: `cargo bench` would
# start a separate release build of Burn) and prints the path of bench NAME's executable.
# Cargo names it like any test binary (`target/debug/deps/NAME-HASH`, shared with a test of the
# same name), so the path comes from cargo's own build report.
bench_binary() {
  cargo build -q --workspace --benches --message-format=json | "$2" -c '
import json, sys
name = sys.argv[1]
found = [m["executable"] for m in map(json.loads, sys.stdin)
         if m.get("reason") == "compiler-artifact" and m["target"]["name"] == name
         and "bench" in m["target"]["kind"] and m.get("executable")]
if not found:
    sys.exit(f"no bench named {name} in the workspace")
print(found[0])
' "$1"
}
