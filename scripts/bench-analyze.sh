#!/usr/bin/env bash
# Analyze benchmark against DuckDB: both read every exchange of a scenario written as Parquet
# on the same cores; DuckDB computes bare per-account aggregates (count, token sums, distinct
# addresses, a hash of each prompt), distillguard runs the full `analyze`. Prints wall time,
# exchanges/s, prompt bytes/s, peak memory and the throughput ratio.
#
#   scripts/bench-analyze.sh [SCENARIO] [SCALE] [DIR]   (defaults: seed 1.0 ~/.cache/distillguard/analyze-bench)
#
# DuckDB comes from PyPI into a virtualenv under ~/.cache/distillguard (the project's own
# install; nothing system-wide). The distillguard binary is the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-seed}
scale=${2:-1.0}
dir=${3:-$HOME/.cache/distillguard/analyze-bench}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/distillguard/target}"
profile=${PROFILE:-release}
cargo build --locked --bin distillguard $([ "$profile" = release ] && echo --release)
dg="$CARGO_TARGET_DIR/$([ "$profile" = release ] && echo release || echo debug)/distillguard"
venv="$HOME/.cache/distillguard/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import duckdb" 2>/dev/null || "$venv/bin/pip" install -q duckdb
data="$dir/$scenario-$scale"
if [ ! -f "$data/truth.csv" ]; then
    "$dg" simulate --scenario "$scenario" --scale "$scale" --out "$data" --force >/dev/null
fi
peak() { awk '/Maximum resident/ {printf "%.0f", $6/1024}' "$1"; }
echo "== DuckDB $("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)') (2 threads)"
/usr/bin/time -v -o "$dir/duck.time" "$venv/bin/python" - "$data" > "$dir/duck.out" <<'PY'
import sys, time, duckdb
data = sys.argv[1]
con = duckdb.connect()
con.execute("SET threads TO 2")
t = time.time()
rows, accts, chars = con.execute(f"""
  SELECT sum(n), count(*), sum(chars) FROM (
    SELECT account_id, count(*) n, sum(input_tokens) i, sum(output_tokens) o,
           count(DISTINCT client_ip) ips,
           bit_xor(hash(messages[len(messages)].content)) h,
           sum(strlen(messages[len(messages)].content)) chars
    FROM read_parquet('{data}/exchanges/*.parquet') GROUP BY account_id)
""").fetchone()
print(rows, accts, chars, time.time() - t)
PY
read -r drows daccts dchars dsecs < "$dir/duck.out"
dmem=$(peak "$dir/duck.time")
printf 'duckdb:       %d exchanges, %d accounts in %.1f s = %.0f exchanges/s, %.0f MB/s of prompt text, peak %s MiB\n' \
    "$drows" "$daccts" "$dsecs" "$(echo "$drows / $dsecs" | bc -l)" "$(echo "$dchars / $dsecs / 1000000" | bc -l)" "$dmem"
echo "== distillguard analyze ($profile build)"
/usr/bin/time -v -o "$dir/dg.time" "$dg" analyze --exchanges "$data/exchanges" \
    --accounts "$data/accounts.parquet" --releases "$data/model_releases.parquet" --out "$dir/result" > "$dir/dg.out"
head -2 "$dir/dg.out"
secs=$(python3 -c "import json;print(json.load(open('$dir/result/summary.json'))['seconds_total'])")
chars=$(python3 -c "import json;print(json.load(open('$dir/result/summary.json'))['prompt_chars'])")
rows=$(python3 -c "import json;print(json.load(open('$dir/result/summary.json'))['exchanges'])")
mem=$(peak "$dir/dg.time")
printf 'distillguard: %d exchanges in %.1f s = %.0f exchanges/s, %.0f MB/s of prompt text, peak %s MiB\n' \
    "$rows" "$secs" "$(echo "$rows / $secs" | bc -l)" "$(echo "$chars / $secs / 1000000" | bc -l)" "$mem"
printf 'throughput ratio distillguard/duckdb: %.2f (target >= 0.67); memory target <= 6144 MiB\n' \
    "$(echo "$dsecs / $secs" | bc -l)"
