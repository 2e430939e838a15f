#!/usr/bin/env bash
# The main job on built-in defaults, no input needed: `distillguard demo` simulates the
# `small` scenario, analyzes it, evaluates the verdicts against the simulator's ground truth
# and prints a summary. Builds exactly as the test suite does (same target directory and
# feature set), so one build serves both.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/distillguard/target}"
cargo build --workspace --all-targets --locked
dg="$CARGO_TARGET_DIR/debug/distillguard"
out="${1:-$CARGO_TARGET_DIR/demo}"
"$dg" demo --out "$out"
