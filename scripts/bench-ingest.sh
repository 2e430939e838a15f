#!/usr/bin/env bash
# Ingest benchmark: JSON Lines and Parquet throughput and peak memory on generated exchanges.
#
#   scripts/bench-ingest.sh [ROWS] [DIR]      (defaults: 5000000 rows, ~/.cache/distillguard/bench)
#
# Each measurement runs in its own process (one core: one file is read by one thread), so
# peak RSS is per run; reading a fifth of the file shows whether memory grows with input.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-5000000}
dir=${2:-$HOME/.cache/distillguard/bench}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/distillguard/target}"
bench() { cargo bench -q -p dg-contract --bench ingest -- "$@"; }
if [ ! -f "$dir/rows-$rows" ]; then
    echo "generating $rows rows in $dir ..."
    rm -rf "$dir" && mkdir -p "$dir"
    bench gen "$dir" "$rows"
    touch "$dir/rows-$rows"
fi
ls -l "$dir"/exchanges.* | awk '{printf "%-60s %8.1f MB\n", $NF, $5/1e6}'
echo "--- whole files"
bench read "$dir/exchanges.jsonl"
bench read "$dir/exchanges.parquet"
echo "--- first fifth (peak memory must not grow with input size)"
bench read "$dir/exchanges.jsonl" $((rows / 5))
bench read "$dir/exchanges.parquet" $((rows / 5))
