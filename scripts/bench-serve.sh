#!/usr/bin/env bash
# Online-service benchmark: ingestion rate (service core and HTTP), time to detect each
# campaign on a time-ordered replay, and /v1/decide latency at a fixed rate on loopback.
#
#   scripts/bench-serve.sh [SCENARIO] [SCALE] [RATE] [SECONDS]   (defaults: small 1.0 20000 10)
#
# Built with the dev profile the tests use (dependencies and dg-serve at opt-level 2), so no
# second profile of DataFusion is compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/distillguard/target}"
# The whole workspace, as the tests build it: building one package alone would unify features
# differently and rebuild DataFusion.
cargo build -q --workspace --all-targets
"$CARGO_TARGET_DIR/debug/examples/bench" "${1:-small}" "${2:-1.0}" "${3:-20000}" "${4:-10}"
