#!/usr/bin/env bash
# Simulator benchmark: writes a scenario as Parquet and prints wall time, exchanges/s,
# output size and peak memory.
#
#   scripts/bench-simulate.sh [SCENARIO] [SCALE] [DIR]   (defaults: seed 1.0 ~/.cache/distillguard/sim-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-seed}
scale=${2:-1.0}
dir=${3:-$HOME/.cache/distillguard/sim-bench}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/distillguard/target}"
cargo bench -q -p dg-sim --bench simulate -- "$scenario" "$scale" "$dir"
