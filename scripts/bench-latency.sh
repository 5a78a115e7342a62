#!/usr/bin/env bash
# Raw get latency of the same client natively (release build), in Node and in headless
# Chromium (the size-optimised wasm build), against one tikv-mock. Run after
# scripts/test-all.sh has built js/pkg-node and js/pkg-web:
#
#   bash scripts/bench-latency.sh        (GETS=N sets the number of gets, default 2000)
#
# Prints each runtime's mean, p50 and p99 in microseconds and its ratio to native.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tikv-client-target}"
[ -f js/pkg-web/tikv_client_wasm_bg.wasm ] || { echo "run scripts/test-all.sh first (builds js/pkg-*)" >&2; exit 1; }

cargo build -q --release --features testutils --bin tikv-mock
cargo bench -q --bench latency --no-run
out=$(mktemp)
"$CARGO_TARGET_DIR/release/tikv-mock" --pd-port 0 >"$out" &
mock=$!
trap 'kill $mock 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do [ -s "$out" ] && break; sleep 0.1; done
pd=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["pd"])' "$out")
export TIKV_MOCK_PD="$pd"

results=$( (cargo bench -q --bench latency; node js/bench/latency.mjs) | grep '^{')
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in sys.argv[1].splitlines()]
native = next(r for r in rows if r["runtime"] == "native")
print(f"{'runtime':10} {'gets':>6} {'mean µs':>9} {'p50 µs':>8} {'p99 µs':>8} {'mean / native':>14}")
for r in rows:
    print(f"{r['runtime']:10} {r['gets']:>6} {r['mean_us']:>9} {r['p50_us']:>8} {r['p99_us']:>8} {r['mean_us'] / native['mean_us']:>13.2f}x")
PY
