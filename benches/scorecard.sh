#!/usr/bin/env bash
# What does the scorecard (SPEC §8) cost? Times the default `kefu run`
# (Pinduoduo, one day, items on) on the 10M-message day of compare.sh,
# without and with the four scorecard tables `kefu gen --scorecard` writes
# beside it (about 1M orders, 200k refunds, 100k complaints, 500k ratings),
# alternating, and reports medians and their ratio (issue 19's target: at
# most 1.3x).
#
#   benches/scorecard.sh             # 10M messages, 5 pairs
#   ROWS=1000000 RUNS=3 benches/scorecard.sh
#
# Data: `kefu gen --rows ROWS --days 2 --shops 4000 --start 2024-05-16
# --seed 1 --scorecard DIR`, kept in benches/data/scorecard-ROWS/ while the
# generator's source is unchanged.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kefu-target}
ROWS=${ROWS:-10000000}
RUNS=${RUNS:-5}
DATA=$ROOT/benches/data/scorecard-$ROWS
OUT=$ROOT/benches/data/scorecard-out
log() { echo "scorecard: $*" >&2; }

[ -x /usr/bin/time ] || { echo "scorecard: needs GNU time (/usr/bin/time)" >&2; exit 2; }
if [[ -z ${KEFU:-} ]]; then
    (cd "$ROOT" && cargo build --release -q)
    KEFU=$CARGO_TARGET_DIR/release/kefu
fi
# A private copy: a build running meanwhile may replace the original.
mkdir -p "$ROOT/benches/data"
BIN=$(mktemp "$ROOT/benches/data/kefu.XXXXXX")
trap 'rm -f "$BIN"' EXIT
cp "$KEFU" "$BIN"; chmod +x "$BIN"

GEN_HASH=$(cat "$ROOT"/src/gen/*.rs | sha256sum | cut -c1-16)
if [[ $(cat "$DATA/stamp" 2>/dev/null) != "$GEN_HASH" ]]; then
    log "generating $DATA"
    rm -rf "$DATA"; mkdir -p "$DATA"
    "$BIN" gen --output "$DATA/msgs.parquet" --rows "$ROWS" --days 2 --shops 4000 \
        --start 2024-05-16 --seed 1 --scorecard "$DATA" 2>/dev/null
    echo "$GEN_HASH" > "$DATA/stamp"
fi

BASE=("$BIN" run --input "$DATA/msgs.parquet" --output "$OUT" --platform pdd --date 2024-05-16)
TABLES=(--orders "$DATA/orders.parquet" --refunds "$DATA/refunds.parquet"
        --complaints "$DATA/complaints.parquet" --ratings "$DATA/ratings.parquet")
timed() { # name cmd...
    local name=$1; shift
    rm -rf "$OUT"
    /usr/bin/time -f "%e %U %S %M" -o "$OUT.time" "$@" 2> "$OUT.log" \
        || { tail -5 "$OUT.log" >&2; exit 1; }
    cat "$OUT.time" >> "$OUT.$name"
    log "$name: $(cat "$OUT.time") (wall user sys KiB)"
}
: > "$OUT.messages"; : > "$OUT.scorecard"
for (( r = 0; r < RUNS; r++ )); do
    timed messages "${BASE[@]}"
    timed scorecard "${BASE[@]}" "${TABLES[@]}"
done
rows() { grep -o "$1: [0-9]* file(s), [0-9]* rows read" "$OUT.log" | grep -o '[0-9]* rows' | cut -d' ' -f1; }
med() { awk "{ print $2 }" "$OUT.$1" | sort -g | awk -v n="$RUNS" '{a[NR]=$1} END {print (n % 2) ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2}'; }
M=$(med messages '$1'); S=$(med scorecard '$1')
echo "| job | median wall s ($RUNS runs) | all runs | median user s | median peak RSS MiB |"
echo "|---|---:|---|---:|---:|"
for j in messages scorecard; do
    printf '| %s | %.2f | %s | %.2f | %d |\n' "$j" "$(med $j '$1')" \
        "$(cut -d' ' -f1 "$OUT.$j" | paste -sd' ')" "$(med $j '$2')" "$(( $(med $j '$4' | cut -d. -f1) / 1024 ))"
done
awk -v m="$M" -v s="$S" 'BEGIN { printf "\nscorecard / messages: **%.2fx** (target: at most 1.3x)\n", s / m }'
echo "tables: $(rows orders) orders, $(rows refunds) refunds, $(rows complaints) complaints, $(rows ratings) ratings (rows read in the window)"
