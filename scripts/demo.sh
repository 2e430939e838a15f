#!/usr/bin/env bash
# The main job on built-in defaults, no input needed: simulate the `small` scenario, then
# check it and the committed example against the data contract. Builds exactly as the test
# suite does (same target directory and feature set), so one build serves both.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/distillguard/target}"
cargo build --workspace --all-targets --locked
dg="$CARGO_TARGET_DIR/debug/distillguard"
out="${1:-$CARGO_TARGET_DIR/demo}"
printf '\n==> distillguard check on the committed example (examples/tiny)\n'
"$dg" check --exchanges examples/tiny/exchanges.jsonl --accounts examples/tiny/accounts.jsonl \
    --releases examples/tiny/model_releases.jsonl --quarantine "$out-quarantine.jsonl"
printf '\n==> distillguard simulate --scenario small --out %s\n' "$out"
"$dg" simulate --scenario small --out "$out" --force
printf '\n==> distillguard check on the simulated data\n'
"$dg" check --exchanges "$out/exchanges" --accounts "$out/accounts.parquet" \
    --releases "$out/model_releases.parquet" --labels "$out/labels.parquet" \
    --quarantine "$out/quarantine.jsonl"
printf '\nQuery it yourself: %s sql "SELECT ..." --exchanges %s/exchanges --labels %s/labels.parquet\n' "$dg" "$out" "$out"
