#!/usr/bin/env bash
# Analyze benchmark against DuckDB: both read every exchange of a scenario written as Parquet
# on the same cores; DuckDB computes bare per-account aggregates (count, token sums, distinct
# addresses, a hash of each prompt), distillguard runs the full `analyze`. Prints wall time,
# exchanges/s, prompt bytes/s, peak memory, CPU seconds and the throughput ratio.
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
# CPU seconds (user + system): steadier than wall time on a shared machine.
cpu() { awk '/User time|System time/ {s += $NF} END {printf "%.1f", s}' "$1"; }
echo "== DuckDB $("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)') (2 threads)"
/usr/bin/time -v -o "$dir/duck.time" "$venv/bin/python" - "$data" > "$dir/duck.out" <<'PY'
import sys, time, duckdb
data = sys.argv[1]
con = duckdb.connect()
con.execute("SET threads TO 2")
t, c = time.time(), time.process_time()
# The outer query uses every aggregate, so that none is optimised away.
rows, accts, _tokens, _ips, _h = con.execute(f"""
  SELECT sum(n), count(*), sum(i) + sum(o), sum(ips), bit_xor(h) FROM (
    SELECT account_id, count(*) n, sum(input_tokens) i, sum(output_tokens) o,
           count(DISTINCT client_ip) ips,
           bit_xor(hash(messages[len(messages)].content)) h
    FROM read_parquet('{data}/exchanges/*.parquet') GROUP BY account_id)
""").fetchone()
secs, cpu = time.time() - t, time.process_time() - c
# Untimed: the bytes of text in the data set (system prompts and every message), the
# denominator of both tools' text throughput.
text = con.execute(f"""
  SELECT sum(strlen(coalesce(system, '')) + coalesce(list_sum(list_transform(messages, lambda m: strlen(m.content))), 0))
  FROM read_parquet('{data}/exchanges/*.parquet')
""").fetchone()[0]
print(rows, accts, text, secs, cpu)
PY
read -r drows daccts text dsecs dcpu < "$dir/duck.out"
dmem=$(peak "$dir/duck.time")
rate() { python3 -c "print(f'{$1 / $2:.0f}')"; }
printf 'duckdb:       %d exchanges, %d accounts in %.1f s = %s exchanges/s, %s MB/s of text, peak %s MiB, %.1f s of CPU\n' \
    "$drows" "$daccts" "$dsecs" "$(rate "$drows" "$dsecs")" "$(rate "$text / 1e6" "$dsecs")" "$dmem" "$dcpu"
echo "== distillguard analyze ($profile build)"
/usr/bin/time -v -o "$dir/dg.time" "$dg" analyze --exchanges "$data/exchanges" \
    --accounts "$data/accounts.parquet" --releases "$data/model_releases.parquet" --out "$dir/result" > "$dir/dg.out"
head -2 "$dir/dg.out"
secs=$(python3 -c "import json;print(json.load(open('$dir/result/summary.json'))['seconds_total'])")
rows=$(python3 -c "import json;print(json.load(open('$dir/result/summary.json'))['exchanges'])")
mem=$(peak "$dir/dg.time")
printf 'distillguard: %d exchanges in %.1f s = %s exchanges/s, %s MB/s of text, peak %s MiB, %s s of CPU (whole command, report included)\n' \
    "$rows" "$secs" "$(rate "$rows" "$secs")" "$(rate "$text / 1e6" "$secs")" "$mem" "$(cpu "$dir/dg.time")"
printf 'throughput ratio distillguard/duckdb: %s (target >= 0.67); memory target <= 6144 MiB\n' \
    "$(python3 -c "print(f'{$dsecs / $secs:.2f}')")"
