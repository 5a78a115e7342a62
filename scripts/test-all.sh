#!/usr/bin/env bash
# Every check CI runs, in one command. Installs what it needs first (each step is skipped when
# already done), then: formatting, generated-code drift, clippy on native and wasm32, the
# native tests, the deterministic simulation, the docs, the proto wire check, the wasm builds
# and the browser tests.
#
#   bash scripts/test-all.sh
#
# Environment: CARGO_TARGET_DIR (default: ~/.cache/tikv-client-target, shared across clones so
# a second run is warm), SHARED_DIR (default: ../shared, where the wire-check tool lives).
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tikv-client-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
SHARED_DIR="${SHARED_DIR:-../shared}"
WASM=wasm32-unknown-unknown
started=$SECONDS

step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - started))" "$*"; }

# ---------------------------------------------------------------- install (idempotent)
step "install: rust components and the wasm32 target"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target list --installed | grep -qx "$WASM" || rustup target add "$WASM"

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    step "install: Debian chromium and chromium-driver"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
fi

wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wb_version"; then
    step "install: wasm-bindgen-cli $wb_version (matches Cargo.lock)"
    # Not --locked: its lockfile names a crate version the registry mirror lacks.
    cargo install wasm-bindgen-cli --version "$wb_version"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    step "install: cargo-nextest"
    cargo install cargo-nextest --locked
fi

if ! python3 -c 'import grpc_tools' 2>/dev/null; then
    step "install: grpcio-tools for the wire check"
    python3 -m pip install -q grpcio-tools
fi

# ---------------------------------------------------------------- static checks
step "cargo fmt --check"
cargo fmt --all -- --check

step "generated code matches proto/ (cargo run -p tikv-client-codegen)"
cargo run -q -p tikv-client-codegen
if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
    if [ -n "$(git status --porcelain -- src/generated)" ]; then
        git status --short -- src/generated
        git diff --stat -- src/generated
        echo "src/generated/ is stale: run cargo run -p tikv-client-codegen and commit" >&2
        exit 1
    fi
fi

step "clippy, native, all features"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "clippy, wasm32 (wasm, metrics, tracing)"
cargo clippy -p tikv-client -p tikv-client-wasm --target "$WASM" --no-default-features \
    --features tikv-client/wasm,tikv-client/metrics,tikv-client/tracing --all-targets -- -D warnings

step "default native build"
cargo build --all-targets

step "wrong feature combinations fail with our message"
expect_compile_error() {
    local expected=$1
    shift
    local out
    if out=$(cargo check -p tikv-client --target "$WASM" "$@" 2>&1); then
        echo "expected cargo check $* to fail" >&2
        exit 1
    fi
    grep -qF "$expected" <<<"$out" || { echo "$out" | tail -20 >&2; exit 1; }
    echo "ok: $* -> $expected"
}
expect_compile_error 'needs the `wasm` feature' --no-default-features
expect_compile_error 'runs on native targets only' --no-default-features --features wasm,testutils

# ---------------------------------------------------------------- native tests
step "native tests (nextest, all features)"
cargo nextest run --workspace --all-features --no-fail-fast

step "deterministic simulation: 250 seeded fault schedules for each of 4 workloads (scripts/sim.sh)"
bash scripts/sim.sh --seeds 250

step "doc tests"
cargo test --doc --all-features -p tikv-client

step "docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --all-features --no-deps -p tikv-client

step "proto wire check against upstream kvproto"
wire=$(python3 "$SHARED_DIR/tools/proto_wire_check.py" proto/)
echo "$wire" | tail -n 1
checked=$(echo "$wire" | tail -n 1 | sed -n 's/.*: \([0-9][0-9]*\) messages.*/\1/p')
[ "${checked:-0}" -ge 180 ] || { echo "wire check covered only ${checked:-0} messages (< 180)" >&2; exit 1; }

# ---------------------------------------------------------------- wasm
step "wasm builds: the library with every wasm feature, and the JS bindings"
cargo build -p tikv-client --target "$WASM" --no-default-features --features wasm,metrics,tracing
cargo build -p tikv-client-wasm --target "$WASM"

step "browser tests: headless Chromium against tikv-mock over gRPC-web"
cargo build -q --features testutils --bin tikv-mock
mock_out=$(mktemp)
cluster_id=$((RANDOM * 32768 + RANDOM + 1))
"$CARGO_TARGET_DIR/debug/tikv-mock" --pd-port 0 --cluster-id "$cluster_id" --txn-split "browser/k3" >"$mock_out" &
mock_pid=$!
trap 'kill $mock_pid 2>/dev/null || true; rm -f "$mock_out"' EXIT
for _ in $(seq 100); do
    [ -s "$mock_out" ] && break
    kill -0 "$mock_pid" 2>/dev/null || { echo "tikv-mock exited early" >&2; exit 1; }
    sleep 0.1
done
pd=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["pd"])' "$mock_out")
echo "tikv-mock ready: $(head -n 1 "$mock_out")"
TIKV_MOCK_PD="$pd" TIKV_MOCK_CLUSTER_ID="$cluster_id" \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    CHROMEDRIVER="$(command -v chromedriver)" \
    cargo test --target "$WASM" --no-default-features --features wasm --test wasm

step "JavaScript package: size-optimised wasm (wasm-opt from npm binaryen), Node and web builds"
(cd js && npm install --no-audit --no-fund --silent)
cargo build -q -p tikv-client-wasm --target "$WASM" --profile wasm-release
wasm="$CARGO_TARGET_DIR/$WASM/wasm-release/tikv_client_wasm.wasm"
wasm-bindgen --target nodejs --out-dir js/pkg-node "$wasm"
wasm-bindgen --target web --out-dir js/pkg-web "$wasm"
# Debian's binaryen corrupts modules (see the toolchain notes); npm's binaryen is used.
js/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals \
    js/pkg-web/tikv_client_wasm_bg.wasm -o js/pkg-web/tikv_client_wasm_bg.wasm
cp js/pkg-web/tikv_client_wasm_bg.wasm js/pkg-node/tikv_client_wasm_bg.wasm
raw_size=$(stat -c %s js/pkg-web/tikv_client_wasm_bg.wasm)
gz_size=$(gzip -9c js/pkg-web/tikv_client_wasm_bg.wasm | wc -c)
echo "wasm: $raw_size bytes, $gz_size gzipped"
[ "$gz_size" -le 600000 ] || { echo "the gzipped wasm exceeds 600 KB" >&2; exit 1; }
(cd js && npx tsc --noEmit -p . && npm pack --dry-run --json >/tmp/tikv-npm-pack.json)
python3 - <<'PY'
import json
files = {f["path"] for f in json.load(open("/tmp/tikv-npm-pack.json"))[0]["files"]}
for target in ("pkg-node", "pkg-web"):
    for name in ("tikv_client_wasm.js", "tikv_client_wasm.d.ts", "tikv_client_wasm_bg.wasm"):
        assert f"{target}/{name}" in files, f"{target}/{name} missing from the npm package"
print(f"npm package: {len(files)} files, both targets")
PY

step "JavaScript tests: the API in Node, the example page in headless Chromium"
WASM_PKG="$PWD/js/pkg-node/tikv_client_wasm.js" TIKV_MOCK_PD="$pd" CHROMIUM="$(command -v chromium)" \
    node --test js/test/

step "all checks passed in $((SECONDS - started)) s"
