#!/usr/bin/env bash
# Does kefu's throughput hold as a day grows? Times `kefu run` (Pinduoduo,
# one day, default --memory-budget) on 1M, 10M and 100M rows, as the default
# job (with the items drill-down) and with --no-items, and reports wall
# time, time per million rows, CPU time per million rows and peak memory
# (GNU time), sizes and jobs interleaved round by round.
#
#   benches/scale.sh                   # 1M, 10M, 100M; both jobs
#   SIZES="1 10" benches/scale.sh      # millions of rows to run
#   JOBS=no-items benches/scale.sh     # only one job ("default", "no-items")
#
# Data: `kefu gen --days 2 --shops 4000 --start 2024-05-16`, shuffled, in
# parts of at most 10M rows with seeds 1, 2, ... (msg_ids carry the seed, so
# the parts are one table); kept in benches/data/scale/ while src/gen/ is
# unchanged. 100M rows need ~2 GB of input and ~6 GB free disk for spilling
# (under the output folder).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kefu-target}
SIZES=${SIZES:-"1 10 100"}
JOBS=${JOBS:-"default no-items"}
RUNS=${RUNS:-1}
DATA=$ROOT/benches/data/scale
OUT=${OUT:-$ROOT/benches/data/scale-out}
log() { echo "scale: $*" >&2; }

(cd "$ROOT" && cargo build --release -q)
KEFU=$CARGO_TARGET_DIR/release/kefu
[ -x /usr/bin/time ] || { echo "scale: needs GNU time (/usr/bin/time)" >&2; exit 2; }
GEN_HASH=$(cat "$ROOT"/src/gen/*.rs | sha256sum | cut -c1-16)

part() { # millions seed -> path
    local f=$DATA/rows${1}M-seed$2.parquet
    if [[ ! -f $f || $(cat "$f.stamp" 2>/dev/null) != "$GEN_HASH" ]]; then
        mkdir -p "$DATA"
        log "generating $f"
        "$KEFU" gen --output "$f.tmp" --rows $(( $1 * 1000000 )) --days 2 --shops 4000 \
            --start 2024-05-16 --seed "$2" 2>/dev/null
        mv "$f.tmp" "$f"
        echo "$GEN_HASH" > "$f.stamp"
    fi
    echo "$f"
}

# Inputs first; then RUNS rounds, each running every size once, so that a
# slow or fast spell of the machine (timings on the benchmark VM drift by
# 10-30% over minutes) falls on all sizes alike.
for m in $SIZES; do
    input=$DATA/day${m}M
    rm -rf "$input"; mkdir -p "$input"
    if (( m <= 10 )); then
        ln -s "$(part "$m" 1)" "$input/part-01.parquet"
    else
        for (( s = 1; s <= m / 10; s++ )); do
            ln -s "$(part 10 "$s")" "$input/part-$(printf %02d "$s").parquet"
        done
    fi
    for j in $JOBS; do : > "$OUT.$m.$j.results"; done
done
for (( r = 0; r < RUNS; r++ )); do
    for m in $SIZES; do
        for j in $JOBS; do
            flags=(); [[ $j == no-items ]] && flags=(--no-items)
            rm -rf "$OUT"
            /usr/bin/time -f "%e %U %S %M" -o "$OUT.time" "$KEFU" run --input "$DATA/day${m}M" \
                --output "$OUT" --platform pdd --date 2024-05-16 "${flags[@]}" 2> "$OUT.log" \
                || { tail -5 "$OUT.log" >&2; exit 1; }
            cat "$OUT.time" >> "$OUT.$m.$j.results"
            # Rows read for the day (both local days of the file), as the
            # day's own line says; the closing "done:" line counts the day's.
            grep -o '[0-9]* rows read, [0-9]* bad' "$OUT.log" | head -1 | cut -d' ' -f1 > "$OUT.$m.rows"
            log "${m}M $j run $((r + 1)): $(cat "$OUT.time") ($(grep -o 'read [0-9.]*s.*' "$OUT.log" | head -1))"
        done
    done
done

# Wall and CPU (user + system) time are medians over the runs, each taken
# on its own; CPU time per row shows whether the work per row holds, wall
# time whether the cores stay busy as well.
echo "| job | rows | files | wall s (median of $RUNS) | s per 1M rows | CPU s per 1M rows | user s | sys s | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for j in $JOBS; do
for m in $SIZES; do
    med() { awk "{ print $1 }" "$OUT.$m.$j.results" | sort -n | awk -v n=$RUNS 'NR == int((n + 1) / 2)'; }
    wall=$(med '$1'); cpu=$(med '$2 + $3'); user=$(med '$2'); sys=$(med '$3'); rss=$(med '$4')
    files=$(ls "$DATA/day${m}M" | wc -l)
    rows=$(cat "$OUT.$m.rows")
    awk -v j="$j" -v r="$rows" -v f="$files" -v w="$wall" -v c="$cpu" -v u="$user" -v s="$sys" -v k="$rss" \
        'BEGIN { printf "| %s | %d | %d | %.2f | %.3f | %.3f | %.1f | %.1f | %d |\n", j, r, f, w, w / (r / 1e6), c / (r / 1e6), u, s, k / 1024 }'
    rm -f "$OUT.$m.$j.results"
done
done
for m in $SIZES; do rm -f "$OUT.$m.rows"; done
rm -rf "$OUT" "$OUT.time" "$OUT.log"
