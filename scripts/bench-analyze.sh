#!/usr/bin/env bash
# Analyze benchmark against DuckDB: both read every exchange of a scenario written as Parquet
# on the same cores; DuckDB computes bare per-account aggregates (count, token sums, distinct
# addresses, a hash of each prompt), distillguard runs the full `analyze`. Prints wall time,
# exchanges/s, prompt bytes/s, peak memory, CPU seconds and the throughput ratio, for each of
# RUNS (default 3) alternating runs and, over them, the ratio of the median times.
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
duck_version=$("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)')
rate() { python3 -c "print(f'{$1 / $2:.0f}')"; }
# One DuckDB run; the untimed count of text bytes only when asked ($1 = 1).
duck() {
/usr/bin/time -v -o "$dir/duck.time" "$venv/bin/python" - "$data" "$1" > "$dir/duck.out" <<'PY'
import sys, time, duckdb
data, count_text = sys.argv[1], sys.argv[2] == "1"
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
text = 0
if count_text:
    text = con.execute(f"""
      SELECT sum(strlen(coalesce(system, '')) + coalesce(list_sum(list_transform(messages, lambda m: strlen(m.content))), 0))
      FROM read_parquet('{data}/exchanges/*.parquet')
    """).fetchone()[0]
print(rows, accts, text, secs, cpu)
PY
}
# Runs alternate between the two tools (RUNS, default 3): on a shared machine the load
# changes from minute to minute, and only runs close in time compare. The summary gives the
# ratio of the medians and the range of the per-run ratios.
runs=${RUNS:-3}
: > "$dir/runs"
for i in $(seq "$runs"); do
    echo "== run $i of $runs: DuckDB $duck_version (2 threads), then distillguard analyze ($profile build)"
    duck "$([ "$i" = 1 ] && echo 1 || echo 0)"
    if [ "$i" = 1 ]; then
        read -r drows daccts text dsecs dcpu < "$dir/duck.out"
    else
        read -r drows daccts _ dsecs dcpu < "$dir/duck.out"
    fi
    dmem=$(peak "$dir/duck.time")
    printf 'duckdb:       %d exchanges, %d accounts in %.1f s = %s exchanges/s, %s MB/s of text, peak %s MiB, %.1f s of CPU\n' \
        "$drows" "$daccts" "$dsecs" "$(rate "$drows" "$dsecs")" "$(rate "$text / 1e6" "$dsecs")" "$dmem" "$dcpu"
    /usr/bin/time -v -o "$dir/dg.time" "$dg" analyze --exchanges "$data/exchanges" \
        --accounts "$data/accounts.parquet" --releases "$data/model_releases.parquet" --out "$dir/result" > "$dir/dg.out"
    [ "$i" = 1 ] && head -2 "$dir/dg.out"
    secs=$(python3 -c "import json;print(json.load(open('$dir/result/summary.json'))['seconds_total'])")
    rows=$(python3 -c "import json;print(json.load(open('$dir/result/summary.json'))['exchanges'])")
    mem=$(peak "$dir/dg.time")
    printf 'distillguard: %d exchanges in %.1f s = %s exchanges/s, %s MB/s of text, peak %s MiB, %s s of CPU (whole command, report included)\n' \
        "$rows" "$secs" "$(rate "$rows" "$secs")" "$(rate "$text / 1e6" "$secs")" "$mem" "$(cpu "$dir/dg.time")"
    printf 'throughput ratio distillguard/duckdb: %s (target >= 0.67); memory target <= 6144 MiB\n' \
        "$(python3 -c "print(f'{$dsecs / $secs:.2f}')")"
    echo "$dsecs $secs $mem" >> "$dir/runs"
done
if [ "$runs" -gt 1 ]; then
    python3 - "$dir/runs" "$rows" "$text" <<'PY'
import statistics, sys
runs = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
rows, text = int(sys.argv[2]), float(sys.argv[3])
duck = statistics.median(r[0] for r in runs)
dg = statistics.median(r[1] for r in runs)
ratios = sorted(r[0] / r[1] for r in runs)
print(f"== median of {len(runs)} runs: DuckDB {duck:.2f} s, distillguard {dg:.2f} s = "
      f"{rows / dg:,.0f} exchanges/s, {text / 1e6 / dg:,.0f} MB/s of text, "
      f"peak {max(r[2] for r in runs):.0f} MiB at most")
print(f"throughput ratio of the medians: {duck / dg:.2f} (target >= 0.67); "
      f"per run {ratios[0]:.2f}-{ratios[-1]:.2f}")
PY
fi
