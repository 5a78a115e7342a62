#!/usr/bin/env bash
# The deterministic simulation (tests/sim), in release, with tokio's task scheduling seeded
# (--cfg tokio_unstable) so that a run is a function of its seed.
#
#   scripts/sim.sh                                  every workload, seeds 1..250 (1000 runs)
#   scripts/sim.sh --seeds 100000                   a soak run
#   scripts/sim.sh --seed 42 --workload bank        replays one seed (as a failure prints it)
#   scripts/sim.sh --seeds 20 --workload bank --plant rollback-undetermined
#                                                   shows a planted client bug being found
#
# Options: --seeds N, --first-seed N, --seed N (one seed), --workload NAME, --plant BUG,
# --threads N (simulations at once; default: the number of cores).
# Environment: CARGO_TARGET_DIR (the simulation builds in its own subdirectory `sim`, as its
# flags differ from the other builds').
set -euo pipefail

cd "$(dirname "$0")/.."
seeds=250
first=1
workload=""
plant=""
threads=$(nproc)
while [ $# -gt 0 ]; do
    case $1 in
    --seeds) seeds=$2; shift 2 ;;
    --first-seed) first=$2; shift 2 ;;
    --seed) first=$2; seeds=1; shift 2 ;;
    --workload) workload=$2; shift 2 ;;
    --plant) plant=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
    esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tikv-client-target}/sim"
export RUSTFLAGS="--cfg tokio_unstable"
export SIM_SEEDS=$seeds SIM_FIRST_SEED=$first SIM_WORKLOAD=$workload SIM_PLANT=$plant \
    SIM_THREADS=$threads
started=$SECONDS
cargo test -q --release --features simulation --test sim every_workload_passes -- --nocapture \
    | grep -v '^seed .*; ok: '
echo "simulation: $seeds seeds per workload in $((SECONDS - started)) s"
